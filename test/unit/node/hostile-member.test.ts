/**
 * A buggy or hostile MEMBER (one that holds a peer identity, so its envelopes say who it is) sends
 * forged Raft messages to the others while clients write: absurd terms, term jumps, timeout-now
 * storms, leader messages in another leader's term, appends with entries that do not decode, acks
 * beyond the leader's log, and bytes that are no message at all. Afterwards every node is alive,
 * every replica of a shard holds the same data, no forged value is visible, and every term is far
 * below the ceiling. (What a member can still do is in docs/trust.md: Raft is not Byzantine-tolerant.)
 *
 * Before terms were bounded, the first case alone (a heartbeat at 2^53 - 1) ended the cluster for
 * good: every node adopted and persisted the term, the next election's term + 1 failed an
 * assertion, and every restart failed again.
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { NodeId, ShardId, limits, silentLogger, type LogIndex, type Term } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { NodeHost, everyMemberShards } from '../../../src/node/host.ts'
import { encodeRaftPayload } from '../../../src/node/peer-payload.ts'
import type { PeerEnvelope } from '../../../src/node/transport.ts'
import type { Message } from '../../../src/raft/index.ts'
import { encodeCommand } from '../../../src/shard/commands.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { MemoryNetwork } from './memory-transport.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const members = [NodeId(1), NodeId(2), NodeId(3)]
/** The member that misbehaves; its envelopes carry its own id, as a peer certificate would force. */
const hostile = NodeId(3)
const shardCount = 2

async function cluster() {
  const hasher = await loadHasher()
  const net = new MemoryNetwork()
  const fatal: unknown[] = []
  const hosts = await Promise.all(
    members.map((id, i) =>
      NodeHost.open(
        {
          nodeId: id,
          bootstrap: everyMemberShards(members, shardCount),
          shardCount,
          tickMs: 10,
          leaseReads: false,
        },
        {
          engine: new MemoryEngine(),
          hasher,
          clock: new SystemClock(),
          random: new SeededRandom(i + 1),
          logger: silentLogger,
          limits,
          transport: net.transport(id),
          onFatal: (err) => fatal.push(err),
        },
      ),
    ),
  )
  for (const h of hosts) h.start()
  return { hosts, net, hasher, fatal }
}

