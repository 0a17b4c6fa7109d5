/**
 * The planner's working copy of the cluster (pure): each shard's replicas, each node's load and
 * shards, the fair shares and load bounds of the active nodes, and the rules a move must keep.
 * plan.ts and drain-check.ts decide; this file only answers questions and applies moves.
 *
 * Rules (every planned move keeps them; `canMove` states them, scans of many destinations use its
 * parts `receiving` and `allows`, and `apply` asserts `canMove` for every move planned):
 * - at most one move per shard per plan, and none of a shard with a move in progress (`locked`);
 * - the shard has a quorum of live voters now (live = not dead); a replace from -> to keeps the
 *   live count or raises it and an add raises it, so a quorum holds after the move too;
 * - the destination is active (never dead, draining or joining) and holds no replica of the shard;
 * - zones: while the active nodes span at least replicaCount zones, the destination's zone holds
 *   no other replica of the shard (as cluster/move-rules.ts checkMove judges it).
 *
 * Load bounds of an active node with fair share f (hashing fairShares, by weight and zones):
 *   hi = max(ceil(f), floor(loadRatioMax * f))   balance brings every node down to it where the
 *                                                rules allow (the busiest within 1.10 of the mean);
 *   lo = min(floor(f), max(ceil((2 - loadRatioMax) * f), floor(f) - 1))
 *                                                a node below it is filled ...
 *   goal = floor(f)                              ... up to here.
 * Between lo and hi a node is left alone (hysteresis): a join moves about the newcomer's share.
 * lo is within one replica of the goal whatever the share: with 32 replicas per node, 0.9 of the
 * share alone let a joined node stop at 29 when a move of its job was rolled back (its meta leader
 * killed), and the operator's promise is its fair share within one replica.
 */
import { assert } from '../common/assert.ts'
import { NodeId, type ShardId } from '../common/ids.ts'
import { fairShares, loadRatioMax, type RingNode } from '../hashing/index.ts'
import type { MoveInProgress, PlannedMove, PlannerNode, PlannerShard } from './input.ts'

/** How far below its goal a node may stay unfilled (lo, above). */
const lowSlackReplicas = 1

