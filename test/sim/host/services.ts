/**
 * What runs on each simulated node besides its NodeHost (sharded placement): the real Router and
 * the real ClusterAgent, wired as kvd wires them (src/server/kvd.ts), and a simulated KvService
 * call path in place of gRPC:
 *
 *   - SimRpc carries a call from a client or a node to a node: a one-way delay each way (the run's
 *     network timing), refused at once when nobody listens there (a crashed node), reset when the
 *     process dies before it answers, and lost across a cut link (the caller waits out its
 *     deadline, as a gRPC call over a partition does). Errors cross the "wire" as a gRPC status
 *     would carry them: a KvError's code and details, the WRONG_SHARD descriptor through the
 *     protobuf encoding and routing/wire.ts, anything else as INTERNAL (a broken invariant fails
 *     the run).
 *   - SimKvService.serve is what grpc-kv.ts does for a Get, Put or Delete: the key's shard by the
 *     router's map, the caller's route hint checked (WRONG_SHARD), then Router.serve: this node's
 *     replica, or forwarded once to the node the router names (the receiver serves or refuses,
 *     never forwards again). Each answer counts the forwards it took.
 *   - SimMetaRemote is the agent's MetaRemote (router/meta-remote.ts): Join, Heartbeat, ShardMap,
 *     MoveReplica and ListMoves to another node's agent, the map through mapToProto / mapFromProto
 *     (the one wire decoder).
 *   - SimReplicaRemote is the meta leader's mover's ReplicaRemote (router/replica-remote.ts): the
 *     calls server/grpc-replica.ts answers, on the target node's host, their answers through the
 *     move protocol's mapping (router/move-proto.ts).
 */
