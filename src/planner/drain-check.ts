/**
 * The decommission pre-flight (pure): may a node be drained, and if not, which shards block it and
 * why. `kvctl node drain` refuses at once with this answer instead of starting a drain that can
 * never end. Judged on the cluster as it would be with the node draining:
 *
 *   safe mode   the active nodes left, or their zones, cannot hold the replication factor
 *               (e.g. 3 nodes with replication factor 3): every replica of the node blocks;
 *   no-destination  every active node left already holds a replica of the shard, or (while zones
 *               are a hard rule) every one that does not sits in a zone the shard already uses;
 *   no-quorum   the shard has no quorum of live voters, so no configuration change can commit.
 *
 * A shard with a move in progress does not block (its replica is drained once that move ends).
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { ShardId, type NodeId } from '../common/ids.ts'
import { validatePlanInput, type BlockedShard, type PlanInput, type SafeMode } from './input.ts'
import { safeModeOf } from './safe-mode.ts'
import { Work } from './work.ts'

/** Blocking shards listed at most in a DrainCheck (all are counted). */
export const drainBlockersListedMax = 1000

export interface DrainCheck {
  readonly nodeId: NodeId
  readonly possible: boolean
  /** Replicas the node holds (each is one drain move). */
  readonly replicas: number
  /** Present when draining the node would put the cluster in safe mode (or it is in it already). */
  readonly safeMode?: SafeMode
  /** The blocking shards by shard id, at most drainBlockersListedMax of them. */
  readonly blocking: readonly BlockedShard[]
  /** All blocking shards. */
  readonly blockingCount: number
}

/** Whether node `nodeId` can be drained (see the file comment). NOT_FOUND for an unknown node. */
export function drainCheck(input: PlanInput, nodeId: NodeId): DrainCheck {
  if (!input.nodes.some((n) => n.id === nodeId))
    throw new KvError(ErrorCode.NotFound, `no node ${nodeId}`, { details: { field: 'nodeId' } })
  const draining = {
    ...input,
    nodes: input.nodes.map((n) =>
      n.id === nodeId && n.state !== 'dead' ? { ...n, state: 'draining' as const } : n,
    ),
  }
  const { nodes, shards, inProgress } = validatePlanInput(draining)
  const w = new Work(nodes, shards, input.replicaCount, inProgress)
  const safeMode = safeModeOf(nodes, input.replicaCount)
  const me = w.indexOf(nodeId)!
  const blocking: BlockedShard[] = []
  let blockingCount = 0
  for (const s of w.held[me]!) {
    if (w.locked[s] === 1) continue
    let reason: BlockedShard['reason'] | undefined
    if (safeMode !== undefined || !w.active.some((n) => w.canReceive(s, n, nodeId))) reason = 'no-destination'
    else if (!w.hasQuorum(s)) reason = 'no-quorum'
    if (reason === undefined) continue
    blockingCount++
    blocking.push({ shardId: ShardId(s), reason })
  }
  blocking.sort((a, b) => a.shardId - b.shardId)
  return {
    nodeId,
    possible: blockingCount === 0,
    replicas: w.load[me]!,
    ...(safeMode === undefined ? {} : { safeMode }),
    blocking: blocking.slice(0, drainBlockersListedMax),
    blockingCount,
  }
}
