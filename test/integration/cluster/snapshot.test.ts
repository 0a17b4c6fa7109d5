/**
 * A follower that misses 10,000 writes catches up by snapshot: the leader's log is compacted past
 * the follower's position (limits.raftLogCompactEntries), so only a snapshot of the shard's hash
 * range, streamed from a RocksDB iterator and installed atomically, can bring it back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { Consistency, enc, eventually, leaderOf, nodeKv } from '../helpers/cluster-ops.ts'

const writes = 10_000
const inFlight = 64

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 1 })
}, 90_000)
afterAll(async () => {
  await cluster?.stop({ keepDir: process.env['KEEP'] === '1' })
})

describe('snapshot catch-up', () => {
  it('a follower down for 10,000 writes catches up by snapshot after log truncation', async () => {
    const leader = await eventually('a leader', () => leaderOf(cluster, 0))
    const follower = [1, 2, 3].find((n) => n !== leader)!
    await cluster.node(follower).stop()

    // Straight to the leader (raw calls: this test is about the servers, not the SDK's routing).
    const onLeader = nodeKv(cluster, leader, 30_000)
    const majority = {
      options: {
        consistency: Consistency.CONSISTENCY_MAJORITY,
        clientId: '',
        seq: 0,
        firstIncompleteSeq: 0,
        route: undefined,
      },
    }
    let next = 0
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < writes) {
          const i = next++
          await onLeader.put({ key: enc(`snap/${i}`), value: enc(`v${i}`), ...majority })
        }
      }),
    )

    await cluster.node(follower).restart()
    const onFollower = nodeKv(cluster, follower)
    const eventual = {
      options: {
        consistency: Consistency.CONSISTENCY_EVENTUAL,
        maxStalenessMs: 0,
        session: undefined,
        route: undefined,
      },
    }
    await eventually(
      'the follower to hold the last write',
      async () => {
        const got = await onFollower.get({ key: enc(`snap/${writes - 1}`), ...eventual })
        return got.found ? true : undefined
      },
      60_000,
    )
    const pages = await onFollower.scan({ prefix: enc('snap/'), limit: writes, ...eventual })
    const count = pages.reduce((n, page) => n + page.entries.length, 0)
    expect(count).toBe(writes)
    expect(cluster.node(follower).logs()).toContain('snapshot installed')
    expect(cluster.node(leader).logs()).toContain('snapshot sent')
  }, 180_000)
})
