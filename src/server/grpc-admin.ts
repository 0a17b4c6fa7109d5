/**
 * AdminService: the node's status for `kvctl status`. Not behind the request gate, so an
 * overloaded node still says how it is doing.
 */
import type { handleUnaryCall } from '@grpc/grpc-js'
import type { Clock } from '../common/clock.ts'
import type { Logger } from '../common/logger.ts'
import {
  AdminServiceService,
  type AdminServiceServer,
  type ShardStatus,
  type StatusRequest,
  type StatusResponse,
} from '../gen/ringkv/v1/admin.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import type { Replica } from '../shard/index.ts'
import { decoded, withTolerantDecoding, type MalformedRequest } from './decode.ts'
import type { RequestGate } from './gate.ts'
import { toStatus } from './status.ts'

export const adminServiceDefinition = withTolerantDecoding(AdminServiceService)

export interface AdminServiceComponents {
  readonly replicas: () => readonly Replica[]
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
}

export function createAdminService(components: AdminServiceComponents): AdminServiceServer {
  const status: handleUnaryCall<StatusRequest | MalformedRequest, StatusResponse> = (call, callback) => {
    try {
      decoded(call.request)
      const node = components.node()
      const shards = components.replicas().map((replica): ShardStatus => {
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
        peers: [],
      })
    } catch (err) {
      callback(toStatus(err, components.logger))
    }
  }
  return { status }
}
