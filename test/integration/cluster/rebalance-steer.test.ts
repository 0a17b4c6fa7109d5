/**
 * Steering rebalancing with kvctl on real kvd processes: a 3-node cluster of 12 shards with 3
 * replicas each (heartbeats every 250 ms).
 *
 *   - `kvctl node drain` on 3 nodes with 3 replicas per shard is refused at once (exit 7), the
 *     blocking shards listed, and nothing changes.
 *   - A 4th node joins; its balance job is paused (no move starts while paused, `status` says
 *     why each planned move waits), resumed, then cancelled mid-job (one move into a node at a
 *     time, --limit): the running move ends, nothing new starts and no new job opens.
 *   - `kvctl node drain 1` on the meta leader empties it, the meta shard's replica included (the
 *     mover moves the meta shard's leadership off the node it runs on; the new meta leader carries
 *     the move on); `kvctl node remove 1` then deletes it from the registry; removing a node that
 *     still holds replicas is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { metaShardId } from '../../../src/cluster/index.ts'
import { listMoves } from '../../../src/client/admin-moves.ts'
import { runKvctl } from '../cli/run-kvctl.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'

const shards = 12
const args = ['--heartbeat-ms', '250', '--limit', 'rebalanceMovesInPerNodeMax=1']

interface Status {
  job: { id: number; state: string; started: number; done: number; failed: number }
  plannedTotal: number
  progress: { percent: number }
}

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

async function kvctl(...argv: string[]): ReturnType<typeof runKvctl> {
  return await runKvctl(['--endpoints', cluster.endpoints.join(','), ...argv])
}

async function held(nodeId: number): Promise<number> {
  return (await client.shardMap()).shards.filter((s) => s.replicas.includes(nodeId)).length
}

describe('kvctl node and kvctl rebalance', () => {
  it('drain is refused on 3 nodes with 3 replicas per shard, the blocking shards listed', async () => {
    const before = await client.shardMap()
    const refused = await kvctl('-o', 'json', 'node', 'drain', '2')
    expect(refused.code, refused.stderr).toBe(7)
    const answer = JSON.parse(refused.stdout) as {
      possible: boolean
      blockingShards: number[]
      safeMode: string
    }
    expect(answer.possible).toBe(false)
    expect(answer.blockingShards.length).toBeGreaterThanOrEqual(shards)
    expect(answer.safeMode).toContain('cannot hold 3 replicas')
    const table = await kvctl('-o', 'table', 'node', 'drain', '2')
    expect(table.code).toBe(7)
    expect(table.stdout).toContain('cannot be drained')
    expect((await client.shardMap()).nodes.find((n) => n.nodeId === 2)?.state).toBe(before.nodes[1]!.state)
  }, 30_000)

  it('a join: paused (nothing starts), resumed, cancelled mid-job (nothing new starts)', async () => {
    four = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...args] })
    // The job opens within a poll of node 4 becoming active: pause it as soon as it exists.
    await eventually(
      'the balance job paused',
      async () => ((await kvctl('rebalance', 'pause')).code === 0 ? true : undefined),
      30_000,
    )
    const paused = JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as {
      job: { state: string; started: number }
      planned: { wait: string }[]
    }
    expect(paused.job.state).toBe('paused')
    await new Promise((r) => setTimeout(r, 3_000))
    const later = JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as typeof paused
    expect(later.job.state).toBe('paused')
    expect(later.job.started).toBe(paused.job.started)
    if (later.planned.length > 0) expect(later.planned.every((m) => m.wait === 'paused')).toBe(true)

    expect((await kvctl('rebalance', 'resume')).code).toBe(0)
    // One move into node 4 at a time (--limit): cancelled after two are done, moves are left.
    await eventually(
      'two moves done',
      async () =>
        (JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as Status).job.done >= 2
          ? true
          : undefined,
      45_000,
    )
    const cancel = await kvctl('rebalance', 'cancel')
    expect(cancel.code, cancel.stderr).toBe(0)
    // The running move finishes (or rolls back); nothing new starts, and no new job opens.
    await eventually(
      'no move running',
      async () => ((await listMoves(cluster.endpoints)).running.length === 0 ? true : undefined),
      45_000,
    )
    const cancelled = JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as Status
    expect(cancelled.job.state).toBe('cancelled')
    expect(cancelled.plannedTotal).toBeGreaterThan(0)
    const heldThen = await held(4)
    await new Promise((r) => setTimeout(r, 3_000))
    const after = JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as Status
    expect(after.job).toMatchObject({
      id: cancelled.job.id,
      state: 'cancelled',
      started: cancelled.job.started,
    })
    expect(await held(4)).toBe(heldThen)
    expect(heldThen).toBeLessThan((shards * 3) / 4 - 1)
  }, 120_000)

  it('drain node 1, the meta leader, empties it (the meta shard moves too: leadership first); remove then deletes it', async () => {
    // Node 1 leads the meta shard: the mover moves the meta shard's leadership off itself, and
    // the new meta leader carries the move on.
    const led = await kvctl('shards', 'transfer-leader', String(metaShardId), '--to', '1')
    expect(led.code, led.stderr).toBe(0)
    expect(await held(1)).toBeGreaterThan(0)
    const early = await kvctl('node', 'remove', '1')
    expect(early.code, early.stderr).toBe(7)
    expect(early.stderr).toContain('MOVE_REFUSED')
    const dry = await kvctl('-o', 'json', 'node', 'drain', '1', '--dry-run')
    expect(dry.code, dry.stderr).toBe(0)
    const planned = (JSON.parse(dry.stdout) as { moves: { shardId: number }[] }).moves
    expect(planned.length).toBe((await held(1)) + 1)
    expect(planned.some((m) => m.shardId === metaShardId)).toBe(true)
    expect((await client.shardMap()).nodes.find((n) => n.nodeId === 1)?.state).toBe('active')
    const drain = await kvctl('node', 'drain', '1')
    expect(drain.code, drain.stderr).toBe(0)
    await eventually('node 1 empty', async () => ((await held(1)) === 0 ? true : undefined), 60_000)
    // Removal needs the meta replica gone too (a node holding any replica is refused).
    await eventually(
      'node 1 removed',
      async () => ((await kvctl('node', 'remove', '1')).code === 0 ? true : undefined),
      60_000,
    )
    await eventually(
      'node 1 gone from the map',
      async () => ((await client.shardMap()).nodes.some((n) => n.nodeId === 1) ? undefined : true),
      10_000,
    )
    const logs = cluster.nodes.map((n) => n.logs()).join('\n') + (four?.logs() ?? '')
    expect(logs).toMatch(new RegExp(`"shard":${metaShardId},"from":1,"to":\\d+,"step":"done"`))
    // The drain opened a new job (the registry changed since the cancel); it ended done.
    const done = await eventually(
      'the drain job done',
      async () => {
        const st = JSON.parse((await kvctl('-o', 'json', 'rebalance', 'status')).stdout) as Status
        return st.job.state === 'done' ? st : undefined
      },
      20_000,
    )
    expect(done.job.done).toBeGreaterThan(0)
    expect(done.progress.percent).toBe(100)
    await client.put('after-remove', 'y')
    expect((await client.get('after-remove')).valueText()).toBe('y')
    expect((await kvctl('rebalance', 'status')).code).toBe(0)
  }, 150_000)
})
