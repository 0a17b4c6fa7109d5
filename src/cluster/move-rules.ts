/**
 * Whether one replica move may start, judged against the map the meta leader just read (pure).
 * A refused move changes nothing; each refusal has a stable code and names the argument:
 *
 * - NOT_FOUND: the shard or a node is not in the map;
 * - MOVE_REFUSED: the source holds no replica of the shard (the meta shard's included),
 *   no source is named while the shard holds its full replicas already (a move without a source
 *   adds a replica: only for a shard short of replicas), the destination already holds one (or
 *   is the source), the destination is not active (dead,
 *   draining, still joining), or the move would put two replicas of the shard in one zone while
 *   the cluster has zones enough for each replica to have its own.
 *
 * Another move of the same shard (SHARD_BUSY) and a stale epoch (STALE_EPOCH) are checked where
 * the move is recorded (meta-store.ts startMove), atomically with recording it.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId, ShardId } from '../common/ids.ts'
import type { ClusterMap } from './cluster-map.ts'
import type { ShardRecord } from './records.ts'

export interface MoveRequest {
  readonly shardId: ShardId
  /** The replica given up; absent: a replica is added (the shard is short of replicas). */
  readonly from?: NodeId
  readonly to: NodeId
  /** The shard epoch the move was planned at (0: no check). */
  readonly epoch: number
}

function refused(message: string, field: string): KvError {
  return new KvError(ErrorCode.MoveRefused, message, { details: { field } })
}

/** The shard of a move that may start, or a KvError (see the file comment). */
export function checkMove(map: ClusterMap, req: MoveRequest): ShardRecord {
  const shard = map.shard(req.shardId)
  if (shard === undefined)
    throw new KvError(ErrorCode.NotFound, `no shard ${req.shardId}`, { details: { field: 'shardId' } })
  if (req.from !== undefined && map.node(req.from) === undefined)
    throw new KvError(ErrorCode.NotFound, `no node ${req.from}`, { details: { field: 'from' } })
  const to = map.node(req.to)
  if (to === undefined)
    throw new KvError(ErrorCode.NotFound, `no node ${req.to}`, { details: { field: 'to' } })
  if (req.from === req.to) throw refused('the source and the destination are the same node', 'to')
  if (req.from === undefined && shard.replicas.length >= map.cluster.replicaCount)
    throw refused(
      `shard ${req.shardId} holds ${shard.replicas.length} replicas already (replication factor ${map.cluster.replicaCount}): name the replica to move`,
      'from',
    )
  if (req.from !== undefined && !shard.replicas.includes(req.from))
    throw refused(`node ${req.from} holds no replica of shard ${req.shardId}`, 'from')
  if (shard.replicas.includes(req.to))
    throw refused(`node ${req.to} already holds a replica of shard ${req.shardId}`, 'to')
  if (to.state !== 'active') throw refused(`node ${req.to} is ${to.state}, not active`, 'to')
  const zonesActive = new Set(
    [...map.nodes.values()].filter((n) => n.state === 'active' && n.zone !== '').map((n) => n.zone),
  )
  if (to.zone !== '' && zonesActive.size >= map.cluster.replicaCount) {
    const others = shard.replicas.filter((id) => id !== req.from).map((id) => map.node(id)?.zone ?? '')
    if (others.includes(to.zone))
      throw refused(
        `zone ${to.zone} already holds a replica of shard ${req.shardId} (the cluster has ${zonesActive.size} zones)`,
        'to',
      )
  }
  return shard
}
