/**
 * ClusterAgent: this node's part in the cluster's control plane (ARCHITECTURE.md section 4, "A
 * node joins" and "A node dies"). One per node; it owns the node's copy of the map.
 *
 *   - Every heartbeat interval it reports in to the meta shard (alive; the shards it leads), runs
 *     the meta leader's duties when this node leads the meta shard (write the first map once; mark
 *     unreachable, then dead, the nodes not heard from for nodeUnreachableAfterMs, nodeDeadAfterMs:
 *     liveness.ts, in memory; only the state changes are written), and every map refresh interval
 *     it reads the map: from its own meta replica when it has one, else from a meta replica's node.
 *   - It serves Join and Heartbeat (admin API): on the meta leader through MetaStore, elsewhere by
 *     passing the call once to the node it believes leads the meta shard. So it does for moves
 *     (MoveReplica, ListMoves): the meta leader's mover (mover.ts) records and runs them.
 *   - Every few heartbeats it checks this node's own replicas against the map: a replica the map
 *     says the shard no longer has (at a newer epoch) is removed once the shard's leader confirms
 *     its configuration lacks this node. That is how a replica removed while its node was cut off
 *     or down learns it, since it may never receive the entry that removed it.
 *
 * Time and the network come in as Clock and MetaRemote; every call has a deadline.
 */
import { deadlineSignal, type Clock, type TimerHandle } from '../common/clock.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import { limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import type { Hasher } from '../hashing/index.ts'
import { RoutePolicy } from '../routing/index.ts'
import type { Replica } from '../shard/index.ts'
import type { NodeId as NodeIdType, ShardId } from '../common/ids.ts'
import { ClusterMap, metaShardId } from './cluster-map.ts'
import { Executor, type RebalanceStatus, type Throttles } from './executor/index.ts'
import { Liveness } from './liveness.ts'
import { MetaStore, type LeaderReport } from './meta-store.ts'
import type { MoveRequest } from './move-rules.ts'
import { Mover, type MoveView, type ReplicaRemote } from './mover.ts'
import { peerAddressOf, type MoveRecord, type NodeRecord, type NodeState } from './records.ts'

export interface JoinArgs {
  readonly address: string
  /** Where other nodes reach the new node; default beside `address` (records.ts peerAddressOf). */
  readonly peerAddress?: string
  readonly zone: string
  readonly weight: number
}

/**
 * The meta shard's side of other nodes, over the network (server/ wires it to the admin API).
 * `address` is the node's peer address (records.ts peerAddressOf), or for a joining node's first
 * call the client address it was given (--join).
 */
export interface MetaRemote {
  join(address: string, args: JoinArgs, signal: AbortSignal): Promise<{ node: NodeRecord; map: ClusterMap }>
  heartbeat(
    address: string,
    args: { nodeId: NodeId; leaders: readonly LeaderReport[] },
    signal: AbortSignal,
  ): Promise<NodeState>
  /** The map as that node has it. */
  shardMap(address: string, signal: AbortSignal): Promise<ClusterMap>
  /** A move, recorded by the meta leader there. */
  move(address: string, req: MoveRequest, signal: AbortSignal): Promise<MoveView>
  /** The moves as the meta leader there knows them. */
  listMoves(address: string, signal: AbortSignal): Promise<{ running: MoveView[]; recent: MoveRecord[] }>
}

/** One replica of this node as the host holds it. */
export interface OwnReplica {
  readonly shardId: ShardId
  /** empty | installing | active | removing | tombstone */
  readonly state: string
  readonly epoch: number
}

/** This node's replica of the meta shard, when it holds one. */
export interface LocalMeta {
  readonly replica: Replica
  readonly isLeader: boolean
  readonly leaderId: NodeId | null
}

