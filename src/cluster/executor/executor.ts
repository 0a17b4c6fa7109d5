/**
 * The executor: rebalancing as a job, run by the meta leader (docs/rebalancing.md, "The
 * executor"). Every poll it reads the map, the moves in progress and the job from the meta shard,
 * plans from that real state (src/planner; the ring placement of the last plan is passed back),
 * and lets the pure core (decide.ts `step`) say which moves start now; each is recorded with the
 * mover (mover.ts), which runs it as a persisted step machine, in one meta batch with the job
 * counting it and only while the job is what this poll wrote (a pause or cancel in between stops
 * the starts). Then the job is written, only when it changed, by compare-and-set: an operator's
 * pause, resume or cancel landing in between wins, and the next poll works from it. A new meta
 * leader reads the job and carries on.
 *
 * Time and the network are injected (Clock, the meta replica, the mover); every call has a deadline.
 */
import { assert } from '../../common/assert.ts'
import type { Clock, TimerHandle } from '../../common/clock.ts'
import { ErrorCode, KvError, isKvError } from '../../common/errors.ts'
import type { NodeId, ShardId } from '../../common/ids.ts'
import type { Logger } from '../../common/logger.ts'
import type { Hasher } from '../../hashing/index.ts'
import {
  drainCheck,
  placementLoad,
  planMetaMove,
  planMoves,
  withMetaMove,
  type Plan,
  type PlanInput,
  type PlannedMove,
  type RingTarget,
} from '../../planner/index.ts'
import { isNodeDown } from '../../routing/index.ts'
import type { LocalMeta } from '../agent.ts'
import { metaShardId, type ClusterMap } from '../cluster-map.ts'
import { MetaStore } from '../meta-store.ts'
import type { StateChange } from '../liveness.ts'
import type { Mover, MoveView } from '../mover.ts'
import type { NodeState } from '../records.ts'
import { registryKey, step, steer, withStarted, type Throttles, type WaitReason } from './decide.ts'
import { encodeJob, type JobRecord } from './job.ts'
import { estimatePlan, type PlanEstimate } from './estimate.ts'
import { describeError, leaderMetaStore, wholeMs, withDeadline } from '../meta-leader.ts'

export interface ExecutorInit {
  readonly pollMs: number
  /** Budget of one poll (its reads, starts and the job's write). */
  readonly callMs: number
  readonly autoRebalance: boolean
  readonly throttles: Throttles
  readonly listedMax: number
  /** Snapshot bytes per second of one sending node (kvd --snapshot-rate); 0: no time estimates. */
  readonly snapshotRateBps?: number
}

export interface ExecutorComponents {
  readonly clock: Clock
  readonly logger: Logger
  readonly hasher: Hasher
  readonly localMeta: () => LocalMeta | undefined
  readonly mover: Mover
  /** A shard's size as its leader last reported it (undefined: unknown). */
  readonly shardBytes?: (shardId: ShardId) => number | undefined
}

/** What the executor knows now, for `kvctl rebalance status` and metrics (served by the meta leader). */
export interface RebalanceStatus {
  readonly job: JobRecord | undefined
  readonly plan: Plan
  /** The moves in progress as the mover sees them (step, bytes, reason). */
  readonly running: readonly MoveView[]
  readonly waiting: ReadonlyMap<ShardId, WaitReason>
  readonly autoRebalance: boolean
  /** Shards with fewer live replicas than the replication factor. */
  readonly underReplicated: number
  /** Bytes and time of the plan's moves (estimate.ts). */
  readonly estimate: PlanEstimate
  /** A shard's size as its leader last reported it (undefined: unknown). */
  readonly bytesOf: (shardId: ShardId) => number | undefined
  /** Snapshot bytes per second of one sending node (0: unknown). */
  readonly snapshotRateBps: number
}

