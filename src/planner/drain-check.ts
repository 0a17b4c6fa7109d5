/**
 * The decommission pre-flight (pure): may a node be drained, and if not, which shards block it and
 * why. `kvctl node drain` refuses at once with this answer instead of starting a drain that can
 * never end. Judged on the cluster as it would be with the node draining:
 *
 *   safe mode   the active nodes left, or their zones, cannot hold the replication factor
 *               (e.g. 3 nodes with replication factor 3): every replica of the node blocks;
 *   no-destination  the active nodes left that hold no replica of the shard (while zones are a
 *               hard rule: the zones among them the shard's staying replicas do not use) are
 *               fewer than the replicas to place anew: this node's, those on dead or draining
 *               nodes, and any the shard is short of;
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
    if (safeMode !== undefined || places(w, s) < replacements(w, s)) reason = 'no-destination'
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

/** Replicas of shard s the planner must place anew: on dead, unknown or draining nodes, or missing. */
function replacements(w: Work, s: number): number {
  const list = w.replicas[s]!
  const leaving = list.filter((id) => !w.isLive(id) || w.stateOf(id) === 'draining').length
  return leaving + Math.max(0, w.replicaCount - list.length)
}

/**
 * Distinct places for those: active nodes that do not hold the shard; while zones are a hard rule,
 * one per zone the staying replicas do not use (a node without a zone is a place of its own).
 */
function places(w: Work, s: number): number {
  const list = w.replicas[s]!
  const staying = list.filter((id) => w.isLive(id) && w.stateOf(id) !== 'draining')
  const used = new Set(staying.map((id) => w.nodes[w.indexOf(id)!]!.zone).filter((z) => z !== ''))
  const zones = new Set<string>()
  let count = 0
  for (const n of w.active) {
    const node = w.nodes[n]!
    if (list.includes(node.id)) continue
    if (!w.zonesEnough || node.zone === '') count++
    else if (!used.has(node.zone)) zones.add(node.zone)
  }
  return count + zones.size
}
