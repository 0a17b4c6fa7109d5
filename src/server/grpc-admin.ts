/**
 * AdminService: the node's status for `kvctl status`, fault injection for `kvctl fault`, moves
 * and leader transfers for `kvctl shards`, and the meta calls nodes make (Join, Heartbeat). Not
 * behind the request gate, so an overloaded node still says how it is doing. Who may call what is
 * net/access.ts; beyond that, each handler checks:
 *
 *   - Status: the detail (data directory, peers, cluster id) goes to an admin or a node only;
 *     other callers get the node's health without it.
 *   - Join: an admin may register any address; a node certificate only the peer address it
 *     names (so a node registers itself and nobody else); a member passing a join on to the meta
 *     leader vouches for the check it made where the join came in.
 *   - Heartbeat: a node reports for itself only (its certificate's node id); an admin for any.
 *
 * Rebalance and NodeAction (kvctl rebalance, kvctl node) are grpc-rebalance.ts.
 *
 * InjectFault is refused with FAULT_INJECTION_DISABLED (FAILED_PRECONDITION) unless kvd runs with
 * --allow-fault-injection; it then sets or clears faults on the node's peer transport and answers
 * with every fault in force (admin.proto InjectFaultRequest).
 */
import type { Clock } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { peerAddressOf, type ClusterAgent, type JoinArgs } from '../cluster/index.ts'
import { mapToProto, moveToProto } from '../router/index.ts'
import { limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import {
  AdminServiceService,
  type HeartbeatRequest,
  type HeartbeatResponse,
  type JoinRequest,
  type JoinResponse,
  type InjectFaultRequest,
  type InjectFaultResponse,
  type ListMovesRequest,
  type ListMovesResponse,
  type MoveReplicaRequest,
  type MoveReplicaResponse,
  type ShardStatus,
  type StatusRequest,
  type StatusResponse,
  type TransferShardLeaderRequest,
  type TransferShardLeaderResponse,
  type ExportShardRequest,
  type ExportShardResponse,
} from '../gen/ringkv/v1/admin.ts'
import { encodeEntries, entriesBytes } from '../backup/index.ts'
import type { PeerTransport } from '../node/transport.ts'
import { hashSpaceEnd, nodeWeightMax } from '../hashing/index.ts'
import type { ShardExport, ShardView } from '../node/host.ts'
import type { Replica } from '../shard/index.ts'
import { createRebalanceHandlers, type RebalancePassOn } from './grpc-rebalance.ts'
import {
  allows,
  serverStream,
  unary,
  withTolerantDecoding,
  type CallContext,
  type Handler,
  type RequestGate,
} from '../net/index.ts'

export const adminServiceDefinition = withTolerantDecoding(AdminServiceService)

export interface AdminServiceComponents {
  readonly replicas: () => readonly Replica[]
  /** The Raft view of every shard of this node (node/host.ts); when absent, `replicas` is shown. */
  readonly shardViews?: () => readonly ShardView[]
  /** The other members and their addresses. */
  readonly peers?: () => readonly { readonly nodeId: number; readonly address: string }[]
  readonly clock: Clock
  readonly logger: Logger
  readonly gate: RequestGate
  /** Facts of the node fixed at start. */
  readonly node: () => {
    readonly nodeId: number
    readonly address: string
    readonly version: string
    readonly dataDir: string
    readonly startedMs: number
    readonly clusterId: string
    readonly zone?: string
  }
  /** On-disk size estimates of this node's replicas, by shard. */
  readonly shardSizes?: () => Promise<ReadonlyMap<number, number>>
  /** The map's epoch of a shard (0 = unknown). */
  readonly shardEpoch?: (shardId: number) => number
  /** Requests this node forwarded since it started. */
  readonly forwarded?: () => number
  /** The control plane: joins and heartbeats (absent on a node without one: UNAVAILABLE). */
  readonly cluster?: () => ClusterAgent | undefined
  /** Rebalance and NodeAction passed on to the meta leader (grpc-rebalance.ts). */
  readonly passOn?: RebalancePassOn
  /** kvd --allow-fault-injection (config.allowFaultInjection). Default false: InjectFault is refused. */
  readonly allowFaultInjection?: boolean
  /** The peer transport whose faults InjectFault sets; undefined while there is none (UNAVAILABLE). */
  readonly faults?: () => FaultTarget | undefined
  /** A data shard's state for a backup, as its leader (node/host.ts exportShard); absent: UNAVAILABLE. */
  readonly exportShard?: (shardId: ShardId, signal: AbortSignal) => Promise<ShardExport>
}

/** What InjectFault needs of the peer transport (its stats name the peers it knows: the members). */
export type FaultTarget = Pick<PeerTransport, 'setFault' | 'faults' | 'stats'>

/** Leader reports in one heartbeat: more than any node leads. */
export const heartbeatLeadersMax = 65_536
/** Longest node address and zone label a join may carry. */
export const joinAddressBytesMax = 256
export const joinZoneBytesMax = 64

/** The AdminService handlers, by the generated definition's method names, for a GrpcListener. */
export type AdminServiceHandlers = Readonly<Record<keyof typeof adminServiceDefinition, Handler>>

/** Whether the caller may see a node's detail (data directory, peers, cluster id). */
function seesDetail(ctx: CallContext): boolean {
  return allows('admin-or-node', ctx.principal, ctx.listener)
}

export function createAdminService(components: AdminServiceComponents): AdminServiceHandlers {
  const status = unary<StatusRequest, StatusResponse>(async (_request, ctx) => {
    const detail = seesDetail(ctx)
    const node = components.node()
    const sizes = (await components.shardSizes?.()) ?? new Map<number, number>()
    const epochOf = components.shardEpoch ?? (() => 0)
    const views = components.shardViews?.()
    const shards =
      views !== undefined
        ? views.map((v): ShardStatus => ({
            shardId: v.shardId,
            role: v.role,
            appliedIndex: v.appliedIndex,
            commitIndex: v.commitIndex,
            term: v.term,
            leaderId: v.leaderId ?? 0,
            voters: [...v.voters],
            learners: [...v.learners],
            hashStart: v.range.start.toString(),
            hashEnd: v.range.end.toString(),
            approximateBytes: sizes.get(v.shardId) ?? 0,
            epoch: v.epoch,
            state: v.state,
            votersOutgoing: [...v.votersOutgoing],
          }))
        : components.replicas().map((replica): ShardStatus => {
            const s = replica.status()
            return {
              shardId: replica.shardId,
              role: s.role,
              appliedIndex: s.appliedIndex,
              // Single node: everything applied is committed, and there is no term yet.
              commitIndex: s.appliedIndex,
              term: 0,
              leaderId: s.role === 'single' || s.role === 'leader' ? replica.nodeId : 0,
              voters: [replica.nodeId],
              learners: [],
              hashStart: '0',
              hashEnd: hashSpaceEnd.toString(),
              approximateBytes: sizes.get(replica.shardId) ?? 0,
              epoch: epochOf(replica.shardId),
              state: 'active',
              votersOutgoing: [],
            }
          })
    const peers = (detail ? (components.peers?.() ?? []) : []).map((p) => ({
      nodeId: p.nodeId,
      address: p.address,
      version: '',
      uptimeMs: 0,
      dataDir: '',
      requestsInFlight: 0,
      shards: [],
      forwardedRequests: 0,
      zone: '',
    }))
    return {
      node: {
        nodeId: node.nodeId,
        address: node.address,
        version: node.version,
        uptimeMs: Math.max(0, Math.round(components.clock.nowMs() - node.startedMs)),
        dataDir: detail ? node.dataDir : '',
        requestsInFlight: components.gate.inFlight,
        shards,
        forwardedRequests: components.forwarded?.() ?? 0,
        zone: node.zone ?? '',
      },
      clusterId: detail ? node.clusterId : '',
      peers,
    }
  })

  const agent = (): ClusterAgent => {
    const a = components.cluster?.()
    if (a === undefined) throw new KvError(ErrorCode.Unavailable, 'this node has no cluster agent yet')
    return a
  }

  // Join: register a new node with the meta shard (passed on once to the meta leader).
  const join = unary<JoinRequest, JoinResponse>(async (request, ctx) => {
    const args = checkJoin(request)
    checkJoinCaller(ctx, args.peerAddress)
    const { node, map } = await agent().serveJoin(args, ctx.forwarded)
    return {
      nodeId: node.id,
      clusterId: map.cluster.clusterId,
      map: mapToProto(map, components.node().nodeId as NodeId),
    }
  })

  // Heartbeat: a node reports in (passed on once to the meta leader).
  const heartbeat = unary<HeartbeatRequest, HeartbeatResponse>(async (request, ctx) => {
    if (!Number.isSafeInteger(request.nodeId) || request.nodeId <= 0)
      throw invalid('node_id', `bad node id ${request.nodeId}`)
    const caller = ctx.principal
    if (caller.kind === 'node' && caller.nodeId !== request.nodeId)
      throw new KvError(
        ErrorCode.PermissionDenied,
        `a heartbeat for node ${request.nodeId} from node ${caller.nodeId ?? '(unregistered)'}: a node reports for itself only`,
      )
    if (request.leaders.length > heartbeatLeadersMax)
      throw invalid('leaders', `at most ${heartbeatLeadersMax} leader reports`, heartbeatLeadersMax)
    const leaders = request.leaders.map((l) => {
      if (l.voters.length > heartbeatVotersMax)
        throw invalid('leaders.voters', `at most ${heartbeatVotersMax} voters per shard`, heartbeatVotersMax)
      if (l.voters.some((v) => !Number.isSafeInteger(v) || v <= 0))
        throw invalid('leaders.voters', 'bad voter id')
      if (!Number.isSafeInteger(l.approximateBytes) || l.approximateBytes < 0)
        throw invalid('leaders.approximate_bytes', 'bad size')
      return {
        shardId: ShardId(l.shardId),
        term: l.term,
        ...(l.approximateBytes > 0 ? { approximateBytes: l.approximateBytes } : {}),
        ...(l.epoch > 0 && l.voters.length > 0
          ? { epoch: l.epoch, voters: l.voters.map((v) => NodeId(v)) }
          : {}),
      }
    })
    const state = await agent().serveHeartbeat({ nodeId: NodeId(request.nodeId), leaders }, ctx.forwarded)
    return { state }
  })

  const injectFault = unary<InjectFaultRequest, InjectFaultResponse>(async (request) => {
    if (components.allowFaultInjection !== true)
      throw new KvError(
        ErrorCode.FaultInjectionDisabled,
        'fault injection is disabled on this node (start kvd with --allow-fault-injection)',
      )
    const target = components.faults?.()
    if (target === undefined)
      throw new KvError(ErrorCode.Unavailable, 'this node has no peer transport to inject faults into')
    const change = checkFaultRequest(request, components.node().nodeId, target)
    if (change.kind === 'clear') {
      const peers = change.peers ?? [...target.faults().keys()]
      for (const peer of peers) target.setFault(peer, null)
    } else if (change.kind === 'set') {
      for (const peer of change.peers) target.setFault(peer, change.fault)
    }
    if (change.kind !== 'list')
      components.logger.warn(
        { peers: change.peers ?? 'all', kind: change.kind, ...(change.kind === 'set' ? change.fault : {}) },
        'fault injection changed',
      )
    return {
      faults: [...target.faults()].map(([peer, fault]) => ({
        peer,
        drop: fault.drop,
        delayMs: fault.delayMs,
      })),
    }
  })
  // MoveReplica: record a move (passed on once to the meta leader, whose mover runs it).
  const moveReplica = unary<MoveReplicaRequest, MoveReplicaResponse>(async (request, ctx) => {
    // from_node 0: none, a replica is added (the rules allow it only for a shard short of replicas).
    const from = request.fromNode === 0 ? undefined : nodeIdOf(request.fromNode, 'from_node')
    const to = nodeIdOf(request.toNode, 'to_node')
    const move = await agent().serveMove(
      {
        shardId: ShardId(request.shardId),
        ...(from === undefined ? {} : { from }),
        to,
        epoch: request.epoch,
      },
      ctx.forwarded,
    )
    return { move: moveToProto(move) }
  })

  const listMoves = unary<ListMovesRequest, ListMovesResponse>(async (_request, ctx) => {
    const { running, recent } = await agent().serveListMoves(ctx.forwarded)
    return { running: running.map(moveToProto), recent: recent.map(moveToProto) }
  })

  const transferShardLeader = unary<TransferShardLeaderRequest, TransferShardLeaderResponse>(
    async (request) => {
      const to = nodeIdOf(request.toNode, 'to_node')
      return await agent().serveTransferLeader(ShardId(request.shardId), to)
    },
  )

  const { rebalance, nodeAction } = createRebalanceHandlers({
    ...(components.cluster === undefined ? {} : { cluster: components.cluster }),
    ...(components.passOn === undefined ? {} : { passOn: components.passOn }),
  })

  // ExportShard: one data shard's state at one applied index, streamed (kvctl backup create).
  const exportShard = serverStream<ExportShardRequest, ExportShardResponse>(async (request, ctx, call) => {
    const exporter = components.exportShard
    if (exporter === undefined) throw new KvError(ErrorCode.Unavailable, 'this node exports no shards')
    const shard = components.shardViews?.().find((v) => v.shardId === request.shardId)
    if (shard === undefined)
      throw new KvError(ErrorCode.WrongShard, `this node holds no replica of shard ${request.shardId}`, {
        details: { shardId: request.shardId },
      })
    const ex = await exporter(ShardId(request.shardId), ctx.signal)
    const out = new OneAhead<ExportShardResponse>(call, ctx.signal)
    try {
      await out.write({
        header: {
          shardId: ex.shardId,
          hashStart: ex.hashStart.toString(),
          hashEnd: ex.hashEnd.toString(),
          appliedIndex: ex.appliedIndex,
          term: ex.term,
          epoch: ex.epoch,
          nodeId: components.node().nodeId,
          readIndex: ex.readIndex,
        },
        entries: Buffer.alloc(0),
        done: false,
        entryCount: 0,
        entryBytes: 0,
      })
      let entryCount = 0
      let entryBytes = 0
      for await (const chunk of ex.chunks) {
        entryCount += chunk.length
        entryBytes += entriesBytes(chunk)
        await out.write({
          header: undefined,
          entries: Buffer.from(encodeEntries(chunk)),
          done: false,
          entryCount: 0,
          entryBytes: 0,
        })
      }
      await out.write({ header: undefined, entries: Buffer.alloc(0), done: true, entryCount, entryBytes })
      await out.flushed()
    } finally {
      await ex.release()
    }
  })

  return {
    status,
    injectFault,
    join,
    heartbeat,
    moveReplica,
    listMoves,
    transferShardLeader,
    rebalance,
    nodeAction,
    exportShard,
  }
}

/**
 * Writes a server stream's messages with at most one handed to grpc-js and not yet taken by the
 * connection: the next write waits for the one before (grpc-js would otherwise buffer up to 16
 * messages, 32 MiB of export chunks, per stream). Rejects with the signal's reason.
 */
class OneAhead<T> {
  private pending: Promise<void> = Promise.resolve()

  constructor(
    private readonly sink: { write(message: T, callback: () => void): boolean },
    private readonly signal: AbortSignal,
  ) {}

  async write(message: T): Promise<void> {
    await this.flushed()
    this.pending = new Promise<void>((resolve) => this.sink.write(message, () => resolve()))
  }

  /** Settles once the last message was taken, or rejects when the call ends first. */
  async flushed(): Promise<void> {
    this.signal.throwIfAborted()
    const signal = this.signal
    let onAbort: (() => void) | undefined
    try {
      await Promise.race([
        this.pending,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(signal.reason as Error)
          signal.addEventListener('abort', onAbort, { once: true })
        }),
      ])
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
  }
}