import {
  ClusterAgent,
  metaShardId,
  type ClusterMap,
  type JoinArgs,
  type LeaderReport,
  type LocalMeta,
  type MetaRemote,
  type MoveRecord,
  type MoveRequest,
  type MoveView,
  type NodeRecord,
  type NodeState,
  type ReplicaChangeSpec,
  type ReplicaRemote,
  type ReplicaStateInfo,
  type ShardConfigInfo,
} from '../../../src/cluster/index.ts'
import {
  AssertionError,
  ErrorCode,
  KvError,
  type Clock,
  type Logger,
  type Limits,
  type LogIndex,
  type NodeId,
  type ShardId,
} from '../../../src/common/index.ts'
import { ShardDescriptor, ShardMapResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import type { NodeHost } from '../../../src/node/host.ts'
import {
  Router,
  changeFromProto,
  changeToProto,
  configFromProto,
  configToProto,
  mapFromProto,
  mapToProto,
  replicaStateFromProto,
  replicaStateToProto,
  type LocalReplica,
} from '../../../src/router/index.ts'
import { decodeDescriptor, encodeDescriptor, type RouteHint } from '../../../src/routing/index.ts'
import { asKvError } from '../../../src/server/status.ts'
import type { Receipt, VersionedValue, WriteLevel } from '../../../src/shard/index.ts'
import type { HostCluster } from './cluster.ts'

/** The address a node has in the sim's maps (as initialClusterMap was given it). */
export function simAddress(id: NodeId): string {
  return `sim-${id}`
}

/** The node at a sim address, or undefined for an address that is none. */
export function nodeAtAddress(address: string): NodeId | undefined {
  const m = /^sim-(\d+)$/.exec(address)
  return m === null ? undefined : (Number(m[1]) as NodeId)
}

/** One Get, Put or Delete as a client (or a forwarding node) sends it. */
export type SimKvRequest =
  | {
      readonly op: 'get'
      readonly key: Uint8Array
      readonly level: 'linearizable' | 'session' | 'eventual'
      readonly sessionIndex?: number
      readonly route: RouteHint | undefined
    }
  | {
      readonly op: 'put' | 'delete'
      readonly key: Uint8Array
      readonly value?: Uint8Array
      readonly level: WriteLevel
      readonly expectedVersion?: number
      readonly tag: { readonly clientId: string; readonly seq: number; readonly firstIncompleteSeq: number }
      readonly route: RouteHint | undefined
    }

export interface SimKvAnswer {
  readonly found?: VersionedValue | null
  readonly version?: number
  readonly deleted?: boolean
  /** The serving replica's receipt (term always set, as the wire's Receipt has it). */
  readonly receipt: Receipt & { readonly term: number }
  /** Forwards between the node the caller reached and the node that served. */
  readonly forwards: number
}

/** Counters of the routing run on every node and client (for the run's stats). */
export interface RoutingStats {
  /** Requests a client sent (attempts included). */
  sent: number
  /** Requests served on the node first reached. */
  direct: number
  /** Requests served after one forward, and after two (a forward passed on once more). */
  forwardedOnce: number
  forwardedTwice: number
  /** WRONG_SHARD answers a client received (its route was older than a node's map). */
  wrongShard: number
  /** RPCs refused (nobody listening), reset (the process died) or lost (a cut link). */
  refused: number
  reset: number
  lost: number
}

export function emptyRoutingStats(): RoutingStats {
  return {
    sent: 0,
    direct: 0,
    forwardedOnce: 0,
    forwardedTwice: 0,
    wrongShard: 0,
    refused: 0,
    reset: 0,
    lost: 0,
  }
}

/** The services of one node process. */
export interface NodeServices {
  readonly host: NodeHost
  readonly router: Router
  readonly agent: ClusterAgent
  readonly kv: SimKvService
}

/** Calls between simulated processes (see the file comment). `from` undefined: a client. */
export class SimRpc {
  constructor(
    private readonly cluster: HostCluster,
    readonly stats: RoutingStats,
  ) {}

  async call<T>(
    from: NodeId | undefined,
    to: NodeId,
    signal: AbortSignal,
    serve: (s: NodeServices) => Promise<T>,
  ): Promise<T> {
    const c = this.cluster
    await this.travel(from, to, signal)
    const life = c.slot(to).life
    const services = life?.services
    if (life === null || life.dead || services === undefined) {
      this.stats.refused++
      throw new KvError(ErrorCode.Unavailable, `node ${to} refused the connection`)
    }
    let outcome: { readonly ok: true; readonly value: T } | { readonly ok: false; readonly err: KvError }
    try {
      // The caller's deadline ends the call whatever the server does (as a gRPC deadline does):
      // a server whose process died mid-call never answers, its own deadlines died with it.
      outcome = { ok: true, value: await untilAborted(serve(services), signal) }
    } catch (err) {
      if (err instanceof AssertionError) {
        c.fail('crash', `node ${to} broke an invariant while serving: ${err.message}`)
        throw err
      }
      outcome = { ok: false, err: overTheWire(err) }
    }
    await this.travel(to, from, signal)
    if (life.dead) {
      this.stats.reset++
      throw new KvError(ErrorCode.Unavailable, `node ${to} reset the connection`)
    }
    if (!outcome.ok) throw outcome.err
    return outcome.value
  }

  /**
   * A PrepareReplica reached `to`'s host (it may create a replica of `shardId` at `epoch` or later):
   * the only way a replica may come back after a tombstone (moves.ts checks it).
   */
  notePrepare(to: NodeId, shardId: ShardId, epoch: number): void {
    const k = `${to}:${shardId}`
    const prepared = this.cluster.prepared
    prepared.set(k, Math.max(prepared.get(k) ?? 0, epoch))
  }

  /** One way from `a` to `b` (a client is one hop from every node, never cut off). */
  private async travel(a: NodeId | undefined, b: NodeId | undefined, signal: AbortSignal): Promise<void> {
    const net = this.cluster.net
    const delayMs = a === undefined || b === undefined ? net.options.oneWayDelayMsMean : net.delayMs(a, b)
    await waitOrAbort(this.cluster, delayMs, signal)
    if (a !== undefined && b !== undefined && net.isCut(a, b)) {
      this.stats.lost++
      await waitOrAbort(this.cluster, Infinity, signal)
    }
  }
}

/** `work`'s outcome, or the abort reason of `signal` if it fires first. */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err as Error)
      },
    )
  })
}

/** Waits `ms` of simulated time (Infinity: until `signal`); rejects with the abort reason. */
function waitOrAbort(cluster: HostCluster, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error)
      return
    }
    const onAbort = (): void => {
      timer?.cancel()
      reject(signal.reason as Error)
    }
    const timer =
      ms === Infinity
        ? undefined
        : cluster.sim.schedule(ms, () => {
            signal.removeEventListener('abort', onAbort)
            resolve()
          })
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** An error as the caller of a gRPC call receives it: code and details; the descriptor re-decoded. */
function overTheWire(err: unknown): KvError {
  const kv = asKvError(err) ?? new KvError(ErrorCode.Internal, 'internal error')
  const details = kv.details
  if (details?.descriptor === undefined)
    return new KvError(kv.code, kv.message, details === undefined ? {} : { details })
  const bytes = ShardDescriptor.encode(encodeDescriptor(details.descriptor)).finish()
  const decoded = decodeDescriptor(ShardDescriptor.decode(bytes))
  const { descriptor: _, ...rest } = details
  return new KvError(kv.code, kv.message, {
    details: decoded.ok ? { ...rest, descriptor: decoded.value } : rest,
  })
}

