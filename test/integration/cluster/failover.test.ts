/**
 * Failover and durability on a real 3-node cluster, driven through the SDK:
 * - kill -9 the leader of a shard during a majority-write workload: a new leader within 3
 *   election timeouts, every acknowledged write present, and the recorded history (writes and
 *   linearizable reads) accepted by the linearizability checker;
 * - stop all three nodes and restart them: every acknowledged write is still there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually, leaderOf } from '../helpers/cluster-ops.ts'
import { expectLinearizable, startCheckedWorkload } from '../helpers/history.ts'

/** Election timeout at the default 100 ms tick: 10 to 20 ticks. */
const electionTimeoutMsMax = 2_000
const keys = Array.from({ length: 24 }, (_, i) => `fk${i}`)

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 2 })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

describe('failover', () => {
  it('kill -9 of a leader mid-workload: a new leader within 3 election timeouts, no acknowledged write lost, linearizable', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    const workload = startCheckedWorkload(client, { keys })
    await new Promise((r) => setTimeout(r, 1_500))
    const victim = await eventually('a leader of shard 0', () => leaderOf(cluster, 0))
    cluster.node(victim).kill('SIGKILL')
    const killedAt = Date.now()
    const survivors = [1, 2, 3].filter((n) => n !== victim)
    await eventually(
      'a new leader of shard 0',
      () => leaderOf(cluster, 0, survivors),
      3 * electionTimeoutMsMax,
    )
    expect(Date.now() - killedAt).toBeLessThanOrEqual(3 * electionTimeoutMsMax)
    await new Promise((r) => setTimeout(r, 1_500))
    await workload.stop()
    const { okWrites, ops, verdict } = await expectLinearizable(client, workload, keys)
    expect(okWrites).toBeGreaterThan(50)
    console.log(
      `failover: ${okWrites} acknowledged writes, ${ops} ops, victim node ${victim}, verdict ${verdict}`,
    )
    client.close()
    await cluster.node(victim).restart()
  }, 120_000)

  it('stop all three nodes and restart them: every acknowledged write is present', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    const written = new Map<string, string>()
    for (let i = 0; i < 200; i++) {
      const key = `rs${i}`
      await client.put(key, `v${i}`)
      written.set(key, `v${i}`)
    }
    client.close()
    await Promise.all(cluster.nodes.map((n) => n.stop()))
    await Promise.all(cluster.nodes.map((n) => n.restart()))
    const again = new KvClient({ endpoints: [...cluster.endpoints] })
    for (const [key, value] of written) {
      const got = await again.get(key, { deadlineMs: 15_000 })
      expect(got.valueText(), key).toBe(value)
    }
    again.close()
  }, 120_000)
})
