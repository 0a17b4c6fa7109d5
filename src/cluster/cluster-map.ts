/**
 * ClusterMap: one immutable reading of the meta shard (the node registry and the shard map), as
 * every node and the SDK route by it. Pure.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError, type ShardDescriptorDetail } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import { ShardId } from '../common/ids.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import type { ClusterRecord, NodeRecord, ShardRecord } from './records.ts'

/** The meta shard's id: outside the ids of data shards (which count up from 0). */
export const metaShardId = ShardId(0xffff_fff0)
/** Meta shard replicas: 3 by default, at most 5 (more voters only slow its writes). */
export const metaReplicaCountDefault = 3
export const metaReplicaCountMax = 5

export class ClusterMap {
  readonly cluster: ClusterRecord
  readonly nodes: ReadonlyMap<NodeId, NodeRecord>
  /** In hash order, contiguous, covering the ring. */
  readonly shards: readonly ShardRecord[]
  readonly meta: ShardRecord
  private readonly byId: ReadonlyMap<ShardId, number>

  constructor(
    cluster: ClusterRecord,
    nodes: readonly NodeRecord[],
    shards: readonly ShardRecord[],
    meta: ShardRecord,
  ) {
    const sorted = [...shards].sort((a, b) =>
      a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0,
    )
    assert(sorted.length > 0 && sorted[0]!.hashStart === 0n, 'shard map does not start at 0')
    for (let i = 1; i < sorted.length; i++)
      assert(sorted[i]!.hashStart === sorted[i - 1]!.hashEnd, 'shard map has a gap or an overlap')
    assert(
      sorted[sorted.length - 1]!.hashEnd === hashSpaceEnd,
      'shard map does not reach the end of the ring',
    )
    this.cluster = cluster
    this.nodes = new Map([...nodes].sort((a, b) => a.id - b.id).map((n) => [n.id, n]))
    this.shards = sorted
    this.meta = meta
    this.byId = new Map(sorted.map((s, i) => [s.shardId, i]))
  }

  /** The index (in `shards`) of the shard whose range holds `hash`. */
  indexOfHash(hash: bigint): number {
    let lo = 0
    let hi = this.shards.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.shards[mid]!.hashStart <= hash) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  shardOfHash(hash: bigint): ShardRecord {
    return this.shards[this.indexOfHash(hash)]!
  }

  shard(shardId: ShardId): ShardRecord | undefined {
    if (shardId === metaShardId) return this.meta
    const i = this.byId.get(shardId)
    return i === undefined ? undefined : this.shards[i]
  }

  /** The shard after `shardId` in hash order (undefined after the last). */
  next(shardId: ShardId): ShardRecord | undefined {
    const i = this.byId.get(shardId)
    return i === undefined ? undefined : this.shards[i + 1]
  }

  node(id: NodeId): NodeRecord | undefined {
    return this.nodes.get(id)
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