/** The KvService of one node, as grpc-kv.ts serves Get, Put and Delete (see the file comment). */
export class SimKvService {
  constructor(
    private readonly nodeId: NodeId,
    private readonly router: Router,
    private readonly hasher: Hasher,
    private readonly rpc: SimRpc,
  ) {}

  /** The map as this node has it (kv.proto ShardMap), through the protobuf encoding. */
  shardMap(): ShardMapResponse {
    const bytes = ShardMapResponse.encode(mapToProto(this.router.map, this.nodeId)).finish()
    return ShardMapResponse.decode(bytes)
  }

  async serve(req: SimKvRequest, forwarded: boolean, signal: AbortSignal): Promise<SimKvAnswer> {
    const router = this.router
    const shard = router.shardOfHash(this.hasher.hash64(req.key))
    router.checkHint(shard, req.route)
    const need = req.op === 'get' && req.level !== 'linearizable' ? 'replica' : 'leader'
    return await router.serve<SimKvAnswer>(
      shard,
      need,
      forwarded,
      async (replica) => {
        switch (req.op) {
          case 'get': {
            const { found, receipt } = await replica.get(req.key, {
              level: req.level,
              ...(req.sessionIndex === undefined ? {} : { sessionIndex: req.sessionIndex as LogIndex }),
              signal,
            })
            return { found, receipt: withTerm(receipt), forwards: 0 }
          }
          case 'put': {
            const { version, receipt } = await replica.put(req.key, req.value ?? new Uint8Array(), {
              level: req.level,
              signal,
              ...req.tag,
              ...(req.expectedVersion === undefined ? {} : { expectedVersion: req.expectedVersion }),
            })
            return { version, receipt: withTerm(receipt), forwards: 0 }
          }
          case 'delete': {
            const { deleted, receipt } = await replica.delete(req.key, {
              level: req.level,
              signal,
              ...req.tag,
              ...(req.expectedVersion === undefined ? {} : { expectedVersion: req.expectedVersion }),
            })
            return { deleted, receipt: withTerm(receipt), forwards: 0 }
          }
        }
      },
      async (address) => {
        const to = nodeAtAddress(address)
        if (to === undefined) throw new KvError(ErrorCode.Unavailable, `no node at ${address}`)
        const answer = await this.rpc.call(this.nodeId, to, signal, (s) => s.kv.serve(req, true, signal))
        return { ...answer, forwards: answer.forwards + 1 }
      },
    )
  }
}

function withTerm(receipt: Receipt): Receipt & { readonly term: number } {
  return { ...receipt, term: receipt.term ?? 0 }
}

/** The agent's calls to other nodes, over SimRpc (router/meta-remote.ts over gRPC in kvd). */
export class SimMetaRemote implements MetaRemote {
  constructor(
    private readonly self: NodeId,
    private readonly rpc: SimRpc,
  ) {}

  async join(
    address: string,
    args: JoinArgs,
    signal: AbortSignal,
  ): Promise<{ node: NodeRecord; map: ClusterMap }> {
    const answer = await this.rpc.call(this.self, this.peer(address), signal, (s) =>
      s.agent.serveJoin(args, true),
    )
    return { node: answer.node, map: throughTheWire(answer.map, answer.node.id) }
  }

  async heartbeat(
    address: string,
    args: { nodeId: NodeId; leaders: readonly LeaderReport[] },
    signal: AbortSignal,
  ): Promise<NodeState> {
    return await this.rpc.call(this.self, this.peer(address), signal, (s) =>
      s.agent.serveHeartbeat(args, true),
    )
  }

  async shardMap(address: string, signal: AbortSignal): Promise<ClusterMap> {
    const to = this.peer(address)
    return await this.rpc.call(this.self, to, signal, (s) =>
      Promise.resolve(throughTheWire(s.router.map, to)),
    )
  }

  async move(address: string, req: MoveRequest, signal: AbortSignal): Promise<MoveView> {
    return await this.rpc.call(this.self, this.peer(address), signal, (s) => s.agent.serveMove(req, true))
  }

  async listMoves(
    address: string,
    signal: AbortSignal,
  ): Promise<{ running: MoveView[]; recent: MoveRecord[] }> {
    return await this.rpc.call(this.self, this.peer(address), signal, (s) => s.agent.serveListMoves(true))
  }

