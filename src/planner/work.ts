/**
 * The planner's working copy of the cluster (pure): each shard's replicas, each node's load and
 * shards, the fair shares and load bounds of the active nodes, and the rules a move must keep.
 * plan.ts and drain-check.ts decide; this file only answers questions and applies moves.
 *
 * Rules (every planned move keeps them; `canMove` is the one place they are checked):
 * - at most one move per shard per plan, and none of a shard with a move in progress (`locked`);
 * - the shard has a quorum of live voters now (live = not dead); a replace from -> to keeps the
 *   live count or raises it and an add raises it, so a quorum holds after the move too;
 * - the destination is active (never dead, draining or joining) and holds no replica of the shard;
 * - zones: while the active nodes span at least replicaCount zones, the destination's zone holds
 *   no other replica of the shard (as cluster/move-rules.ts checkMove judges it).
 *
 * Load bounds of an active node with fair share f (hashing fairShares, by weight and zones):
 *   hi = max(ceil(f), floor(loadRatioMax * f))   never more (the busiest within 1.10 of the mean);
 *   lo = min(floor(f), ceil((2 - loadRatioMax) * f))   a node below it is filled ...
 *   goal = floor(f)                              ... up to here.
 * Between lo and hi a node is left alone (hysteresis): a join moves about the newcomer's share.
 */
import { assert } from '../common/assert.ts'
import { NodeId, type ShardId } from '../common/ids.ts'
import { fairShares, loadRatioMax, type RingNode } from '../hashing/index.ts'
import type { MoveInProgress, PlannedMove, PlannerNode, PlannerShard } from './input.ts'

export class Work {
  /** Nodes sorted by id. */
  readonly nodes: readonly PlannerNode[]
  readonly replicaCount: number
  readonly shardCount: number
  /** Node indexes of the active nodes, ascending. */
  readonly active: readonly number[]
  /** Replicas per shard, by shard id (node ids, preference order). */
  readonly replicas: NodeId[][]
  /** Shard epochs, by shard id. */
  readonly epochs: readonly number[]
  /** Replicas held, by node index. */
  readonly load: number[]
  /** Shards held, by node index (insertion order is deterministic). */
  readonly held: Set<number>[]
  /** Per shard: 1 when it has a move in progress or one planned already. */
  readonly locked: Uint8Array
  /** Fair share, goal, lo and hi by node index (0 for nodes that are not active). */
  readonly share: number[]
  readonly goal: number[]
  readonly lo: number[]
  readonly hi: number[]
  /** Distinct non-empty zones of the active nodes reach replicaCount: zones are a hard rule. */
  readonly zonesEnough: boolean
  readonly #index: Map<number, number>

  constructor(
    nodes: readonly PlannerNode[],
    shards: readonly PlannerShard[],
    replicaCount: number,
    inProgress: readonly MoveInProgress[],
  ) {
    this.nodes = nodes
    this.replicaCount = replicaCount
    this.shardCount = shards.length
    this.#index = new Map(nodes.map((n, i) => [n.id, i]))
    this.active = nodes.flatMap((n, i) => (n.state === 'active' ? [i] : []))
    this.replicas = shards.map((s) => [...s.replicas])
    this.epochs = shards.map((s) => s.epoch)
    this.locked = new Uint8Array(shards.length)
    // A move in progress counts as done: its destination's load is already spoken for.
    for (const m of inProgress) {
      const list = this.replicas[m.shardId]!
      const at = list.indexOf(m.from)
      if (!list.includes(m.to)) {
        if (at >= 0) list[at] = m.to
        else list.push(m.to)
      } else if (at >= 0) list.splice(at, 1)
      this.locked[m.shardId] = 1
    }
    this.load = nodes.map(() => 0)
    this.held = nodes.map(() => new Set<number>())
    for (const [s, list] of this.replicas.entries())
      for (const id of list) {
        const n = this.#index.get(id)
        if (n === undefined) continue
        this.load[n]!++
        this.held[n]!.add(s)
      }
    const zones = new Set(this.active.map((n) => nodes[n]!.zone).filter((z) => z !== ''))
    this.zonesEnough = zones.size >= replicaCount
    this.share = nodes.map(() => 0)
    if (this.active.length > 0) {
      const ring: RingNode[] = this.active.map((n) => {
        const node = nodes[n]!
        return { id: node.id, weight: node.weight, ...(node.zone === '' ? {} : { zone: node.zone }) }
      })
      const shares = fairShares(ring, shards.length, replicaCount)
      for (const [i, n] of this.active.entries()) this.share[n] = shares[i]!
    }
    const eps = 1e-9
    this.goal = this.share.map((f) => Math.floor(f + eps))
    this.hi = this.share.map((f) => Math.max(Math.ceil(f - eps), Math.floor(f * loadRatioMax + eps)))
    this.lo = this.share.map((f) => Math.min(Math.floor(f + eps), Math.ceil(f * (2 - loadRatioMax) - eps)))
  }

