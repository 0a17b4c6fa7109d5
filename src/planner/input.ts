/**
 * What the planner reads and what it answers (pure data). The planner sees the cluster as the meta
 * leader just read it: the node registry, the shard map and the moves in progress. The cluster's
 * records (cluster/records.ts NodeRecord, ShardRecord, MoveRecord) fit these shapes as they are.
 *
 * Input checks (validatePlanInput): node ids unique; shard ids exactly 0..shardCount-1, each once
 * (the data shards: the meta shard is not planned here); replicaCount in [1, replicaCountMax];
 * at most one move in progress per shard. A replica on a node id the registry does not know counts
 * as a replica on a dead node. Violations throw KvError INVALID_ARGUMENT naming the field.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId, ShardId } from '../common/ids.ts'
import { replicaCountMax, shardCountMax } from '../hashing/index.ts'
import { nodeStates, type NodeState } from '../routing/index.ts'

// A node's states are routing's (the registry's one list); only `active` nodes receive replicas.
export { nodeStates, type NodeState }

export interface PlannerNode {
  readonly id: NodeId
  /** Failure domain; '' = none (the node is a domain of its own). */
  readonly zone: string
  /** Relative capacity (1 = one default node); its fair share of replicas is proportional to it. */
  readonly weight: number
  readonly state: NodeState
}

export interface PlannerShard {
  readonly shardId: ShardId
  /** Preference order: the first is the preferred leader. */
  readonly replicas: readonly NodeId[]
  readonly epoch: number
}

/** A move the executor runs now: its shard is never planned again until it ends. */
export interface MoveInProgress {
  readonly shardId: ShardId
  /** Absent for a move that adds a replica. */
  readonly from?: NodeId
  readonly to: NodeId
}

export interface PlanInput {
  /** The node registry; order does not matter. */
  readonly nodes: readonly PlannerNode[]
  /** The data shards, ids 0..n-1; order does not matter. */
  readonly shards: readonly PlannerShard[]
  readonly replicaCount: number
  /** Vnodes per node of weight 1 on the ring (the cluster record's). */
  readonly vnodesPerNode: number
  readonly inProgress: readonly MoveInProgress[]
}

/** Why a move is planned; the plan lists repairs, then drains, then balance. */
export type MoveReason = 'repair' | 'drain' | 'balance'
export const moveReasons: readonly MoveReason[] = ['repair', 'drain', 'balance']

export interface PlannedMove {
  readonly shardId: ShardId
  /** The replica given up; absent for a repair that adds a replica to a shard short of replicas. */
  readonly from?: NodeId
  readonly to: NodeId
  readonly reason: MoveReason
  /** The shard's epoch the move was planned at (the executor's compare-and-set). */
  readonly epoch: number
}

/** Why the planner leaves a shard that needs a move without one. */
export type BlockedReason = 'no-quorum' | 'no-destination'

export interface BlockedShard {
  readonly shardId: ShardId
  readonly reason: BlockedReason
}

/**
 * Safe mode: the live (active) nodes, or their zones, cannot hold the replication factor. The plan
 * then holds repairs only (each raises a shard's redundancy): no drain, no balance.
 *   nodes  fewer active nodes than replicaCount;
 *   zones  the registry spans replicaCount zones or more, the active nodes fewer.
 */
export interface SafeMode {
  readonly reason: 'nodes' | 'zones'
  readonly message: string
}

export interface Plan {
  /** Ordered: repairs, then drains, then balance; at most one per shard. */
  readonly moves: readonly PlannedMove[]
  /** Each shard's replicas once the moves are done, by shard id (the target of this plan). */
  readonly placement: readonly (readonly NodeId[])[]
  /** Present when the cluster is in safe mode. */
  readonly safeMode?: SafeMode
  /** Shards needing a repair or a drain that no move could be planned for, by shard id. */
  readonly blocked: readonly BlockedShard[]
  /** Shards that need more repairs or drains after this plan's move (one move per shard per plan). */
  readonly pending: number
  /** The ring placement this plan used; pass it to the next planMoves to skip recomputing it. */
  readonly ring: RingTarget
}

/** The ring placement of a set of active nodes (hashing placeShards), with what it was computed for. */
export interface RingTarget {
  /** The active nodes (id, weight, zone), shard count, replication factor and vnodes, as a string. */
  readonly key: string
  /** Each shard's nodes, by shard id. */
  readonly placement: readonly (readonly number[])[]
}

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

/** Checks the input (see the file comment); returns nodes sorted by id and shards by id. */
export function validatePlanInput(input: PlanInput): {
  readonly nodes: PlannerNode[]
  readonly shards: PlannerShard[]
  readonly inProgress: MoveInProgress[]
} {
  const r = input.replicaCount
  if (!Number.isSafeInteger(r) || r < 1 || r > replicaCountMax)
    throw invalid('replicaCount', `replicaCount must be an integer in [1, ${replicaCountMax}], got ${r}`)
  const nodes = [...input.nodes].sort((a, b) => a.id - b.id)
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i]!
    if (i > 0 && nodes[i - 1]!.id === n.id) throw invalid('nodes', `duplicate node id ${n.id}`)
    if (!nodeStates.includes(n.state)) throw invalid('nodes', `node ${n.id}: unknown state`)
  }
  if (input.shards.length < 1 || input.shards.length > shardCountMax)
    throw invalid('shards', `between 1 and ${shardCountMax} shards, got ${input.shards.length}`)
  const shards = [...input.shards].sort((a, b) => a.shardId - b.shardId)
  for (const [i, s] of shards.entries()) {
    if (s.shardId !== i) throw invalid('shards', `shard ids must be 0..${shards.length - 1}, each once`)
    if (new Set(s.replicas).size !== s.replicas.length)
      throw invalid('shards', `shard ${s.shardId} lists a node twice`)
  }
  const inProgress = [...input.inProgress].sort((a, b) => a.shardId - b.shardId)
  for (let i = 0; i < inProgress.length; i++) {
    const m = inProgress[i]!
    if (m.shardId < 0 || m.shardId >= shards.length || !Number.isSafeInteger(m.shardId))
      throw invalid('inProgress', `move of unknown shard ${m.shardId}`)
    if (i > 0 && inProgress[i - 1]!.shardId === m.shardId)
      throw invalid('inProgress', `two moves of shard ${m.shardId} in progress`)
  }
  return { nodes, shards, inProgress }
}
