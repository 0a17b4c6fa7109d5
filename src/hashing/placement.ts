/**
 * Replica placement: which nodes hold each shard. Pure.
 *
 * Every shard sits on the ring at the start of its hash range and ranks the nodes in ring order,
 * clockwise from there (each node once, at its first vnode). Plain consistent hashing takes the
 * first `replicaCount` of that list; with few replicas per node that is badly unbalanced (counts are
 * nearly Poisson: at 1,000 nodes with ~12 replicas each the busiest node holds about twice the mean).
 *
 * So placement is consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam 2018):
 * each node has a capacity near its fair share (nodeCapacities), and a shard whose next node is
 * full walks on clockwise. The walk is solved as a many-to-many stable matching by deferred
 * acceptance (Gale-Shapley, shards proposing): a full node keeps the shards nearest to it on the
 * ring and turns the farther ones away. Shards and nodes rank each other by the same number, the
 * ring distance from shard to node, so the stable matching is unique: it is the greedy one (take
 * (shard, node) pairs nearest first while both have room). Hence the result does not depend on
 * processing order, and a join or leave changes only the pairs along rejection chains. Ranking by
 * distance moved fewer replicas per join than nodes ranking shards by their place in the shards'
 * lists (1.9x vs 2.1x the optimum at 1,000 nodes). Zone spreading (zoneRule) is a matroid on each
 * shard's set of nodes, which keeps shards' choices substitutable, so this holds with zones too.
 * Where the stable matching leaves a shard short, augmenting paths complete it (see overfill).
 *
 * Measured (test/bench/placement.ts; 128 vnodes, 4,096 shards, 3 replicas): max/mean 1.10 at 10
 * and 100 nodes and 1.06 at 1,000 (plain: 1.10, 1.16, 2.12); replicas moved by one join 1.0x the
 * optimum 1/(N+1) at 10 and 100 nodes, about 1.9x at 1,000 (plain: about 1x). At ~12 replicas per
 * node most nodes must be full to stay within 1.10x, so freed room travels along rejection chains.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { equalHashRanges } from './ranges.ts'
import { Ring, validateNodes, defaultVnodesPerNode, type RingNode } from './ring.ts'
import type { Hasher } from './xxhash.ts'

/** Replicas per shard by default: a Raft group of three survives one failure. */
export const defaultReplicaCount = 3
/** Replicas per shard at most. Every write goes to all of them; per-shard zone checks are O(replicas^2). */
export const replicaCountMax = 16
/** Shards at most (a shard map of this many entries still fits one gRPC message). */
export const shardCountMax = 1 << 20
/** Node checks one augmenting-path search may make before the shard goes over capacity instead. */
export const augmentStepsMax = 1 << 22
/**
 * The balance bound: a node's capacity stays within this times its fair share wherever the slack
 * floor below allows (fair share >= 1 / (loadRatioMax - 1 - loadSlackMin) = 20 replicas).
 */
export const loadRatioMax = 1.1
/**
 * Spare capacity kept however small the shares: every node gets at least (1 + loadSlackMin) times
 * its share. With ~12 replicas per node, the balance bound alone (capacity 1.1 * share - 1, see
 * nodeCapacities) would leave under 2% spare, and with little spare every join or leave sets off
 * long rejection chains. The cost: where shares are small the busiest node may reach
 * (1 + loadSlackMin) * share + 1, up to 1.13x at 12 replicas per node.
 */
export const loadSlackMin = 0.05

/** What placeShards places. */
export interface PlacementInput {
  /** The nodes; their order does not matter. */
  readonly nodes: readonly RingNode[]
  /** Shards, as equal slices of the hash space (ranges.ts `equalHashRanges`). */
  readonly shardCount: number
  /** Replicas per shard; min(replicaCount, nodes.length) are placed. */
  readonly replicaCount: number
  /** Vnodes per node of weight 1, default defaultVnodesPerNode. */
  readonly vnodesPerNode?: number
}

/** Knobs for measurements (bench, tests); production uses the defaults. */
export interface PlacementTuning {
  /** See loadRatioMax. Infinity turns capacities off: a plain ring walk that still spreads zones. */
  readonly loadRatioMax?: number
  /** See loadSlackMin. */
  readonly loadSlackMin?: number
  /**
   * How fractional capacities become integers (see nodeCapacities): 'demand' (the default) rounds
   * up the nodes with the most natural demand; 'draw' rounds each node up or down by a fixed
   * per-node draw; 'step' is floor(loadRatioMax * share), at least ceil(share), one integer for all
   * equal nodes, which drops for all of them at once as shares shrink.
   */
  readonly capacityRounding?: 'demand' | 'draw' | 'step'
}

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

