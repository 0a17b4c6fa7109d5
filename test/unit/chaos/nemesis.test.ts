/**
 * Nemesis schedules (test/chaos/nemesis.ts) are data: seeded, replayable, inside their duration,
 * never stopping a node that must keep running, and composable.
 */
import { describe, expect, it } from 'vitest'
import { compose, describeSchedule, planSchedule, type FaultKind } from '../../chaos/nemesis.ts'

const every: FaultKind[] = [
  'kill',
  'stop',
  'pause',
  'isolate',
  'one-way',
  'bridge',
  'loss',
  'latency',
  'clock',
]

describe('planSchedule', () => {
  it('is a function of its seed, and faults start and end inside the duration', () => {
    const a = planSchedule({ seed: 7, kinds: every, durationMs: 120_000, nodes: 3 })
    expect(planSchedule({ seed: 7, kinds: every, durationMs: 120_000, nodes: 3 })).toEqual(a)
    expect(planSchedule({ seed: 8, kinds: every, durationMs: 120_000, nodes: 3 })).not.toEqual(a)
    expect(a.faults.length).toBeGreaterThan(5)
    for (const { atMs, forMs } of a.faults) {
      expect(atMs).toBeGreaterThan(0)
      expect(atMs + forMs).toBeLessThanOrEqual(120_000)
    }
    // Sequential: each fault ends before the next starts.
    for (let i = 1; i < a.faults.length; i++)
      expect(a.faults[i]!.atMs).toBeGreaterThan(a.faults[i - 1]!.atMs + a.faults[i - 1]!.forMs)
  })

  it('never kills or stops a node that must keep running, and bridges two distinct nodes', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = planSchedule({
        seed,
        kinds: ['kill', 'stop', 'bridge'],
        durationMs: 60_000,
        nodes: 3,
        keepRunning: [3],
      })
      for (const { fault } of s.faults) {
        if (fault.kind === 'kill' || fault.kind === 'stop') expect(fault.node).not.toBe(3)
        if (fault.kind === 'bridge') expect(fault.a).not.toBe(fault.b)
      }
    }
    expect(() =>
      planSchedule({ seed: 1, kinds: ['rolling-restart'], durationMs: 60_000, nodes: 3, keepRunning: [3] }),
    ).toThrow(/kept node/)
    expect(() => planSchedule({ seed: 1, kinds: ['disk-full'], durationMs: 60_000, nodes: 3 })).toThrow(
      /small-disk/,
    )
  })

  it('composes schedules into one, by start time, and prints them with their seed', () => {
    const a = planSchedule({ seed: 1, kinds: ['kill'], durationMs: 30_000, nodes: 3 })
    const b = planSchedule({ seed: 2, kinds: ['loss'], durationMs: 30_000, nodes: 3 })
    const both = compose(a, b)
    expect(both.faults).toHaveLength(a.faults.length + b.faults.length)
    expect(both.faults.map((f) => f.atMs)).toEqual([...both.faults.map((f) => f.atMs)].sort((x, y) => x - y))
    expect(describeSchedule(both)).toMatch(/^seed 1:\n {2}\+\d+\.\ds for \d+\.\ds: (kill|loss) node=\d/)
  })
})
