/**
 * The counters and histograms the node host keeps for the metrics (host.ts raftStats,
 * storageStats, peerRoundTrips) follow what really happens in a 3-node cluster over the memory
 * transport: leaders seen, writes committed and refused, synced batches, heartbeat round trips,
 * and a voter cut off from its leader.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { NodeId, silentLogger } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { limits } from '../../../src/common/limits.ts'
import { NodeHost, everyMemberShards } from '../../../src/node/host.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { MemoryNetwork } from './memory-transport.ts'

const enc = new TextEncoder()

async function cluster(n: number, shards: number) {
  const hasher = await loadHasher()
  const net = new MemoryNetwork()
  const members = Array.from({ length: n }, (_, i) => NodeId(i + 1))
  const hosts = await Promise.all(
    members.map((id, i) =>
      NodeHost.open(
        {
          nodeId: id,
          bootstrap: everyMemberShards(members, shards),
          shardCount: shards,
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
  return { hosts, net, hasher }
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

let stop: (() => Promise<void>) | undefined
afterEach(async () => {
  await stop?.()
  stop = undefined
})

describe('NodeHost metrics', () => {
  it('counts leaders seen, writes committed and refused, synced batches and heartbeat round trips', async () => {
    const { hosts, net, hasher } = await cluster(3, 2)
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const key = enc.encode('metrics')
    const hash = hasher.hash64(key)
    const leader = await until('a leader', () =>
      hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
    )
    // Every replica that knows its leader saw that leader arrive at least once.
    for (const h of hosts) {
      const known = h.status().filter((v) => (v.leaderId ?? 0) > 0).length
      expect(h.raftStats().leaderChanges).toBeGreaterThanOrEqual(known)
    }
    expect(hosts.reduce((n, h) => n + h.raftStats().leaderChanges, 0)).toBeGreaterThanOrEqual(1)

    // A committed write counts once on the leader, and nothing stays pending.
    const before = leader.raftStats()
    await leader.replicaForHash(hash).put(key, enc.encode('v'), { level: 'majority' })
    const after = leader.raftStats()
    expect(after.proposalsCommitted - before.proposalsCommitted).toBe(1)
    expect(after.proposalsPending).toBe(0)
    expect(after.proposalsLost).toBe(before.proposalsLost)

    // A write sent to a follower is refused NOT_LEADER and counted so.
    const follower = hosts.find((h) => h !== leader)!
    const f0 = follower.raftStats().proposalsNotLeader
    await expect(
      follower.replicaForHash(hash).put(key, enc.encode('x'), { level: 'majority' }),
    ).rejects.toMatchObject({ code: 'NOT_LEADER' })
    expect(follower.raftStats().proposalsNotLeader - f0).toBe(1)
    expect(follower.raftStats().proposalsCommitted).toBe(0)

    // Every host wrote synced batches (votes, entries); the histograms agree with themselves.
    for (const h of hosts) {
      const s = h.storageStats()
      expect(s.syncSeconds.count).toBeGreaterThan(0)
      expect(s.syncSeconds.cumulative.at(-1)!).toBeLessThanOrEqual(s.syncSeconds.count)
      expect(s.batchOps.count).toBeGreaterThanOrEqual(s.syncSeconds.count)
      expect(s.batchOps.sum).toBeGreaterThanOrEqual(s.batchOps.count)
      expect(s.batchBytes.sum).toBeGreaterThan(0)
    }

    // The leader measures heartbeat round trips to both other nodes.
    const others = hosts.filter((h) => h !== leader).map((h) => h.nodeId)
    const rtts = await until('round trips to both peers', () => {
      const m = leader.peerRoundTrips()
      return others.every((p) => (m.get(p)?.count ?? 0) > 0) ? m : undefined
    })
    expect([...rtts.keys()].sort()).toEqual([...others].sort())
    for (const p of others) expect(rtts.get(p)!.sum).toBeGreaterThanOrEqual(0)
    expect(leader.raftStats().leadersWithUnreachableVoters).toBe(0)

    // Cut one follower off: the leader (still holding a quorum) reports a voter unreachable.
    const cut = others[0]!
    net.nodes.get(leader.nodeId)!.setFault(cut, { drop: true, delayMs: 0 })
    await until('a led shard with an unreachable voter', () =>
      leader.raftStats().leadersWithUnreachableVoters > 0 ? true : undefined,
    )
  })

  it('counts a write pending on a leader cut off, then lost to the new leader', async () => {
    const { hosts, net, hasher } = await cluster(3, 1)
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const key = enc.encode('lost')
    const hash = hasher.hash64(key)
    const old = await until('a leader', () =>
      hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
    )
    const others = hosts.filter((h) => h !== old)
    for (const o of others) net.nodes.get(old.nodeId)!.setFault(o.nodeId, { drop: true, delayMs: 0 })
    const before = old.raftStats()
    const write = old.replicaForHash(hash).put(key, enc.encode('cut off'), { level: 'majority' })
    write.catch(() => {}) // observed below
    await until('the write pending', () => (old.raftStats().proposalsPending === 1 ? true : undefined))
    const fresh = await until('a new leader', () =>
      others.find((h) => h.replicaForHash(hash).status().role === 'leader'),
    )
    await fresh.replicaForHash(hash).put(key, enc.encode('majority side'), { level: 'majority' })
    for (const o of others) net.nodes.get(old.nodeId)!.setFault(o.nodeId, null)
    await expect(write).rejects.toMatchObject({ code: 'PROPOSAL_DROPPED' })
    const after = old.raftStats()
    expect(after.proposalsLost - before.proposalsLost).toBe(1)
    expect(after.proposalsCommitted).toBe(before.proposalsCommitted)
    expect(after.proposalsPending).toBe(0)
    // The old leader saw the new one arrive.
    expect(after.leaderChanges).toBeGreaterThan(before.leaderChanges)
  })
})