function validateCounts(shardCount: number, replicaCount: number): void {
  if (!Number.isSafeInteger(shardCount) || shardCount < 1 || shardCount > shardCountMax)
    throw invalid('shardCount', `shardCount must be an integer in [1, ${shardCountMax}], got ${shardCount}`)
  if (!Number.isSafeInteger(replicaCount) || replicaCount < 1 || replicaCount > replicaCountMax)
    throw invalid(
      'replicaCount',
      `replicaCount must be an integer in [1, ${replicaCountMax}], got ${replicaCount}`,
    )
}

/**
 * For each shard 0..shardCount-1, its replicas: min(replicaCount, nodes.length) distinct node ids,
 * in preference order (index 0 = preferred leader: the first of them clockwise from the shard).
 * Pure: the same input, in any node order, gives the same output. Throws KvError INVALID_ARGUMENT
 * for bad input (see validateNodes, and shardCount, replicaCount, vnodesPerNode ranges).
 *
 * Guarantees: replicas of a shard are distinct nodes; they are spread over zones as evenly as the
 * nodes allow (distinct zones when there are at least replicaCount zones); each node holds at most
 * its capacity (nodeCapacities), unless no augmenting path finds room (seen only with skewed zones
 * or tiny shares; see Matching overfill).
 */
export function placeShards(input: PlacementInput, hasher: Hasher, tuning: PlacementTuning = {}): number[][] {
  validateCounts(input.shardCount, input.replicaCount)
  const ring = new Ring(input.nodes, hasher, input.vnodesPerNode ?? defaultVnodesPerNode)
  return placeShardsOnRing(ring, input.shardCount, input.replicaCount, tuning)
}

/** placeShards on a ring built already (the ring's nodes and vnodes are the input). */
export function placeShardsOnRing(
  ring: Ring,
  shardCount: number,
  replicaCount: number,
  tuning: PlacementTuning = {},
): number[][] {
  validateCounts(shardCount, replicaCount)
  const matching = new Matching(ring, shardCount, Math.min(replicaCount, ring.nodes.length), tuning)
  return matching.run()
}

/**
 * The baseline: plain consistent hashing. Each shard takes the first min(replicaCount, nodes)
 * distinct nodes clockwise from its range start; no capacities, no zones.
 */
export function placeShardsPlain(input: PlacementInput, hasher: Hasher): number[][] {
  validateCounts(input.shardCount, input.replicaCount)
  const ring = new Ring(input.nodes, hasher, input.vnodesPerNode ?? defaultVnodesPerNode)
  const replicas = Math.min(input.replicaCount, ring.nodes.length)
  return shardPoints(input.shardCount).map(({ high, low }) => {
    const out: number[] = []
    for (let t = ring.successorIndexOf(high, low); out.length < replicas; t = (t + 1) % ring.tokenCount) {
      const id = ring.nodes[ring.tokenNodeIndex(t)]!.id
      if (!out.includes(id)) out.push(id)
    }
    return out
  })
}

/**
 * Where each shard sits on the ring: the start of its hash range. Equally spaced points sample the
 * nodes' arcs evenly (stratified), which gives less spread than hashed points at small node counts,
 * and the shard's owner is the owner of its first key, as in classic consistent hashing.
 */
function shardPoints(shardCount: number): { high: number; low: number }[] {
  return equalHashRanges(shardCount).map(({ start }) => ({
    high: Number(start >> 32n),
    low: Number(start & 0xffff_ffffn),
  }))
}

/**
 * Each node's fair share of the replicas, in replicas (fractional), by index into `nodes` (sorted
 * by id). Proportional to weight, subject to what placement must do anyway: a node holds each shard
 * at most once, and each zone holds between its minimum and maximum per shard (zoneRule). Computed
 * by water-filling, first over zones, then over the nodes of each zone.
 */