export interface ClusterAgentInit {
  readonly nodeId: NodeId
  readonly heartbeatMs: number
  readonly mapRefreshMs: number
  /** Silence after which the meta leader marks a node unreachable (routing passes it over). */
  readonly nodeUnreachableAfterMs: number
  /** Silence after which the meta leader marks a node dead (its replicas are re-created elsewhere). */
  readonly nodeDeadAfterMs: number
  /** Budget of one call to the meta shard. */
  readonly metaCallMs: number
  /** The meta leader's mover: poll interval, the budget of a step, stall limit and concurrency. */
  readonly movePollMs: number
  readonly moveStallMsMax: number
  readonly movesConcurrentMax: number
  /** The map to start from: computed at bootstrap, or received on join, or the last one stored. */
  readonly initialMap: ClusterMap
}

export interface ClusterAgentComponents {
  readonly clock: Clock
  readonly logger: Logger
  readonly localMeta: () => LocalMeta | undefined
  /** The shards this node leads now, with their terms. */
  readonly leaderReports: () => LeaderReport[]
  /**
   * This node's replicas' sizes as its storage estimates them (every few heartbeats; the ones it
   * leads go with the heartbeat, for the meta leader's estimates of planned moves). Absent: none.
   */
  readonly shardSizes?: () => Promise<ReadonlyMap<ShardId, number>>
  readonly remote: MetaRemote
  /** The replica service of the nodes (the mover, replica collection). */
  readonly replicas: ReplicaRemote
  /** This node's replicas, and removing one whose removal its shard's leader confirmed. */
  readonly ownReplicas: () => readonly OwnReplica[]
  readonly dropReplica: (shardId: ShardId, epoch: number, members: readonly NodeIdType[]) => Promise<void>
  /** Called with every new map (after a refresh). */
  readonly onMap?: (map: ClusterMap) => void
  /** Rebalancing as a job on the meta leader (cluster/executor); absent: moves only by hand. */
  readonly rebalance?: {
    readonly hasher: Hasher
    readonly autoRebalance: boolean
    readonly throttles: Throttles
    readonly listedMax: number
    readonly pollMs: number
    /** Snapshot bytes per second of one sending node (kvd --snapshot-rate), for time estimates. */
    readonly snapshotRateBps?: number
  }
}

/** Heartbeat rounds between two checks of this node's replicas against the map. */
const collectEveryRounds = 5
/** Heartbeats missed in a row before the agent says so at warn level. */
const heartbeatFailuresToWarn = 3
/** Heartbeat intervals a node whose meta call failed is passed over for (routing/RoutePolicy). */
const avoidHeartbeats = 4

export class ClusterAgent {
  private readonly init: ClusterAgentInit
  private readonly c: ClusterAgentComponents
  private readonly log: Logger
  private current: ClusterMap
  private timer: TimerHandle | undefined
  private stopped = false
  private running: Promise<void> | undefined
  private lastRefreshMs = -Infinity
  /** Who the meta leader heard from, and when (only while this node leads the meta shard). */
  private readonly liveness: Liveness
  private bootstrapped = false
  /**
   * How the meta leader is found (routing/RoutePolicy, as the router and the SDK find a shard's
   * leader): this node's meta replica's Raft view, a leader named by a NOT_LEADER answer, the map's
   * hint, else the meta replicas in preference order; a node whose call failed is passed over for
   * a few heartbeats unless a NOT_LEADER answer names it again.
   */
  private readonly seeker: RoutePolicy
  private heartbeatFailuresInARow = 0
  /** Clock ms of the last heartbeat the meta shard took; undefined before the first. */
  private metaHeardMs: number | undefined
  private rounds = 0
  /** Since when each of this node's empty replicas has been seen empty (clock ms). */
  private readonly emptySince = new Map<ShardId, number>()
  /** This node's replicas' sizes, read every collectEveryRounds heartbeats. */
  private ownSizes: ReadonlyMap<ShardId, number> = new Map()
  /** Shard sizes as their leaders reported them (on the meta leader; only shards of the map). */
  private readonly reportedBytes = new Map<ShardId, number>()
  private readonly mover: Mover
  private readonly executor: Executor | undefined
  private readonly stats = {
    heartbeats: 0,
    heartbeatFailures: 0,
    refreshes: 0,
    refreshFailures: 0,
    replicasCollected: 0,
  }