/** The planner's input from a map and the moves in progress. */
export function planInputOf(map: ClusterMap, inProgress: PlanInput['inProgress']): PlanInput {
  return {
    nodes: [...map.nodes.values()],
    shards: map.shards,
    replicaCount: map.cluster.replicaCount,
    vnodesPerNode: map.cluster.vnodesPerNode,
    inProgress: inProgress.filter((m) => m.shardId < map.shards.length),
  }
}

/**
 * What the executor runs: the data shards' plan with the meta shard's move in it (planner/meta.ts:
 * a meta replica on a dead or draining node is replaced, so a drain empties any node).
 */
export function planWithMeta(
  map: ClusterMap,
  inProgress: PlanInput['inProgress'],
  hasher: Hasher,
  ring: RingTarget | undefined,
): Plan {
  const plan = planMoves(planInputOf(map, inProgress), hasher, ring)
  const meta = planMetaMove(
    {
      nodes: [...map.nodes.values()],
      meta: map.meta,
      replicaCount: map.cluster.replicaCount,
      moving: inProgress.some((m) => m.shardId === metaShardId),
    },
    placementLoad(plan),
  )
  return withMetaMove(plan, meta)
}

/** Shards of `map` with fewer live (not dead) replicas than the replication factor. */
export function underReplicated(map: ClusterMap): number {
  let n = 0
  for (const s of map.shards) {
    const live = s.replicas.filter((id) => {
      const node = map.node(id)
      return node !== undefined && node.state !== 'dead'
    }).length
    if (live < map.cluster.replicaCount) n++
  }
  return n
}

export class Executor {
  private readonly init: ExecutorInit
  private readonly c: ExecutorComponents
  private readonly log: Logger
  private timer: TimerHandle | undefined
  private stopped = true
  private running: Promise<void> | undefined
  private ring: RingTarget | undefined
  /** Snapshot bytes each running move's destination had received when last seen. */
  private readonly lastBytes = new Map<ShardId, number>()
  private last: RebalanceStatus | undefined
  private readonly stats = { polls: 0, pollFailures: 0, movesStarted: 0, startsRefused: 0 }

  constructor(init: ExecutorInit, components: ExecutorComponents) {
    this.init = init
    this.c = components
    this.log = components.logger.child({ component: 'executor' })
  }

  start(): void {
    this.stopped = false
    this.schedule(this.init.pollMs)
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    await this.running
  }

  counters(): Readonly<typeof this.stats> {
    return this.stats
  }

  /** The last poll's view while this node leads the meta shard (undefined otherwise). */
  lastStatus(): RebalanceStatus | undefined {
    return this.last
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    this.timer = this.c.clock.setTimer(delayMs, () => {
      this.running = this.runOnce().finally(() => {
        this.running = undefined
        this.schedule(this.init.pollMs)
      })
    })
  }

  /** One poll (the loop does this every pollMs; tests drive it). Never throws. */
  async runOnce(): Promise<void> {
    const local = this.c.localMeta()
    if (local?.isLeader !== true) {
      this.last = undefined
      return
    }
    try {
      await this.withDeadline((signal) => this.poll(local, signal))
      this.stats.polls++
    } catch (err) {
      this.stats.pollFailures++
      this.log.debug({ err: describeError(err) }, 'rebalancing poll failed')
    }
  }

  /** Pause, resume or cancel the open job (on the meta leader). NOT_FOUND when no job is open. */
  async steer(action: 'pause' | 'resume' | 'cancel', signal: AbortSignal): Promise<JobRecord> {
    const store = this.store(signal)
    const nowMs = wholeMs(this.c.clock.wallMs())
    const next = await store.updateJob((job) => {
      const steered = steer(job, action, nowMs)
      if (steered === undefined)
        throw new KvError(ErrorCode.NotFound, 'no rebalancing job is open', { details: { field: 'job' } })
      return steered
    })
    assert(next !== undefined, 'a steered job is written')
    this.log.info({ job: next.id, action }, 'rebalancing job steered')
    return next
  }

