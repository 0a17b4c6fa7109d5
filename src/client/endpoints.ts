/**
 * The endpoints a client talks to, one gRPC channel each (created on first use), and which one
 * is current. Failover moves `current` round-robin; a leader hint moves it to the hinted node
 * when that node's address has been learned from a status answer.
 */
import type { ChannelCredentials, ChannelOptions, Interceptor } from '@grpc/grpc-js'
import type { Clock } from '../common/clock.ts'
import { limits } from '../common/limits.ts'
import { plaintextChannelCredentials } from '../net/index.ts'
import { AdminServiceClient } from '../gen/ringkv/v1/admin.ts'
import { KvServiceClient } from '../gen/ringkv/v1/kv.ts'
import { dialInterceptor } from './dial.ts'

/** Channel options every SDK channel uses. */
export const channelOptionsDefault: ChannelOptions = {
  'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
  'grpc.max_send_message_length': limits.grpcMessageBytesMax,
  // A restarted node should be found again in well under a default deadline (grpc-js defaults
  // to 1 s growing to 120 s between reconnects).
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  // Retries are ours (retry.ts), driven by the error table; grpc-js's own would double them.
  'grpc.enable_retries': 0,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
}

interface Channel {
  readonly kv: KvServiceClient
  readonly admin: AdminServiceClient
}

export interface EndpointPoolInit {
  readonly endpoints: readonly string[]
  readonly credentials?: ChannelCredentials | undefined
  readonly channelOptions?: ChannelOptions | undefined
  /** Client interceptors of every call (the bearer token). */
  readonly interceptors?: readonly Interceptor[] | undefined
  /** How long a call waits for its endpoint's connection (dial.ts); default limits.dialTimeoutMsDefault. */
  readonly dialTimeoutMs?: number | undefined
}

export interface EndpointPoolComponents {
  /** The dial timeout's clock. */
  readonly clock: Clock
}

export class EndpointPool {
  readonly endpoints: readonly string[]
  private readonly credentials: ChannelCredentials
  private readonly channelOptions: ChannelOptions
  private readonly interceptors: Interceptor[]
  private readonly dialTimeoutMs: number
  private readonly clock: Clock
  private readonly channels = new Map<string, Channel>()
  /** Node id -> address, learned from status answers. */
  private readonly nodeAddresses = new Map<number, string>()
  private currentEndpoint: string
  private closed = false

  constructor(init: EndpointPoolInit, components: EndpointPoolComponents) {
    if (init.endpoints.length === 0) throw new TypeError('KvClient needs at least one endpoint')
    for (const endpoint of init.endpoints) {
      if (typeof endpoint !== 'string' || endpoint.trim() === '')
        throw new TypeError(`bad endpoint '${endpoint}'`)
    }
    this.endpoints = init.endpoints.map((e) => e.trim())
    this.currentEndpoint = this.endpoints[0] as string
    this.credentials = init.credentials ?? plaintextChannelCredentials()
    this.channelOptions = { ...channelOptionsDefault, ...init.channelOptions }
    // Interceptors given in the channel options (grpc-js reads them from the client's options)
    // run first, then the SDK's own (the bearer token).
    const given = (init.channelOptions as { interceptors?: Interceptor[] } | undefined)?.interceptors ?? []
    this.interceptors = [...given, ...(init.interceptors ?? [])]
    this.dialTimeoutMs = init.dialTimeoutMs ?? limits.dialTimeoutMsDefault
    this.clock = components.clock
  }

  /** The endpoint new calls go to. */
  get current(): string {
    return this.currentEndpoint
  }

  /**
   * Moves to the endpoint after `failed`, unless another call already moved away from it (so a
   * burst of concurrent failures moves the pool once, not once per call).
   */
  advance(failed: string): void {
    if (this.currentEndpoint !== failed) return
    const i = this.endpoints.indexOf(failed)
    this.currentEndpoint = this.endpoints[(i + 1) % this.endpoints.length] as string
  }

  /** Moves to the node `nodeId` when its address is known; false when it is not. */
  preferNode(nodeId: number): boolean {
    const address = this.nodeAddresses.get(nodeId)
    if (address === undefined) return false
    this.currentEndpoint = address
    return true
  }

  /** Remembers where node `nodeId` listens (from a status answer). Wildcard addresses are skipped. */
  learnNode(nodeId: number, address: string): void {
    if (nodeId <= 0 || address === '') return
    const host = address.replace(/:\d+$/, '')
    if (host === '0.0.0.0' || host === '[::]' || host === '::') return
    this.nodeAddresses.set(nodeId, address)
  }

  kv(endpoint: string): KvServiceClient {
    return this.channel(endpoint).kv
  }

  admin(endpoint: string): AdminServiceClient {
    return this.channel(endpoint).admin
  }

  private channel(endpoint: string): Channel {
    if (this.closed) throw new TypeError('KvClient is closed')
    let channel = this.channels.get(endpoint)
    if (channel === undefined) {
      // Every call first waits (bounded) for the connection: grpc-js has no connect timeout.
      const dial = dialInterceptor(
        { endpoint, dialTimeoutMs: this.dialTimeoutMs },
        { clock: this.clock, channel: () => kv.getChannel() },
      )
      const interceptors = [dial, ...this.interceptors]
      const kv: KvServiceClient = new KvServiceClient(endpoint, this.credentials, {
        ...this.channelOptions,
        interceptors,
      })
      // The admin stub shares the kv stub's channel: one connection per endpoint.
      const admin = new AdminServiceClient(endpoint, this.credentials, {
        ...this.channelOptions,
        interceptors,
        channelOverride: kv.getChannel(),
      })
      channel = { kv, admin }
      this.channels.set(endpoint, channel)
    }
    return channel
  }

  close(): void {
    this.closed = true
    for (const channel of this.channels.values()) channel.kv.close()
    this.channels.clear()
  }
}