/**
 * Who may register `peerAddress`: an admin (or anyone, without credentials configured); a node
 * certificate that names it; a member passing on a join it took at its own door (it checked there).
 */
function checkJoinCaller(ctx: CallContext, peerAddress: string): void {
  const p = ctx.principal
  if (p.kind !== 'node') return // admin or open: the access table let it in
  if (ctx.forwarded && p.nodeId !== undefined) return
  if (!p.addresses.includes(peerAddress))
    throw new KvError(
      ErrorCode.PermissionDenied,
      `this certificate may register a node at ${p.addresses.join(', ')}, not at ${peerAddress}`,
      { details: { field: 'peer_address' } },
    )
}

/** Voters one leader report may list (a shard has at most a few). */
export const heartbeatVotersMax = 16

function nodeIdOf(value: number, field: string): NodeId {
  if (!Number.isSafeInteger(value) || value <= 0) throw invalid(field, `bad node id ${value}`)
  return NodeId(value)
}

/** Validates a Join request (INVALID_ARGUMENT with the field); the peer address defaults beside `address`. */
function checkJoin(request: JoinRequest): JoinArgs & { readonly peerAddress: string } {
  const address = request.address.trim()
  if (address === '' || Buffer.byteLength(address) > joinAddressBytesMax || !/^[^\s]+:\d{1,5}$/.test(address))
    throw invalid('address', `address must be HOST:PORT (at most ${joinAddressBytesMax} bytes)`)
  const given = request.peerAddress.trim()
  if (given !== '' && (Buffer.byteLength(given) > joinAddressBytesMax || !/^[^\s]+:\d{1,5}$/.test(given)))
    throw invalid('peer_address', `peer_address must be HOST:PORT (at most ${joinAddressBytesMax} bytes)`)
  const peerAddress = given === '' ? peerAddressOf({ address }) : given
  if (Buffer.byteLength(request.zone) > joinZoneBytesMax)
    throw invalid('zone', `zone may be at most ${joinZoneBytesMax} bytes`, joinZoneBytesMax)
  const weight = request.weight === 0 ? 1 : request.weight
  if (!Number.isFinite(weight) || weight <= 0 || weight > nodeWeightMax)
    throw invalid('weight', `weight must be in (0, ${nodeWeightMax}]`)
  return { address, peerAddress, zone: request.zone, weight }
}