  /** kvctl node drain | undrain | remove (on the meta leader): judged, then recorded. */
  async nodeAction(req: NodeActionRequest, signal: AbortSignal): Promise<NodeActionResult> {
    const store = this.store(signal)
    const map = await store.read()
    if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
    const moves = await store.moves()
    const out = nodeAction(
      map,
      moves.map(({ move }) => move),
      req,
      this.c.hasher,
      this.ring,
    )
    if (out.change !== undefined) {
      const applied = await store.setNodeStates([out.change])
      if (applied.length === 0)
        throw new KvError(ErrorCode.VersionMismatch, `node ${req.nodeId} changed state meanwhile: try again`)
      this.log.info(
        { node: req.nodeId, from: out.change.from, to: out.change.to },
        'node state set by an operator',
      )
    }
    if (out.remove !== undefined) {
      await store.removeNode(req.nodeId, out.remove)
      this.log.warn({ node: req.nodeId }, 'node removed from the registry')
    }
    const { change: _change, remove: _remove, ...result } = out
    return result
  }

  /** A fresh view (reads the meta shard and plans), for status and the dry run. */
  async status(signal: AbortSignal): Promise<RebalanceStatus> {
    const store = this.store(signal)
    const map = await store.read()
    if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
    const moves = await store.moves()
    const job = (await store.job())?.job
    const plan = planWithMeta(
      map,
      moves.map(({ move }) => move),
      this.c.hasher,
      this.ring,
    )
    this.ring = plan.ring
    return {
      job,
      plan,
      running: moves.map(({ move }) => this.c.mover.viewOf(move)),
      waiting: this.last?.waiting ?? new Map(),
      autoRebalance: this.init.autoRebalance,
      underReplicated: underReplicated(map),
      ...this.sizing(map, plan),
    }
  }

  /** The plan's bytes and time (estimate.ts): sizes from the leaders' reports, senders from the map. */
  private sizing(
    map: ClusterMap,
    plan: Plan,
  ): Pick<RebalanceStatus, 'estimate' | 'bytesOf' | 'snapshotRateBps'> {
    const bytesOf = (id: ShardId): number | undefined => this.c.shardBytes?.(id)
    const rateBps = this.init.snapshotRateBps ?? 0
    const estimate = estimatePlan({
      moves: plan.moves,
      bytesOf,
      senderOf: (m) => {
        const hint = map.shard(m.shardId)?.leaderHint ?? 0
        return hint > 0 ? (hint as NodeId) : m.from
      },
      rateBps,
      movesMax: this.init.throttles.movesMax,
    })
    return { estimate, bytesOf, snapshotRateBps: rateBps }
  }