/** A shard's side of the rules for a move (Work.receiving). */
export interface Receiving {
  readonly holders: readonly number[]
  readonly zones: readonly number[]
}

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
  /** Shards held that are not locked, by node index (a node with none has nothing to give). */
  readonly unlocked: number[]
  /** Fair share, goal, lo and hi by node index (0 for nodes that are not active). */
  readonly share: number[]
  readonly goal: number[]
  readonly lo: number[]
  readonly hi: number[]
  /** Distinct non-empty zones of the active nodes reach replicaCount: zones are a hard rule. */
  readonly zonesEnough: boolean
  readonly #index: Map<number, number>
  /** Zone of each node index as a small integer; -1 for no zone. */
  readonly #zoneIds: Int32Array
  /** Every active node has a zone and the active nodes span exactly replicaCount zones. */
  readonly #zonesExact: boolean
  /** The zone numbers of the active nodes, and whether some active node has no zone. */
  readonly #activeZones: readonly number[]
  readonly #activeUnzoned: boolean

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
    const zoneNumbers = new Map<string, number>()
    this.#zoneIds = Int32Array.from(nodes, (n) => {
      if (n.zone === '') return -1
      if (!zoneNumbers.has(n.zone)) zoneNumbers.set(n.zone, zoneNumbers.size)
      return zoneNumbers.get(n.zone)!
    })
    this.active = nodes.flatMap((n, i) => (n.state === 'active' ? [i] : []))
    this.replicas = shards.map((s) => [...s.replicas])
    this.epochs = shards.map((s) => s.epoch)
    this.locked = new Uint8Array(shards.length)
    // A move in progress counts as done: its destination's load is already spoken for.
    for (const m of inProgress) {
      const list = this.replicas[m.shardId]!
      const at = m.from === undefined ? -1 : list.indexOf(m.from)
      if (!list.includes(m.to)) {
        if (at >= 0) list[at] = m.to
        else list.push(m.to)
      } else if (at >= 0) list.splice(at, 1)
      this.locked[m.shardId] = 1
    }
    this.load = nodes.map(() => 0)
    this.unlocked = nodes.map(() => 0)
    this.held = nodes.map(() => new Set<number>())
    for (const [s, list] of this.replicas.entries())
      for (const id of list) {
        const n = this.#index.get(id)
        if (n === undefined) continue
        this.load[n]!++
        this.held[n]!.add(s)
        if (this.locked[s] === 0) this.unlocked[n]!++
      }
    const zones = new Set(this.active.map((n) => nodes[n]!.zone).filter((z) => z !== ''))
    this.zonesEnough = zones.size >= replicaCount
    this.#activeUnzoned = this.active.some((n) => nodes[n]!.zone === '')
    this.#zonesExact = zones.size === replicaCount && !this.#activeUnzoned
    this.#activeZones = [...new Set(this.active.map((n) => this.#zoneIds[n]!).filter((z) => z >= 0))]
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
    this.lo = this.share.map((f) =>
      Math.min(
        Math.floor(f + eps),
        Math.max(Math.ceil(f * (2 - loadRatioMax) - eps), Math.floor(f + eps) - lowSlackReplicas),
      ),
    )
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

  /**
   * The shard's side of a move's rules, computed once to judge many destinations: the node indexes
   * holding it (-1 for an unknown node) and the zones of its replicas other than node id `from`.
   */
  receiving(shard: number, from: number | undefined): Receiving {
    const holders: number[] = []
    const zones: number[] = []
    for (const id of this.replicas[shard]!) {
      const n = this.#index.get(id)
      holders.push(n ?? -1)
      if (id !== from && n !== undefined && this.#zoneIds[n]! >= 0) zones.push(this.#zoneIds[n]!)
    }
    return { holders, zones }
  }

  /**
   * Whether a balance move between node indexes u and v can keep the zone rule, for choosing
   * among many: 0 always (no zone rule, or the same zone: the shard's zones do not change);
   * 1 perhaps (depends on the shard); 2 never (every active node has a zone and there are exactly
   * replicaCount zones, so a full shard has a replica in every zone, v's included).
   */
  zonePair(u: number, v: number): 0 | 1 | 2 {
    if (!this.zonesEnough || this.#zoneIds[u] === this.#zoneIds[v]) return 0
    return this.#zonesExact ? 2 : 1
  }

  /** Replicas in `r` (other than its `from`) in node index n's zone; 0 for a node without a zone. */
  sharing(r: Receiving, n: number): number {
    const zone = this.#zoneIds[n]!
    if (zone < 0) return 0
    let count = 0
    for (const z of r.zones) if (z === zone) count++
    return count
  }

  /** The least `sharing` any active node can have for `r` (0 when some active zone is unused). */
  sharingMin(r: Receiving): number {
    if (this.zonesEnough || this.#activeZones.length === 0 || this.#activeUnzoned) return 0
    let min = Infinity
    for (const zone of this.#activeZones) {
      let count = 0
      for (const z of r.zones) if (z === zone) count++
      min = Math.min(min, count)
    }
    return min
  }

  /** May node index n take the replica `r` describes: active, not a holder, zones kept. */
  allows(r: Receiving, n: number): boolean {
    if (this.nodes[n]!.state !== 'active' || r.holders.includes(n)) return false
    return !this.zonesEnough || this.sharing(r, n) === 0
  }

  /** Other replicas of the shard (all but node id `from`) in node index n's zone. */
  zoneSharing(shard: number, n: number, from: number | undefined): number {
    return this.sharing(this.receiving(shard, from), n)
  }

  /** May node index `to` take a replica of the shard in place of node id `from` (or as an add)? */
  canReceive(shard: number, to: number, from: number | undefined): boolean {
    return this.allows(this.receiving(shard, from), to)
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
    for (const id of list) {
      const n = this.#index.get(id)
      if (n !== undefined) this.unlocked[n]!--
    }
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
