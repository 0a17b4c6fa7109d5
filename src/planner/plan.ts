/**
 * The planner (pure): from the node registry, the shard map and the moves in progress, an ordered
 * list of replica moves, at most one per shard, and the placement they lead to. Deterministic: the
 * same input in any order gives the same plan. The executor runs the moves (a few at a time, under
 * its throttles) and plans again when moves end; repeated planning converges to no moves.
 *
 * Three phases, in this order in the plan:
 * 1. repair: shards with a replica on a dead (or unknown) node or with fewer replicas than the
 *    replication factor, fewest live replicas first: the dead replica is replaced (from = dead
 *    node), or a replica is added (no from);
 * 2. drain: every replica on a draining node is replaced;
 * 3. balance: while zones are a hard rule, a shard whose replicas share a zone spreads out; an
 *    active node below its lower bound is filled up to floor(fair share), each replica taken from
 *    the most loaded node relative to its share; then a node above its upper bound gives replicas
 *    to the least loaded (bounds in work.ts).
 * In safe mode (the active nodes or zones cannot hold the replication factor) only repairs are
 * planned: each raises a shard's redundancy, and nothing lowers it. A move only ever replaces a
 * replica or adds one: a shard with more replicas than the replication factor keeps them all.
 *
 * History-aware: replicas stay where they are unless a rule or a bound moves them, so a join moves
 * about the newcomer's share (the optimum) and a leave about the leaver's. Where there is a choice,
 * the ring's placement of the active nodes (hashing placeShards, the target a new cluster starts
 * from) breaks it: a repair or drain goes to the node the ring names when it is below its share,
 * and balance moves a shard the ring places on the receiver, or one it does not place on the giver.
 */
import { ShardId, type NodeId } from '../common/ids.ts'
import { placeShards, type Hasher } from '../hashing/index.ts'
import {
  validatePlanInput,
  type BlockedShard,
  type Plan,
  type PlanInput,
  type PlannedMove,
  type RingTarget,
} from './input.ts'
import { safeModeOf } from './safe-mode.ts'
import { Work } from './work.ts'

/**
 * The plan for `input` (see the file comment). Throws KvError INVALID_ARGUMENT for bad input.
 * `previous`: the ring placement a former plan returned (Plan.ring); used again when it was
 * computed for the same active nodes, shard count, replication factor and vnodes (most of a
 * plan's time at scale is that placement, which changes only when the active nodes do).
 */
export function planMoves(input: PlanInput, hasher: Hasher, previous?: RingTarget): Plan {
  const { nodes, shards, inProgress } = validatePlanInput(input)
  const w = new Work(nodes, shards, input.replicaCount, inProgress)
  const key = ringKey(w, input.vnodesPerNode)
  const ringTarget =
    previous !== undefined && previous.key === key
      ? previous
      : { key, placement: ringPlacement(w, input.vnodesPerNode, hasher) }
  const ring = ringTarget.placement
  const safeMode = safeModeOf(nodes, input.replicaCount)
  const moves: PlannedMove[] = []
  const blocked: BlockedShard[] = []
  let pending = 0
  const plan = (move: PlannedMove): void => {
    w.apply(move)
    moves.push(move)
  }

  // 1. Repair.
  const damaged: number[] = []
  for (let s = 0; s < w.shardCount; s++) if (needsRepair(w, s)) damaged.push(s)
  const live = damaged.map((s) => w.liveCount(s))
  const order = damaged.map((_, i) => i).sort((a, b) => live[a]! - live[b]! || damaged[a]! - damaged[b]!)
  for (const i of order) {
    const s = damaged[i]!
    if (w.locked[s] === 1) continue
    if (!w.hasQuorum(s)) {
      blocked.push({ shardId: ShardId(s), reason: 'no-quorum' })
      continue
    }
    const from = w.replicas[s]!.find((id) => !w.isLive(id))
    const to = destination(w, s, from, ring)
    if (to === undefined) {
      blocked.push({ shardId: ShardId(s), reason: 'no-destination' })
      continue
    }
    plan(w.moveOf(s, from, to, 'repair'))
    if (needsRepair(w, s) || drainingReplica(w, s) !== undefined) pending++
  }

  if (safeMode === undefined) {
    // 2. Drain.
    for (let s = 0; s < w.shardCount; s++) {
      const from = drainingReplica(w, s)
      if (from === undefined) continue
      if (w.locked[s] === 1) continue // moving now, or repaired by this plan (counted in pending)
      const to = w.hasQuorum(s) ? destination(w, s, from, ring) : undefined
      if (to === undefined) {
        blocked.push({
          shardId: ShardId(s),
          reason: w.hasQuorum(s) ? 'no-destination' : 'no-quorum',
        })
        continue
      }
      plan(w.moveOf(s, from, to, 'drain'))
      if (drainingReplica(w, s) !== undefined) pending++
    }
    // 3. Balance: zones first, then loads.
    spreadZones(w, ring, plan)
    fill(w, ring, plan)
    shed(w, ring, plan)
  }
  blocked.sort((a, b) => a.shardId - b.shardId)
  return {
    moves,
    placement: w.replicas,
    ...(safeMode === undefined ? {} : { safeMode }),
    blocked,
    pending,
    ring: ringTarget,
  }
}