  private async poll(local: LocalMeta, signal: AbortSignal): Promise<void> {
    const store = new MetaStore(local.replica, signal)
    const map = await store.read()
    if (map === undefined) return
    const stored = await store.moves()
    const storedJob = await store.job()
    const inProgress = stored.map(({ move }) => move)
    for (const { move } of stored) {
      const view = this.c.mover.viewOf(move)
      this.lastBytes.set(move.shardId, Math.max(this.lastBytes.get(move.shardId) ?? 0, view.bytesSent))
    }
    const plan = planWithMeta(map, inProgress, this.c.hasher, this.ring)
    this.ring = plan.ring
    const nowMs = wholeMs(this.c.clock.wallMs())
    const down = new Set(
      [...map.nodes.values()].filter((n) => isNodeDown(n.state)).map((n) => n.id as number),
    )
    const out = step({
      job: storedJob?.job,
      plan,
      running: inProgress,
      replicasOf: (id) => map.shard(id)?.replicas,
      bytesOf: (id) => this.lastBytes.get(id) ?? 0,
      down,
      registry: registryKey(map.nodes.values()),
      autoRebalance: this.init.autoRebalance,
      throttles: this.init.throttles,
      nowMs,
      listedMax: this.init.listedMax,
    })
    let job = out.job
    let written = storedJob
    if (out.intent !== undefined && out.intent !== storedJob?.job) {
      // The moves to start are listed as planned before the mover records them (decide.ts step 3).
      try {
        await store.writeJob(out.intent, storedJob?.version ?? 0)
      } catch (err) {
        // An operator steered the job since it was read: the next poll starts from theirs.
        if (!isKvError(err) || err.code !== ErrorCode.VersionMismatch) throw err
        return
      }
      written = await store.job()
      if (written === undefined || !sameBytes(encodeJob(written.job), encodeJob(out.intent))) return
    }
    // Each start is recorded in one batch with the job counting it, and only while the job is still
    // what this poll wrote or read: an operator's pause or cancel that lands after the intent stops
    // the rest (nothing starts after it), and a move never exists without the job counting it.
    let current = written
    for (const m of out.start) {
      assert(current !== undefined, 'moves start only under a written job')
      const counted = withStarted(current.job, m)
      try {
        const version = await this.c.mover.startJobMove(
          { shardId: m.shardId, ...(m.from === undefined ? {} : { from: m.from }), to: m.to, epoch: m.epoch },
          { record: counted, version: current.version },
          signal,
        )
        current = { job: counted, version }
        this.stats.movesStarted++
        this.log.info(
          { shard: m.shardId, from: m.from, to: m.to, reason: m.reason, job: job?.id },
          'move started',
        )
      } catch (err) {
        if (isKvError(err) && err.code === ErrorCode.VersionMismatch) {
          // Steered since this poll read the job: the next poll starts from the operator's job.
          this.log.info({ job: job?.id, shard: m.shardId }, 'rebalancing job steered: no further move starts')
          return
        }
        // The map moved under the plan (an operator's move, a newer epoch): planned again next poll.
        this.stats.startsRefused++
        this.log.debug({ shard: m.shardId, err: describeError(err) }, 'move not started')
        if (job !== undefined)
          job = {
            ...job,
            started: job.started - 1,
            moves: job.moves.filter((x) => !(x.shardId === m.shardId && x.state === 'running')),
          }
      }
    }
    if (job !== undefined && (current === undefined || !sameBytes(encodeJob(job), encodeJob(current.job)))) {
      try {
        await store.writeJob(job, current?.version ?? 0)
      } catch (err) {
        // An operator steered the job since it was read: the next poll starts from theirs.
        if (!isKvError(err) || err.code !== ErrorCode.VersionMismatch) throw err
      }
      if (storedJob?.job.state !== job.state || storedJob.job.id !== job.id)
        this.log.info(
          { job: job.id, state: job.state, trigger: job.trigger, done: job.done, failed: job.failed },
          'rebalancing job',
        )
    }
    const keep = new Set<ShardId>([
      ...inProgress.map((m) => m.shardId),
      ...(job?.moves ?? []).map((m) => m.shardId),
    ])
    for (const id of this.lastBytes.keys()) if (!keep.has(id)) this.lastBytes.delete(id)
    this.last = {
      job,
      plan,
      running: stored.map(({ move }) => this.c.mover.viewOf(move)),
      waiting: out.waiting,
      autoRebalance: this.init.autoRebalance,
      underReplicated: underReplicated(map),
      ...this.sizing(map, plan),
    }
  }

  private store(signal: AbortSignal): MetaStore {
    return leaderMetaStore(this.c.localMeta(), signal)
  }

  private async withDeadline<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return await withDeadline(this.c.clock, this.init.callMs, run)
  }
}

/** kvctl node drain | undrain | remove, as the meta leader answers it. */
export interface NodeActionRequest {
  readonly nodeId: NodeId
  readonly action: 'drain' | 'undrain' | 'remove'
  readonly dryRun: boolean
  readonly force: boolean
}

export interface NodeActionResult {
  /** The node's state after the call ('removed' once removed). */
  readonly state: string
  readonly possible: boolean
  readonly replicas: number
  readonly blocking: readonly { readonly shardId: number; readonly reason: string }[]
  readonly blockingCount: number
  readonly safeMode: string
  readonly moves: readonly PlannedMove[]
}

