/**
 * ClusterMap: one immutable reading of the meta shard (the node registry and the shard map): the
 * route table every node routes by (routing/RouteTable, with the registry's records as its shards
 * and nodes), plus what only the cluster needs: the cluster record and the meta shard (an off-ring
 * entry of the table, found by id). Unlike a table in general, a map covers the ring without a gap.
 * Pure.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError, type ShardDescriptorDetail } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import { ShardId } from '../common/ids.ts'
import { RouteTable } from '../routing/index.ts'
import type { ClusterRecord, NodeRecord, ShardRecord } from './records.ts'

/** The meta shard's id: outside the ids of data shards (which count up from 0). */
export const metaShardId = ShardId(0xffff_fff0)
/** Meta shard replicas: 3 by default, at most 5 (more voters only slow its writes). */
export const metaReplicaCountDefault = 3
export const metaReplicaCountMax = 5

export class ClusterMap extends RouteTable<ShardRecord, NodeRecord> {
  readonly cluster: ClusterRecord
  readonly meta: ShardRecord
  declare readonly nodes: ReadonlyMap<NodeId, NodeRecord>

  constructor(
    cluster: ClusterRecord,
    nodes: readonly NodeRecord[],
    shards: readonly ShardRecord[],
    meta: ShardRecord,
  ) {
    assert(meta.shardId === metaShardId, 'the meta shard has another id')
    super(shards, nodes, [meta])
    // Invariant: the data shards cover the ring, contiguous, in hash order.
    assert(this.first() !== undefined, 'shard map does not start at 0')
    assert(this.coversRing, 'shard map has a gap or does not reach the end of the ring')
    this.cluster = cluster
    this.meta = meta
  }

  /** The index (in `shards`) of the shard whose range holds `hash`. */
  indexOfHash(hash: bigint): number {
    return this.shards.indexOf(this.shardOfHash(hash))
  }

  /** The data shard whose range holds `hash` (the map covers the ring: there is always one). */
  override shardOfHash(hash: bigint): ShardRecord {
    const shard = super.shardOfHash(hash)
    assert(shard !== undefined, 'a hash outside the ring')
    return shard
  }

  /** Every shard (the meta shard included) with `nodeId` among its replicas. */
  shardsOf(nodeId: NodeId): ShardRecord[] {
    return [...this.shards, this.meta].filter((s) => s.replicas.includes(nodeId))
  }

  /** The same map with one shard's leader hint replaced (a local repair; the meta shard learns by heartbeat). */
  withLeaderHint(shardId: ShardId, leader: NodeId, term: number): ClusterMap {
    const old = this.shard(shardId)
    if (old === undefined || term < old.leaderTerm || (old.leaderHint === leader && old.leaderTerm >= term))
      return this
    const updated = { ...old, leaderHint: leader, leaderTerm: Math.max(term, old.leaderTerm) }
    return new ClusterMap(
      this.cluster,
      [...this.nodes.values()],
      this.shards.map((s) => (s.shardId === shardId ? updated : s)),
      shardId === metaShardId ? updated : this.meta,
    )
  }
}

/** A shard record as a WRONG_SHARD error carries it. */
export function descriptorOf(s: ShardRecord): ShardDescriptorDetail {
  return {
    shardId: s.shardId,
    hashStart: s.hashStart,
    hashEnd: s.hashEnd,
    replicas: s.replicas,
    leaderHint: s.leaderHint,
    leaderTerm: s.leaderTerm,
    epoch: s.epoch,
  }
}

/** WRONG_SHARD for a request whose caller placed its key in a shard (or an epoch) this map no longer has. */
export function wrongShard(current: ShardRecord, told: { shardId: number; epoch: number }): KvError {
  return new KvError(
    ErrorCode.WrongShard,
    `the key is in shard ${current.shardId} at epoch ${current.epoch}, not shard ${told.shardId} at epoch ${told.epoch}: refresh the shard map`,
    {
      details: { shardId: current.shardId, shardMapEpoch: current.epoch, descriptor: descriptorOf(current) },
    },
  )
}