  constructor(init: ClusterAgentInit, components: ClusterAgentComponents) {
    this.init = init
    this.c = components
    this.log = components.logger.child({ component: 'cluster' })
    this.current = init.initialMap
    this.liveness = new Liveness({
      unreachableAfterMs: init.nodeUnreachableAfterMs,
      deadAfterMs: init.nodeDeadAfterMs,
    })
    this.mover = new Mover(
      {
        nodeId: init.nodeId,
        pollMs: init.movePollMs,
        callMs: init.metaCallMs,
        stallMsMax: init.moveStallMsMax,
        concurrentMax: init.movesConcurrentMax,
      },
      {
        clock: components.clock,
        logger: components.logger,
        remote: components.replicas,
        localMeta: components.localMeta,
        map: () => this.current,
      },
    )
    const rebalance = components.rebalance
    this.executor =
      rebalance === undefined
        ? undefined
        : new Executor(
            {
              pollMs: rebalance.pollMs,
              callMs: init.metaCallMs,
              autoRebalance: rebalance.autoRebalance,
              throttles: rebalance.throttles,
              listedMax: rebalance.listedMax,
              ...(rebalance.snapshotRateBps === undefined
                ? {}
                : { snapshotRateBps: rebalance.snapshotRateBps }),
            },
            {
              clock: components.clock,
              logger: components.logger,
              hasher: rebalance.hasher,
              localMeta: components.localMeta,
              mover: this.mover,
              shardBytes: (id) => this.reportedBytes.get(id),
            },
          )
    this.seeker = new RoutePolicy({
      self: init.nodeId,
      avoidMs: init.heartbeatMs * avoidHeartbeats,
      zone: '',
    })
  }

  get map(): ClusterMap {
    return this.current
  }

  counters(): Readonly<typeof this.stats> {
    return this.stats
  }

  /** Clock ms of the last heartbeat the meta shard took (undefined: none since start); for /readyz. */
  get lastMetaContactMs(): number | undefined {
    return this.metaHeardMs
  }

  /**
   * Replaces the map (a fresh read of the meta shard, or a peer's copy of one). There is no
   * map-wide version to compare: a lagging peer's copy may briefly stand in for a newer one, and
   * epochs (WRONG_SHARD) plus the next refresh repair that.
   */
  offer(map: ClusterMap): void {
    if (map.cluster.clusterId !== this.current.cluster.clusterId) return
    this.current = map
    this.c.onMap?.(map)
  }

  start(): void {
    this.schedule(0)
    this.mover.start()
    this.executor?.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    await this.executor?.stop()
    await this.mover.stop()
    await this.running
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    this.timer = this.c.clock.setTimer(delayMs, () => {
      this.running = this.round().finally(() => {
        this.running = undefined
        this.schedule(this.init.heartbeatMs)
      })
    })
  }

  /** One round: meta leader duties, the heartbeat, and a map refresh when due. Never throws. */
  private async round(): Promise<void> {
    const local = this.c.localMeta()
    if (local?.isLeader === true) {
      // A new meta leader counts every node as heard now: its predecessor's clocks are lost, and
      // heartbeats may have stalled while the meta shard had no leader (no storm after a failover).
      if (!this.liveness.tracking) this.liveness.reset(this.c.clock.nowMs(), this.c.clock.wallMs())
      this.liveness.heard(this.init.nodeId, this.c.clock.nowMs(), this.c.clock.wallMs())
      await this.leaderDuties(local).catch((err: unknown) =>
        this.log.warn({ err: message(err) }, 'meta duties failed'),
      )
    } else {
      this.liveness.forget()
      this.reportedBytes.clear()
    }
    if (this.rounds % collectEveryRounds === 0 && this.c.shardSizes !== undefined)
      this.ownSizes = await this.c.shardSizes().catch((err: unknown) => {
        this.log.debug({ err: message(err) }, 'reading replica sizes failed')
        return this.ownSizes
      })
    try {
      await this.heartbeat()
      this.metaHeardMs = this.c.clock.nowMs()
      this.stats.heartbeats++
      this.heartbeatFailuresInARow = 0
    } catch (err) {
      this.stats.heartbeatFailures++
      this.heartbeatFailuresInARow++
      // One miss is normal (a meta election); a run of them is worth an operator's eye, once per run.
      if (this.heartbeatFailuresInARow === heartbeatFailuresToWarn)
        this.log.warn(
          { err: message(err), misses: this.heartbeatFailuresInARow },
          'heartbeats to the meta shard failing',
        )
      else this.log.debug({ err: message(err) }, 'heartbeat failed')
    }
    if (++this.rounds % collectEveryRounds === 0)
      await this.collectReplicas().catch((err: unknown) =>
        this.log.debug({ err: message(err) }, 'checking replicas against the map failed'),
      )
    if (this.c.clock.nowMs() - this.lastRefreshMs >= this.init.mapRefreshMs) {
      this.lastRefreshMs = this.c.clock.nowMs()
      try {
        await this.refresh()
        this.stats.refreshes++
      } catch (err) {
        this.stats.refreshFailures++
        this.log.debug({ err: message(err) }, 'map refresh failed')
      }
    }
  }

