/**
 * Rebalancing as a job, on real kvd processes (cluster/executor on the meta leader): a 3-node
 * cluster of 12 shards with 3 replicas each, heartbeats every 250 ms and --dead-after 4s.
 *
 *   - A 4th node joins under a checked workload: the executor moves its share onto it by itself
 *     (every node ends within one replica of the mean, 9), the history is linearizable and every
 *     acknowledged write is read back. The meta leader is killed -9 mid-job (and restarted): the
 *     job carries on under the new meta leader and ends done.
 *   - That node is killed -9: it is unreachable within a few heartbeats, dead after --dead-after,
 *     and its replicas are re-created on the others: every shard back at 3 live replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { rebalance } from '../../../src/client/admin-rebalance.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { expectLinearizable, startCheckedWorkload } from '../helpers/history.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'

const shards = 12
const args = ['--heartbeat-ms', '250', '--dead-after', '4s']
const keys = Array.from({ length: 24 }, (_, i) => `rb${i}`)

let cluster: Cluster
let four: KvdHandle | undefined
let client: KvClient

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards, extraArgs: args, readyTimeoutMs: 90_000 })
  client = new KvClient({ endpoints: cluster.endpoints })
}, 120_000)

afterAll(async () => {
  client?.close()
  await four?.stop()
  await cluster?.stop()
})

type ShardMap = Awaited<ReturnType<KvClient['shardMap']>>

function loads(map: ShardMap): Map<number, number> {
  const out = new Map<number, number>(map.nodes.map((n) => [n.nodeId, 0]))
  for (const s of map.shards) for (const id of s.replicas) out.set(id, (out.get(id) ?? 0) + 1)
  return out
}

describe('rebalancing on real processes', () => {
  it('a 4th node that joins gets its share by itself, under a checked workload', async () => {
    const workload = startCheckedWorkload(client, { keys, workers: 4 })
    try {
      four = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...args] })
      // The meta leader is the node whose executor starts moves: killed mid-job, restarted.
      const leader = await eventually(
        'the job started moves',
        async () => cluster.nodes.find((n) => n.logs().includes('"msg":"move started"')),
        30_000,
      )
      const startedBefore = (leader.logs().match(/"msg":"move started"/g) ?? []).length
      leader.kill('SIGKILL')
      await leader.exited()
      const others = cluster.nodes.filter((n) => n !== leader)
      // The job carries on under the new meta leader: another node starts moves.
      await eventually(
        'moves started by the new meta leader',
        async () => (others.some((n) => n.logs().includes('"msg":"move started"')) ? true : undefined),
        30_000,
      )
      await leader.restart()
      const balanced = await eventually(
        'every node within one replica of the mean',
        async () => {
          const map = await client.shardMap()
          const l = loads(map)
          const mean = (shards * 3) / 4
          const all = [...l.values()]
          return l.size === 4 && all.every((n) => Math.abs(n - mean) <= 1) ? map : undefined
        },
        45_000,
      )
      expect(balanced.shards.every((s) => new Set(s.replicas).size === 3)).toBe(true)
      await workload.stop()
      const { okWrites } = await expectLinearizable(client, workload, keys)
      expect(okWrites).toBeGreaterThan(20)
      for (const [key] of workload.acked)
        expect((await client.get(key, { deadlineMs: 15_000 })).found).toBe(true)
      expect(startedBefore).toBeGreaterThan(0)
      // The job ended done (nothing left to plan): carried on after its meta leader died.
      const job = await eventually(
        'the job done',
        async () => {
          const r = await rebalance(cluster.endpoints, 'status')
          return r.job?.state === 'done' ? r.job : undefined
        },
        20_000,
      )
      expect(job.done).toBeGreaterThan(0)
    } finally {
      await workload.stop()
    }
  }, 90_000)

  it('a node killed -9 is unreachable, then dead after --dead-after, and its replicas come back on the others', async () => {
    expect(four).toBeDefined()
    const before = await client.shardMap()
    const held = before.shards.filter((s) => s.replicas.includes(4)).length
    expect(held).toBeGreaterThan(0)
    four!.kill('SIGKILL')
    await four!.exited()
    await eventually(
      'node 4 unreachable',
      async () => {
        const state = (await client.shardMap()).nodes.find((n) => n.nodeId === 4)?.state
        return state === 'unreachable' || state === 'dead' ? true : undefined
      },
      15_000,
    )
    const repaired = await eventually(
      'node 4 dead and every shard on 3 live replicas',
      async () => {
        const map = await client.shardMap()
        if (map.nodes.find((n) => n.nodeId === 4)?.state !== 'dead') return undefined
        return map.shards.every((s) => s.replicas.length === 3 && !s.replicas.includes(4)) ? map : undefined
      },
      45_000,
    )
    for (const s of repaired.shards) expect([...s.replicas].sort()).toEqual([1, 2, 3])
    await client.put('after-repair', 'x')
    expect((await client.get('after-repair')).valueText()).toBe('x')
  }, 90_000)
})