async function until<T>(what: string, f: () => T | undefined, ms = 10_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = f()
    if (v !== undefined) return v
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** One forged message, drawn before the run; its terms are filled in from the target's view. */
type Forgery =
  | {
      kind: 'absurd-term'
      to: 1 | 2
      type: 'MsgHeartbeat' | 'MsgApp' | 'MsgVote' | 'MsgTimeoutNow'
      over: number
    }
  | { kind: 'term-jump'; to: 1 | 2; type: 'MsgHeartbeat' | 'MsgPreVote' | 'MsgTimeoutNow'; over: number }
  | { kind: 'timeout-now'; to: 1 | 2 }
  | { kind: 'leader-message'; to: 1 | 2; commitAhead: number; evil: boolean }
  | { kind: 'undecodable'; to: 1 | 2; termAhead: number; garbage: Uint8Array }
  | { kind: 'ack-beyond'; to: 1 | 2; ahead: number }
  | { kind: 'garbage'; to: 1 | 2; bytes: Uint8Array }

const target = fc.constantFrom<1 | 2>(1, 2)
const forgery: fc.Arbitrary<Forgery> = fc.oneof(
  fc.record({
    kind: fc.constant('absurd-term' as const),
    to: target,
    type: fc.constantFrom(
      'MsgHeartbeat' as const,
      'MsgApp' as const,
      'MsgVote' as const,
      'MsgTimeoutNow' as const,
    ),
    over: fc.integer({ min: 1, max: 2 ** 52 }),
  }),
  fc.record({
    kind: fc.constant('term-jump' as const),
    to: target,
    type: fc.constantFrom('MsgHeartbeat' as const, 'MsgPreVote' as const, 'MsgTimeoutNow' as const),
    over: fc.integer({ min: 1, max: 2 ** 30 }),
  }),
  fc.record({ kind: fc.constant('timeout-now' as const), to: target }),
  fc.record({
    kind: fc.constant('leader-message' as const),
    to: target,
    commitAhead: fc.integer({ min: 0, max: 1000 }),
    evil: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('undecodable' as const),
    to: target,
    termAhead: fc.integer({ min: 0, max: 3 }),
    garbage: fc.uint8Array({ minLength: 1, maxLength: 40 }).filter((b) => b[0] !== 2),
  }),
  fc.record({
    kind: fc.constant('ack-beyond' as const),
    to: target,
    ahead: fc.integer({ min: 1, max: 2 ** 40 }),
  }),
  fc.record({ kind: fc.constant('garbage' as const), to: target, bytes: fc.uint8Array({ maxLength: 64 }) }),
)

const evilCommand = encodeCommand({ kind: 'put', key: enc.encode('k0'), value: enc.encode('evil') })

/** The message a forgery becomes against the target's current view of `shardId`, or null to skip it. */
function forge(
  f: Forgery,
  view: { term: number; leaderId: NodeId | null; role: string; commitIndex: number },
): Message | Uint8Array | null {
  const base = { from: hostile, to: NodeId(f.to) }
  const at = (term: number): { from: NodeId; to: NodeId; term: Term } => ({ ...base, term: term as Term })
  switch (f.kind) {
    case 'absurd-term':
    case 'term-jump': {
      const term =
        f.kind === 'absurd-term'
          ? Math.min(limits.raftTermMax + f.over, 2 ** 53 - 1)
          : view.term + limits.raftTermJumpMax + f.over
      if (f.type === 'MsgHeartbeat')
        return { type: f.type, ...at(term), commit: view.commitIndex as LogIndex, round: 1 }
      if (f.type === 'MsgTimeoutNow') return { type: f.type, ...at(term) }
      if (f.type === 'MsgApp')
        return {
          type: f.type,
          ...at(term),
          index: view.commitIndex as LogIndex,
          logTerm: view.term as Term,
          commit: (view.commitIndex + 1) as LogIndex,
          entries: [
            {
              term: term as Term,
              index: (view.commitIndex + 1) as LogIndex,
              type: 'normal',
              data: evilCommand,
            },
          ],
        }
      return {
        type: f.type,
        ...at(term),
        index: (2 ** 40) as LogIndex,
        logTerm: term as Term,
        leaderTransfer: false,
      }
    }
    case 'timeout-now':
      // Only against a follower whose leader is someone else: that one's would be obeyed.
      if (view.role !== 'follower' || view.leaderId === hostile) return null
      return { type: 'MsgTimeoutNow', ...at(view.term) }
    case 'leader-message': {
      // In a term whose leader the target knows (and is not itself, nor the hostile node): refused.
      // A follower that knows no leader yet would take it: Raft trusts its members (docs/trust.md).
      if (view.role !== 'follower' || view.leaderId === null || view.leaderId === hostile) return null
      const commit = (view.commitIndex + f.commitAhead) as LogIndex
      if (!f.evil) return { type: 'MsgHeartbeat', ...at(view.term), commit, round: 1 }
      return {
        type: 'MsgApp',
        ...at(view.term),
        index: view.commitIndex as LogIndex,
        logTerm: view.term as Term,
        commit,
        entries: [
          {
            term: view.term as Term,
            index: (view.commitIndex + 1) as LogIndex,
            type: 'normal',
            data: evilCommand,
          },
        ],
      }
    }
    case 'undecodable': {
      const term = view.term + f.termAhead
      return {
        type: 'MsgApp',
        ...at(term),
        index: view.commitIndex as LogIndex,
        logTerm: view.term as Term,
        commit: (view.commitIndex + 1) as LogIndex,
        entries: [
          { term: term as Term, index: (view.commitIndex + 1) as LogIndex, type: 'normal', data: f.garbage },
        ],
      }
    }
    case 'ack-beyond':
      if (view.role !== 'leader') return null
      return {
        type: 'MsgAppResp',
        ...at(view.term),
        index: (view.commitIndex + f.ahead) as LogIndex,
        reject: false,
        rejectHint: 0 as LogIndex,
        logTerm: 0 as Term,
      }
    case 'garbage':
      return f.bytes
  }
}

let stop: (() => Promise<void>) | undefined
afterEach(async () => {
  await stop?.()
  stop = undefined
})

describe('NodeHost under a hostile member', () => {
  it('survives forged peer messages: every node alive, replicas identical, no forged value, terms bounded', async () => {
    const runs = fc.sample(fc.array(forgery, { minLength: 150, maxLength: 150 }), { seed: 12, numRuns: 1 })
    const forgeries = runs[0]!
    const { hosts, net, hasher, fatal } = await cluster()
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const keys = Array.from({ length: 16 }, (_, i) => enc.encode(`k${i}`))
    const written = new Map<string, string>()
    const write = async (i: number): Promise<void> => {
      const key = keys[i % keys.length]!
      const hash = hasher.hash64(key)
      const leader = await until('a leader', () =>
        hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
      )
      const value = `v${i}`
      try {
        await leader.replicaForHash(hash).put(key, enc.encode(value), { level: 'majority' })
        written.set(dec.decode(key), value)
      } catch {
        // A forged election may cost a write its place: the client retries in real life.
        written.delete(dec.decode(key))
      }
    }
    await write(0)
    const deliver = (to: NodeId, shardId: ShardId, payload: Uint8Array): void => {
      const envelope: PeerEnvelope = { shardId, from: hostile, to, payload }
      // Straight into the target's handler, so the view the forgery was built on is still current.
      net.nodes.get(to)!.handler!.onEnvelopes([envelope])
    }
    let sent = 0
    for (let i = 0; i < forgeries.length; i++) {
      const f = forgeries[i]!
      const targetHost = hosts[f.to - 1]!
      for (let s = 0; s < shardCount; s++) {
        const view = targetHost.status().find((v) => v.shardId === ShardId(s + 1)) ?? targetHost.status()[s]!
        const m = forge(f, view)
        if (m === null) continue
        deliver(NodeId(f.to), view.shardId, m instanceof Uint8Array ? m : encodeRaftPayload(m))
        sent++
      }
      if (i % 10 === 0) await write(i)
      await sleep(2)
    }
    expect(sent).toBeGreaterThan(100)
    // Calm: the honest traffic goes on, and every replica converges.
    for (let i = 0; i < keys.length; i++) await write(1000 + i)
    expect(fatal).toEqual([])
    for (const key of keys) {
      const hash = hasher.hash64(key)
      const leader = await until('a leader', () =>
        hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
      )
      const applied = leader.replicaForHash(hash).status().appliedIndex
      const expected = written.get(dec.decode(key))
      for (const h of hosts) {
        const r = h.replicaForHash(hash)
        await until('replica caught up', () => (r.status().appliedIndex >= applied ? true : undefined))
        const got = await r.get(key, { level: 'eventual' })
        const value = got.found === null ? undefined : dec.decode(got.found.value)
        expect(value).not.toBe('evil')
        if (expected !== undefined) expect(value, `node ${h.nodeId} key ${dec.decode(key)}`).toBe(expected)
      }
    }
    for (const h of hosts) for (const v of h.status()) expect(v.term).toBeLessThan(limits.raftTermJumpMax * 2)
    expect(fatal).toEqual([])
  }, 120_000)
})
