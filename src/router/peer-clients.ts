/**
 * PeerClients: this node's gRPC clients of the other nodes' KvService and AdminService, one
 * channel per address, for forwarding requests (forward-grpc.ts) and for the cluster agent's calls
 * to the meta shard's leader (meta-remote.ts). Bounded: at most peerClientsMax addresses; the
 * least recently used is closed to make room.
 *
 * Errors come back as KvError: a peer's own error keeps its ringkv-code and details (so it reaches
 * our caller unchanged); a failure to reach the peer is UNAVAILABLE (for a write: outcome unknown).
 */
import { Metadata, credentials, status as GrpcCode, type ServiceError } from '@grpc/grpc-js'
import { DeadlineError } from '../common/clock.ts'
import { ErrorCode, KvError, errorMetadataKeys, isErrorCode, type ErrorDetails } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import type { Limits } from '../common/limits.ts'
import { AdminServiceClient } from '../gen/ringkv/v1/admin.ts'
import { KvServiceClient, ShardDescriptor } from '../gen/ringkv/v1/kv.ts'
import { ReplicaServiceClient } from '../gen/ringkv/v1/replica.ts'
import { descriptorFromProto } from './map-proto.ts'

/** Peer addresses with an open client at once. */
export const peerClientsMax = 1024
/** The request metadata a forwarded call carries: the forwarding node's id. */
export const forwardedByKey = 'ringkv-forwarded-by'
/** The principal of the call a forwarded call carries on (exactly-once sessions are scoped to it). */
export const forwardedPrincipalKey = 'ringkv-principal'

export interface PeerClient {
  readonly kv: KvServiceClient
  readonly admin: AdminServiceClient
  readonly replica: ReplicaServiceClient
}

export class PeerClients {
  private readonly clients = new Map<string, PeerClient>()
  private readonly options: Record<string, number>
  private closed = false

  constructor(
    private readonly nodeId: NodeId,
    limits: Readonly<Limits>,
  ) {
    this.options = {
      'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
      'grpc.max_send_message_length': limits.grpcMessageBytesMax,
    }
  }

  /** The clients of `address` (created on first use). */
  of(address: string): PeerClient {
    if (this.closed) throw new KvError(ErrorCode.Unavailable, 'node is stopping')
    const known = this.clients.get(address)
    if (known !== undefined) {
      this.clients.delete(address)
      this.clients.set(address, known)
      return known
    }
    if (this.clients.size >= peerClientsMax) {
      const [oldest, client] = this.clients.entries().next().value as [string, PeerClient]
      this.clients.delete(oldest)
      closeClient(client)
    }
    const creds = credentials.createInsecure()
    const client: PeerClient = {
      kv: new KvServiceClient(address, creds, this.options),
      admin: new AdminServiceClient(address, creds, this.options),
      replica: new ReplicaServiceClient(address, creds, this.options),
    }
    this.clients.set(address, client)
    return client
  }

  /**
   * Metadata naming this node as the forwarder, and the principal the original call came from (the
   * receiver scopes exactly-once sessions to it; it must trust it only from a peer).
   */
  forwardedMetadata(principal?: string): Metadata {
    const md = new Metadata()
    md.set(forwardedByKey, String(this.nodeId))
    if (principal !== undefined) md.set(forwardedPrincipalKey, principal)
    return md
  }

  close(): void {
    this.closed = true
    for (const c of this.clients.values()) closeClient(c)
    this.clients.clear()
  }
}

function closeClient(c: PeerClient): void {
  c.kv.close()
  c.admin.close()
  c.replica.close()
}

/** The principal a forwarded call carries (see `forwardedMetadata`), if any. */
export function forwardedPrincipal(metadata: Metadata): string | undefined {
  const v = metadata.get(forwardedPrincipalKey)[0]
  return typeof v === 'string' ? v : undefined
}

/** True when a call came from another node (it must not be forwarded again). */
export function isForwarded(metadata: Metadata): boolean {
  return metadata.get(forwardedByKey).length > 0
}

const numericDetails: readonly (readonly [Exclude<keyof ErrorDetails, 'descriptor' | 'field'>, string])[] = [
  ['leaderHint', errorMetadataKeys.leader],
  ['shardMapEpoch', errorMetadataKeys.epoch],
  ['shardId', errorMetadataKeys.shard],
  ['currentVersion', errorMetadataKeys.currentVersion],
  ['limit', errorMetadataKeys.limit],
]

/** A peer's failed call as the KvError our own caller gets. */
export function peerError(err: ServiceError, address: string): KvError {
  const md = err.metadata
  const code = md?.get(errorMetadataKeys.code)[0]
  if (typeof code === 'string' && isErrorCode(code)) {
    const details: Record<string, unknown> = {}
    for (const [detail, key] of numericDetails) {
      const v = Number(md.get(key)[0])
      if (md.get(key).length > 0 && Number.isSafeInteger(v)) details[detail] = v
    }
    const field = md.get(errorMetadataKeys.field)[0]
    if (typeof field === 'string') details.field = field
    const descriptor = md.get(errorMetadataKeys.descriptor)[0]
    if (Buffer.isBuffer(descriptor)) {
      try {
        details.descriptor = descriptorFromProto(ShardDescriptor.decode(descriptor))
      } catch {
        // A malformed descriptor (INVALID_ARGUMENT) only loses the repair hint.
      }
    }
    return new KvError(code, err.details, { details: details as ErrorDetails })
  }
  if (err.code === GrpcCode.DEADLINE_EXCEEDED)
    return new KvError(ErrorCode.DeadlineExceeded, 'deadline exceeded', { cause: new DeadlineError() })
  if (err.code === GrpcCode.CANCELLED) return new KvError(ErrorCode.Cancelled, 'cancelled')
  return new KvError(
    ErrorCode.Unavailable,
    `node at ${address} did not answer: ${err.details || err.message}`,
    {
      cause: err,
    },
  )
}
