/**
 * Shards short of a replica are repaired by adding one, on real kvd processes: a cluster started
 * with 2 nodes and --replicas 3 holds every shard on 2 replicas (safe mode: no third node to place
 * them on). When a third node joins, the executor adds a replica of every shard onto it (moves
 * without a source: learner, catch-up, promote; nothing is dropped), every shard ends on 3
 * replicas, and the data written before is read back.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { listMoves } from '../../../src/client/admin-moves.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'

const shards = 6
const args = ['--heartbeat-ms', '250', '--replicas', '3']

let cluster: Cluster
let three: KvdHandle | undefined
let client: KvClient

beforeAll(async () => {
  cluster = await startCluster({ nodes: 2, shards, extraArgs: args, readyTimeoutMs: 90_000 })
  client = new KvClient({ endpoints: cluster.endpoints })
}, 120_000)

afterAll(async () => {
  client?.close()
  await three?.stop()
  await cluster?.stop()
})

describe('repair by adding a replica, on real processes', () => {
  it('shards on 2 of 3 replicas gain their third when a node joins; nothing is dropped', async () => {
    const before = await client.shardMap()
    expect(before.shards).toHaveLength(shards)
    for (const s of before.shards) expect([...s.replicas].sort()).toEqual([1, 2])
    const keys = Array.from({ length: 20 }, (_, i) => `add${i}`)
    for (const key of keys) await client.put(key, `v-${key}`)

    three = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...args] })
    const repaired = await eventually(
      'every shard on 3 replicas',
      async () => {
        const map = await client.shardMap()
        return map.shards.every((s) => s.replicas.length === 3) ? map : undefined
      },
      60_000,
    )
    for (const s of repaired.shards) expect([...s.replicas].sort()).toEqual([1, 2, 3])

    // Each was a move without a source (shown as from 0), ended done (its record ends just after
    // the map follows the shard).
    const adds = await eventually(
      'every move ended',
      async () => {
        const { running, recent } = await listMoves(cluster.endpoints)
        return running.length === 0 ? recent.filter((m) => m.to === 3) : undefined
      },
      15_000,
    )
    expect(adds.length).toBe(shards)
    for (const m of adds) expect(m).toMatchObject({ from: 0, step: 'done' })
    const logs = cluster.nodes.map((n) => n.logs()).join('\n')
    expect(logs).toMatch(/"reason":"repair"[^\n]*"msg":"move started"/)
    expect(logs).not.toContain('"msg":"source not told to drop its replica"')

    for (const key of keys)
      expect((await client.get(key, { deadlineMs: 15_000 })).valueText()).toBe(`v-${key}`)
    // Node 3 alone with one of the first two still answers: a quorum of 3 is 2.
    cluster.nodes[1]!.kill('SIGKILL')
    await cluster.nodes[1]!.exited()
    await eventually(
      'writes on 1 and 3',
      async () => {
        await client.put('after-add', 'x', { deadlineMs: 3_000 })
        return true
      },
      30_000,
    )
    expect((await client.get('after-add')).valueText()).toBe('x')
  }, 120_000)
})
