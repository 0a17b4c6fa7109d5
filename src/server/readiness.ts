/**
 * Whether a node can serve its shards: the answer of `/readyz`. Pure: kvd gathers what it already
 * knows (its lifecycle, its map, when it last reached the meta shard, its replicas' Raft views) and
 * this decides; no RPC per probe, so a probe costs a walk over this node's replicas.
 *
 * Not ready, by the first that holds (the reason codes are stable; the detail is for people):
 * - `starting`: the listeners are not all up yet (or a single-voter shard has not elected itself).
 * - `stopping`: the node drains and will exit.
 * - `not_member`: the map this node holds does not list it (it was removed).
 * - `meta_unreachable`: no heartbeat reached the meta shard within `metaStaleMs` (cut off from it,
 *   or the meta shard has no quorum), or none has yet since start (not yet bootstrapped or joined).
 * - `no_leader`: a shard this node votes in has no leader this node knows of: no quorum, or this
 *   node is cut off from it (an isolated follower campaigns and forgets its leader within an
 *   election timeout; an isolated leader steps down as long, checkQuorum).
 * - `catching_up`: a shard this node votes in is empty, waiting for or installing a snapshot, or
 *   has applied less than its commit index by more than `applyLagMax` entries.
 * Replicas this node does not vote in (learners being filled by a move) and replicas on their way
 * out (`removing`, `tombstone`) do not count: the shard is served by its voters meanwhile.
 *
 * Readiness never kills a pod (liveness, `/healthz`, does that), so a whole cluster that lost
 * quorum is unready, not restarted: its peers still reach each other (the headless Service
 * publishes not-ready addresses) and it recovers when enough of them are back.
 */
import type { NodeId, ShardId } from '../common/ids.ts'

export type NotReadyReason =
  'starting' | 'stopping' | 'not_member' | 'meta_unreachable' | 'no_leader' | 'catching_up'

/** One replica of this node as readiness sees it (host.ts ShardView plus whether it serves). */
export interface ReadinessReplica {
  readonly shardId: ShardId
  /** The replica's lifecycle (replica-record.ts); `removing` and `tombstone` do not count. */
  readonly state: string
  readonly leaderId: NodeId | null
  readonly voters: readonly NodeId[]
  readonly votersOutgoing: readonly NodeId[]
  readonly appliedIndex: number
  readonly commitIndex: number
  /** False while it waits for or installs a snapshot. */
  readonly serving: boolean
}

export interface ReadinessInput {
  readonly nodeId: NodeId
  readonly lifecycle: 'new' | 'starting' | 'serving' | 'stopping' | 'stopped'
  /** The map this node holds lists it. */
  readonly member: boolean
  /** Clock ms now, and of the last heartbeat the meta shard took (undefined: none since start). */
  readonly nowMs: number
  readonly metaHeardMs: number | undefined
  /** How old the last heartbeat may be. */
  readonly metaStaleMs: number
  readonly replicas: readonly ReadinessReplica[]
  /** Entries a voter may have committed but not applied and still be ready. */
  readonly applyLagMax: number
}

export type Readiness = (
  | { readonly ready: true }
  | {
      readonly ready: false
      readonly reason: NotReadyReason
      readonly detail: string
      /** The shards concerned (`no_leader`, `catching_up`), at most `shardsListedMax`. */
      readonly shards?: readonly number[]
    }
) & {
  /**
   * The cluster is in safe mode (its live nodes or zones cannot hold the replication factor, as
   * the map this node holds says): a note, not a reason to be unready; the node serves what has
   * a quorum (docs/rebalancing.md).
   */
  readonly safeMode?: string
}

/** Replica states of a replica leaving this node (replica-record.ts). */
const leaving: ReadonlySet<string> = new Set(['removing', 'tombstone'])

/** Shards one answer lists; a node may hold many. */
export const shardsListedMax = 16

export function readiness(input: ReadinessInput): Readiness {
  if (input.lifecycle === 'new' || input.lifecycle === 'starting')
    return { ready: false, reason: 'starting', detail: 'the node is starting' }
  if (input.lifecycle !== 'serving')
    return { ready: false, reason: 'stopping', detail: 'the node is stopping' }
  if (!input.member)
    return {
      ready: false,
      reason: 'not_member',
      detail: `node ${input.nodeId} is not in the cluster map it holds (removed)`,
    }
  if (input.metaHeardMs === undefined)
    return { ready: false, reason: 'meta_unreachable', detail: 'no heartbeat has reached the meta shard yet' }
  const agoMs = input.nowMs - input.metaHeardMs
  if (agoMs > input.metaStaleMs)
    return {
      ready: false,
      reason: 'meta_unreachable',
      detail: `no heartbeat has reached the meta shard for ${Math.round(agoMs)} ms`,
    }
  const voting = input.replicas.filter(
    (r) =>
      !leaving.has(r.state) && (r.voters.includes(input.nodeId) || r.votersOutgoing.includes(input.nodeId)),
  )
  const leaderless = voting.filter((r) => r.state === 'active' && r.leaderId === null)
  if (leaderless.length > 0) return concerning('no_leader', 'with no leader this node knows of', leaderless)
  const behind = voting.filter(
    (r) => r.state !== 'active' || !r.serving || r.commitIndex - r.appliedIndex > input.applyLagMax,
  )
  if (behind.length > 0)
    return concerning('catching_up', 'catching up (snapshot or committed entries not applied)', behind)
  return { ready: true }
}

function concerning(
  reason: 'no_leader' | 'catching_up',
  what: string,
  replicas: readonly ReadinessReplica[],
): Readiness {
  const shards = replicas
    .map((r) => r.shardId as number)
    .sort((a, b) => a - b)
    .slice(0, shardsListedMax)
  const more = replicas.length > shards.length ? ` and ${replicas.length - shards.length} more` : ''
  return {
    ready: false,
    reason,
    detail: `${replicas.length} shard(s) ${what}: ${shards.join(', ')}${more}`,
    shards,
  }
}
