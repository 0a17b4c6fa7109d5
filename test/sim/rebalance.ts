/**
 * Rebalancing at scale without processes: a cluster as a new one starts (the ring placement of
 * hashing/placement.ts), the planner (src/planner) run against it, and a simulated executor that
 * runs the planned moves under the throttles the real one will have. Simulated time only. Shared
 * by the planner's unit tests (test/unit/planner) and `npm run bench -- rebalance-sim`.
 *
 * The executor model: a plan's moves are queued in plan order and start as the throttles allow
 * (moves at once cluster-wide, of which `repairSlots` only repairs may take; moves into and out of
 * each node). A move streams `shardBytes` from its sender (the shard's first live replica, the
 * preferred leader) to its destination; a node sends and receives at most `snapshotBytesPerSecond`
 * in all, shared equally by its running moves. When the queue is empty and nothing runs, the
 * planner is asked again; the run ends when it plans nothing.
 */
import { assert } from '../../src/common/assert.ts'
import { NodeId, ShardId } from '../../src/common/ids.ts'
import { placeShards, type Hasher } from '../../src/hashing/index.ts'
import {
  applyMoves,
  type MoveReason,
  type Plan,
  type PlanInput,
  type PlannedMove,
  type PlannerNode,
  type PlannerShard,
} from '../../src/planner/index.ts'

export interface Cluster {
  readonly nodes: readonly PlannerNode[]
  /** Indexed by shard id. */
  readonly shards: readonly PlannerShard[]
  readonly replicaCount: number
  readonly vnodesPerNode: number
}

export type Planner = (input: PlanInput) => Plan

export const activeNode = (id: number, zone = '', weight = 1): PlannerNode => ({
  id: NodeId(id),
  zone,
  weight,
  state: 'active',
})

/** A new cluster of `nodeCount` active nodes (ids 1..n; zone i % zones when zones > 0), ring-placed. */
export function newCluster(
  hasher: Hasher,
  nodeCount: number,
  shardCount: number,
  opts: { readonly replicaCount?: number; readonly vnodesPerNode?: number; readonly zones?: number } = {},
): Cluster {
  const replicaCount = opts.replicaCount ?? 3
  const vnodesPerNode = opts.vnodesPerNode ?? 128
  const zones = opts.zones ?? 0
  const nodes = Array.from({ length: nodeCount }, (_, i) =>
    activeNode(i + 1, zones > 0 ? `z${(i % zones) + 1}` : ''),
  )
  const placement = placeShards(
    {
      nodes: nodes.map((n) => ({ id: n.id, ...(n.zone === '' ? {} : { zone: n.zone }) })),
      shardCount,
      replicaCount,
      vnodesPerNode,
    },
    hasher,
  )
  const shards = placement.map((replicas, i) => ({
    shardId: ShardId(i),
    replicas: replicas.map((id) => NodeId(id)),
    epoch: 1,
  }))
  return { nodes, shards, replicaCount, vnodesPerNode }
}

export function inputOf(c: Cluster, inProgress: PlanInput['inProgress'] = []): PlanInput {
  return {
    nodes: c.nodes,
    shards: c.shards,
    replicaCount: c.replicaCount,
    vnodesPerNode: c.vnodesPerNode,
    inProgress,
  }
}

/** The cluster with node `id` in `state` (or added, with `weight` and `zone`, when it is not there). */
export function withNode(
  c: Cluster,
  id: number,
  state: PlannerNode['state'] = 'active',
  weight = 1,
  zone = '',
): Cluster {
  const known = c.nodes.some((n) => n.id === id)
  const nodes = known
    ? c.nodes.map((n) => (n.id === id ? { ...n, state } : n))
    : [...c.nodes, { ...activeNode(id, zone, weight), state }]
  return { ...c, nodes }
}

/** Plans and applies until a plan holds no move; throws past `roundsMax` rounds. */
export function converge(
  c: Cluster,
  planner: Planner,
  roundsMax = 10,
): { readonly cluster: Cluster; readonly rounds: number; readonly moves: number } {
  let cluster = c
  let moves = 0
  for (let rounds = 0; rounds <= roundsMax; rounds++) {
    const plan = planner(inputOf(cluster))
    if (plan.moves.length === 0) return { cluster, rounds, moves }
    moves += plan.moves.length
    cluster = { ...cluster, shards: applyMoves(cluster.shards, plan.moves) }
  }
  throw new Error(`no convergence in ${roundsMax} rounds`)
}

/** Replicas held by each node id. */
export function loads(c: Cluster): Map<number, number> {
  const out = new Map<number, number>(c.nodes.map((n) => [n.id, 0]))
  for (const s of c.shards) for (const id of s.replicas) out.set(id, (out.get(id) ?? 0) + 1)
  return out
}

/**
 * The busiest and the emptiest active node's load over its weighted mean share (replicas held by
 * active nodes, split by weight). 1 and 1 is perfect balance.
 */
export function spread(c: Cluster): { readonly maxOverMean: number; readonly minOverMean: number } {
  const active = c.nodes.filter((n) => n.state === 'active')
  if (active.length === 0) return { maxOverMean: 0, minOverMean: 0 }
  const held = loads(c)
  const total = active.reduce((a, n) => a + held.get(n.id)!, 0)
  const weight = active.reduce((a, n) => a + n.weight, 0)
  let max = 0
  let min = Infinity
  for (const n of active) {
    const r = held.get(n.id)! / ((total * n.weight) / weight)
    max = Math.max(max, r)
    min = Math.min(min, r)
  }
  return { maxOverMean: max, minOverMean: min }
}