  private async leaderDuties(local: LocalMeta): Promise<void> {
    await this.withDeadline(async (signal) => {
      const store = new MetaStore(local.replica, signal)
      if (!this.bootstrapped) {
        if (await store.bootstrap(this.current))
          this.log.info({ shards: this.current.shards.length }, 'cluster map written')
        this.bootstrapped = true
      }
      const changes = this.liveness.judge(this.current.nodes.values(), this.c.clock.nowMs())
      if (changes.length === 0) return
      const applied = await store.setNodeStates(changes)
      for (const c of applied)
        this.log.warn(
          {
            node: c.nodeId,
            from: c.from,
            to: c.to,
            silentMs: Math.round(this.liveness.silentMs(c.nodeId, this.c.clock.nowMs())),
          },
          c.to === 'dead' ? 'node marked dead: no heartbeat' : 'node marked unreachable: no heartbeat',
        )
      // Judged again on the map as written, at the next refresh.
      if (applied.length > 0) this.lastRefreshMs = -Infinity
    })
  }

  private async heartbeat(): Promise<void> {
    const leaders = this.c.leaderReports().map((l) => {
      const bytes = this.ownSizes.get(l.shardId)
      return bytes === undefined || bytes <= 0 ? l : { ...l, approximateBytes: bytes }
    })
    const args = { nodeId: this.init.nodeId, leaders }
    await this.serveHeartbeat(args, false)
  }

  /** Reads the map: from the local meta replica (eventual: a refresh interval of lag is fine), else from a meta replica's node. */
  private async refresh(): Promise<void> {
    const local = this.c.localMeta()
    const map = await this.withDeadline(async (signal) => {
      if (local !== undefined) {
        const store = new MetaStore(local.replica, signal)
        if (!local.isLeader) return await this.remoteRead(signal, local)
        const read = await store.read()
        return read === undefined ? undefined : this.withLastHeard(read)
      }
      return await this.remoteRead(signal, undefined)
    })
    if (map !== undefined) this.offer(map)
  }

  /**
   * The map with each node's lastHeartbeatMs as this meta leader last heard it (the records hold
   * it only as of their last change of state); other nodes read the map from here.
   */
  private withLastHeard(map: ClusterMap): ClusterMap {
    if (!this.liveness.tracking) return map
    const nodes = [...map.nodes.values()].map((n) => ({
      ...n,
      lastHeartbeatMs: Math.max(n.lastHeartbeatMs, Math.floor(this.liveness.lastHeardWallMs(n.id) ?? 0)),
    }))
    return new ClusterMap(map.cluster, nodes, map.shards, map.meta)
  }

  private async remoteRead(
    signal: AbortSignal,
    local: LocalMeta | undefined,
  ): Promise<ClusterMap | undefined> {
    const target = this.metaTarget(local)
    if (target === undefined || target.id === this.init.nodeId) return undefined
    return await this.tracked(target, () => this.c.remote.shardMap(peerAddressOf(target), signal))
  }

