/**
 * Raft core throughput: committed entries per second of the pure core (RawNode) driven by a
 * minimal simulated shell with no I/O latency: messages are delivered through the simulator's
 * event queue at the same instant, and a Ready's writes land in MemoryLogStorage at once. The
 * leader keeps `inflight` proposals of `entryBytes` bytes outstanding.
 *
 * Reports the median of 5 runs for a 3-voter group and, in the same process, a 1-voter group as
 * the baseline (no replication), and their ratio: the cost of replication in the core itself.
 *
 *   node dist/test/bench/raft.js [--entries 20000] [--inflight 64] [--bytes 100] [--runs 5]
 *
 * This file measures real time with performance.now(); it is outside the determinism ban.
 */
import { LogIndex, NodeId, SeededRandom, Term, silentLogger } from '../../src/common/index.ts'
import { MemoryLogStorage, RawNode, emptyConfState, type Message, type Ready } from '../../src/raft/index.ts'
import { Simulator } from '../sim/simulator.ts'

interface BenchInit {
  readonly voters: number
  readonly entries: number
  readonly inflight: number
  readonly entryBytes: number
}

interface Member {
  readonly id: NodeId
  readonly raw: RawNode
  readonly storage: MemoryLogStorage
  inbox: Message[]
  scheduled: boolean
}

/** Runs one group until `entries` proposals are committed and applied on the leader; returns entries/s. */
export function runOnce(init: BenchInit): { entriesPerSec: number; elapsedMs: number; messages: number } {
  const sim = new Simulator()
  const voters = Array.from({ length: init.voters }, (_, i) => NodeId(i + 1))
  const members = new Map<number, Member>()
  const random = new SeededRandom(1)
  for (const id of voters) {
    const storage = MemoryLogStorage.bootstrap({ ...emptyConfState, voters }, LogIndex(1), Term(1))
    const raw = new RawNode(
      { id, electionTicks: 10, heartbeatTicks: 1, inflightAppendsMax: 256 },
      { storage, random: random.fork(`n${id}`), logger: silentLogger },
    )
    members.set(id, { id, raw, storage, inbox: [], scheduled: false })
  }
  let messages = 0
  let applied = 0
  let proposed = 0
  let outstanding = 0
  const payload = new Uint8Array(init.entryBytes).fill(7)
  const leader = members.get(1)!

  const kick = (m: Member): void => {
    if (m.scheduled) return
    m.scheduled = true
    sim.schedule(0, () => {
      m.scheduled = false
      loop(m)
    })
  }
  const send = (msgs: readonly Message[]): void => {
    for (const msg of msgs) {
      messages++
      const to = members.get(msg.to)!
      to.inbox.push(msg)
      kick(to)
    }
  }
  const loop = (m: Member): void => {
    const inbox = m.inbox
    m.inbox = []
    for (const msg of inbox) m.raw.step(msg)
    if (m === leader && m.raw.status().role === 'leader') {
      while (outstanding < init.inflight && proposed < init.entries) {
        const r = m.raw.propose(payload)
        if (!r.ok) break
        proposed++
        outstanding++
      }
    }
    if (!m.raw.hasReady()) return
    const rd: Ready = m.raw.ready()
    send(rd.messages)
    if (rd.snapshot !== null) m.storage.applySnapshot(rd.snapshot)
    m.storage.append(rd.entries)
    if (rd.hardState !== null) m.storage.setHardState(rd.hardState)
    send(rd.messagesAfterPersist)
    if (m === leader) {
      for (const e of rd.committedEntries) {
        if (e.data.byteLength === 0) continue
        applied++
        outstanding--
      }
    }
    m.raw.advance(rd)
    kick(m)
  }

  // Elect node 1 first (untimed), then measure replication only.
  leader.raw.campaign()
  kick(leader)
  sim.runUntil(1000, () => leader.raw.status().role === 'leader')
  if (leader.raw.status().role !== 'leader') throw new Error('bench: no leader')
  const start = performance.now()
  kick(leader)
  while (applied < init.entries) {
    if (!sim.step()) {
      // Idle: tick everyone once (heartbeats carry commit indices forward).
      for (const m of members.values()) {
        m.raw.tick()
        kick(m)
      }
    }
  }
  const elapsedMs = performance.now() - start
  return { entriesPerSec: (applied / elapsedMs) * 1000, elapsedMs, messages }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

function arg(argv: readonly string[], name: string, dflt: number): number {
  const i = argv.indexOf(name)
  if (i < 0) return dflt
  const v = Number(argv[i + 1])
  if (!Number.isFinite(v) || v <= 0) throw new Error(`bad ${name}`)
  return v
}

export function main(argv: readonly string[]): void {
  const entries = arg(argv, '--entries', 20_000)
  const inflight = arg(argv, '--inflight', 64)
  const entryBytes = arg(argv, '--bytes', 100)
  const runs = arg(argv, '--runs', 5)
  const out = (s: string): void => void process.stdout.write(`${s}\n`)
  out(
    `raft core throughput: entries=${entries} inflight=${inflight} entryBytes=${entryBytes} runs=${runs} (no I/O latency)`,
  )
  // One warm-up run each so the JIT has seen both shapes.
  runOnce({ voters: 3, entries: Math.min(entries, 5000), inflight, entryBytes })
  runOnce({ voters: 1, entries: Math.min(entries, 5000), inflight, entryBytes })
  const result = (voters: number): number => {
    const rates: number[] = []
    for (let i = 0; i < runs; i++)
      rates.push(runOnce({ voters, entries, inflight, entryBytes }).entriesPerSec)
    const m = median(rates)
    out(
      `  voters=${voters}: median ${Math.round(m)} entries/s  (runs: ${rates.map((r) => Math.round(r)).join(', ')})`,
    )
    return m
  }
  const three = result(3)
  const one = result(1)
  out(`  ratio 3-voter/1-voter: ${(three / one).toFixed(2)}`)
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0'))
  main(process.argv.slice(2))