export function fairShares(nodes: readonly RingNode[], shardCount: number, replicaCount: number): number[] {
  const sorted = validateNodes(nodes)
  validateCounts(shardCount, replicaCount)
  const replicas = Math.min(replicaCount, sorted.length)
  const zones = zoneRule(sorted, replicas)
  const zoneCount = zones.min.length
  const zoneWeights = new Array<number>(zoneCount).fill(0)
  for (const [n, node] of sorted.entries()) zoneWeights[zones.of[n]!]! += node.weight ?? 1
  // Replicas of one shard per zone, in [min, max], summing to `replicas`.
  const perZone = waterFill(zoneWeights, zones.min, zones.max, replicas)
  const shares = new Array<number>(sorted.length).fill(0)
  for (let z = 0; z < zoneCount; z++) {
    const members = zones.members[z]!
    const perNode = waterFill(
      members.map((n) => sorted[n]!.weight ?? 1),
      members.map(() => 0),
      members.map(() => 1),
      perZone[z]!,
    )
    for (const [i, n] of members.entries()) shares[n] = perNode[i]! * shardCount
  }
  return shares
}

/**
 * Each node's capacity in replicas, by index into ring.nodes: how many replicas deferred acceptance
 * lets it hold. From the node's fair share f (fairShares) comes a target c = max(loadRatioMax * f - 1,
 * (1 + loadSlackMin) * f, f + 1/2); the capacity is c rounded down, or up for as many nodes as the
 * fractions add up to: those with the most natural demand (replicas plain consistent hashing would
 * give them, over f; ties by Ring.nodeDraw). Never above the shard count. The - 1 keeps a rounded-up
 * capacity within loadRatioMax * f; f + 1/2 keeps the total above the replicas to place.
 *
 * Why not one integer for all equal nodes (MTZ's ceil((1 + eps) * f), or floor(1.1 * f)): with ~12
 * replicas per node most nodes are full, and when a join shrinks f across an integer that capacity
 * drops for every node at once. Measured at 1,039 -> 1,040 nodes (4,096 shards, 3 replicas): 66x
 * the optimal movement in one join. With per-node rounding a join lowers about c capacities by one.
 * Rounding up by demand rather than by a fixed draw moves fewer replicas (1.9x vs 2.5x the optimum
 * per join at 1,000 nodes): the capacities a join takes away are then those of the least demanded
 * nodes, which are seldom full, and the busiest nodes keep the room they need.
 */
export function nodeCapacities(
  ring: Ring,
  shardCount: number,
  replicaCount: number,
  tuning: PlacementTuning = {},
): number[] {
  const ratio = tuning.loadRatioMax ?? loadRatioMax
  const slack = tuning.loadSlackMin ?? loadSlackMin
  assert(ratio >= 1 && slack >= 0, 'bad placement tuning')
  const replicas = Math.min(replicaCount, ring.nodes.length)
  const shares = fairShares(ring.nodes, shardCount, replicas)
  if (tuning.capacityRounding === 'step')
    return shares.map((f) =>
      Math.min(shardCount, Math.max(Math.ceil(f - 1e-9), Math.floor(f * ratio + 1e-9))),
    )
  const targets = shares.map((f) => Math.max(f * ratio - 1, f * (1 + slack), f + 0.5))
  const capacities = targets.map((c) => Math.floor(c))
  if (tuning.capacityRounding === 'draw') {
    for (const [n, c] of targets.entries()) if (ring.nodeDraw(n) < c - Math.floor(c)) capacities[n]!++
  } else {
    const demand = naturalDemand(ring, shardCount, replicas)
    const score = (n: number): number => (demand[n]! + ring.nodeDraw(n)) / shares[n]!
    const roundUps = Math.round(targets.reduce((a, c) => a + (c - Math.floor(c)), 0))
    const byDemand = shares.map((_, n) => n).sort((a, b) => score(b) - score(a) || a - b)
    for (const n of byDemand.slice(0, Number.isFinite(roundUps) ? roundUps : 0)) capacities[n]!++
  }
  return capacities.map((c) => Math.min(shardCount, c))
}

/**
 * Replicas each node would hold under plain consistent hashing with the zone rule: each shard takes
 * the first nodes clockwise that the zone rule allows. By index into ring.nodes.
 */
function naturalDemand(ring: Ring, shardCount: number, replicas: number): number[] {
  const zones = zoneRule(ring.nodes, replicas)
  const demand = new Array<number>(ring.nodes.length).fill(0)
  for (const { high, low } of shardPoints(shardCount)) {
    const holders: number[] = []
    const start = ring.successorIndexOf(high, low)
    for (let w = 0; w < ring.tokenCount && holders.length < replicas; w++) {
      const n = ring.tokenNodeIndex((start + w) % ring.tokenCount)
      if (!holders.includes(n) && zoneAllows(zones, holders, n)) holders.push(n)
    }
    for (const n of holders) demand[n]!++
  }
  return demand
}

