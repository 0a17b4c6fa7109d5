/**
 * The CAP demo's judge (src/cli/cap/verdict.ts): each level's promise of docs/consistency.md, kept
 * by what the table says should happen and broken by each way it can fail.
 */
import { describe, expect, it } from 'vitest'
import {
  boundSlackMs,
  brokenPromises,
  judge,
  type ReadObservation,
  type WriteObservation,
} from '../../../src/cli/cap/verdict.ts'

const read = (o: Partial<ReadObservation>): ReadObservation => ({
  op: 'read',
  side: 'minority',
  level: 'linearizable',
  node: 1,
  outcome: 'refused',
  freshVersion: 10,
  freshAgeMs: 2_000,
  ...o,
})
const write = (o: Partial<WriteObservation>): WriteObservation => ({
  op: 'write',
  side: 'minority',
  level: 'majority',
  node: 1,
  outcome: 'refused',
  voterCutOff: true,
  ...o,
})

describe('judge', () => {
  it('keeps linearizable and session reads that are refused or fresh, breaks stale ones', () => {
    for (const level of ['linearizable', 'session'] as const) {
      expect(judge(read({ level })).kept).toBe(true)
      expect(judge(read({ level, outcome: 'served', version: 10, stalenessMs: 0 })).kept).toBe(true)
      const stale = judge(read({ level, outcome: 'served', version: 9, stalenessMs: 0 }))
      expect(stale.kept).toBe(false)
      expect(stale.why).toContain('v9 after v10')
    }
  })

  it('holds bounded reads to their bound, with slack for a write acknowledged just before', () => {
    const bounded = (o: Partial<ReadObservation>): ReadObservation =>
      read({ level: 'bounded', boundMs: 500, outcome: 'served', ...o })
    expect(judge(bounded({ outcome: 'refused', code: 'STALENESS_BOUND_EXCEEDED' })).kept).toBe(true)
    expect(judge(bounded({ version: 10, stalenessMs: 100 })).kept).toBe(true)
    expect(judge(bounded({ version: 9, stalenessMs: 100, freshAgeMs: 500 + boundSlackMs })).kept).toBe(true)
    expect(judge(bounded({ version: 9, stalenessMs: 100, freshAgeMs: 500 + boundSlackMs + 1 })).kept).toBe(
      false,
    )
    expect(judge(bounded({ version: 10, stalenessMs: 501 })).why).toContain('above its bound')
  })

  it('breaks an eventual read that is refused or stale while saying fresh', () => {
    const eventual = (o: Partial<ReadObservation>): ReadObservation =>
      read({ level: 'eventual', outcome: 'served', ...o })
    expect(judge(eventual({ version: 9, stalenessMs: 1_800 })).kept).toBe(true)
    expect(judge(eventual({ version: 10, stalenessMs: 0 })).kept).toBe(true)
    expect(judge(eventual({ version: 9, stalenessMs: 0 })).why).toContain('saying fresh')
    expect(judge(eventual({ outcome: 'refused', code: 'UNAVAILABLE' })).why).toContain('refused')
  })

  it('breaks majority and all writes acknowledged then lost, and all writes acknowledged while a voter is cut off', () => {
    expect(judge(write({})).kept).toBe(true)
    expect(judge(write({ outcome: 'unknown', afterHeal: 'lost' })).kept).toBe(true)
    expect(judge(write({ outcome: 'served', afterHeal: 'kept' })).kept).toBe(true)
    expect(judge(write({ outcome: 'served', afterHeal: 'lost' })).why).toContain('was lost')
    expect(judge(write({ level: 'all', outcome: 'served', afterHeal: 'kept' })).why).toContain('cut off')
    expect(
      judge(write({ level: 'all', outcome: 'served', voterCutOff: false, afterHeal: 'kept' })).kept,
    ).toBe(true)
  })

  it('lets a leader write be lost: that is its documented trade', () => {
    expect(judge(write({ level: 'leader', outcome: 'served', afterHeal: 'lost' })).kept).toBe(true)
    expect(
      brokenPromises([
        write({ level: 'leader', outcome: 'served', afterHeal: 'lost' }),
        write({ outcome: 'served', afterHeal: 'lost' }),
      ]).map((b) => b.o.level),
    ).toEqual(['majority'])
  })
})
