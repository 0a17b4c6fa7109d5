/**
 * PeerClients: this node's gRPC clients of the other nodes' KvService and AdminService, one
 * channel per address, for forwarding requests (forward-grpc.ts) and for the cluster agent's calls
 * to the meta shard's leader (meta-remote.ts). Bounded: at most peerClientsMax addresses; the
 * least recently used is closed to make room. The addresses are peer addresses, and the channels'
 * credentials come from net/ (`credentialsFor`: mutual TLS that checks the peer's certificate
 * names the address, or plaintext without TLS files).
 *
 * An injected drop fault towards a peer (kvctl fault) cuts these calls too: UNAVAILABLE at once.
 *
 * Errors come back as KvError: a peer's own error keeps its ringkv-code and details (so it reaches
 * our caller unchanged); a failure to reach the peer is UNAVAILABLE (for a write: outcome unknown).
 */
import { Metadata, status as GrpcCode, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js'
import { DeadlineError } from '../common/clock.ts'
import { ErrorCode, KvError, errorMetadataKeys, isErrorCode, type ErrorDetails } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import type { Limits } from '../common/limits.ts'
import { AdminServiceClient } from '../gen/ringkv/v1/admin.ts'
import { KvServiceClient, ShardDescriptor } from '../gen/ringkv/v1/kv.ts'
import { ReplicaServiceClient } from '../gen/ringkv/v1/replica.ts'
import { encodePrincipal, peerMetadataKeys, type Principal } from '../net/index.ts'
import { descriptorFromProto } from './map-proto.ts'

/** Peer addresses with an open client at once. */
export const peerClientsMax = 1024
/** The request metadata a forwarded call carries: the forwarding node's id. */
export const forwardedByKey = peerMetadataKeys.forwardedBy

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
    /** The credentials of the channel to `address` (net/). */
    private readonly credentialsFor: (address: string) => ChannelCredentials,
    /** True while an injected drop fault cuts this node off from `address` (the transport's). */
    private readonly cutOff: (address: string) => boolean = () => false,
  ) {
    this.options = {
      'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
      'grpc.max_send_message_length': limits.grpcMessageBytesMax,
    }
  }

  /** The clients of `address` (created on first use). */
  of(address: string): PeerClient {
    if (this.closed) throw new KvError(ErrorCode.Unavailable, 'node is stopping')
    if (this.cutOff(address))
      throw new KvError(ErrorCode.Unavailable, `peer ${address} is cut off by an injected fault`)
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
    const creds = this.credentialsFor(address)
    const kv = new KvServiceClient(address, creds, this.options)
    // One connection per peer: the admin stub rides on the kv stub's channel.
    const client: PeerClient = {
      kv,
      admin: new AdminServiceClient(address, creds, { ...this.options, channelOverride: kv.getChannel() }),
      replica: new ReplicaServiceClient(address, creds, {
        ...this.options,
        channelOverride: kv.getChannel(),
      }),
    }
    this.clients.set(address, client)
    return client
  }

  /**
   * Metadata naming this node as the forwarder and, for a client's request, the client it is
   * passed on for (the receiver checks the forwarder against its certificate: net/metadata.ts).
   */
  forwardedMetadata(principal?: Principal): Metadata {
    const md = new Metadata()
    md.set(forwardedByKey, String(this.nodeId))
    const onBehalf = principal === undefined ? undefined : encodePrincipal(principal)
    if (onBehalf !== undefined) md.set(peerMetadataKeys.principal, onBehalf)
    return md
  }

  close(): void {
    this.closed = true
    for (const c of this.clients.values()) closeClient(c)
    this.clients.clear()
  }
}

function closeClient(c: PeerClient): void {
  c.admin.close()
  c.replica.close()
  c.kv.close()
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