/**
 * Values clamp(lambda * weight_i, min_i, max_i) summing to `total`, for the one lambda that does it
 * (bisection; the sum is monotone in lambda). Requires sum(min) <= total <= sum(max).
 */
function waterFill(
  weights: readonly number[],
  min: readonly number[],
  max: readonly number[],
  total: number,
): number[] {
  const at = (lambda: number): number[] =>
    weights.map((w, i) => Math.min(max[i]!, Math.max(min[i]!, lambda * w)))
  const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0)
  let lo = 0
  let hi = Math.max(...max.map((m, i) => m / weights[i]!))
  // 200 halvings take any double interval down to adjacent values.
  for (let i = 0; i < 200 && lo < hi; i++) {
    const mid = lo + (hi - lo) / 2
    if (mid === lo || mid === hi) break
    if (sum(at(mid)) < total) lo = mid
    else hi = mid
  }
  return at(hi)
}

/**
 * The zone spreading rule, the same for every shard. A node without a zone is a zone of its own.
 * With `replicas` to place, level L is the least with sum over zones of min(size, L) >= replicas;
 * a shard then holds min(size, L - 1) replicas in every zone, plus one more in `extra` of the zones
 * that have L or more nodes. So replicas go to distinct zones while there are enough zones, and
 * otherwise every zone is used before any zone is used again (as often as its nodes allow).
 * These sets form a matroid (augmentation holds), which keeps the matching's choices substitutable.
 */
interface ZoneRule {
  /** Zone index of each node (index into the sorted nodes). */
  readonly of: readonly number[]
  /** Node indexes of each zone, ascending. */
  readonly members: readonly (readonly number[])[]
  /** Replicas of one shard each zone must hold: min(size, L - 1). */
  readonly min: readonly number[]
  /** Replicas of one shard each zone may hold: min(size, L). */
  readonly max: readonly number[]
  /** How many zones may hold their max when max > min. */
  readonly extra: number
  /** False when every node is its own zone: distinct nodes already satisfy the rule. */
  readonly constraining: boolean
}

function zoneRule(sorted: readonly RingNode[], replicas: number): ZoneRule {
  const byLabel = new Map<string, number>()
  const of: number[] = []
  const members: number[][] = []
  for (const [n, node] of sorted.entries()) {
    let z = node.zone === undefined ? undefined : byLabel.get(node.zone)
    if (z === undefined) {
      z = members.length
      members.push([])
      if (node.zone !== undefined) byLabel.set(node.zone, z)
    }
    of.push(z)
    members[z]!.push(n)
  }
  const sizes = members.map((m) => m.length)
  let level = 1
  while (sizes.reduce((a, s) => a + Math.min(s, level), 0) < replicas) level++
  const min = sizes.map((s) => Math.min(s, level - 1))
  const max = sizes.map((s) => Math.min(s, level))
  const extra = replicas - min.reduce((a, b) => a + b, 0)
  assert(extra >= 0 && extra <= max.filter((m, z) => m > min[z]!).length, 'zone rule has no basis')
  return { of, members, min, max, extra, constraining: level > 1 || members.length < sorted.length }
}

/** Does the zone rule allow node index `n` next to `holders`? O(replicas^2), no allocation. */
function zoneAllows(zones: ZoneRule, holders: readonly number[], n: number): boolean {
  if (!zones.constraining) return true
  // The zones of [n, ...holders].
  const zoneAt = (k: number): number => zones.of[k === 0 ? n : holders[k - 1]!]!
  const size = holders.length + 1
  let extra = 0
  for (let i = 0; i < size; i++) {
    const z = zoneAt(i)
    let counted = false
    for (let j = 0; j < i && !counted; j++) counted = zoneAt(j) === z
    if (counted) continue
    let count = 0
    for (let j = i; j < size; j++) if (zoneAt(j) === z) count++
    if (count > zones.max[z]!) return false
    extra += Math.max(0, count - zones.min[z]!)
  }
  return extra <= zones.extra
}

/** A shard's claim on a node. */
interface Claim {
  readonly shard: number
  /** Node index (into the sorted nodes). */
  readonly node: number
  /**
   * Clockwise distance from the shard's point to the node's first vnode at or after it. Both sides
   * rank by it: the shard prefers nearer nodes (its ring order), the node prefers nearer shards.
   */
  readonly distance: number
}

