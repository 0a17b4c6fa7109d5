/**
 * The shard map on the wire (kv.proto ShardMapResponse) and back. A map from another node is
 * checked like any input: a malformed one is INVALID_ARGUMENT and never replaces ours.
 */
import { ErrorCode, KvError, type ShardDescriptorDetail } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import {
  ClusterMap,
  metaShardId,
  nodeStates,
  type NodeRecord,
  type NodeState,
  type ShardRecord,
} from '../cluster/index.ts'
import type { NodeInfo, ShardDescriptor, ShardMapResponse } from '../gen/ringkv/v1/kv.ts'

/** A shard record (or the descriptor a WRONG_SHARD error carries) on the wire. */
export function shardToProto(s: ShardDescriptorDetail): ShardDescriptor {
  return {
    shardId: s.shardId,
    hashStart: s.hashStart.toString(),
    hashEnd: s.hashEnd.toString(),
    replicas: [...s.replicas],
    leaderHint: s.leaderHint,
    leaderTerm: s.leaderTerm,
    epoch: s.epoch,
  }
}

export function nodeToProto(n: NodeRecord): NodeInfo {
  return {
    nodeId: n.id,
    address: n.address,
    zone: n.zone,
    state: n.state,
    lastHeartbeatMs: n.lastHeartbeatMs,
    weight: n.weight,
    peerAddress: n.peerAddress ?? '',
  }
}

export function mapToProto(map: ClusterMap, servedBy: NodeId): ShardMapResponse {
  return {
    clusterId: map.cluster.clusterId,
    nodes: [...map.nodes.values()].map(nodeToProto),
    shards: map.shards.map(shardToProto),
    replicaCount: map.cluster.replicaCount,
    vnodesPerNode: map.cluster.vnodesPerNode,
    metaShard: shardToProto(map.meta),
    servedBy,
  }
}

const bad = (what: string): KvError =>
  new KvError(ErrorCode.InvalidArgument, `malformed shard map from a peer: ${what}`, {
    details: { field: 'map' },
  })

/** A shard descriptor from the wire (a peer's map, or a WRONG_SHARD from a peer), checked. */
export function descriptorFromProto(d: ShardDescriptor): ShardRecord {
  if (!/^\d+$/.test(d.hashStart) || !/^\d+$/.test(d.hashEnd)) throw bad('hash range')
  const hashStart = BigInt(d.hashStart)
  const hashEnd = BigInt(d.hashEnd)
  if (hashStart >= hashEnd || hashEnd > 1n << 64n) throw bad('hash range')
  if (d.replicas.some((r) => !Number.isSafeInteger(r) || r <= 0)) throw bad('replicas')
  return {
    shardId: ShardId(d.shardId),
    hashStart,
    hashEnd,
    replicas: d.replicas.map((r) => NodeId(r)),
    leaderHint: d.leaderHint,
    leaderTerm: d.leaderTerm,
    epoch: d.epoch,
  }
}

function nodeFromProto(n: NodeInfo): NodeRecord {
  if (!Number.isSafeInteger(n.nodeId) || n.nodeId <= 0) throw bad('node id')
  if (!nodeStates.includes(n.state as NodeState)) throw bad('node state')
  return {
    id: NodeId(n.nodeId),
    address: n.address,
    ...(n.peerAddress === '' ? {} : { peerAddress: n.peerAddress }),
    zone: n.zone,
    weight: n.weight > 0 ? n.weight : 1,
    state: n.state as NodeState,
    lastHeartbeatMs: n.lastHeartbeatMs,
  }
}

export function mapFromProto(res: ShardMapResponse): ClusterMap {
  if (!/^[0-9a-f]{32}$/.test(res.clusterId)) throw bad('cluster id')
  if (res.metaShard === undefined || res.shards.length === 0) throw bad('no shards')
  if (res.metaShard.shardId !== metaShardId) throw bad('meta shard id')
  if (new Set(res.shards.map((d) => d.shardId)).size !== res.shards.length) throw bad('duplicate shard ids')
  if (new Set(res.nodes.map((n) => n.nodeId)).size !== res.nodes.length) throw bad('duplicate node ids')
  try {
    return new ClusterMap(
      {
        clusterId: res.clusterId,
        shardCount: res.shards.length,
        replicaCount: res.replicaCount,
        vnodesPerNode: res.vnodesPerNode,
      },
      res.nodes.map(nodeFromProto),
      res.shards.map(descriptorFromProto),
      descriptorFromProto(res.metaShard),
    )
  } catch (err) {
    if (err instanceof KvError) throw err
    throw bad((err as Error).message)
  }
}
