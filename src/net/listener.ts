/**
 * GrpcListener: one gRPC server on one address (kvd's client listener or its peer listener), with
 * its credentials (tls.ts) and every handler behind the pipeline (pipeline.ts).
 *
 * The grpc-js Server stays inside: services are added only through `addService`, which wraps each
 * method for this listener and refuses (a programmer error, at start) a method the authorization
 * table (access.ts) does not name. Third-party services (health, reflection) register through
 * `registry()`, a stand-in for the Server that does the same.
 */
import { Server, type ServerCredentials, type ServiceDefinition, type UntypedHandleCall } from '@grpc/grpc-js'
import { assert } from '../common/assert.ts'
import { formatHostPort, type HostPort } from '../common/config.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { Limits } from '../common/limits.ts'
import { ruleOf, type ListenerKind } from './access.ts'
import type { Handler, Pipeline } from './pipeline.ts'

export interface GrpcListenerInit {
  readonly kind: ListenerKind
  readonly limits: Readonly<Limits>
}

export interface GrpcListenerComponents {
  readonly pipeline: Pipeline
  readonly credentials: ServerCredentials
}

/** grpc-js's view of a service definition (ts-proto's and proto-loader's both fit). */
type AnyServiceDefinition = Record<
  string,
  {
    readonly path: string
    readonly requestStream: boolean
    readonly responseStream: boolean
    readonly originalName?: string
  }
>

export class GrpcListener {
  readonly kind: ListenerKind
  private readonly server: Server
  private readonly components: GrpcListenerComponents
  private readonly paths = new Set<string>()

  constructor(init: GrpcListenerInit, components: GrpcListenerComponents) {
    this.kind = init.kind
    this.components = components
    this.server = new Server({
      'grpc.max_receive_message_length': init.limits.grpcMessageBytesMax,
      'grpc.max_send_message_length': init.limits.grpcMessageBytesMax,
    })
  }

  /** The full names of the methods served here. */
  get methods(): ReadonlySet<string> {
    return this.paths
  }

  /**
   * Serves `definition` with `handlers` (pipeline handlers, or grpc-js handlers for third-party
   * services), each method behind the pipeline. Every method must have a rule in access.ts.
   */
  addService(
    definition: AnyServiceDefinition,
    handlers: Readonly<Record<string, Handler | UntypedHandleCall>>,
  ): void {
    const wrapped: Record<string, UntypedHandleCall> = {}
    for (const [name, method] of Object.entries(definition)) {
      assert(ruleOf(method.path) !== undefined, `no access rule for ${method.path} (net/access.ts)`)
      // grpc-js also finds handlers by the method's original (proto-loader) name.
      const handler =
        handlers[name] ?? (method.originalName === undefined ? undefined : handlers[method.originalName])
      // A method without a handler is answered UNIMPLEMENTED by grpc-js itself.
      if (handler === undefined) continue
      wrapped[name] = this.components.pipeline.wrap(this.kind, method.path, method, handler)
      this.paths.add(method.path)
    }
    this.server.addService(definition as unknown as ServiceDefinition, wrapped)
  }

  /** A stand-in for the grpc-js Server that third-party `addToServer(server)` helpers can use. */
  registry(): Pick<Server, 'addService'> {
    return {
      addService: (definition: ServiceDefinition, implementation: Record<string, UntypedHandleCall>) =>
        this.addService(definition as unknown as AnyServiceDefinition, implementation),
    }
  }

  /** Binds `at` (port 0: any free port) and resolves with the port bound. */
  bind(at: HostPort): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(formatHostPort(at), this.components.credentials, (err, port) => {
        if (err !== null) reject(listenError(this.kind, at, err))
        else resolve(port)
      })
    })
  }

  /** Stops taking calls; resolves when the open ones have ended. */
  tryShutdown(): Promise<void> {
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()))
  }

  /** Ends every call and connection now. */
  forceShutdown(): void {
    this.server.forceShutdown()
  }
}

/** A bind failure as a KvError naming the address (UNAVAILABLE: the world, not the caller). */
export function listenError(what: string, at: HostPort, cause: unknown): KvError {
  const reason =
    (cause as NodeJS.ErrnoException).code ?? (cause instanceof Error ? cause.message : String(cause))
  const inUse = /EADDRINUSE|address already in use/i.test(`${reason} ${(cause as Error).message ?? ''}`)
  const field = what === 'http' ? 'httpListen' : what === 'peer' ? 'peerListen' : 'listen'
  return new KvError(
    ErrorCode.Unavailable,
    `cannot listen for ${what === 'client' ? 'grpc' : what} on ${formatHostPort(at)}: ${inUse ? 'address already in use (EADDRINUSE)' : reason}`,
    { cause, details: { field } },
  )
}