export interface Throttles {
  /** Moves running at once in the cluster. */
  readonly movesMax: number
  /** Of those, slots only repairs may take (repair is never queued behind balance). */
  readonly repairSlots: number
  /** Moves running at once into one node, and out of one node. */
  readonly movesPerNodeIn: number
  readonly movesPerNodeOut: number
  /** Snapshot bytes per second one node sends, and receives, in all. */
  readonly snapshotBytesPerSecond: number
  /** Bytes of one shard's snapshot. */
  readonly shardBytes: number
}

export const defaultThrottles: Throttles = {
  movesMax: 64,
  repairSlots: 8,
  movesPerNodeIn: 2,
  movesPerNodeOut: 2,
  snapshotBytesPerSecond: 32 * 1024 * 1024,
  shardBytes: 64 * 1024 * 1024,
}

export interface ExecutorRun {
  readonly cluster: Cluster
  /** Plans asked for (the last one planned nothing). */
  readonly plans: number
  readonly moves: number
  readonly byReason: Readonly<Record<MoveReason, number>>
  /** Simulated seconds until the last move ended. */
  readonly seconds: number
  /** The most moves that ran at once. */
  readonly concurrencyMax: number
  /** Shards the last plan could not move (e.g. no live quorum left), and whether it was in safe mode. */
  readonly blocked: number
  readonly safeMode: boolean
}

interface Running {
  readonly move: PlannedMove
  readonly sender: number
  bytesLeft: number
}

/** Runs plans to the end under the throttles (see the file comment). */
export function simulateExecutor(c: Cluster, planner: Planner, t: Throttles, plansMax = 20): ExecutorRun {
  assert(t.repairSlots < t.movesMax && t.movesPerNodeIn > 0 && t.movesPerNodeOut > 0, 'bad throttles')
  let cluster = c
  let seconds = 0
  let plans = 0
  let moves = 0
  let concurrencyMax = 0
  const byReason: Record<MoveReason, number> = { repair: 0, drain: 0, balance: 0 }
  let last: Plan | undefined
  for (;;) {
    const plan = planner(inputOf(cluster))
    last = plan
    plans++
    if (plan.moves.length === 0) break
    assert(plans < plansMax, `no convergence in ${plansMax} plans`)
    const queue = [...plan.moves]
    const states = new Map(cluster.nodes.map((n) => [n.id as number, n.state]))
    const live = (id: number): boolean => states.has(id) && states.get(id) !== 'dead'
    const started = new Uint8Array(queue.length)
    let next = 0 // queue[0..next) have all started
    const running: Running[] = []
    const finished: PlannedMove[] = []
    const inCount = new Map<number, number>()
    const outCount = new Map<number, number>()
    const bump = (m: Map<number, number>, id: number, by: number): void =>
      void m.set(id, (m.get(id) ?? 0) + by)
    while (next < queue.length || running.length > 0) {
      for (let i = next; i < queue.length && running.length < t.movesMax; i++) {
        if (started[i] === 1) continue
        const move = queue[i]!
        const sender = cluster.shards[move.shardId]!.replicas.find(live)
        assert(sender !== undefined, 'a move planned for a shard with no live replica')
        const slots = move.reason === 'repair' ? t.movesMax : t.movesMax - t.repairSlots
        if (running.length >= slots) continue
        if ((inCount.get(move.to) ?? 0) >= t.movesPerNodeIn) continue
        if ((outCount.get(sender) ?? 0) >= t.movesPerNodeOut) continue
        started[i] = 1
        bump(inCount, move.to, 1)
        bump(outCount, sender, 1)
        running.push({ move, sender, bytesLeft: t.shardBytes })
      }
      while (next < queue.length && started[next] === 1) next++
      assert(running.length > 0, 'a planned move can never start')
      concurrencyMax = Math.max(concurrencyMax, running.length)
      // Each move's rate: its share of its sender's and its receiver's throttle, whichever is less.
      const rate = (r: Running): number =>
        Math.min(
          t.snapshotBytesPerSecond / outCount.get(r.sender)!,
          t.snapshotBytesPerSecond / inCount.get(r.move.to)!,
        )
      const step = Math.min(...running.map((r) => r.bytesLeft / rate(r)))
      seconds += step
      const rates = running.map(rate)
      const done: PlannedMove[] = []
      for (let i = running.length - 1; i >= 0; i--) {
        const r = running[i]!
        r.bytesLeft -= rates[i]! * step
        if (r.bytesLeft > 1e-6 * t.shardBytes) continue
        running.splice(i, 1)
        bump(inCount, r.move.to, -1)
        bump(outCount, r.sender, -1)
        done.push(r.move)
      }
      finished.push(...done)
      moves += done.length
      for (const m of done) byReason[m.reason]++
    }
    // A plan moves each shard at most once, so the map can follow when the plan's moves are done.
    cluster = { ...cluster, shards: applyMoves(cluster.shards, finished) }
  }
  return {
    cluster,
    plans,
    moves,
    byReason,
    seconds,
    concurrencyMax,
    blocked: last.blocked.length,
    safeMode: last.safeMode !== undefined,
  }
}
