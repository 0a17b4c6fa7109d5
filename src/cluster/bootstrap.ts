/**
 * The map of a new cluster: the shard count's equal slices of the ring, each placed on the initial
 * nodes by the ring (hashing/placement), and the meta shard on the first few of them. Pure and
 * deterministic, so every initial member computes the same map without talking, creates the
 * replicas it holds at once, and the first meta leader writes this same map into the meta shard.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { equalHashRanges, hashSpaceEnd, placeShards, type Hasher } from '../hashing/index.ts'
import { ClusterMap, metaReplicaCountMax, metaShardId } from './cluster-map.ts'
import type { NodeRecord, ShardRecord } from './records.ts'

export interface InitialNode {
  readonly id: NodeId
  readonly address: string
  /** Where other nodes reach it; default beside `address` (records.ts peerAddressOf). */
  readonly peerAddress?: string
  readonly zone: string
  readonly weight: number
}

export interface InitialClusterSpec {
  /** 32 hex digits. */
  readonly clusterId: string
  readonly nodes: readonly InitialNode[]
  readonly shardCount: number
  readonly replicaCount: number
  readonly vnodesPerNode: number
  readonly metaReplicaCount: number
}

export function initialClusterMap(spec: InitialClusterSpec, hasher: Hasher): ClusterMap {
  if (spec.nodes.length === 0)
    throw new KvError(ErrorCode.InvalidArgument, 'a cluster needs at least one node', {
      details: { field: 'initialCluster' },
    })
  if (
    !Number.isSafeInteger(spec.metaReplicaCount) ||
    spec.metaReplicaCount < 1 ||
    spec.metaReplicaCount > metaReplicaCountMax
  )
    throw new KvError(
      ErrorCode.InvalidArgument,
      `meta replicas must be 1..${metaReplicaCountMax}, got ${spec.metaReplicaCount}`,
      { details: { field: 'metaReplicas' } },
    )
  const placement = placeShards(
    {
      nodes: spec.nodes.map((n) => ({
        id: n.id,
        weight: n.weight,
        ...(n.zone === '' ? {} : { zone: n.zone }),
      })),
      shardCount: spec.shardCount,
      replicaCount: spec.replicaCount,
      vnodesPerNode: spec.vnodesPerNode,
    },
    hasher,
  )
  const shards: ShardRecord[] = equalHashRanges(spec.shardCount).map((range, i) => ({
    shardId: ShardId(i),
    hashStart: range.start,
    hashEnd: range.end,
    replicas: placement[i]!.map((id) => NodeId(id)),
    leaderHint: 0,
    leaderTerm: 0,
    epoch: 1,
  }))
  const meta: ShardRecord = {
    shardId: metaShardId,
    hashStart: 0n,
    hashEnd: hashSpaceEnd,
    replicas: metaReplicasOf(spec.nodes, spec.metaReplicaCount),
    leaderHint: 0,
    leaderTerm: 0,
    epoch: 1,
  }
  const nodes: NodeRecord[] = spec.nodes.map((n) => ({
    id: n.id,
    address: n.address,
    ...(n.peerAddress === undefined ? {} : { peerAddress: n.peerAddress }),
    zone: n.zone,
    weight: n.weight,
    state: 'active',
    lastHeartbeatMs: 0,
  }))
  return new ClusterMap(
    {
      clusterId: spec.clusterId,
      shardCount: spec.shardCount,
      replicaCount: spec.replicaCount,
      vnodesPerNode: spec.vnodesPerNode,
    },
    nodes,
    shards,
    meta,
  )
}

/**
 * The meta shard's replicas: in node id order, a node of each zone not yet used first (so the
 * meta shard survives a zone), then the rest; `count` of them, or every node when fewer.
 */
export function metaReplicasOf(nodes: readonly InitialNode[], count: number): NodeId[] {
  const sorted = [...nodes].sort((a, b) => a.id - b.id)
  const chosen: NodeId[] = []
  const zones = new Set<string>()
  for (const n of sorted) {
    if (chosen.length >= count) break
    if (n.zone !== '' && zones.has(n.zone)) continue
    chosen.push(n.id)
    zones.add(n.zone)
  }
  for (const n of sorted) {
    if (chosen.length >= count) break
    if (!chosen.includes(n.id)) chosen.push(n.id)
  }
  return chosen
}