/**
 * The answer to a node action against `map` (pure; `apply` then records the state change it
 * names). drain: the pre-flight (planner drainCheck; a replica of the meta shard blocks only when
 * no node could take it, planner planMetaMove) and the moves that would empty the node; undrain: a draining node
 * is active again; remove: only a node that holds no replica, draining, or dead with `force`.
 */
export function nodeAction(
  map: ClusterMap,
  inProgress: PlanInput['inProgress'],
  req: NodeActionRequest,
  hasher: Hasher,
  ring: RingTarget | undefined,
): NodeActionResult & { readonly change?: StateChange; readonly remove?: NodeState } {
  const node = map.node(req.nodeId)
  if (node === undefined)
    throw new KvError(ErrorCode.NotFound, `no node ${req.nodeId}`, { details: { field: 'nodeId' } })
  const held = map.shardsOf(req.nodeId)
  const base = {
    state: node.state as string,
    possible: true,
    replicas: held.length,
    blocking: [] as { shardId: number; reason: string }[],
    blockingCount: 0,
    safeMode: '',
    moves: [] as PlannedMove[],
  }
  const refused = (message: string): KvError =>
    new KvError(ErrorCode.MoveRefused, message, { details: { field: 'nodeId' } })
  switch (req.action) {
    case 'drain': {
      if (node.state !== 'active' && node.state !== 'draining')
        throw refused(`node ${node.id} is ${node.state}: only an active node can be drained`)
      const input = planInputOf(map, inProgress)
      const check = drainCheck(input, req.nodeId)
      const blocking = check.blocking.map((b) => ({
        shardId: b.shardId as number,
        reason: b.reason as string,
      }))
      const draining = {
        ...input,
        nodes: input.nodes.map((n) => (n.id === req.nodeId ? { ...n, state: 'draining' as const } : n)),
      }
      const plan = planMoves(draining, hasher, ring)
      // The meta shard moves too (planner/meta.ts); it blocks only when no node can take its replica.
      const metaPlan = planMetaMove(
        { nodes: draining.nodes, meta: map.meta, replicaCount: map.cluster.replicaCount, moving: false },
        placementLoad(plan),
      )
      const meta = metaPlan.blocked !== undefined && map.meta.replicas.includes(req.nodeId)
      if (meta) blocking.push({ shardId: map.meta.shardId, reason: `meta ${metaPlan.blocked!.reason}` })
      const possible = check.possible && !meta
      const moves = possible
        ? [...(metaPlan.move === undefined ? [] : [metaPlan.move]), ...plan.moves].filter(
            (m) => m.from === req.nodeId && m.reason === 'drain',
          )
        : []
      return {
        ...base,
        possible,
        blocking,
        blockingCount: check.blockingCount + (meta ? 1 : 0),
        safeMode: check.safeMode?.message ?? '',
        moves,
        ...(possible && !req.dryRun && node.state === 'active'
          ? {
              change: { nodeId: node.id, from: 'active' as const, to: 'draining' as const },
              state: 'draining',
            }
          : {}),
      }
    }
    case 'undrain':
      if (node.state !== 'draining') throw refused(`node ${node.id} is ${node.state}, not draining`)
      return {
        ...base,
        ...(req.dryRun
          ? {}
          : {
              change: { nodeId: node.id, from: 'draining' as const, to: 'active' as const },
              state: 'active',
            }),
      }
    case 'remove': {
      if (held.length > 0)
        throw refused(
          `node ${node.id} still holds replicas of ${held.length} shards${node.state === 'draining' ? ': wait for the drain to end' : ': drain it first'}`,
        )
      if (node.state === 'dead' && !req.force)
        throw refused(
          `node ${node.id} is dead: remove it with --force (its replicas were re-created elsewhere)`,
        )
      if (node.state !== 'draining' && node.state !== 'dead')
        throw refused(`node ${node.id} is ${node.state}: drain it first`)
      return { ...base, ...(req.dryRun ? {} : { remove: node.state, state: 'removed' }) }
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}