/** What the ring placement depends on, as a string. */
function ringKey(w: Work, vnodesPerNode: number): string {
  const nodes = w.active.map((n) => {
    const node = w.nodes[n]!
    return `${node.id}/${node.weight}/${node.zone}`
  })
  return JSON.stringify([w.shardCount, w.replicaCount, vnodesPerNode, nodes])
}

function needsRepair(w: Work, s: number): boolean {
  const list = w.replicas[s]!
  return list.length < w.replicaCount || list.some((id) => !w.isLive(id))
}

function drainingReplica(w: Work, s: number): NodeId | undefined {
  return w.replicas[s]!.find((id) => w.stateOf(id) === 'draining')
}

/** The ring placement of the active nodes, as sets of node ids by shard (empty with no active node). */
function ringPlacement(w: Work, vnodesPerNode: number, hasher: Hasher): readonly (readonly number[])[] {
  if (w.active.length === 0) return w.replicas.map(() => [])
  return placeShards(
    {
      nodes: w.active.map((n) => {
        const node = w.nodes[n]!
        return { id: node.id, weight: node.weight, ...(node.zone === '' ? {} : { zone: node.zone }) }
      }),
      shardCount: w.shardCount,
      replicaCount: w.replicaCount,
      vnodesPerNode,
    },
    hasher,
  )
}

/**
 * Where a repair or drain of shard s (replacing node id `from`, or adding) goes: among the active
 * nodes the rules allow, the least zone sharing (when zones are not a hard rule), then a node that
 * stays within its upper bound, then the ring's choice while below its share, then the lowest load
 * relative to the share, then the lowest node id. Undefined when no node is allowed.
 */
function destination(
  w: Work,
  s: number,
  from: NodeId | undefined,
  ring: readonly (readonly number[])[],
): number | undefined {
  if (w.locked[s] === 1 || !w.hasQuorum(s)) return undefined
  const r = w.receiving(s, from)
  const named = ring[s]!
  // A node the ring names, that takes the replica sharing its zone the least possible and stays
  // below its share, beats every node the ring does not name: look there first.
  const sharingMin = w.sharingMin(r)
  let quick: number | undefined
  let quickRatio = Infinity
  for (const id of named) {
    const n = w.indexOf(id)
    if (n === undefined || !w.allows(r, n) || w.sharing(r, n) > sharingMin) continue
    if (w.load[n]! >= w.goal[n]! || w.load[n]! + 1 > w.hi[n]!) continue
    const ratio = w.ratio(n, w.load[n]! + 1)
    if (quick === undefined || ratio < quickRatio || (ratio === quickRatio && n < quick)) {
      quick = n
      quickRatio = ratio
    }
  }
  if (quick !== undefined) return quick
  let best: number | undefined
  let best0 = 0
  let best1 = 0
  let best2 = 0
  let best3 = 0
  for (const n of w.active) {
    if (!w.allows(r, n)) continue
    const load = w.load[n]!
    const k0 = w.zonesEnough ? 0 : w.sharing(r, n)
    const k1 = load + 1 > w.hi[n]! ? 1 : 0
    const k2 = load < w.goal[n]! && named.includes(w.nodes[n]!.id) ? 0 : 1
    const k3 = w.ratio(n, load + 1)
    const better =
      best === undefined ||
      k0 < best0 ||
      (k0 === best0 && (k1 < best1 || (k1 === best1 && (k2 < best2 || (k2 === best2 && k3 < best3)))))
    if (!better) continue
    best = n
    best0 = k0
    best1 = k1
    best2 = k2
    best3 = k3
  }
  return best
}

/**
 * A shard node index u may give node index v under every rule: one the ring places on v, else one
 * the ring does not place on u, else any; the first such in u's (deterministic) shard order.
 */
