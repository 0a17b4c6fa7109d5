/**
 * Nemesis schedules (test/chaos/nemesis.ts) are data: seeded, replayable, inside their duration,
 * never stopping a node that must keep running, and composable.
 */
import { describe, expect, it } from 'vitest'
import type { ChaosCluster } from '../../chaos/cluster.ts'
import {
  compose,
  describeSchedule,
  faultNodes,
  planSchedule,
  runSchedule,
  type FaultKind,
  type NemesisLog,
} from '../../chaos/nemesis.ts'

const every: FaultKind[] = [
  'kill',
  'stop',
  'pause',
  'isolate',
  'one-way',
  'bridge',
  'loss',
  'latency',
  'bandwidth',
  'clock',
]

describe('planSchedule', () => {
  it('leaves membership changes (join, drain, death) to schedules made by hand', () => {
    for (const kind of ['join', 'drain', 'death'] as const)
      expect(() => planSchedule({ seed: 1, kinds: [kind], durationMs: 60_000, nodes: 4 })).toThrow(/by hand/)
    expect(faultNodes({ kind: 'join' }, 4)).toEqual([])
    expect(faultNodes({ kind: 'drain', node: 4, rejoin: true }, 4)).toEqual([4])
    expect(faultNodes({ kind: 'death', node: 5 }, 4)).toEqual([5])
  })

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

  it('limits bandwidth to 128..1024 kbit/s on a node of the cluster', () => {
    const s = planSchedule({ seed: 5, kinds: ['bandwidth'], durationMs: 120_000, nodes: 3 })
    expect(s.faults.length).toBeGreaterThan(5)
    for (const { fault } of s.faults) {
      if (fault.kind !== 'bandwidth') throw new Error(`planned ${fault.kind}`)
      expect(fault.kbit).toBeGreaterThanOrEqual(128)
      expect(fault.kbit).toBeLessThanOrEqual(1024)
      expect([1, 2, 3]).toContain(fault.node)
    }
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

/**
 * A stand-in for ChaosCluster with docker's timing: a stop takes a while, and the node answers
 * `running` until it is over; iptables on a node that is down fails as nsenter would.
 */
function fakeCluster(stopMs: number) {
  const states = new Map<number, 'running' | 'paused' | 'down'>([
    [1, 'running'],
    [2, 'running'],
    [3, 'running'],
  ])
  const rules = new Map<number, number>()
  const nodes = [1, 2, 3].map((id) => ({ id, ip: `10.0.0.${id}` }))
  const cluster = {
    nodes,
    node: (id: number) => nodes[id - 1]!,
    state: async (n: { id: number }) => states.get(n.id)!,
    stopNode: async (n: { id: number }) => {
      await new Promise((r) => setTimeout(r, stopMs))
      states.set(n.id, 'down')
      rules.delete(n.id)
    },
    startNode: async (n: { id: number }) => {
      states.set(n.id, 'running')
    },
    iptables: async (n: { id: number }) => {
      if (states.get(n.id) !== 'running') throw new Error(`node ${n.id} is not running`)
      rules.set(n.id, (rules.get(n.id) ?? 0) + 1)
    },
    flushRules: async (n: { id: number }) => {
      if (states.get(n.id) === 'down') return
      rules.delete(n.id)
    },
  }
  return { cluster: cluster as unknown as ChaosCluster, states, rules }
}

describe('runSchedule with overlapping faults', () => {
  it('skips a network fault on a node whose stop is still under way, instead of failing on it', async () => {
    const { cluster, states, rules } = fakeCluster(150)
    const log: NemesisLog = { lines: [], errors: [], windows: [] }
    await runSchedule(
      cluster,
      {
        seed: 1,
        faults: [
          { atMs: 0, forMs: 400, fault: { kind: 'stop', node: 2 } },
          { atMs: 20, forMs: 100, fault: { kind: 'loss', node: 2, percent: 30 } },
        ],
      },
      log,
    )
    expect(log.errors).toEqual([])
    expect(log.lines.some((l) => /skip loss node=2 percent=30: node 2 is down/.test(l))).toBe(true)
    expect(log.windows.map((w) => w.fault.kind)).toEqual(['stop'])
    expect(states.get(2)).toBe('running')
    expect(rules.size).toBe(0)
  })

  it('lets a network fault applied first stand until a stop on the same node takes it down', async () => {
    const { cluster, states, rules } = fakeCluster(50)
    const log: NemesisLog = { lines: [], errors: [], windows: [] }
    await runSchedule(
      cluster,
      {
        seed: 1,
        faults: [
          { atMs: 0, forMs: 300, fault: { kind: 'isolate', node: 1 } },
          { atMs: 0, forMs: 100, fault: { kind: 'stop', node: 1 } },
          { atMs: 10, forMs: 100, fault: { kind: 'loss', node: 3, percent: 20 } },
        ],
      },
      log,
    )
    expect(log.errors).toEqual([])
    expect(log.windows.map((w) => w.fault.kind).sort()).toEqual(['isolate', 'loss', 'stop'])
    expect(states.get(1)).toBe('running')
    expect(rules.size).toBe(0)
  })
})
