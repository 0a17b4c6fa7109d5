/**
 * The meta shard's move (pure). The meta shard is not one of the data shards the planner
 * balances: it keeps the replicas it was created with, wherever they are, and moves only so that
 * no replica of it stays on a node that is dead (a repair) or draining (a drain), so a drain can
 * empty any node. One move at a time (the shard's own move in progress blocks another), none
 * without a live quorum of its replicas, none to a node that is not active or already holds it.
 *
 * The destination: among the active nodes that do not hold it, while the active nodes span at least
 * `replicaCount` zones, only those in a zone its staying replicas do not use (the rule of
 * cluster/move-rules.ts); then the node with the fewest replicas in `load` (the data placement the
 * plan leads to), then the lowest id. `withMetaMove` puts the move into a data plan: a repair
 * first, a drain after the data repairs; a meta shard that needs a move and cannot have one is
 * listed blocked. In safe mode only a repair is planned (as for the data shards).
 */
import type { NodeId } from '../common/ids.ts'
import type { BlockedShard, Plan, PlannedMove, PlannerNode, PlannerShard } from './input.ts'

export interface MetaPlanInput {
  /** The node registry; order does not matter. */
  readonly nodes: readonly PlannerNode[]
  /** The meta shard as the map holds it. */
  readonly meta: PlannerShard
  /** The cluster's replication factor (for the zone rule). */
  readonly replicaCount: number
  /** True while a move of the meta shard is in progress. */
  readonly moving: boolean
}

/** The meta shard's move, or why it needs one and cannot have it; neither: nothing to do. */
export interface MetaPlan {
  readonly move?: PlannedMove
  readonly blocked?: BlockedShard
}

/** The meta shard's next move (see the file comment); `load` counts each node's data replicas. */
export function planMetaMove(input: MetaPlanInput, load: (id: NodeId) => number): MetaPlan {
  const byId = new Map(input.nodes.map((n) => [n.id as number, n]))
  const { meta } = input
  const stateOf = (id: NodeId): PlannerNode['state'] | 'unknown' => byId.get(id)?.state ?? 'unknown'
  const dead = meta.replicas.find((id) => stateOf(id) === 'dead' || stateOf(id) === 'unknown')
  const draining = meta.replicas.find((id) => stateOf(id) === 'draining')
  const from = dead ?? draining
  if (from === undefined || input.moving) return {}
  const live = meta.replicas.filter((id) => stateOf(id) !== 'dead' && stateOf(id) !== 'unknown').length
  if (live < Math.floor(meta.replicas.length / 2) + 1)
    return { blocked: { shardId: meta.shardId, reason: 'no-quorum' } }
  const active = input.nodes.filter((n) => n.state === 'active')
  const zonesActive = new Set(active.map((n) => n.zone).filter((z) => z !== ''))
  const staying = new Set(meta.replicas.filter((id) => id !== from).map((id) => byId.get(id)?.zone ?? ''))
  const candidates = active
    .filter((n) => !meta.replicas.includes(n.id))
    .filter((n) => n.zone === '' || zonesActive.size < input.replicaCount || !staying.has(n.zone))
    .sort((a, b) => load(a.id) - load(b.id) || a.id - b.id)
  const to = candidates[0]
  if (to === undefined) return { blocked: { shardId: meta.shardId, reason: 'no-destination' } }
  return {
    move: {
      shardId: meta.shardId,
      from,
      to: to.id,
      reason: dead !== undefined ? 'repair' : 'drain',
      epoch: meta.epoch,
    },
  }
}

/** Each node's replicas in a plan's placement (the data shards once the plan's moves are done). */
export function placementLoad(plan: Plan): (id: NodeId) => number {
  const counts = new Map<number, number>()
  for (const replicas of plan.placement) for (const id of replicas) counts.set(id, (counts.get(id) ?? 0) + 1)
  return (id) => counts.get(id) ?? 0
}

/** `plan` with the meta shard's move (or its blocking) in it; a drain is left out in safe mode. */
export function withMetaMove(plan: Plan, meta: MetaPlan): Plan {
  if (meta.blocked !== undefined) return { ...plan, blocked: [...plan.blocked, meta.blocked] }
  const move = meta.move
  if (move === undefined || (move.reason !== 'repair' && plan.safeMode !== undefined)) return plan
  const at = move.reason === 'repair' ? 0 : plan.moves.filter((m) => m.reason === 'repair').length
  return { ...plan, moves: [...plan.moves.slice(0, at), move, ...plan.moves.slice(at)] }
}
