/**
 * The cluster's map on the wire (kv.proto ShardMapResponse) and back, over routing/wire.ts (the
 * one place that checks every field). A map from another node (a peer's answer, a join answer, the
 * copy stored on disk) must be whole: any problem the decoder names, a missing meta shard, or a
 * ring that is not covered is INVALID_ARGUMENT, and such a map never replaces ours.
 */
import { ErrorCode, KvError, type ShardDescriptorDetail } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { ClusterMap, metaShardId, type NodeRecord, type ShardRecord } from '../cluster/index.ts'
import type { ShardDescriptor, ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import {
  decodeDescriptor,
  decodeShardMap,
  encodeDescriptor,
  encodeShardMap,
  type ShardRoute,
  type WireNode,
} from '../routing/index.ts'

/** A shard record (or the descriptor a WRONG_SHARD error carries) on the wire. */
export function shardToProto(s: ShardDescriptorDetail): ShardDescriptor {
  return encodeDescriptor(s)
}

export function mapToProto(map: ClusterMap, servedBy: NodeId): ShardMapResponse {
  return encodeShardMap({
    clusterId: map.cluster.clusterId,
    replicaCount: map.cluster.replicaCount,
    vnodesPerNode: map.cluster.vnodesPerNode,
    servedBy,
    shards: map.shards,
    meta: map.meta,
    nodes: map.nodes.values(),
  })
}

const bad = (what: string): KvError =>
  new KvError(ErrorCode.InvalidArgument, `malformed shard map from a peer: ${what}`, {
    details: { field: 'map' },
  })

/** A shard descriptor from the wire (a peer's WRONG_SHARD), checked; INVALID_ARGUMENT when malformed. */
export function descriptorFromProto(d: ShardDescriptor): ShardRecord {
  const decoded = decodeDescriptor(d)
  if (!decoded.ok) throw bad(decoded.problem)
  return recordOf(decoded.value)
}

export function mapFromProto(res: ShardMapResponse): ClusterMap {
  const m = decodeShardMap(res)
  if (m.problems.length > 0) throw bad(m.problems.join('; '))
  if (m.meta === undefined) throw bad('no meta shard')
  if (m.meta.shardId !== metaShardId) throw bad('meta shard id')
  if (m.shards.length === 0) throw bad('no shards')
  const shards = m.shards.map(recordOf)
  const first = shards[0]!
  if (first.hashStart !== 0n) throw bad('the ring does not start at 0')
  for (let i = 1; i < shards.length; i++)
    if (shards[i]!.hashStart !== shards[i - 1]!.hashEnd) throw bad(`a gap before shard ${shards[i]!.shardId}`)
  if (shards[shards.length - 1]!.hashEnd !== hashSpaceEnd) throw bad('the ring does not reach its end')
  const cluster = {
    clusterId: m.clusterId,
    shardCount: shards.length,
    replicaCount: m.replicaCount,
    vnodesPerNode: m.vnodesPerNode,
  }
  return new ClusterMap(cluster, m.nodes.map(nodeRecordOf), shards, recordOf(m.meta))
}

function recordOf(s: ShardRoute): ShardRecord {
  return { ...s, shardId: ShardId(s.shardId), replicas: s.replicas.map((r) => NodeId(r)) }
}

function nodeRecordOf(n: WireNode): NodeRecord {
  return { ...n, id: NodeId(n.id) }
}