  /** Node index of a node id; undefined when the registry does not know it. */
  indexOf(id: number): number | undefined {
    return this.#index.get(id)
  }

  /** A replica on this node id is alive: the node is known and not dead. */
  isLive(id: number): boolean {
    const n = this.#index.get(id)
    return n !== undefined && this.nodes[n]!.state !== 'dead'
  }

  stateOf(id: number): PlannerNode['state'] | undefined {
    const n = this.#index.get(id)
    return n === undefined ? undefined : this.nodes[n]!.state
  }

  liveCount(shard: number): number {
    return this.replicas[shard]!.filter((id) => this.isLive(id)).length
  }

  /** The shard's live voters are a quorum of its voters. */
  hasQuorum(shard: number): boolean {
    const list = this.replicas[shard]!
    return list.length > 0 && this.liveCount(shard) >= Math.floor(list.length / 2) + 1
  }

  /** Load relative to the fair share (Infinity for a node with no share). */
  ratio(n: number, load: number = this.load[n]!): number {
    const f = this.share[n]!
    return f > 0 ? load / f : Infinity
  }

  zoneOfId(id: number): string {
    const n = this.#index.get(id)
    return n === undefined ? '' : this.nodes[n]!.zone
  }

  /** Other replicas of the shard (all but `from`) in node n's zone; 0 for a node without a zone. */
  zoneSharing(shard: number, n: number, from: number | undefined): number {
    const zone = this.nodes[n]!.zone
    if (zone === '') return 0
    let count = 0
    for (const id of this.replicas[shard]!) if (id !== from && this.zoneOfId(id) === zone) count++
    return count
  }

  /** May node index `to` take a replica of the shard in place of node id `from` (or as an add)? */
  canReceive(shard: number, to: number, from: number | undefined): boolean {
    const node = this.nodes[to]!
    if (node.state !== 'active') return false
    if (this.replicas[shard]!.includes(node.id)) return false
    return !this.zonesEnough || this.zoneSharing(shard, to, from) === 0
  }

  /** Every rule of a move to node index `to` from node id `from` (see the file comment). */
  canMove(shard: number, to: number, from: number | undefined): boolean {
    if (this.locked[shard] === 1 || !this.hasQuorum(shard)) return false
    if (from !== undefined && !this.replicas[shard]!.includes(NodeId(from))) return false
    return this.canReceive(shard, to, from)
  }

  /** Applies a move to the working copy and locks its shard. */
  apply(move: PlannedMove): void {
    const s = move.shardId
    const to = this.#index.get(move.to)
    assert(to !== undefined && this.canMove(s, to, move.from), 'planned move breaks a rule')
    const list = this.replicas[s]!
    if (move.from === undefined) list.push(move.to)
    else {
      const at = list.indexOf(move.from)
      list[at] = move.to
      const from = this.#index.get(move.from)
      if (from !== undefined) {
        this.load[from]!--
        this.held[from]!.delete(s)
      }
    }
    this.load[to]!++
    this.held[to]!.add(s)
    this.locked[s] = 1
  }

  moveOf(shard: number, from: NodeId | undefined, to: number, reason: PlannedMove['reason']): PlannedMove {
    return {
      shardId: shard as ShardId,
      ...(from === undefined ? {} : { from }),
      to: this.nodes[to]!.id,
      reason,
      epoch: this.epochs[shard]!,
    }
  }
}
