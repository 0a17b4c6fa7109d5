/**
 * planner/: which replica moves the cluster should make, and in what order (pure: no clock, no
 * I/O, no randomness; imports common/, hashing/ and routing/'s node states only). The executor on the meta leader
 * (cluster/) reads the registry and the shard map, asks planMoves, and runs the moves under its
 * throttles; `kvctl node drain` asks drainCheck first. docs/rebalancing.md explains the plan.
 *
 * @example
 * const plan = planMoves({ nodes, shards, replicaCount: 3, vnodesPerNode: 128, inProgress }, hasher)
 * if (plan.safeMode !== undefined) report(plan.safeMode.message)
 * for (const move of plan.moves) executor.enqueue(move) // repairs, then drains, then balance
 */
export {
  moveReasons,
  nodeStates,
  validatePlanInput,
  type BlockedReason,
  type BlockedShard,
  type MoveInProgress,
  type MoveReason,
  type NodeState,
  type Plan,
  type PlanInput,
  type PlannedMove,
  type PlannerNode,
  type PlannerShard,
  type RingTarget,
  type SafeMode,
} from './input.ts'
export { planMoves } from './plan.ts'
export { drainCheck, drainBlockersListedMax, type DrainCheck } from './drain-check.ts'
export { safeModeOf } from './safe-mode.ts'
export { applyMoves } from './apply.ts'
export { planMetaMove, placementLoad, withMetaMove, type MetaPlan, type MetaPlanInput } from './meta.ts'