/** True when a node prefers claim `a` to claim `b`: nearer, then the lower shard. */
function prefers(a: Claim, b: Claim): boolean {
  return a.distance < b.distance || (a.distance === b.distance && a.shard < b.shard)
}

/** The deferred-acceptance state for one placement; run() once. */
class Matching {
  readonly #ring: Ring
  readonly #shardCount: number
  readonly #replicas: number
  readonly #zones: ZoneRule
  readonly #capacity: number[]
  /** Per node: its held claims as a binary heap, least preferred at the root. */
  readonly #held: Claim[][]
  /** Per shard: its point (u32 halves), its first token, and how many tokens its walk has passed. */
  readonly #pointHigh: number[]
  readonly #pointLow: number[]
  readonly #start: number[]
  readonly #walked: number[]
  /** Per shard: nodes it has seen on its walk (proposed to or set aside), in ring order. */
  readonly #seen: Set<number>[]
  /** Per shard: seen nodes set aside because the zone rule refused them then, with their claims. */
  readonly #aside: Claim[][]
  /** Per shard: the nodes holding it now, as node indexes. */
  readonly #holders: number[][]
  #done = false

  constructor(ring: Ring, shardCount: number, replicas: number, tuning: PlacementTuning) {
    this.#ring = ring
    this.#shardCount = shardCount
    this.#replicas = replicas
    this.#zones = zoneRule(ring.nodes, replicas)
    this.#capacity = nodeCapacities(ring, shardCount, replicas, tuning)
    this.#held = ring.nodes.map(() => [])
    const points = shardPoints(shardCount)
    this.#pointHigh = points.map((p) => p.high)
    this.#pointLow = points.map((p) => p.low)
    this.#start = points.map((p) => ring.successorIndexOf(p.high, p.low))
    this.#walked = new Array<number>(shardCount).fill(0)
    this.#seen = points.map(() => new Set())
    this.#aside = points.map(() => [])
    this.#holders = points.map(() => [])
  }

