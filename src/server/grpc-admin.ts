/**
 * AdminService: the node's status for `kvctl status`, and fault injection for `kvctl fault`. Not
 * behind the request gate, so an overloaded node still says how it is doing.
 *
 * InjectFault is refused with FAULT_INJECTION_DISABLED (FAILED_PRECONDITION) unless kvd runs with
 * --allow-fault-injection; it then sets or clears faults on the node's peer transport and answers
 * with every fault in force (admin.proto InjectFaultRequest).
 */
import type { handleUnaryCall } from '@grpc/grpc-js'
import type { Clock } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import { limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import {
  AdminServiceService,
  type AdminServiceServer,
  type InjectFaultRequest,
  type InjectFaultResponse,
  type ShardStatus,
  type StatusRequest,
  type StatusResponse,
} from '../gen/ringkv/v1/admin.ts'
import type { PeerTransport } from '../node/transport.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import type { ShardView } from '../node/host.ts'
import type { Replica } from '../shard/index.ts'
import { decoded, withTolerantDecoding, type MalformedRequest } from './decode.ts'
import type { RequestGate } from './gate.ts'
import { toStatus } from './status.ts'

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
  }
  /** kvd --allow-fault-injection (config.allowFaultInjection). Default false: InjectFault is refused. */
  readonly allowFaultInjection?: boolean
  /** The peer transport whose faults InjectFault sets; undefined while there is none (UNAVAILABLE). */
  readonly faults?: () => FaultTarget | undefined
}

/** What InjectFault needs of the peer transport. */
export type FaultTarget = Pick<PeerTransport, 'setFault' | 'faults'>

export function createAdminService(components: AdminServiceComponents): AdminServiceServer {
  const status: handleUnaryCall<StatusRequest | MalformedRequest, StatusResponse> = (call, callback) => {
    try {
      decoded(call.request)
      const node = components.node()
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
              }
            })
      const peers = (components.peers?.() ?? []).map((p) => ({
        nodeId: p.nodeId,
        address: p.address,
        version: '',
        uptimeMs: 0,
        dataDir: '',
        requestsInFlight: 0,
        shards: [],
      }))
      callback(null, {
        node: {
          nodeId: node.nodeId,
          address: node.address,
          version: node.version,
          uptimeMs: Math.max(0, Math.round(components.clock.nowMs() - node.startedMs)),
          dataDir: node.dataDir,
          requestsInFlight: components.gate.inFlight,
          shards,
        },
        clusterId: node.clusterId,
        peers,
      })
    } catch (err) {
      callback(toStatus(err, components.logger))
    }
  }

  const injectFault: handleUnaryCall<InjectFaultRequest | MalformedRequest, InjectFaultResponse> = (
    call,
    callback,
  ) => {
    try {
      const request = decoded(call.request)
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
      callback(null, {
        faults: [...target.faults()].map(([peer, fault]) => ({
          peer,
          drop: fault.drop,
          delayMs: fault.delayMs,
        })),
      })
    } catch (err) {
      callback(toStatus(err, components.logger))
    }
  }
  return { status, injectFault }
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
  return { kind: 'set', peers: ids, fault: { drop: request.drop, delayMs: request.delayMs } }
}
