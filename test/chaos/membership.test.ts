/**
 * Membership under load (membership.ts): on a cluster of 3 containers (6 shards, 3 replicas,
 * heartbeats every 250 ms, --dead-after 4s), one run each, in order, every checker of run.ts plus
 * the cluster settled on its members (every shard at the replication factor on members only, the
 * job done):
 *   1. join: a 4th node joins; the executor gives it its share.
 *   2. drain: that node is drained, emptied, removed and stopped; a fresh node joins in its place.
 *   3. death: the fresh node is killed for good; its replicas come back on the other three.
 * The meta shard does not move, so drain and death take a node that does not hold it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../src/client/index.ts'
import { ChaosCluster } from './cluster.ts'
import { baseSeed, chaosDir, expectClean, runId, runMs } from './context.ts'
import { metaHolders, settledProblems } from './membership.ts'
import type { Fault } from './nemesis.ts'
import { runChaos } from './run.ts'

const dir = chaosDir('membership')
const id = runId('members')
const settleMsMax = 120_000
let cluster: ChaosCluster | undefined

beforeAll(async () => {
  console.log(`chaos membership: seed ${baseSeed}, histories and logs in ${dir}`)
  cluster = await ChaosCluster.start({
    nodes: 3,
    shards: 6,
    runId: id,
    seed: baseSeed + 2,
    dir,
    extraArgs: ['--heartbeat-ms', '250', '--dead-after', '4s'],
  })
}, 180_000)

afterAll(async () => {
  await cluster?.saveLogs()
  await cluster?.stop()
}, 120_000)

async function shardMap(c: ChaosCluster): Promise<Awaited<ReturnType<KvClient['shardMap']>>> {
  const client = new KvClient({ endpoints: c.endpoints, deadlineMs: 5_000 })
  try {
    return await client.shardMap()
  } finally {
    client.close()
  }
}

/** A member that does not hold the meta shard (the only kind a drain or a death may take). */
async function movableMember(c: ChaosCluster): Promise<number> {
  const meta = await metaHolders(c)
  const found = c.nodes.find((n) => !meta.includes(n.id))
  if (found === undefined) throw new Error(`every member holds the meta shard (${meta.join(', ')})`)
  return found.id
}

async function run(name: string, offset: number, fault: Fault, forMs: number): Promise<void> {
  const seed = baseSeed * 1000 + offset
  const result = await runChaos(cluster!, {
    name,
    seed,
    schedule: { seed, faults: [{ atMs: 1_000, forMs, fault }] },
    durationMs: runMs,
    keys: 6,
    dir,
    settleMsMax,
    settle: settledProblems,
  })
  expectClean(dir, result)
}

describe('membership changes under load', () => {
  it(
    'join: a 4th node gets its share by itself; every checker holds',
    async () => {
      const before = cluster!.nodes.map((n) => n.id)
      await run('join', 600, { kind: 'join' }, 0)
      const joined = cluster!.nodes.find((n) => !before.includes(n.id))
      expect(joined).toBeDefined()
      const map = await shardMap(cluster!)
      expect(map.shards.filter((s) => s.replicas.includes(joined!.id)).length).toBeGreaterThan(0)
    },
    runMs + 300_000,
  )

  it(
    'drain: the node empties, is removed, and a fresh one joins; every checker holds',
    async () => {
      const node = await movableMember(cluster!)
      await run('drain', 601, { kind: 'drain', node, rejoin: true }, 3_000)
      const map = await shardMap(cluster!)
      expect(map.nodes.some((n) => n.nodeId === node)).toBe(false)
      expect(cluster!.nodes.length).toBe(4)
    },
    runMs + 400_000,
  )

  it(
    'death: a node killed for good is declared dead and its replicas come back on the others; every checker holds',
    async () => {
      const node = await movableMember(cluster!)
      await run('death', 602, { kind: 'death', node }, 0)
      const map = await shardMap(cluster!)
      expect(map.nodes.find((n) => n.nodeId === node)?.state).toBe('dead')
      expect(map.shards.every((s) => !s.replicas.includes(node))).toBe(true)
    },
    runMs + 300_000,
  )
})
