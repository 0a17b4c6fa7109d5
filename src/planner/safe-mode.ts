/**
 * Safe mode (pure): the cluster cannot hold the replication factor on its live nodes. Judged from
 * the registry alone, the same way by the planner, the decommission pre-flight and (later) status:
 *   nodes  fewer active nodes than replicaCount;
 *   zones  the registry's nodes span replicaCount zones or more, the active ones fewer (a shard's
 *          replicas could no longer have a zone each).
 */
import type { PlannerNode, SafeMode } from './input.ts'

export function safeModeOf(nodes: readonly PlannerNode[], replicaCount: number): SafeMode | undefined {
  const active = nodes.filter((n) => n.state === 'active')
  if (active.length < replicaCount)
    return {
      reason: 'nodes',
      message: `${active.length === 1 ? '1 active node' : `${active.length} active nodes`} cannot hold ${replicaCount} replicas of a shard`,
    }
  const zones = (list: readonly PlannerNode[]): number =>
    new Set(list.map((n) => n.zone).filter((z) => z !== '')).size
  const all = zones(nodes)
  const live = zones(active)
  if (all >= replicaCount && live < replicaCount)
    return {
      reason: 'zones',
      message: `the active nodes span ${live} of ${all} zones, fewer than the ${replicaCount} replicas of a shard`,
    }
  return undefined
}
