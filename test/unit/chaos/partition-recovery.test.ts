/**
 * Write recovery under isolation (test/chaos/run.ts partitionRecoveries): from an isolate fault's
 * start until every key took a majority or all write issued after it, within the fault; "stalled"
 * when some key took none.
 */
import { describe, expect, it } from 'vitest'
import type { FaultWindow } from '../../chaos/nemesis.ts'
import { partitionRecoveries } from '../../chaos/run.ts'
import type { ChaosOp } from '../../chaos/workload.ts'

const put = (key: string, callMs: number, returnMs: number, extra: Partial<ChaosOp> = {}): ChaosOp => ({
  worker: 0,
  key,
  kind: 'put',
  level: 'majority',
  value: 'v',
  callMs,
  returnMs,
  outcome: 'ok',
  version: 1,
  ...extra,
})

const isolate: FaultWindow = { fault: { kind: 'isolate', node: 2 }, fromMs: 1_000, toMs: 6_000 }

describe('partitionRecoveries', () => {
  it('is the time until the slowest key took a write issued after the cut', () => {
    const ops = [
      put('a', 900, 1_100), // issued before the cut: does not count
      put('a', 1_200, 1_300),
      put('b', 1_100, 3_400, { outcome: 'fail' }),
      put('b', 1_500, 3_500, { kind: 'get', level: 'linearizable' }), // not a write
      put('b', 2_000, 3_900),
    ]
    expect(partitionRecoveries(ops, [isolate])).toEqual([
      { fault: 'isolate node=2', forMs: 5_000, recoveryMs: 2_900 },
    ])
  })

  it('says a key whose writes all failed while the fault was in force stalled, and ignores other faults and keys left alone', () => {
    const ops = [put('a', 1_200, 1_300), put('b', 5_500, 6_500), put('c', 100, 200)]
    const pause: FaultWindow = { ...isolate, fault: { kind: 'pause', node: 2 } }
    expect(partitionRecoveries(ops, [isolate, pause])).toEqual([
      { fault: 'isolate node=2', forMs: 5_000, recoveryMs: undefined },
    ])
    const cut: FaultWindow = { ...isolate, fault: { kind: 'cut', node: 2 } }
    expect(partitionRecoveries([put('a', 1_200, 1_300)], [cut])).toEqual([
      { fault: 'cut node=2', forMs: 5_000, recoveryMs: 300 },
    ])
  })
})