  private peer(address: string): NodeId {
    return peerAt(address)
  }
}

function peerAt(address: string): NodeId {
  const to = nodeAtAddress(address)
  if (to === undefined) throw new KvError(ErrorCode.Unavailable, `no node at ${address}`)
  return to
}

/**
 * The mover's calls to other nodes' replicas, over SimRpc: what server/grpc-replica.ts does with
 * each request on the target's host, the answers mapped as the wire maps them.
 */
export class SimReplicaRemote implements ReplicaRemote {
  constructor(
    private readonly self: NodeId,
    private readonly rpc: SimRpc,
    private readonly hostOf: (s: NodeServices) => NodeHost,
  ) {}

  async prepare(
    address: string,
    spec: { shardId: ShardId; kind: 'data' | 'meta'; hashStart: bigint; hashEnd: bigint; epoch: number },
    signal: AbortSignal,
  ): Promise<void> {
    const to = peerAt(address)
    await this.rpc.call(this.self, to, signal, (s) => {
      this.rpc.notePrepare(to, spec.shardId, spec.epoch)
      return this.hostOf(s).createReplica(spec)
    })
  }

  async change(
    address: string,
    shardId: ShardId,
    epoch: number,
    change: ReplicaChangeSpec,
    signal: AbortSignal,
  ): Promise<ShardConfigInfo> {
    const sent = changeFromProto(changeToProto(change))
    return await this.rpc.call(this.self, peerAt(address), signal, async (s) => {
      const view = await this.hostOf(s).changeReplicas(shardId, epoch, sent, signal)
      return configFromProto(configToProto(shardId, configInfo(view)))
    })
  }

  async transferLeader(
    address: string,
    shardId: ShardId,
    to: NodeId,
    signal: AbortSignal,
  ): Promise<ShardConfigInfo> {
    return await this.rpc.call(this.self, peerAt(address), signal, async (s) => {
      const view = await this.hostOf(s).transferLeader(shardId, to, signal)
      return configFromProto(configToProto(shardId, configInfo(view)))
    })
  }

  async state(address: string, shardId: ShardId, signal: AbortSignal): Promise<ReplicaStateInfo> {
    return await this.rpc.call(this.self, peerAt(address), signal, async (s) => {
      const host = this.hostOf(s)
      const view = host.replicaView(shardId)
      const info: ReplicaStateInfo =
        view === undefined
          ? {
              found: false,
              state: '',
              role: '',
              config: { epoch: 0, voters: [], learners: [], votersOutgoing: [], leaderId: 0, term: 0 },
              appliedIndex: 0,
              lastIndex: 0,
              progress: [],
              installBytes: 0,
              approximateBytes: 0,
            }
          : {
              found: true,
              state: view.state,
              role: view.role,
              config: configInfo(view),
              appliedIndex: view.appliedIndex,
              lastIndex: view.lastIndex,
              progress: view.progress,
              installBytes: view.installBytes,
              approximateBytes: view.state === 'active' ? await host.approximateBytes(shardId) : 0,
            }
      return replicaStateFromProto(replicaStateToProto(shardId, info))
    })
  }

  async destroy(
    address: string,
    shardId: ShardId,
    epoch: number,
    members: readonly NodeId[],
    signal: AbortSignal,
  ): Promise<void> {
    await this.rpc.call(this.self, peerAt(address), signal, (s) =>
      this.hostOf(s).destroyReplica(shardId, epoch, members),
    )
  }
}

/** A shard's configuration as the replica service answers it. */
function configInfo(view: {
  readonly epoch: number
  readonly leaderId: NodeId | null
  readonly term: number
  readonly voters?: readonly NodeId[]
  readonly learners?: readonly NodeId[]
  readonly votersOutgoing?: readonly NodeId[]
  readonly conf?: {
    readonly voters: readonly NodeId[]
    readonly learners: readonly NodeId[]
    readonly votersOutgoing: readonly NodeId[]
  }
}): ShardConfigInfo {
  const conf = view.conf ?? {
    voters: view.voters ?? [],
    learners: view.learners ?? [],
    votersOutgoing: view.votersOutgoing ?? [],
  }
  return {
    epoch: view.epoch,
    voters: conf.voters,
    learners: conf.learners,
    votersOutgoing: conf.votersOutgoing,
    leaderId: view.leaderId ?? 0,
    term: view.term,
  }
}

/** A map as another node receives it: encoded, decoded and checked by the one wire decoder. */
function throughTheWire(map: ClusterMap, servedBy: NodeId): ClusterMap {
  const bytes = ShardMapResponse.encode(mapToProto(map, servedBy)).finish()
  return mapFromProto(ShardMapResponse.decode(bytes))
}

