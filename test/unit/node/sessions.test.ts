/**
 * Exactly-once sessions on real Raft replicas (three NodeHosts): the games another client played
 * with the client id of a victim change nothing for the victim. Principals here are what an
 * authenticated server passes; the shard decides.
 * - pre-empting the victim's id and next seq: refused, and the victim's own write is applied;
 * - raising the victim's watermark: refused, the victim's later seqs are accepted;
 * - flooding registrations: only the flooder's own sessions are given up; a full table refuses;
 * - a write whose session was given up fails SESSION_EXPIRED and is never applied again.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { NodeId, silentLogger, tightenLimits } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { NodeHost, everyMemberShards } from '../../../src/node/host.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { MemoryNetwork } from './memory-transport.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

async function cluster(sessionLimits: { dedupClientsMax: number; sessionsPerPrincipalMax: number }) {
  const hasher = await loadHasher()
  const net = new MemoryNetwork()
  const members = [NodeId(1), NodeId(2), NodeId(3)]
  const limits = tightenLimits(sessionLimits)
  const hosts = await Promise.all(
    members.map((id, i) =>
      NodeHost.open(
        {
          nodeId: id,
          bootstrap: everyMemberShards(members, 1),
          shardCount: 1,
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
          onFatal: (err) => {
            throw err
          },
        },
      ),
    ),
  )
  for (const h of hosts) h.start()
  return { hosts, hasher }
}

async function leaderOf(hosts: NodeHost[], hash: bigint): Promise<Replica> {
  const start = Date.now()
  for (;;) {
    const h = hosts.find((x) => x.replicaForHash(hash).status().role === 'leader')
    if (h !== undefined) return h.replicaForHash(hash)
    if (Date.now() - start > 10_000) throw new Error('no leader')
    await new Promise((r) => setTimeout(r, 10))
  }
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'ok'
  } catch (err) {
    return (err as { code?: string }).code ?? String(err)
  }
}

let stop: (() => Promise<void>) | undefined
afterEach(async () => {
  await stop?.()
  stop = undefined
})

describe('exactly-once sessions on Raft replicas', () => {
  it("another principal can neither pre-empt, advance, register nor evict the victim's session", async () => {
    const { hosts, hasher } = await cluster({ dedupClientsMax: 64, sessionsPerPrincipalMax: 8 })
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const key = enc.encode('k')
    const r = await leaderOf(hosts, hasher.hash64(key))
    const alice = { level: 'majority', principal: 'alice' } as const
    const mallory = { level: 'majority', principal: 'mallory' } as const
    await r.registerSession('victim', { principal: 'alice', floor: 100 })

    // Pre-empt: Mallory names the victim's id and next seq with her own value.
    const tag = { clientId: 'victim', seq: 100, firstIncompleteSeq: 100 }
    expect(await code(r.put(key, enc.encode('evil'), { ...mallory, ...tag }))).toBe('SESSION_EXPIRED')
    // Advance: Mallory's watermark games and registration of the id are refused too.
    expect(
      await code(
        r.put(key, enc.encode('evil'), {
          ...mallory,
          clientId: 'victim',
          seq: 10 ** 12,
          firstIncompleteSeq: 10 ** 12,
        }),
      ),
    ).toBe('SESSION_EXPIRED')
    expect(await code(r.registerSession('victim', { principal: 'mallory', floor: 10 ** 12 }))).toBe(
      'INVALID_ARGUMENT',
    )
    // Evict: Mallory floods registrations; only her own sessions are given up.
    for (let i = 0; i < 40; i++) await r.registerSession(`m${i}`, { principal: 'mallory', floor: 0 })

    // The victim's write with that seq is applied with the victim's value, once.
    const first = await r.put(key, enc.encode('good'), { ...alice, ...tag })
    const retry = await r.put(key, enc.encode('good'), { ...alice, ...tag })
    expect(retry.version).toBe(first.version)
    const got = await r.get(key, { level: 'linearizable' })
    expect(dec.decode(got.found!.value)).toBe('good')
    expect(got.found!.version).toBe(first.version)
    // Later seqs of the victim are accepted (the watermark was not raised).
    const next = await r.put(key, enc.encode('good2'), {
      ...alice,
      clientId: 'victim',
      seq: 101,
      firstIncompleteSeq: 101,
    })
    expect(next.version).toBeGreaterThan(first.version)
  }, 60_000)

  it('a write whose session was given up fails SESSION_EXPIRED and is never applied twice', async () => {
    const { hosts, hasher } = await cluster({ dedupClientsMax: 64, sessionsPerPrincipalMax: 4 })
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const key = enc.encode('once')
    const r = await leaderOf(hosts, hasher.hash64(key))
    await r.registerSession('mine', { principal: 'anonymous', floor: 0 })
    const tag = {
      level: 'majority',
      principal: 'anonymous',
      clientId: 'mine',
      seq: 1,
      firstIncompleteSeq: 1,
    } as const
    const applied = await r.put(key, enc.encode('v'), tag)
    // Other clients of the same principal (unauthenticated clients are one) register their own:
    // beyond the quota, the least recently active session of that principal is given up.
    for (let i = 0; i < 4; i++) await r.registerSession(`other${i}`, { principal: 'anonymous', floor: 0 })
    expect(await code(r.put(key, enc.encode('v'), tag))).toBe('SESSION_EXPIRED')
    const got = await r.get(key, { level: 'linearizable' })
    expect(got.found!.version).toBe(applied.version)
    // Registering anew (the SDK does, with a fresh id) works, and its writes apply.
    await r.registerSession('mine2', { principal: 'anonymous', floor: 2 })
    const again = await r.put(key, enc.encode('w'), {
      ...tag,
      clientId: 'mine2',
      seq: 2,
      firstIncompleteSeq: 2,
    })
    expect(again.version).toBeGreaterThan(applied.version)
  }, 60_000)
})
