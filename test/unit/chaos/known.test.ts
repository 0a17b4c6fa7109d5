/**
 * The known-finding excuse (test/chaos/known.ts) is narrow: it covers a bounded read served by the
 * node a delaying fault acted on, during the fault or just after its heal, and nothing else.
 */
import { describe, expect, it } from 'vitest'
import { excuseKnown } from '../../chaos/known.ts'
import type { FaultWindow } from '../../chaos/nemesis.ts'
import type { ChaosOp } from '../../chaos/workload.ts'

const read = (nodeId: number, callMs: number, level: ChaosOp['level'] = 'bounded'): ChaosOp => ({
  worker: 0,
  key: 'k',
  kind: 'get',
  level,
  callMs,
  returnMs: callMs + 10,
  outcome: 'ok',
  version: 1,
  read: 'v',
  receipt: { nodeId, shardId: 0, appliedIndex: 1, delivered: level, stalenessMs: 5, term: 1 },
})

describe('chaos known findings: F2', () => {
  it('excuses bounded reads of the paused node during and just after the pause only', () => {
    const windows: FaultWindow[] = [{ fault: { kind: 'pause', node: 3 }, fromMs: 1_000, toMs: 5_000 }]
    const excuse = excuseKnown(windows, 3)
    expect(excuse(read(3, 4_000))).toMatch(/known F2/)
    expect(excuse(read(3, 6_500))).toMatch(/known F2/)
    expect(excuse(read(3, 7_500))).toBeUndefined()
    expect(excuse(read(3, 500))).toBeUndefined()
    expect(excuse(read(2, 4_000))).toBeUndefined()
    expect(excuse(read(3, 4_000, 'session'))).toBeUndefined()
    // A fault that delays nothing (a kill) excuses nothing.
    expect(
      excuseKnown([{ ...windows[0]!, fault: { kind: 'kill', node: 3 } }], 3)(read(3, 4_000)),
    ).toBeUndefined()
  })
})
