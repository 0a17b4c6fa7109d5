/**
 * Membership nemeses (join, drain, node death) and the check every run of them ends with: the
 * cluster settled on its new members. They act through the admin API, as an operator would
 * (`kvctl node drain|remove`, `kvctl rebalance status`), and through the executor on the meta
 * leader, which does the moving by itself:
 *
 * - join: a new container starts with `--join` and takes the next free address; the executor
 *   gives it its share (balance moves).
 * - drain: `node drain N` (its pre-flight must allow it), wait until the node holds no replica,
 *   `node remove N`, stop its container: the node has left for good.
 * - death: kill -9 for good; with a short `--dead-after` the meta leader marks it dead and the
 *   executor re-creates its replicas on the others (repair moves).
 *
 * `settledProblems` is the extra checker: every member active and in the map, every data shard at
 * the replication factor on distinct members only, no move running or planned, no shard blocked or
 * short of replicas, and the job (if any) ended `done`. Waited for up to a deadline: the moves of a
 * run may still be under way when its workload stops.
 */
import { nodeAction, rebalance } from '../../src/client/admin-rebalance.ts'
import { KvClient } from '../../src/client/index.ts'
import { sleep, type ChaosCluster, type ChaosNode } from './cluster.ts'

/** How long a drain may take to empty the node before the fault counts as failed. */
const drainMsMax = 120_000
const adminDeadlineMs = 5_000

/** Drains the node, waits until it holds nothing, removes it and stops its container. */
export async function drainAndRemove(cluster: ChaosCluster, node: ChaosNode): Promise<void> {
  const endpoints = cluster.endpoints.filter((e) => e !== node.address)
  const drain = await nodeAction(
    endpoints,
    { nodeId: node.id, action: 'drain' },
    { deadlineMs: adminDeadlineMs },
  )
  if (!drain.possible)
    throw new Error(
      `node ${node.id} may not be drained: shards ${drain.blockingShards.join(', ')} (${drain.blockingReasons.join(', ')})`,
    )
  const client = new KvClient({ endpoints, deadlineMs: adminDeadlineMs })
  const started = performance.now()
  try {
    for (;;) {
      const map = await client.shardMap().catch(() => undefined)
      const held = map?.shards.filter((s) => s.replicas.includes(node.id))
      if (held !== undefined && held.length === 0) break
      if (performance.now() - started > drainMsMax)
        throw new Error(
          `node ${node.id} still holds ${held?.length ?? '?'} replicas ${drainMsMax} ms into its drain`,
        )
      await sleep(250)
    }
  } finally {
    client.close()
  }
  // The node's own replicas are removed once the map no longer names them: retry until it may go.
  for (let attempt = 1; ; attempt++) {
    try {
      await nodeAction(endpoints, { nodeId: node.id, action: 'remove' }, { deadlineMs: adminDeadlineMs })
      break
    } catch (err) {
      if (attempt >= 20) throw err
      await sleep(500)
    }
  }
  cluster.retire(node)
  await cluster.stopNode(node)
}

/** Kills the node for good: no heal starts it again. */
export async function killForGood(cluster: ChaosCluster, node: ChaosNode): Promise<void> {
  await cluster.kill(node)
  cluster.retire(node)
}

/** The members no fault may take away for good: those holding the meta shard (it does not move). */
export async function metaHolders(cluster: ChaosCluster): Promise<number[]> {
  const client = new KvClient({ endpoints: cluster.endpoints, deadlineMs: adminDeadlineMs })
  try {
    const map = await client.shardMap()
    if (map.metaShard === null) throw new Error('the map names no meta shard')
    return [...map.metaShard.replicas]
  } finally {
    client.close()
  }
}

/** Why the cluster has not settled on its members (empty: it has). */
async function unsettled(cluster: ChaosCluster, client: KvClient): Promise<string[]> {
  const members = new Set(cluster.nodes.map((n) => n.id))
  const map = await client.shardMap()
  const why: string[] = []
  for (const id of members) {
    const state = map.nodes.find((n) => n.nodeId === id)?.state
    if (state !== 'active') why.push(`node ${id} is ${state ?? 'not in the map'}`)
  }
  for (const shard of map.shards) {
    const replicas = new Set(shard.replicas)
    const strays = [...replicas].filter((id) => !members.has(id))
    if (replicas.size !== map.replicaCount || strays.length > 0)
      why.push(`shard ${shard.shardId} on [${shard.replicas.join(',')}], want ${map.replicaCount} members`)
  }
  const status = await rebalance(cluster.endpoints, 'status', { deadlineMs: adminDeadlineMs })
  if (status.running.length > 0) why.push(`${status.running.length} moves running`)
  if (status.plannedTotal > 0) why.push(`${status.plannedTotal} moves planned`)
  if (status.blocked > 0) why.push(`${status.blocked} shards blocked`)
  if (status.underReplicated > 0) why.push(`${status.underReplicated} shards under-replicated`)
  if (status.safeMode !== '') why.push(`safe mode: ${status.safeMode}`)
  if (status.job !== undefined && status.job.state !== 'done')
    why.push(`job ${status.job.id} is ${status.job.state} (${status.job.reason})`)
  return why
}

/**
 * Waits up to `msMax` for the cluster to settle on its members (see the header); the problems
 * left at the deadline, and how long it took.
 */
export async function settledProblems(
  cluster: ChaosCluster,
  msMax: number,
): Promise<{ problems: string[]; settledMs: number }> {
  const started = performance.now()
  const client = new KvClient({ endpoints: cluster.endpoints, deadlineMs: adminDeadlineMs })
  let why: string[] = []
  try {
    for (;;) {
      why = await unsettled(cluster, client).catch((err: unknown) => [`no status: ${String(err)}`])
      if (why.length === 0) return { problems: [], settledMs: performance.now() - started }
      if (performance.now() - started > msMax) break
      await sleep(500)
    }
  } finally {
    client.close()
  }
  return {
    problems: [`membership not settled within ${msMax} ms:`, ...why.slice(0, 10)],
    settledMs: performance.now() - started,
  }
}
