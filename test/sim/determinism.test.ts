/**
 * Replays must be exact (STYLE.md 7.6): one seed, one trace, byte for byte. Plus a small
 * determinism guard in the spirit of TigerBeetle's tidy.zig: the simulated and pure rooms this
 * suite owns may not reach for ambient time or randomness (the ESLint ban does not cover them yet).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { NodeId, SeededRandom } from '../../src/common/index.ts'
import { SimDisk } from './disk.ts'
import { SimNetwork } from './network.ts'
import { describeResult, runSeed } from './run.ts'
import { SimClock, Simulator, TraceHash } from './simulator.ts'
import { MemoryLogStorage, emptyConfState } from '../../src/raft/index.ts'
import type { Entry } from '../../src/raft/index.ts'
import type { LogIndex, Term } from '../../src/common/index.ts'

describe('sim/determinism', () => {
  it('gives the identical trace hash when a seed runs twice', () => {
    for (const seed of [1, 0x2a, 0xdead]) {
      const a = runSeed({ seed })
      const b = runSeed({ seed })
      expect(a.traceHash, describeResult(a)).toBe(b.traceHash)
      expect(a.traceLines).toBe(b.traceLines)
      expect(a.stats).toEqual(b.stats)
    }
  })

  it('gives the identical trace with debug logging and a sink attached', () => {
    const lines: string[] = []
    const a = runSeed({ seed: 7, logLevel: 'debug', sink: (l) => lines.push(l) })
    const b = runSeed({ seed: 7, logLevel: 'debug' })
    expect(a.traceHash).toBe(b.traceHash)
    expect(lines.length).toBe(a.traceLines)
  })

  it('gives different traces for different seeds', () => {
    const hashes = new Set([1, 2, 3, 4].map((seed) => runSeed({ seed }).traceHash))
    expect(hashes.size).toBe(4)
  })
})

describe('sim/simulator', () => {
  it('runs events in time order and same-time events in scheduling order', () => {
    const sim = new Simulator()
    const out: string[] = []
    sim.schedule(5, () => out.push('b'))
    sim.schedule(1, () => out.push('a'))
    sim.schedule(5, () => out.push('c'))
    const h = sim.schedule(3, () => out.push('cancelled'))
    h.cancel()
    sim.runUntil(10)
    expect(out).toEqual(['a', 'b', 'c'])
    expect(sim.nowMs).toBe(10)
  })

  it('drifts a SimClock against true time and keeps it monotonic across drift changes', () => {
    const sim = new Simulator()
    const fast = new SimClock(sim, 100_000, 500) // 10% fast
    let firedAt = -1
    fast.setTimer(110, () => (firedAt = sim.nowMs))
    sim.runUntil(100)
    expect(firedAt).toBeCloseTo(100, 6)
    expect(fast.nowMs()).toBeCloseTo(610, 6)
    fast.setDriftPpm(-100_000)
    sim.runUntil(200)
    expect(fast.nowMs()).toBeCloseTo(700, 6)
  })

  it('hashes traces stably', () => {
    const a = new TraceHash()
    const b = new TraceHash()
    a.update('x')
    b.update('x')
    expect(a.hex()).toBe(b.hex())
    b.update('')
    expect(a.hex()).not.toBe(b.hex())
  })
})

describe('sim/network', () => {
  it('drops packets across a partition, both ways, and delivers after heal', () => {
    const sim = new Simulator()
    const got: string[] = []
    const net = new SimNetwork<string>(
      sim,
      new SeededRandom(1),
      { oneWayDelayMsMean: 1, packetLossPer10k: 0, duplicatePer10k: 0, reorderPer10k: 0 },
      (from, to, m) => got.push(`${from}>${to}:${m}`),
    )
    net.partition([NodeId(1)], [NodeId(2)])
    net.send(NodeId(1), NodeId(2), 'x')
    net.send(NodeId(2), NodeId(1), 'y')
    net.send(NodeId(1), NodeId(3), 'z')
    sim.runUntil(10)
    expect(got).toEqual(['1>3:z'])
    net.heal()
    net.block(NodeId(1), NodeId(2)) // one way only
    net.send(NodeId(1), NodeId(2), 'p')
    net.send(NodeId(2), NodeId(1), 'q')
    sim.runUntil(20)
    expect(got).toEqual(['1>3:z', '2>1:q'])
  })

  it('holds packets on a clogged link until the clog ends', () => {
    const sim = new Simulator()
    const at: number[] = []
    const net = new SimNetwork<string>(
      sim,
      new SeededRandom(1),
      { oneWayDelayMsMean: 1, packetLossPer10k: 0, duplicatePer10k: 0, reorderPer10k: 0 },
      () => at.push(sim.nowMs),
    )
    net.clog(NodeId(1), NodeId(2), 50)
    net.send(NodeId(1), NodeId(2), 'x')
    sim.runUntil(100)
    expect(at[0]).toBeGreaterThanOrEqual(50)
  })
})

describe('sim/disk', () => {
  const entry = (index: number, term: number): Entry => ({
    index: index as LogIndex,
    term: term as Term,
    type: 'normal',
    data: new Uint8Array([index]),
  })

  it('loses a write in flight and an unsynced hard state on crash, keeps fsynced ones', () => {
    const sim = new Simulator()
    const storage = MemoryLogStorage.bootstrap(
      { ...emptyConfState, voters: [NodeId(1)] },
      1 as LogIndex,
      1 as Term,
    )
    const disk = new SimDisk(sim, new SeededRandom(3), storage, 4)
    let durable = 0
    disk.write(
      {
        snapshot: null,
        entries: [entry(2, 1)],
        hardState: { term: 2 as Term, vote: null, commit: 1 as LogIndex },
        mustSync: true,
      },
      () => durable++,
    )
    sim.runUntil(100)
    expect(durable).toBe(1)
    // Commit-only change: not fsynced.
    disk.write(
      {
        snapshot: null,
        entries: [],
        hardState: { term: 2 as Term, vote: null, commit: 2 as LogIndex },
        mustSync: false,
      },
      () => durable++,
    )
    sim.runUntil(200)
    expect(storage.hardState().commit).toBe(2)
    // A write in flight when the power goes out.
    disk.write(
      {
        snapshot: null,
        entries: [entry(3, 2)],
        hardState: { term: 3 as Term, vote: NodeId(1), commit: 2 as LogIndex },
        mustSync: true,
      },
      () => durable++,
    )
    disk.crash()
    sim.runUntil(300)
    expect(durable).toBe(2)
    expect(storage.lastIndex()).toBe(2)
    expect(storage.hardState()).toEqual({ term: 2, vote: null, commit: 1 })
  })
})

describe('sim/determinism guard', () => {
  const banned: [RegExp, string][] = [
    [/\bDate\b/, 'Date'],
    [/Math\.random/, 'Math.random'],
    [/\bsetTimeout\b|\bsetInterval\b|\bsetImmediate\b/, 'real timers'],
    [/\bperformance\b/, 'performance'],
    [/process\.hrtime/, 'process.hrtime'],
    [/\bWeakRef\b|\bFinalizationRegistry\b/, 'GC-dependent objects'],
    [/randomUUID|randomBytes/, 'crypto randomness'],
  ]
  const files = (dir: string): string[] =>
    readdirSync(dir).flatMap((f) => {
      const p = join(dir, f)
      return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') && !p.endsWith('.test.ts') ? [p] : []
    })

  it('keeps test/sim and src/verify free of ambient time and randomness', () => {
    const root = join(import.meta.dirname, '..', '..')
    const offenders: string[] = []
    for (const f of [...files(join(root, 'test', 'sim')), ...files(join(root, 'src', 'verify'))]) {
      const code = readFileSync(f, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '')
      for (const [re, what] of banned) if (re.test(code)) offenders.push(`${f}: ${what}`)
    }
    expect(offenders).toEqual([])
  })

  it('keeps src/verify pure: no node:* imports and no async', () => {
    const root = join(import.meta.dirname, '..', '..')
    for (const f of files(join(root, 'src', 'verify'))) {
      const code = readFileSync(f, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/\/\/.*$/gm, '')
      expect(code, f).not.toMatch(/from 'node:|from "node:/)
      expect(code, f).not.toMatch(/\basync\b|\bawait\b/)
    }
  })
})

describe('sim/state-machine', () => {
  it('keeps its incremental state hash equal to a recomputation, through snapshots', async () => {
    const { KvStateMachine, encodeCommand } = await import('./state-machine.ts')
    const sm = new KvStateMachine()
    const r = new SeededRandom(9)
    for (let i = 1; i <= 300; i++) {
      const op = (['put', 'delete', 'cas'] as const)[r.int(3)]!
      const key = `k${r.int(4)}`
      const seq = 1 + r.int(i)
      const cmd =
        op === 'cas'
          ? { clientId: r.int(3), seq, op, key, value: `v${i}`, expect: { version: r.int(i) } }
          : { clientId: r.int(3), seq, op, key, value: `v${i}` }
      sm.apply(i as LogIndex, encodeCommand(cmd))
      expect(sm.stateHash()).toBe(sm.stateHashSlow())
    }
    const copy = new KvStateMachine()
    copy.restore(sm.serialize(), sm.applied)
    expect(copy.stateHash()).toBe(sm.stateHash())
  })
})
