/**
 * ReplicaService (replica.proto): the node-to-node control of this node's replicas, wiring only.
 * The decisions are the host's (node/host.ts: lifecycle, epochs, tombstones) and the shard
 * leader's (shard/replica-change.ts: the rules of a change). Served on the peer listener only,
 * to nodes of the registry (net/access.ts), through the request pipeline: every call is bounded by
 * its deadline, and by limits.requestDeadlineMsMax when it has none. Requests are checked like any
 * input (INVALID_ARGUMENT naming the field).
 */
import type { Clock } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId, ShardId, isSafeUint } from '../common/ids.ts'
import type { Limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import type { ReplicaStateInfo, ShardConfigInfo } from '../cluster/index.ts'
import {
  ReplicaServiceService,
  type ChangeReplicasRequest,
  type ChangeReplicasResponse,
  type DestroyReplicaRequest,
  type DestroyReplicaResponse,
  type PrepareReplicaRequest,
  type PrepareReplicaResponse,
  type ReplicaStateRequest,
  type ReplicaStateResponse,
  type TransferLeaderRequest,
  type TransferLeaderResponse,
} from '../gen/ringkv/v1/replica.ts'
import type { NodeHost } from '../node/host.ts'
import { changeFromProto, configToProto, replicaStateToProto } from '../router/index.ts'
import type { ShardConfigView } from '../shard/index.ts'
import { unary as pipelineUnary, withTolerantDecoding, type Handler } from '../net/index.ts'

export const replicaServiceDefinition = withTolerantDecoding(ReplicaServiceService)

export interface ReplicaServiceComponents {
  /** The node's host; undefined while there is none (UNAVAILABLE). */
  readonly host: () => NodeHost | undefined
  readonly clock: Clock
  readonly logger: Logger
  readonly limits: Readonly<Limits>
}

/** Members one DestroyReplica may list. */
export const destroyMembersMax = 64

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

function hashOf(text: string, field: string): bigint {
  if (!/^\d{1,20}$/.test(text)) throw invalid(field, `${field} must be a decimal uint64`)
  return BigInt(text)
}

/** A shard's configuration as the replica service answers it (the simulator's service too). */
export function configOf(view: ShardConfigView): ShardConfigInfo {
  return {
    epoch: view.epoch,
    voters: view.conf.voters,
    learners: view.conf.learners,
    votersOutgoing: view.conf.votersOutgoing,
    leaderId: view.leaderId ?? 0,
    term: view.term,
  }
}

/** The ReplicaService handlers, by the generated definition's method names, for a GrpcListener. */
export type ReplicaServiceHandlers = Readonly<Record<keyof typeof replicaServiceDefinition, Handler>>

export function createReplicaService(components: ReplicaServiceComponents): ReplicaServiceHandlers {
  const host = (): NodeHost => {
    const h = components.host()
    if (h === undefined) throw new KvError(ErrorCode.Unavailable, 'this node hosts no replicas yet')
    return h
  }
  /** A pipeline handler whose body gets the call's deadline signal. */
  const unary = <Req, Res>(body: (request: Req, signal: AbortSignal) => Promise<Res>): Handler =>
    pipelineUnary<Req, Res>((request, ctx) => body(request, ctx.signal))

  const prepareReplica = unary<PrepareReplicaRequest, PrepareReplicaResponse>(async (req) => {
    if (req.kind !== 'data' && req.kind !== 'meta') throw invalid('kind', 'kind must be data or meta')
    await host().createReplica({
      shardId: ShardId(req.shardId),
      kind: req.kind,
      hashStart: hashOf(req.hashStart, 'hash_start'),
      hashEnd: hashOf(req.hashEnd, 'hash_end'),
      epoch: req.epoch,
    })
    return {}
  })

  const changeReplicas = unary<ChangeReplicasRequest, ChangeReplicasResponse>(async (req, signal) => {
    const change = changeFromProto(req.change)
    const view = await host().changeReplicas(ShardId(req.shardId), req.epoch, change, signal)
    return { config: configToProto(req.shardId, configOf(view)) }
  })

  const transferLeader = unary<TransferLeaderRequest, TransferLeaderResponse>(async (req, signal) => {
    if (!isSafeUint(req.to) || req.to === 0) throw invalid('to', `bad node id ${req.to}`)
    const view = await host().transferLeader(ShardId(req.shardId), NodeId(req.to), signal)
    return { config: configToProto(req.shardId, configOf(view)) }
  })

  const replicaState = unary<ReplicaStateRequest, ReplicaStateResponse>(async (req) => {
    const { info, commitIndex } = await replicaStateOf(host(), ShardId(req.shardId))
    return { ...replicaStateToProto(req.shardId, info), commitIndex }
  })

  const destroyReplica = unary<DestroyReplicaRequest, DestroyReplicaResponse>(async (req) => {
    if (req.members.length > destroyMembersMax)
      throw invalid('members', `at most ${destroyMembersMax} members`)
    if (req.members.some((m) => !isSafeUint(m) || m === 0)) throw invalid('members', 'bad member id')
    if (!isSafeUint(req.epoch) || req.epoch === 0) throw invalid('epoch', 'epoch must be positive')
    await host().destroyReplica(
      ShardId(req.shardId),
      req.epoch,
      req.members.map((m) => NodeId(m)),
    )
    return {}
  })

  return { prepareReplica, changeReplicas, transferLeader, replicaState, destroyReplica }
}

/** What `host` says of its replica of `shardId` (found false when it holds none), and its commit index. */
export async function replicaStateOf(
  host: NodeHost,
  shardId: ShardId,
): Promise<{ readonly info: ReplicaStateInfo; readonly commitIndex: number }> {
  const view = host.replicaView(shardId)
  if (view === undefined)
    return {
      info: {
        found: false,
        state: '',
        role: '',
        config: { epoch: 0, voters: [], learners: [], votersOutgoing: [], leaderId: 0, term: 0 },
        appliedIndex: 0,
        lastIndex: 0,
        progress: [],
        installBytes: 0,
        approximateBytes: 0,
      },
      commitIndex: 0,
    }
  const info: ReplicaStateInfo = {
    found: true,
    state: view.state,
    role: view.role,
    config: {
      epoch: view.epoch,
      voters: view.voters,
      learners: view.learners,
      votersOutgoing: view.votersOutgoing,
      leaderId: view.leaderId ?? 0,
      term: view.term,
    },
    appliedIndex: view.appliedIndex,
    lastIndex: view.lastIndex,
    progress: view.progress,
    installBytes: view.installBytes,
    approximateBytes: view.state === 'active' ? await host.approximateBytes(shardId) : 0,
  }
  return { info, commitIndex: view.commitIndex }
}