  /** Runs a call to `target`; what its answer or failure teaches goes to the seeker. */
  private async tracked<T>(target: NodeRecord, call: () => Promise<T>): Promise<T> {
    try {
      const result = await call()
      this.seeker.noteServed(target.id)
      return result
    } catch (err) {
      this.seeker.learn(
        this.current,
        {
          shardId: metaShardId,
          from: target.id,
          code: isKvError(err) ? err.code : ErrorCode.Unavailable,
          leaderHint: isKvError(err) ? err.details?.leaderHint : undefined,
        },
        this.c.clock.nowMs(),
      )
      throw err
    }
  }

  /**
   * Removes this node's active replicas that the map says their shard no longer has (its record is
   * at a newer epoch and lists other replicas), once the shard's leader confirms its configuration
   * lacks this node: the removal is committed, so dropping the data is safe. So too an empty
   * replica no move took within a grace period.
   */
  private async collectReplicas(): Promise<void> {
    const now = this.c.clock.nowMs()
    const owned = this.c.ownReplicas()
    for (const id of this.emptySince.keys())
      if (!owned.some((r) => r.shardId === id && r.state === 'empty')) this.emptySince.delete(id)
    for (const own of owned) {
      const shard = this.current.shard(own.shardId)
      if (shard === undefined || shard.replicas.includes(this.init.nodeId)) continue
      if (own.state === 'empty') {
        // An empty replica no shard took (its move failed and the rollback could not reach this
        // node): dropped after a grace period, once the leader confirms it is no member.
        const since = this.emptySince.get(own.shardId) ?? now
        this.emptySince.set(own.shardId, since)
        if (now - since < limits.emptyReplicaGraceMs) continue
      } else if (own.state !== 'active' || shard.epoch <= own.epoch) continue
      const leader = this.current.node(shard.leaderHint as NodeIdType)
      const ask = leader !== undefined && leader.id !== this.init.nodeId ? [leader] : []
      for (const id of shard.replicas) {
        const node = this.current.node(id)
        if (node !== undefined && !ask.includes(node)) ask.push(node)
      }
      for (const node of ask) {
        const state = await this.withDeadline((signal) =>
          this.c.replicas.state(peerAddressOf(node), own.shardId, signal),
        ).catch(() => undefined)
        if (state === undefined || state.role !== 'leader') continue
        const members = [...state.config.voters, ...state.config.learners, ...state.config.votersOutgoing]
        if (members.includes(this.init.nodeId)) break
        if (own.state === 'active' && state.config.epoch <= own.epoch) break
        this.log.info(
          { shard: own.shardId, epoch: state.config.epoch },
          'the shard no longer has this replica: dropping it',
        )
        await this.c.dropReplica(own.shardId, state.config.epoch, members)
        this.stats.replicasCollected++
        break
      }
    }
  }

  // ---- served for other nodes (admin API) ----

  /** Records a move (on the meta leader; elsewhere passed on once). */
  async serveMove(req: MoveRequest, forwarded: boolean): Promise<MoveView> {
    const local = this.c.localMeta()
    if (local?.isLeader === true)
      return await this.withDeadline(async (signal) =>
        this.mover.viewOf(await this.mover.startMove(req, signal)),
      )
    const target = this.forwardTarget(local, forwarded)
    return await this.withDeadline((signal) =>
      this.tracked(target, () => this.c.remote.move(peerAddressOf(target), req, signal)),
    )
  }

  /** The moves in progress and the latest finished ones (from the meta leader). */
  async serveListMoves(forwarded: boolean): Promise<{ running: MoveView[]; recent: MoveRecord[] }> {
    const local = this.c.localMeta()
    if (local?.isLeader === true) return await this.withDeadline((signal) => this.mover.list(signal))
    const target = this.forwardTarget(local, forwarded)
    return await this.withDeadline((signal) =>
      this.tracked(target, () => this.c.remote.listMoves(peerAddressOf(target), signal)),
    )
  }

  /** Moves a shard's leadership (any node finds the leader and asks it). */
  async serveTransferLeader(shardId: ShardId, to: NodeIdType): Promise<{ leaderId: number; term: number }> {
    const config = await this.withDeadline((signal) => this.mover.transferLeader(shardId, to, signal))
    return { leaderId: config.leaderId, term: config.term }
  }