  run(): number[][] {
    assert(!this.#done, 'Matching.run() is single use')
    this.#done = true
    // Deferred acceptance. The queue holds shards with an open slot; a shard proposes until it is
    // full or has nobody left, and a shard bumped from a node goes back on the queue.
    const queue: number[] = Array.from({ length: this.#shardCount }, (_, s) => s)
    for (let head = 0; head < queue.length; head++) {
      const shard = queue[head]!
      while (this.#holders[shard]!.length < this.#replicas) {
        const claim = this.#nextCandidate(shard)
        if (claim === undefined) break
        const bumped = this.#propose(claim)
        if (bumped !== undefined) queue.push(bumped)
      }
      // Bounded: each shard proposes to each node at most once.
      assert(queue.length <= this.#shardCount * (this.#ring.nodes.length + 1), 'matching does not end')
    }
    // Complete the shards the stable matching left short. Distinct nodes and zones are hard
    // constraints; capacity gives way only when no augmenting path exists.
    for (let shard = 0; shard < this.#shardCount; shard++) this.#overfill(shard)
    return this.#holders.map((holders, shard) => this.#inPreferenceOrder(shard, holders))
  }

  /** Is node index `n` allowed next to the shard's holders under the zone rule? */
  #allowed(holders: readonly number[], n: number): boolean {
    return zoneAllows(this.#zones, holders, n)
  }

  /**
   * The shard's best node it has not proposed to that the zone rule allows now: first among those
   * set aside earlier (they rank higher), then further along the ring. Undefined when none is left.
   */
  #nextCandidate(shard: number): Claim | undefined {
    const holders = this.#holders[shard]!
    const aside = this.#aside[shard]!
    for (let i = 0; i < aside.length; i++) {
      const claim = aside[i]!
      if (this.#allowed(holders, claim.node)) {
        aside.splice(i, 1)
        return claim
      }
    }
    const ring = this.#ring
    const seen = this.#seen[shard]!
    const tokenCount = ring.tokenCount
    while (this.#walked[shard]! < tokenCount && seen.size < ring.nodes.length) {
      const t = (this.#start[shard]! + this.#walked[shard]!) % tokenCount
      this.#walked[shard]!++
      const node = ring.tokenNodeIndex(t)
      if (seen.has(node)) continue
      const claim = {
        shard,
        node,
        distance: ring.distanceTo(this.#pointHigh[shard]!, this.#pointLow[shard]!, t),
      }
      seen.add(node)
      if (this.#allowed(holders, node)) return claim
      aside.push(claim)
    }
    return undefined
  }

  /** Offers `claim` to node `n`. Returns the shard bumped to make room, if any. */
  #propose(claim: Claim): number | undefined {
    const n = claim.node
    const heap = this.#held[n]!
    if (heap.length < this.#capacity[n]!) {
      heapPush(heap, claim)
      this.#holders[claim.shard]!.push(n)
      return undefined
    }
    const worst = heap[0]
    if (worst === undefined || !prefers(claim, worst)) return undefined // rejected
    heapReplaceRoot(heap, claim)
    this.#holders[claim.shard]!.push(n)
    const holders = this.#holders[worst.shard]!
    holders.splice(holders.indexOf(n), 1)
    return worst.shard
  }

  /**
   * Fills what deferred acceptance left open. A stable matching can leave a shard short even when
   * the capacities add up: every node it may still use is full of nearer shards (typical when the
   * replica count is close to the node count, e.g. 5 nodes and 4 replicas with unequal weights).
   * Each missing replica is found by an augmenting path, as in bipartite matching: the shard takes
   * a full node, which hands one of its shards on to another node, and so on until a node with room
   * (breadth first, so the path is shortest; nodes and shards in index order, so it is
   * deterministic). Only if no such path exists does the shard go over capacity, on the allowed
   * node least over it.
   */
  #overfill(shard: number): void {
    const holders = this.#holders[shard]!
    while (holders.length < this.#replicas) {
      if (this.#augment(shard)) continue
      let best: number | undefined
      for (let n = 0; n < this.#ring.nodes.length; n++) {
        if (holders.includes(n) || !this.#allowed(holders, n)) continue
        if (best === undefined || this.#excess(n) < this.#excess(best)) best = n
      }
      // The zone rule's level guarantees a basis of `replicas` nodes exists.
      assert(best !== undefined, 'zone rule left a shard short')
      this.#hold(shard, best)
    }
  }

  #excess(n: number): number {
    return this.#held[n]!.length - this.#capacity[n]!
  }

  /** Adds node n to the shard's holders (no capacity check). */
  #hold(shard: number, n: number): void {
    const distance = this.#distanceToNode(shard, n)
    heapPush(this.#held[n]!, { shard, node: n, distance })
    this.#holders[shard]!.push(n)
  }

  /** Removes node n from the shard's holders. */
  #release(shard: number, n: number): void {
    const heap = this.#held[n]!
    const i = heap.findIndex((c) => c.shard === shard)
    assert(i >= 0, 'release of a claim not held')
    const rest = heap.filter((_, j) => j !== i)
    heap.length = 0
    for (const c of rest) heapPush(heap, c)
    const holders = this.#holders[shard]!
    holders.splice(holders.indexOf(n), 1)
  }

  /** Is there room for `shard` at `n` after moving it away from `from` (zone rule, distinct)? */
  #movable(shard: number, from: number, n: number): boolean {
    const others = this.#holders[shard]!.filter((h) => h !== from)
    return !others.includes(n) && n !== from && this.#allowed(others, n)
  }

  /** One augmenting path for one more replica of `shard`; false when there is none. */
  #augment(shard: number): boolean {
    const nodeCount = this.#ring.nodes.length
    const holders = this.#holders[shard]!
    // parent[n]: how n was reached: from the shard itself (via = -1) or by moving `via` off `from`.
    const parent = new Map<number, { readonly from: number; readonly via: number }>()
    const queue: number[] = []
    for (let n = 0; n < nodeCount; n++)
      if (!holders.includes(n) && this.#allowed(holders, n)) {
        parent.set(n, { from: -1, via: -1 })
        queue.push(n)
      }
    let steps = 0
    for (let head = 0; head < queue.length; head++) {
      const x = queue[head]!
      if (this.#excess(x) < 0) {
        // Apply the path backwards: each shard moves into the node after it, freeing its own.
        for (let n = x; ;) {
          const step = parent.get(n)!
          if (step.via < 0) {
            this.#hold(shard, n)
            return true
          }
          this.#release(step.via, step.from)
          this.#hold(step.via, n)
          n = step.from
        }
      }
      // A shard moves at most once per path, so each move's check against its holders stays true.
      const onPath = new Set<number>([shard])
      for (let n = x; parent.get(n)!.via >= 0; n = parent.get(n)!.from) onPath.add(parent.get(n)!.via)
      for (const claim of [...this.#held[x]!].sort((a, b) => a.shard - b.shard)) {
        if (onPath.has(claim.shard)) continue
        for (let y = 0; y < nodeCount; y++) {
          if (++steps > augmentStepsMax) return false
          if (parent.has(y) || !this.#movable(claim.shard, x, y)) continue
          parent.set(y, { from: x, via: claim.shard })
          queue.push(y)
        }
      }
    }
    return false
  }

  /** Distance from the shard's point to node n's first vnode at or after it. */
  #distanceToNode(shard: number, n: number): number {
    const ring = this.#ring
    for (let w = 0; w < ring.tokenCount; w++) {
      const t = (this.#start[shard]! + w) % ring.tokenCount
      if (ring.tokenNodeIndex(t) === n)
        return ring.distanceTo(this.#pointHigh[shard]!, this.#pointLow[shard]!, t)
    }
    assert(false, 'node not on the ring')
  }

  /** Node ids of `holders` in the shard's ring order (the first is the preferred leader). */
  #inPreferenceOrder(shard: number, holders: readonly number[]): number[] {
    const ring = this.#ring
    const ordered: number[] = []
    for (
      let w = 0, t = this.#start[shard]!;
      ordered.length < holders.length;
      w++, t = (t + 1) % ring.tokenCount
    ) {
      assert(w < ring.tokenCount, 'holder not on the ring')
      const node = ring.tokenNodeIndex(t)
      if (holders.includes(node) && !ordered.includes(node)) ordered.push(node)
    }
    return ordered.map((n) => ring.nodes[n]!.id)
  }
}

// A binary heap of claims with the least preferred at the root.
function worse(a: Claim, b: Claim): boolean {
  return prefers(b, a)
}

function heapPush(heap: Claim[], claim: Claim): void {
  heap.push(claim)
  let i = heap.length - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (!worse(heap[i]!, heap[parent]!)) break
    ;[heap[i], heap[parent]] = [heap[parent]!, heap[i]!]
    i = parent
  }
}

function heapReplaceRoot(heap: Claim[], claim: Claim): void {
  heap[0] = claim
  let i = 0
  for (;;) {
    const left = 2 * i + 1
    const right = left + 1
    let top = i
    if (left < heap.length && worse(heap[left]!, heap[top]!)) top = left
    if (right < heap.length && worse(heap[right]!, heap[top]!)) top = right
    if (top === i) return
    ;[heap[i], heap[top]] = [heap[top]!, heap[i]!]
    i = top
  }
}

/** Replicas held by each node, by node id (only nodes that hold any). */
export function replicaCounts(placement: readonly (readonly number[])[]): Map<number, number> {
  const counts = new Map<number, number>()
  for (const replicas of placement) for (const id of replicas) counts.set(id, (counts.get(id) ?? 0) + 1)
  return counts
}

/**
 * The busiest node's load relative to the mean, weighted: max over nodes of
 * count / (total * weight / totalWeight). 1 is perfect balance. Nodes holding nothing count as 0.
 */
export function loadRatio(placement: readonly (readonly number[])[], nodes: readonly RingNode[]): number {
  const counts = replicaCounts(placement)
  const total = placement.reduce((a, r) => a + r.length, 0)
  const weightTotal = nodes.reduce((a, n) => a + (n.weight ?? 1), 0)
  let ratio = 0
  for (const node of nodes) {
    const share = (total * (node.weight ?? 1)) / weightTotal
    ratio = Math.max(ratio, (counts.get(node.id) ?? 0) / share)
  }
  return ratio
}

/**
 * The fraction of replicas that moved: (shard, node) memberships in `after` that were not in
 * `before`, divided by the replicas in `after`. Leader order does not count. Both placements must
 * have the same shard count.
 */
export function movedFraction(
  before: readonly (readonly number[])[],
  after: readonly (readonly number[])[],
): number {
  assert(before.length === after.length, 'placements of different shard counts')
  let moved = 0
  let total = 0
  for (const [shard, replicas] of after.entries()) {
    const previous = before[shard]!
    for (const id of replicas) if (!previous.includes(id)) moved++
    total += replicas.length
  }
  return total === 0 ? 0 : moved / total
}