type FaultChange =
  | { readonly kind: 'list'; readonly peers?: undefined }
  | { readonly kind: 'clear'; readonly peers: readonly NodeId[] | undefined }
  | {
      readonly kind: 'set'
      readonly peers: readonly NodeId[]
      readonly fault: { readonly drop: boolean; readonly delayMs: number }
    }

function invalid(field: string, message: string, limit?: number): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, {
    details: limit === undefined ? { field } : { field, limit },
  })
}

/** Validates an InjectFault request (INVALID_ARGUMENT with the field) and says what it asks for. */
function checkFaultRequest(request: InjectFaultRequest, self: number, target: FaultTarget): FaultChange {
  const peers = [...new Set(request.peers)]
  for (const peer of peers) {
    // The decoder already refuses uint64 values beyond 2^53.
    if (!(Number.isSafeInteger(peer) && peer > 0)) throw invalid('peers', `bad peer node id ${peer}`)
    if (peer === self) throw invalid('peers', `node ${self} cannot fault its own traffic`)
  }
  const ids = peers as NodeId[]
  if (request.clear) {
    if (request.drop || request.delayMs > 0) throw invalid('clear', 'clear takes no drop or delay_ms')
    checkMembers(ids, target, target.faults())
    return { kind: 'clear', peers: ids.length > 0 ? ids : undefined }
  }
  if (request.delayMs > limits.faultDelayMsMax)
    throw invalid('delay_ms', `delay_ms may be at most ${limits.faultDelayMsMax}`, limits.faultDelayMsMax)
  if (ids.length === 0) {
    if (request.drop || request.delayMs > 0) throw invalid('peers', 'name the peers to drop or delay')
    return { kind: 'list' }
  }
  if (!request.drop && request.delayMs === 0)
    throw invalid('drop', 'a fault needs drop or delay_ms (use clear to remove faults)')
  const inForce = target.faults()
  const after = new Set([...inForce.keys(), ...ids]).size
  if (after > limits.faultPeersMax)
    throw invalid(
      'peers',
      `faults may be held for at most ${limits.faultPeersMax} peers`,
      limits.faultPeersMax,
    )
  checkMembers(ids, target)
  return { kind: 'set', peers: ids, fault: { drop: request.drop, delayMs: request.delayMs } }
}

/** Every named peer is a member this node knows (or, to clear, one it holds a fault for). */
function checkMembers(
  ids: readonly NodeId[],
  target: FaultTarget,
  inForce?: ReadonlyMap<NodeId, unknown>,
): void {
  const known = new Set(target.stats().peers.map((p) => p.peer))
  const unknown = ids.filter((id) => !known.has(id) && inForce?.has(id) !== true)
  if (unknown.length > 0)
    throw invalid('peers', `not a member of this cluster: node ${unknown.join(', node ')}`)
}
