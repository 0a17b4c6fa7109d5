/**
 * A GrpcListener on loopback behind the real request pipeline, for tests that serve ringkv's
 * handlers in-process: open (no credentials) unless a TLS set or an authenticator is given.
 */
import type { UntypedHandleCall } from '@grpc/grpc-js'
import { SystemClock } from '../../../src/common/clock-system.ts'
import type { NodeId } from '../../../src/common/ids.ts'
import { limits as defaultLimits, type Limits } from '../../../src/common/limits.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import {
  Authenticator,
  GrpcListener,
  Pipeline,
  RequestGate,
  serverCredentials,
  type AuthTable,
  type Handler,
  type ListenerKind,
  type PipelineMetrics,
  type RequestLabels,
  type TlsMaterial,
} from '../../../src/net/index.ts'
import { internalStatus, toStatus } from '../../../src/server/status.ts'

type Definition = Parameters<GrpcListener['addService']>[0]

export interface ServeOptions {
  readonly kind?: ListenerKind
  readonly services: readonly (readonly [Definition, Readonly<Record<string, Handler | UntypedHandleCall>>])[]
  readonly limits?: Readonly<Limits>
  /** Loopback port; default any free one. */
  readonly port?: number
  readonly tls?: TlsMaterial
  readonly clientCertRequired?: boolean
  readonly cluster?: string
  readonly auth?: () => AuthTable | undefined
  readonly nodeIdOf?: (addresses: readonly string[]) => NodeId | undefined
  readonly gate?: RequestGate
  readonly onFatal?: (err: Error) => void
  readonly cutOffFrom?: (peer: NodeId) => boolean
}

/** What the pipeline reported, for assertions. */
export class RecordingMetrics implements PipelineMetrics {
  readonly observed: RequestLabels[] = []
  readonly refusals: { listener: string; code: string }[] = []
  inFlightNow = 0
  readonly inFlight = {
    inc: (): void => {
      this.inFlightNow++
    },
    dec: (): void => {
      this.inFlightNow--
    },
  }

  observe(labels: RequestLabels): void {
    this.observed.push(labels)
  }

  refused(labels: { listener: string; code: string }): void {
    this.refusals.push({ ...labels })
  }
}

export interface Served {
  readonly address: string
  readonly port: number
  readonly listener: GrpcListener
  /** The listener's credentials: TLS ones follow `update(material)` for new connections. */
  readonly credentials: ReturnType<typeof serverCredentials>
  readonly metrics: RecordingMetrics
  readonly gate: RequestGate
  close(): void
}

export async function serve(options: ServeOptions): Promise<Served> {
  const kind = options.kind ?? 'client'
  const limits = options.limits ?? defaultLimits
  const metrics = new RecordingMetrics()
  const gate = options.gate ?? new RequestGate(limits.requestsInFlightMax)
  const pipeline = new Pipeline({
    authenticator: new Authenticator(
      { cluster: options.cluster ?? 'ringkv', tls: options.tls !== undefined },
      { nodeIdOf: options.nodeIdOf ?? (() => undefined), auth: options.auth ?? (() => undefined) },
    ),
    gate,
    clock: new SystemClock(),
    logger: silentLogger,
    limits,
    metrics,
    toStatus: (err) => toStatus(err, silentLogger),
    internalStatus,
    onFatal:
      options.onFatal ??
      ((err) => {
        throw err
      }),
    ...(options.cutOffFrom !== undefined ? { cutOffFrom: options.cutOffFrom } : {}),
  })
  const credentials = serverCredentials(options.tls, kind, options.clientCertRequired ?? false)
  const listener = new GrpcListener({ kind, limits }, { pipeline, credentials })
  for (const [definition, handlers] of options.services) listener.addService(definition, handlers)
  const port = await listener.bind({ host: '127.0.0.1', port: options.port ?? 0 })
  return {
    address: `127.0.0.1:${port}`,
    port,
    listener,
    credentials,
    metrics,
    gate,
    close: () => listener.forceShutdown(),
  }
}
