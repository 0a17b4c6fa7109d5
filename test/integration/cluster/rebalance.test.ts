/**
 * Rebalancing as a job, on real kvd processes (cluster/executor on the meta leader): a 5-node
 * cluster of 64 shards with 3 replicas each, heartbeats every 250 ms and --dead-after 4s.
 *
 *   - A 6th node joins under a checked workload: the executor moves its share onto it by itself
 *     (every node ends within one replica of the mean, 32), the history is linearizable and every
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

const initialNodes = 5
const shards = 64
/** The joining node's id (ids are handed out in order). */
const joiner = initialNodes + 1
const args = ['--heartbeat-ms', '250', '--dead-after', '4s']
const keys = Array.from({ length: 24 }, (_, i) => `rb${i}`)

let cluster: Cluster
let joined: KvdHandle | undefined
let client: KvClient

beforeAll(async () => {
  cluster = await startCluster({ nodes: initialNodes, shards, extraArgs: args, readyTimeoutMs: 90_000 })
  client = new KvClient({ endpoints: cluster.endpoints })
}, 120_000)

afterAll(async () => {
  client?.close()
  await joined?.stop()
  await cluster?.stop()
})

type ShardMap = Awaited<ReturnType<KvClient['shardMap']>>

function loads(map: ShardMap): Map<number, number> {
  const out = new Map<number, number>(map.nodes.map((n) => [n.nodeId, 0]))
  for (const s of map.shards) for (const id of s.replicas) out.set(id, (out.get(id) ?? 0) + 1)
  return out
}

describe('rebalancing on real processes', () => {
  it('a 6th node that joins gets its share by itself, under a checked workload', async () => {
    const workload = startCheckedWorkload(client, { keys, workers: 4 })
    try {
      joined = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...args] })
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
      let seen = ''
      const balanced = await eventually(
        'every node within one replica of the mean',
        async () => {
          const map = await client.shardMap()
          const l = loads(map)
          seen = [...l].map(([id, n]) => `${id}:${n}`).join(' ')
          const mean = (shards * 3) / joiner
          const all = [...l.values()]
          return l.size === joiner && all.every((n) => Math.abs(n - mean) <= 1) ? map : undefined
        },
        240_000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}; replicas per node at the end: ${seen}`)
      })
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
  }, 360_000)

  it('a node killed -9 is unreachable, then dead after --dead-after, and its replicas come back on the others', async () => {
    expect(joined).toBeDefined()
    const before = await client.shardMap()
    const held = before.shards.filter((s) => s.replicas.includes(joiner)).length
    expect(held).toBeGreaterThan(0)
    joined!.kill('SIGKILL')
    await joined!.exited()
    await eventually(
      `node ${joiner} unreachable`,
      async () => {
        const state = (await client.shardMap()).nodes.find((n) => n.nodeId === joiner)?.state
        return state === 'unreachable' || state === 'dead' ? true : undefined
      },
      15_000,
    )
    const repaired = await eventually(
      `node ${joiner} dead and every shard on 3 live replicas`,
      async () => {
        const map = await client.shardMap()
        if (map.nodes.find((n) => n.nodeId === joiner)?.state !== 'dead') return undefined
        return map.shards.every((s) => s.replicas.length === 3 && !s.replicas.includes(joiner))
          ? map
          : undefined
      },
      120_000,
    )
    for (const s of repaired.shards) {
      expect(new Set(s.replicas).size).toBe(3)
      for (const id of s.replicas) expect(id).toBeLessThanOrEqual(initialNodes)
    }
    await client.put('after-repair', 'x')
    expect((await client.get('after-repair')).valueText()).toBe('x')
  }, 180_000)
})