/** How a node's agent is timed in the simulation (kvd: heartbeatMs, 10 missed heartbeats to dead). */
export interface AgentTiming {
  readonly heartbeatMs: number
  readonly nodeDeadAfterHeartbeats: number
  readonly metaCallMs: number
  /** The meta leader's mover: how often it looks at the moves, and how long one may stall. */
  readonly movePollMs: number
  readonly moveStallMsMax: number
  readonly movesConcurrentMax: number
  /** Silence before a node is marked dead (default: `nodeDeadAfterHeartbeats` heartbeats, as unreachable). */
  readonly deadAfterMs?: number
  /** The rebalancing executor on the meta leader (cluster/executor), polling every `pollMs`; absent: none. */
  readonly rebalance?: { readonly pollMs: number }
}

/**
 * The router and agent of one node process over its host, as kvd wires them: the router reads
 * the agent's map and this node's replicas' Raft views; the agent reports the host's leaderships
 * and calls other nodes over SimRpc. `onMap` keeps the newest map (kvd stores it on disk).
 */
export function startServices(init: {
  readonly nodeId: NodeId
  readonly host: NodeHost
  readonly clock: Clock
  readonly logger: Logger
  readonly hasher: Hasher
  readonly rpc: SimRpc
  readonly initialMap: ClusterMap
  readonly timing: AgentTiming
  readonly limits: Readonly<Limits>
  readonly onMap: (map: ClusterMap) => void
}): NodeServices {
  const { host, nodeId } = init
  const views = new Map<ShardId, LocalReplica & LocalMeta>()
  const local = (shardId: ShardId): (LocalReplica & LocalMeta) | undefined => {
    const r = host.replica(shardId)
    // As kvd: a replica that does not serve (waiting for or installing a snapshot) is as good as
    // none; requests go to the shard's other replicas.
    if (r === undefined || !r.serving) return undefined
    let view = views.get(shardId)
    if (view?.replica !== r) {
      view = {
        replica: r,
        get isLeader() {
          return r.isLeader
        },
        get leaderId() {
          return r.leaderId
        },
        get epoch() {
          return r.epoch
        },
      }
      views.set(shardId, view)
    }
    return view
  }
  const agent = new ClusterAgent(
    {
      nodeId,
      heartbeatMs: init.timing.heartbeatMs,
      mapRefreshMs: init.timing.heartbeatMs,
      nodeUnreachableAfterMs: init.timing.heartbeatMs * init.timing.nodeDeadAfterHeartbeats,
      nodeDeadAfterMs:
        init.timing.deadAfterMs ?? init.timing.heartbeatMs * init.timing.nodeDeadAfterHeartbeats,
      metaCallMs: init.timing.metaCallMs,
      initialMap: init.initialMap,
      movePollMs: init.timing.movePollMs,
      moveStallMsMax: init.timing.moveStallMsMax,
      movesConcurrentMax: init.timing.movesConcurrentMax,
    },
    {
      clock: init.clock,
      logger: init.logger,
      localMeta: () => local(metaShardId),
      leaderReports: () => host.leaderships(),
      remote: new SimMetaRemote(nodeId, init.rpc),
      replicas: new SimReplicaRemote(nodeId, init.rpc, (s) => s.host),
      ownReplicas: () => host.status().map((v) => ({ shardId: v.shardId, state: v.state, epoch: v.epoch })),
      dropReplica: (shardId, epoch, members) => host.destroyReplica(shardId, epoch, members),
      onMap: init.onMap,
      // As kvd wires it, with the run's (tightened) limits as the throttles.
      ...(init.timing.rebalance === undefined
        ? {}
        : {
            rebalance: {
              hasher: init.hasher,
              autoRebalance: true,
              throttles: {
                movesMax: init.limits.rebalanceMovesMax,
                repairSlots: init.limits.rebalanceRepairSlots,
                inPerNodeMax: init.limits.rebalanceMovesInPerNodeMax,
                outPerNodeMax: init.limits.rebalanceMovesOutPerNodeMax,
              },
              listedMax: init.limits.rebalanceJobMovesListedMax,
              pollMs: init.timing.rebalance.pollMs,
            },
          }),
    },
  )
  const router = new Router({ nodeId, map: () => agent.map, local, clock: init.clock })
  const kv = new SimKvService(nodeId, router, init.hasher, init.rpc)
  agent.start()
  return { host, router, agent, kv }
}