  /**
   * A rebalancing call (kvctl rebalance, kvctl node): served by the executor when this node leads
   * the meta shard, else passed on once to the meta leader (`remote`, with its peer address).
   */
  async serveRebalancing<T>(
    forwarded: boolean,
    onLeader: (executor: Executor, signal: AbortSignal) => Promise<T>,
    remote: (address: string, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const local = this.c.localMeta()
    if (local?.isLeader === true) {
      const executor = this.executor
      if (executor === undefined)
        throw new KvError(ErrorCode.Unavailable, 'this node runs no rebalancing executor')
      return await this.withDeadline((signal) => onLeader(executor, signal))
    }
    const target = this.forwardTarget(local, forwarded)
    return await this.withDeadline((signal) =>
      this.tracked(target, () => remote(peerAddressOf(target), signal)),
    )
  }

  /** The executor's last view while this node leads the meta shard (status, metrics). */
  rebalanceStatus(): RebalanceStatus | undefined {
    return this.executor?.lastStatus()
  }

  /** Registers a node (on the meta leader; elsewhere passed on once). */
  async serveJoin(args: JoinArgs, forwarded: boolean): Promise<{ node: NodeRecord; map: ClusterMap }> {
    const local = this.c.localMeta()
    if (local?.isLeader === true)
      return await this.withDeadline(async (signal) => {
        const store = new MetaStore(local.replica, signal)
        const node = await store.register(args.address, args.zone, args.weight, args.peerAddress)
        const map = await store.read()
        if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
        this.offer(map)
        this.log.info({ joined: node.id, address: node.address, zone: node.zone }, 'node registered')
        return { node, map }
      })
    const target = this.forwardTarget(local, forwarded)
    return await this.withDeadline((signal) =>
      this.tracked(target, () => this.c.remote.join(peerAddressOf(target), args, signal)),
    )
  }

  async serveHeartbeat(
    args: { nodeId: NodeId; leaders: readonly LeaderReport[] },
    forwarded: boolean,
  ): Promise<NodeState> {
    const local = this.c.localMeta()
    if (local?.isLeader === true) {
      const state = await this.withDeadline((signal) =>
        new MetaStore(local.replica, signal).heartbeat(args.nodeId, args.leaders, this.c.clock.wallMs()),
      )
      this.liveness.heard(args.nodeId, this.c.clock.nowMs(), this.c.clock.wallMs())
      for (const l of args.leaders)
        if (l.approximateBytes !== undefined && this.current.shard(l.shardId) !== undefined)
          this.reportedBytes.set(l.shardId, l.approximateBytes)
      return state
    }
    const target = this.forwardTarget(local, forwarded)
    return await this.withDeadline((signal) =>
      this.tracked(target, () => this.c.remote.heartbeat(peerAddressOf(target), args, signal)),
    )
  }

  /** Where a meta call goes from here: the meta leader as far as this node knows. */
  private forwardTarget(local: LocalMeta | undefined, forwarded: boolean): NodeRecord {
    const target = this.metaTarget(local)
    if (forwarded || target === undefined || target.id === this.init.nodeId)
      throw new KvError(ErrorCode.NotLeader, 'this node does not lead the meta shard', {
        details: {
          ...(target === undefined ? {} : { leaderHint: target.id }),
          shardId: this.current.meta.shardId,
        },
      })
    return target
  }

  /** Where a call to the meta shard goes from here (RoutePolicy.leaderTarget; undefined: nowhere). */
  private metaTarget(local: LocalMeta | undefined): NodeRecord | undefined {
    const id = this.seeker.leaderTarget(this.current, metaShardId, this.c.clock.nowMs(), {
      local,
      lastResort: true,
    })
    return id === undefined ? undefined : this.current.node(id as NodeId)
  }

  private async withDeadline<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const { signal, dispose } = deadlineSignal(this.c.clock, this.init.metaCallMs)
    try {
      return await run(signal)
    } finally {
      dispose()
    }
  }
}

function message(err: unknown): string {
  return isKvError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
}