function shardToGive(
  w: Work,
  u: number,
  v: number,
  ring: readonly (readonly number[])[],
): number | undefined {
  const uId = w.nodes[u]!.id
  const vId = w.nodes[v]!.id
  let best: number | undefined
  let bestRank = 3
  const takes = w.held[v]!
  for (const s of w.held[u]!) {
    if (w.locked[s] === 1 || takes.has(s)) continue
    const wanted = ring[s]!
    const rank = wanted.includes(vId) ? 0 : wanted.includes(uId) ? 2 : 1
    // Only a better kind of shard is worth the full check of the rules.
    if (rank >= bestRank || !w.canMove(s, v, uId)) continue
    if (rank === 0) return s
    best = s
    bestRank = rank
  }
  return best
}

/**
 * While zones are a hard rule, a shard whose replicas share a zone (placed before the zones were
 * enough, e.g. before a zone's first node joined) moves one of them, from the most loaded of its
 * active nodes in a shared zone, to a zone the shard does not use.
 */
function spreadZones(w: Work, ring: readonly (readonly number[])[], plan: (m: PlannedMove) => void): void {
  if (!w.zonesEnough) return
  for (let s = 0; s < w.shardCount; s++) {
    if (w.locked[s] === 1) continue
    let from: number | undefined
    for (const id of w.replicas[s]!) {
      const n = w.indexOf(id)
      if (n === undefined || w.nodes[n]!.state !== 'active' || w.zoneSharing(s, n, id) === 0) continue
      if (from === undefined || w.ratio(n) > w.ratio(from)) from = n
    }
    if (from === undefined || !w.hasQuorum(s)) continue
    const id = w.nodes[from]!.id
    const to = destination(w, s, id, ring)
    if (to !== undefined) plan(w.moveOf(s, id, to, 'balance'))
  }
}

/** Fills each active node below its lower bound up to its goal, lightest first, from the heaviest. */
function fill(w: Work, ring: readonly (readonly number[])[], plan: (m: PlannedMove) => void): void {
  const done = new Set<number>()
  for (;;) {
    let v: number | undefined
    for (const n of w.active)
      if (!done.has(n) && w.load[n]! < w.lo[n]! && (v === undefined || w.ratio(n) < w.ratio(v))) v = n
    if (v === undefined) return
    done.add(v)
    const tried = new Set<number>()
    while (w.load[v]! < w.goal[v]!) {
      // The heaviest giver, one in v's zone first (it can always keep the zone rule).
      let u: number | undefined
      let uPair = 0
      for (const n of w.active) {
        if (n === v || tried.has(n) || w.unlocked[n] === 0 || w.load[n]! - 1 < w.lo[n]!) continue
        if (w.ratio(n, w.load[n]! - 1) < w.ratio(v, w.load[v]! + 1)) continue
        const pair = w.zonePair(n, v)
        if (pair === 2) continue
        if (u === undefined || pair < uPair || (pair === uPair && w.ratio(n) > w.ratio(u))) {
          u = n
          uPair = pair
        }
      }
      if (u === undefined) break
      const s = shardToGive(w, u, v, ring)
      if (s === undefined) {
        tried.add(u)
        continue
      }
      plan(w.moveOf(s, w.nodes[u]!.id, v, 'balance'))
    }
  }
}

/** Empties each active node above its upper bound down to it, heaviest first, to the lightest. */
function shed(w: Work, ring: readonly (readonly number[])[], plan: (m: PlannedMove) => void): void {
  const done = new Set<number>()
  for (;;) {
    let u: number | undefined
    for (const n of w.active)
      if (!done.has(n) && w.load[n]! > w.hi[n]! && (u === undefined || w.ratio(n) > w.ratio(u))) u = n
    if (u === undefined) return
    done.add(u)
    const tried = new Set<number>()
    while (w.load[u]! > w.hi[u]! && w.unlocked[u]! > 0) {
      // The lightest taker, one in u's zone first (it can always keep the zone rule).
      let v: number | undefined
      let vPair = 0
      for (const n of w.active) {
        if (n === u || tried.has(n) || w.load[n]! + 1 > w.hi[n]!) continue
        if (w.ratio(n, w.load[n]! + 1) > w.ratio(u, w.load[u]! - 1)) continue
        const pair = w.zonePair(u, n)
        if (pair === 2) continue
        if (v === undefined || pair < vPair || (pair === vPair && w.ratio(n) < w.ratio(v))) {
          v = n
          vPair = pair
        }
      }
      if (v === undefined) break
      const s = shardToGive(w, u, v, ring)
      if (s === undefined) {
        tried.add(v)
        continue
      }
      plan(w.moveOf(s, w.nodes[u]!.id, v, 'balance'))
    }
  }
}
