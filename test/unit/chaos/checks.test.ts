/**
 * The chaos suite's checkers (test/chaos/checks.ts) on hand-written histories: each one passes a
 * history that keeps its promise and reports the one that breaks it. Docker-free: the chaos suite
 * itself needs containers, its checkers do not.
 */
import { describe, expect, it } from 'vitest'
import type { Receipt } from '../../../src/client/index.ts'
import {
  boundSlackMs,
  checkBounded,
  checkLinearizable,
  checkNoAckedWriteLost,
  checkReceipts,
  checkSessions,
} from '../../chaos/checks.ts'
import type { ChaosOp, Level } from '../../chaos/workload.ts'

const receipt = (
  delivered: Receipt['delivered'],
  appliedIndex: number,
  extra: Partial<Receipt> = {},
): Receipt => ({
  nodeId: 1,
  shardId: 0,
  appliedIndex,
  delivered,
  stalenessMs: 0,
  term: 1,
  ...extra,
})

const put = (
  worker: number | string,
  version: number,
  callMs: number,
  returnMs: number,
  level: 'majority' | 'all' = 'majority',
): ChaosOp => ({
  worker,
  key: 'k',
  kind: 'put',
  level,
  value: `v${version}`,
  callMs,
  returnMs,
  outcome: 'ok',
  version,
  receipt: receipt(level, version),
})

const get = (
  worker: number | string,
  level: Extract<Level, 'linearizable' | 'session' | 'bounded'>,
  version: number,
  callMs: number,
  returnMs: number,
  extra: Partial<ChaosOp> = {},
): ChaosOp => ({
  worker,
  key: 'k',
  kind: 'get',
  level,
  callMs,
  returnMs,
  outcome: 'ok',
  version,
  read: version === 0 ? null : `v${version}`,
  receipt: receipt(level, version + 1, level === 'bounded' ? { stalenessMs: 10 } : {}),
  ...(level === 'bounded' ? { boundMs: 1_000 } : {}),
  ...extra,
})

describe('checkLinearizable', () => {
  it('passes reads that follow the writes they come after, and reports a read of an overwritten value', () => {
    const history = [put(0, 5, 0, 10), put(1, 7, 20, 30), get(2, 'linearizable', 7, 40, 50)]
    expect(checkLinearizable(history).problems).toEqual([])
    const stale = [put(0, 5, 0, 10), put(1, 7, 20, 30), get(2, 'linearizable', 5, 40, 50)]
    expect(checkLinearizable(stale).result).toBe('violation')
    expect(checkLinearizable(stale).problems[0]).toMatch(/not linearizable/)
  })
})

describe('checkNoAckedWriteLost', () => {
  it('reports an acknowledged write the final read does not reach, and a final read of another value', () => {
    const ops = [put(0, 5, 0, 10), put(1, 9, 20, 30, 'all')]
    expect(checkNoAckedWriteLost(ops, new Map([['k', get('final', 'linearizable', 9, 40, 50)]]))).toEqual([])
    expect(checkNoAckedWriteLost(ops, new Map([['k', get('final', 'linearizable', 5, 40, 50)]]))).toEqual([
      'key k: acknowledged all write v9 ("v9") lost: the final read has v5',
    ])
    const other = { ...get('final', 'linearizable', 9, 40, 50), read: 'something else' }
    expect(checkNoAckedWriteLost(ops, new Map([['k', other]]))[0]).toMatch(/v9 reads "something else"/)
    expect(checkNoAckedWriteLost(ops, new Map())[0]).toMatch(/no final read/)
  })
})

describe('checkSessions', () => {
  it("reports a session read older than the session's own write, and not another worker's", () => {
    expect(checkSessions([put(0, 5, 0, 10), get(0, 'session', 5, 20, 30)])).toEqual([])
    // Another worker's session never saw v5: reading v3 is fine for it.
    expect(checkSessions([put(0, 5, 0, 10), get(1, 'session', 3, 20, 30)])).toEqual([])
    expect(checkSessions([put(0, 5, 0, 10), get(0, 'session', 3, 20, 30)])[0]).toMatch(
      /worker 0 key k: session read returned v3 after the session saw v5/,
    )
    // Monotonic reads: a linearizable read of v7, then a session read of v5, in one session.
    expect(checkSessions([get(0, 'linearizable', 7, 0, 10), get(0, 'session', 5, 20, 30)])).toHaveLength(1)
  })
})

describe('checkBounded', () => {
  it('reports a staleness over the bound and a value older than the bound allows', () => {
    const acked = put(0, 5, 0, 10)
    const problems = (ops: ChaosOp[]): string[] => checkBounded(ops).problems
    expect(problems([acked, get(1, 'bounded', 0, 500, 510)])).toEqual([]) // within the bound
    const late = 10 + 1_000 + boundSlackMs + 1
    expect(problems([acked, get(1, 'bounded', 0, late, late + 5)])[0]).toMatch(
      /returned v0, but v5 was acknowledged/,
    )
    expect(problems([acked, get(1, 'bounded', 5, late, late + 5)])).toEqual([])
    const over = get(1, 'bounded', 5, 20, 30, { receipt: receipt('bounded', 6, { stalenessMs: 1_500 }) })
    expect(problems([acked, over])[0]).toMatch(/staleness 1500 ms/)
  })

  it('lists a stale read a known finding explains apart, and only that one', () => {
    const acked = put(0, 5, 0, 10)
    const late = 10 + 1_000 + boundSlackMs + 1
    const stale = get(1, 'bounded', 0, late, late + 5)
    const excused = checkBounded([acked, stale], (op) => (op === stale ? 'known F2' : undefined))
    expect(excused.problems).toEqual([])
    expect(excused.known[0]).toMatch(/^known F2: key k: bounded read .* returned v0/)
    // The excuse never covers a staleness over the bound.
    const over = get(1, 'bounded', 5, 20, 30, { receipt: receipt('bounded', 6, { stalenessMs: 1_500 }) })
    expect(checkBounded([acked, over], () => 'known F2').problems[0]).toMatch(/staleness 1500 ms/)
  })
})

describe('checkReceipts', () => {
  it('passes levels delivered as asked or stronger and reports weaker ones, stale linearizable answers, wrong indices and shards', () => {
    expect(
      checkReceipts([
        put(0, 5, 0, 10),
        get(0, 'session', 5, 20, 30, { receipt: receipt('linearizable', 6) }),
      ]),
    ).toEqual([])
    expect(checkReceipts([get(0, 'linearizable', 5, 0, 10, { receipt: receipt('session', 6) })])[0]).toMatch(
      /delivers 'session', weaker than asked/,
    )
    expect(
      checkReceipts([
        get(0, 'linearizable', 5, 0, 10, { receipt: receipt('linearizable', 6, { stalenessMs: 3 }) }),
      ])[0],
    ).toMatch(/staleness 3 ms/)
    expect(checkReceipts([{ ...put(0, 5, 0, 10), receipt: receipt('majority', 7) }])).toEqual([])
    expect(checkReceipts([{ ...put(0, 5, 0, 10), receipt: receipt('majority', 4) }])[0]).toMatch(
      /applied index 4 is before the write's version 5/,
    )
    expect(
      checkReceipts([
        put(0, 5, 0, 10),
        { ...put(0, 6, 20, 30), receipt: receipt('majority', 6, { shardId: 2 }) },
      ])[0],
    ).toMatch(/names shard 2, earlier ones 0/)
  })
})
