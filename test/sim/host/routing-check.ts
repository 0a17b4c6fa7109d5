/**
 * Routing converges (sharded placement): after the faults healed and the replicas converged, every
 * client, routing with the real SDK routing (sdk-path.ts), reaches each data shard's leader with at
 * most one forward, and within a few rounds goes straight to it (one attempt, no forward): the
 * routers' maps, the agents' leader hints and the clients' caches all caught up.
 *
 * A probe is a linearizable read of a key of the shard (keys nobody writes: the history is not
 * touched). A round in which some shard's leadership moved (leader balancing may hand a shard to its
 * preferred voter at any time) is not judged, only repeated.
 */
import type { NodeId, ShardId } from '../../../src/common/index.ts'
import type { HostCluster } from './cluster.ts'
import { SdkPath } from './sdk-path.ts'
import type { HostClient } from './workload.ts'

/** Rounds of probes before the clients must go straight to every leader. */
export const routingRoundsMax = 8
/** Budget of one probe. */
const probeDeadlineMs = 1_000

/** One key per data shard (the first `probe-N` that hashes into it). */
function probeKeys(cluster: HostCluster): { readonly shardId: ShardId; readonly key: string }[] {
  const map = cluster.map
  if (map === null) return []
  const keys: { shardId: ShardId; key: string }[] = []
  for (const shard of map.shards) {
    for (let n = 0; ; n++) {
      const key = `probe-${n}`
      if (cluster.shardOfKey(new TextEncoder().encode(key)) === shard.shardId) {
        keys.push({ shardId: shard.shardId, key })
        break
      }
    }
  }
  return keys
}

/** What a client's routing cache says of `shardId` and the nodes (for a failure's detail). */
function viewOf(client: HostClient, shardId: ShardId): string {
  if (!(client.path instanceof SdkPath)) return 'not routed by the SDK'
  const table = client.path.routing.snapshot()
  const shard = table?.shards.find((s) => s.shardId === shardId)
  const members = table?.members.map((m) => `n${m.nodeId}:${m.state}`).join(' ') ?? ''
  return shard === undefined
    ? `no entry (${members})`
    : `leader n${shard.leaderId} replicas ${shard.replicas.join(',')} epoch ${shard.epoch}; ${members}`
}

/** Each live node's map: the states it has for the nodes, and its agent's counters. */
function nodesView(cluster: HostCluster): string {
  return cluster.slots
    .map((slot) => {
      const s = slot.life?.services
      if (s === undefined) return `n${slot.id}: down`
      const states = [...s.router.map.nodes.values()].map((n) => `${n.id}:${n.state.slice(0, 1)}`).join(' ')
      const c = s.agent.counters()
      return `n${slot.id}: [${states}] hb=${c.heartbeats}/${c.heartbeatFailures} refresh=${c.refreshes}/${c.refreshFailures}`
    })
    .join('; ')
}

/** The node leading each data shard now (0: none). */
function leaders(cluster: HostCluster, shardIds: readonly ShardId[]): string {
  return shardIds.map((id) => cluster.leaderOf(id)?.nodeId ?? 0).join(',')
}

/**
 * Probes until a round goes straight to every leader. Fails the run (`routing`) when a probe fails
 * or takes two forwards, or when no round within `routingRoundsMax` was direct. Returns the rounds
 * run (judged or not).
 */
export async function checkRoutingConverges(
  cluster: HostCluster,
  clients: readonly HostClient[],
): Promise<number> {
  const keys = probeKeys(cluster)
  const shardIds = keys.map((k) => k.shardId)
  let rounds = 0
  let last = ''
  while (rounds < routingRoundsMax && cluster.failure === null) {
    rounds++
    const before = leaders(cluster, shardIds)
    const seen: {
      client: number
      shardId: ShardId
      node: NodeId | 0
      attempts: number
      forwards: number
      ok: boolean
    }[] = []
    for (const client of clients)
      for (const { shardId, key } of keys) {
        const r = await cluster.driver.until(
          client.path.read(key, { level: 'linearizable' }, probeDeadlineMs),
          probeDeadlineMs * 2,
          `routing probe of shard ${shardId}`,
        )
        seen.push(
          r.ok
            ? {
                client: client.id,
                shardId,
                node: r.node,
                attempts: r.attempts,
                forwards: r.forwards,
                ok: true,
              }
            : { client: client.id, shardId, node: 0, attempts: 0, forwards: 0, ok: false },
        )
      }
    if (leaders(cluster, shardIds) !== before) {
      cluster.sim.record(`routing round ${rounds}: leadership moved, not judged`)
      continue
    }
    const describe = (s: (typeof seen)[number]): string =>
      `c${s.client} shard ${s.shardId}: ${s.ok ? `n${s.node} attempts=${s.attempts} forwards=${s.forwards}` : 'failed'}`
    const bad = seen.find((s) => !s.ok || s.forwards > 1)
    if (bad !== undefined) {
      const client = clients.find((c) => c.id === bad.client)
      cluster.fail(
        'routing',
        `after healing, round ${rounds}: ${describe(bad)} (leaders ${before}); the client's view: ${client === undefined ? '?' : viewOf(client, bad.shardId)}; the nodes' maps: ${nodesView(cluster)}`,
      )
      return rounds
    }
    const indirect = seen.filter((s) => s.attempts > 1 || s.forwards > 0)
    last = indirect.map(describe).join('; ')
    cluster.sim.record(
      `routing round ${rounds}: ${seen.length - indirect.length}/${seen.length} straight to the leader`,
    )
    if (indirect.length === 0) return rounds
  }
  if (cluster.failure === null)
    cluster.fail(
      'routing',
      `clients did not go straight to the leaders within ${routingRoundsMax} rounds: ${last}`,
    )
  return rounds
}
