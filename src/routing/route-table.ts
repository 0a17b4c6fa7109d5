/**
 * RouteTable: one immutable reading of where shards and nodes are (ARCHITECTURE.md section 3,
 * routing/). Shards are kept in hash order with their ranges, replicas in preference order, epoch
 * and the map's leader hint; nodes by id with address, zone and state. Lookups: by hash (binary
 * search), by shard id, by node id, the shard after another on the ring.
 *
 * The one map type routing decisions read: the SDK's routing cache holds one (built from a
 * ShardMap answer, repaired from WRONG_SHARD descriptors), and the cluster's ClusterMap (the meta
 * shard's reading, which also covers the whole ring) is one.
 *
 * Invariants (asserted when built; wire input is checked before, by wire.ts):
 *   - ring shards are sorted by hashStart and their ranges do not overlap; gaps are allowed (a
 *     table repaired in part: keys in a gap have no route until the next full map);
 *   - every range is non-empty and within [0, 2^64];
 *   - shard ids are distinct over the ring shards and the off-ring ones (the meta shard, found by
 *     id only), and node ids are distinct.
 *
 * Pure: no clock, no randomness, no I/O.
 */
import { assert } from '../common/assert.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import type { NodeRoute, ShardRoute } from './types.ts'

export class RouteTable<S extends ShardRoute = ShardRoute, N extends NodeRoute = NodeRoute> {
  /** The slices of the ring, in hash order. */
  readonly shards: readonly S[]
  /** Shards that are no slice of the ring (the meta shard), found by id only. */
  readonly offRing: readonly S[]
  /** By id, in id order. */
  readonly nodes: ReadonlyMap<number, N>
  private readonly byId: ReadonlyMap<number, S>
  /** Ring shard id -> its index in `shards`. */
  private readonly ringIndex: ReadonlyMap<number, number>

  constructor(shards: readonly S[], nodes: readonly N[], offRing: readonly S[] = []) {
    const sorted = [...shards].sort(byHashStart)
    const byId = new Map<number, S>()
    const ringIndex = new Map<number, number>()
    for (const [i, s] of sorted.entries()) {
      assert(s.hashStart < s.hashEnd && s.hashEnd <= hashSpaceEnd, `shard ${s.shardId}: bad range`)
      const previous = sorted[i - 1]
      assert(previous === undefined || previous.hashEnd <= s.hashStart, 'shard ranges overlap')
      assert(!byId.has(s.shardId), `shard ${s.shardId} twice`)
      byId.set(s.shardId, s)
      ringIndex.set(s.shardId, i)
    }
    for (const s of offRing) {
      assert(!byId.has(s.shardId), `shard ${s.shardId} twice`)
      byId.set(s.shardId, s)
    }
    const byNode = new Map<number, N>()
    for (const n of [...nodes].sort((a, b) => a.id - b.id)) {
      assert(!byNode.has(n.id), `node ${n.id} twice`)
      byNode.set(n.id, n)
    }
    this.shards = sorted
    this.offRing = [...offRing]
    this.nodes = byNode
    this.byId = byId
    this.ringIndex = ringIndex
  }

  /** A table with no shards and no nodes (nothing routes). */
  static empty(): RouteTable {
    return new RouteTable([], [])
  }

  shard(shardId: number): S | undefined {
    return this.byId.get(shardId)
  }

  node(nodeId: number): N | undefined {
    return this.nodes.get(nodeId)
  }

  /** The ring shard whose [hashStart, hashEnd) holds `hash`; undefined in a gap. */
  shardOfHash(hash: bigint): S | undefined {
    let lo = 0
    let hi = this.shards.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const s = this.shards[mid]!
      if (hash < s.hashStart) hi = mid - 1
      else if (hash >= s.hashEnd) lo = mid + 1
      else return s
    }
    return undefined
  }

  /** The ring shard whose range starts where `shardId`'s ends (a scan's next stop); undefined after the last or at a gap. */
  next(shardId: number): S | undefined {
    const i = this.ringIndex.get(shardId)
    if (i === undefined) return undefined
    const next = this.shards[i + 1]
    return next !== undefined && next.hashStart === this.shards[i]!.hashEnd ? next : undefined
  }

  /** The ring shard that holds hash 0 (where a scan starts). */
  first(): S | undefined {
    const first = this.shards[0]
    return first?.hashStart === 0n ? first : undefined
  }

  /** True when the ring shards cover [0, 2^64) without a gap. */
  get coversRing(): boolean {
    if (this.first() === undefined) return false
    for (let i = 1; i < this.shards.length; i++)
      if (this.shards[i]!.hashStart !== this.shards[i - 1]!.hashEnd) return false
    return this.shards[this.shards.length - 1]!.hashEnd === hashSpaceEnd
  }

  /**
   * The table with `shard` in place of its id's entry (a WRONG_SHARD descriptor). Ring entries its
   * range overlaps are dropped: their ranges are stale, and only a full map can say what replaces
   * the parts it does not cover. An off-ring shard (by id) is replaced in place.
   */
  withShard(shard: S): RouteTable<S, N> {
    const nodes = [...this.nodes.values()]
    if (this.offRing.some((s) => s.shardId === shard.shardId))
      return new RouteTable(
        this.shards,
        nodes,
        this.offRing.map((s) => (s.shardId === shard.shardId ? shard : s)),
      )
    const kept = this.shards.filter(
      (s) => s.shardId !== shard.shardId && (s.hashEnd <= shard.hashStart || s.hashStart >= shard.hashEnd),
    )
    return new RouteTable([...kept, shard], nodes, this.offRing)
  }
}

function byHashStart(a: ShardRoute, b: ShardRoute): number {
  return a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0
}
