/**
 * The server request pipeline: every call on every listener goes through it, in this order.
 *
 *   1. authentication  who is on the connection (authenticator.ts): UNAUTHENTICATED when the
 *                      credentials are bad
 *   2. claims          `ringkv-from`, `ringkv-forwarded-by` and `ringkv-principal` (metadata.ts)
 *                      must be backed by the caller's node certificate: PERMISSION_DENIED
 *   3. authorization   the method's access on this listener (access.ts), default deny:
 *                      UNAUTHENTICATED without an identity, else PERMISSION_DENIED
 *   4. admission       for gated methods, the quotas per client connection and per principal
 *                      (connection-quota.ts), then the node-wide request gate (gate.ts):
 *                      OVERLOADED when full, UNAVAILABLE while draining
 *   5. deadline        the caller's deadline (at most limits.requestDeadlineMsMax) as an
 *                      AbortSignal, also aborted when the caller cancels; every call's deadline
 *                      waits in one sweep with one timer (deadline-sweep.ts), not a timer each
 *   6. decoding        a request that did not decode is INVALID_ARGUMENT (decode.ts)
 *   7. the handler     with a CallContext: principal, signal, deadline, forwarded
 *   8. errors          any failure becomes its status through the one error map (server/status.ts,
 *                      injected as `toStatus`); a broken invariant answers INTERNAL and is handed
 *                      to `onFatal`
 *   9. metrics         every unary and server-streaming call is observed by method, level and code
 *
 * Steps 1-3 run for every handler, ringkv's own and the third-party ones (health, reflection),
 * which the listener wraps as they are (`guard`). ringkv's handlers are written against this
 * pipeline (`unary`, `serverStream`, `clientStream`, `bidi`) and so cannot skip a step: they are
 * only ever called with the context the steps produced. The request of a refused call is never
 * decoded by a handler.
 */
import type {
  handleBidiStreamingCall,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerDuplexStream,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
  StatusObject,
  UntypedHandleCall,
} from '@grpc/grpc-js'
import { AssertionError } from '../common/assert.ts'
import { DeadlineError, type Clock } from '../common/clock.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import type { Limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import { accessError, allows, ruleOf, type Access, type ListenerKind, type MethodRule } from './access.ts'
import type { AuthContext, Authenticator } from './authenticator.ts'
import { ConnectionQuota } from './connection-quota.ts'
import { DeadlineSweep, type DeadlineEntry } from './deadline-sweep.ts'
import { decoded, type MalformedRequest } from './decode.ts'
import type { RequestGate } from './gate.ts'
import { describePrincipal, principalKey, type Principal } from './identity.ts'
import { decodePrincipal, nodeIdText, peerMetadataKeys } from './metadata.ts'

/** What a call's context needs of any kind of gRPC call: its deadline and its cancellation. */
interface ContextCall {
  getDeadline(): Date | number
  once(event: 'cancelled', listener: () => void): unknown
  off(event: 'cancelled', listener: () => void): unknown
}
/** What a handler knows of its call. */
export interface CallContext {
  /** Full method name, `/ringkv.v1.KvService/Get`. */
  readonly path: string
  /** Short method name for metrics and logs, `Get`. */
  readonly method: string
  readonly listener: ListenerKind
  /** Who is on the connection. */
  readonly caller: Principal
  /**
   * Who the call is for: the caller, or, for a client's request a member passed on, that client
   * (the member vouches: it authenticated and authorized the client at its own door).
   */
  readonly principal: Principal
  /** The node that passed this call on (checked against its certificate), else undefined. */
  readonly forwardedBy: NodeId | undefined
  /** The call came from another node and must not be passed on again. */
  readonly forwarded: boolean
  /** Aborted by the caller's cancel or the deadline, whichever comes first. */
  readonly signal: AbortSignal
  /** The caller's deadline as grpc-js gives it (ms since the epoch or a Date; Infinity = none). */
  readonly deadline: Date | number
  /** The consistency level the request asked for, for the metrics ('none' until known). */
  consistency: string
  /** Throws UNAUTHENTICATED / PERMISSION_DENIED unless the principal has `access` on this listener. */
  authorize(access: Access, what: string): void
}

/** Handlers written against the pipeline. */
export type Handler =
  | {
      readonly kind: 'unary'
      readonly serve: (
        request: never,
        ctx: CallContext,
        call: ServerUnaryCall<unknown, unknown>,
      ) => Promise<unknown>
    }
  | {
      readonly kind: 'serverStream'
      readonly serve: (
        request: never,
        ctx: CallContext,
        call: ServerWritableStream<unknown, unknown>,
      ) => Promise<void>
    }
  | {
      readonly kind: 'clientStream'
      readonly serve: (call: ServerReadableStream<never, unknown>, ctx: CallContext) => Promise<unknown>
    }
  | {
      readonly kind: 'bidi'
      readonly serve: (call: ServerDuplexStream<never, unknown>, ctx: CallContext) => void
    }

/** A unary handler: resolves with the answer or rejects with the error to send. */
export function unary<Req, Res>(
  serve: (request: Req, ctx: CallContext, call: ServerUnaryCall<Req | MalformedRequest, Res>) => Promise<Res>,
): Handler {
  return { kind: 'unary', serve: serve as unknown as Extract<Handler, { kind: 'unary' }>['serve'] }
}

/** A server-streaming handler: writes its messages; the pipeline ends the call when it resolves. */
export function serverStream<Req, Res>(
  serve: (
    request: Req,
    ctx: CallContext,
    call: ServerWritableStream<Req | MalformedRequest, Res>,
  ) => Promise<void>,
): Handler {
  return {
    kind: 'serverStream',
    serve: serve as unknown as Extract<Handler, { kind: 'serverStream' }>['serve'],
  }
}

/** A client-streaming handler: reads the call (messages may be MalformedRequest), resolves with the answer. */
export function clientStream<Req, Res>(
  serve: (call: ServerReadableStream<Req | MalformedRequest, Res>, ctx: CallContext) => Promise<Res>,
): Handler {
  return {
    kind: 'clientStream',
    serve: serve as unknown as Extract<Handler, { kind: 'clientStream' }>['serve'],
  }
}

/** A bidirectional handler: owns the stream from here on (it ends it and reports its errors). */
export function bidi<Req, Res>(
  serve: (call: ServerDuplexStream<Req | MalformedRequest, Res>, ctx: CallContext) => void,
): Handler {
  return { kind: 'bidi', serve: serve as unknown as Extract<Handler, { kind: 'bidi' }>['serve'] }
}

export function isHandler(value: unknown): value is Handler {
  return (
    typeof value === 'object' &&
    value !== null &&
    'kind' in value &&
    'serve' in value &&
    typeof (value as { serve: unknown }).serve === 'function'
  )
}

export interface RequestLabels {
  readonly method: string
  readonly consistency: string
  readonly code: string
}

/** What the pipeline reports (server/http.ts KvdMetrics). */
export interface PipelineMetrics {
  observe(labels: RequestLabels, seconds: number): void
  readonly inFlight: { inc(): void; dec(): void }
  /** A call refused by authentication, claims or authorization. */
  refused(labels: { readonly listener: ListenerKind; readonly code: string }): void
}

export interface PipelineComponents {
  readonly authenticator: Authenticator
  readonly gate: RequestGate
  readonly clock: Clock
  readonly logger: Logger
  readonly limits: Readonly<Limits>
  readonly metrics: PipelineMetrics
  /** The one error -> status map (server/status.ts toStatus); rethrows AssertionError. */
  readonly toStatus: (err: unknown) => StatusObject
  /** The status of a call that met a broken invariant (server/status.ts internalStatus). */
  readonly internalStatus: () => StatusObject
  /** Called with a broken invariant met while serving; must not return normally. */
  readonly onFatal: (err: AssertionError) => void
  /**
   * True while an injected drop fault cuts this node off from node `peer` (kvd
   * --allow-fault-injection): a request that peer passes on is refused UNAVAILABLE at once, as a
   * real partition would stop it, instead of being served across the cut (a cut-off leader took
   * forwarded writes it could not commit, and the majority side's forwarders waited on them).
   * Raft traffic has its own check in the transport. Default: never.
   */
  readonly cutOffFrom?: (peer: NodeId) => boolean
}

/** Steps 1-3 for one call: who, for whom, and that they may. */
interface Admitted {
  readonly rule: MethodRule
  readonly caller: Principal
  readonly principal: Principal
  readonly forwardedBy: NodeId | undefined
}

/**
 * The time a request may take, from its gRPC deadline's remaining milliseconds (Infinity when the
 * caller set none: limits.requestDeadlineMsMax). A deadline further away is INVALID_ARGUMENT.
 */
export function checkDeadline(remainingMs: number, limits: Readonly<Limits>): number {
  if (remainingMs === Infinity) return limits.requestDeadlineMsMax
  if (remainingMs > limits.requestDeadlineMsMax)
    throw new KvError(
      ErrorCode.InvalidArgument,
      `deadline is ${Math.round(remainingMs)} ms away, more than ${limits.requestDeadlineMsMax}`,
      { details: { field: 'deadline', limit: limits.requestDeadlineMsMax } },
    )
  return Math.max(0, remainingMs)
}

/** The status code of a successful call, for the metrics. */
const okCode = 'OK'

export class Pipeline {
  private readonly c: PipelineComponents
  private readonly log: Logger
  private readonly quota: ConnectionQuota
  private readonly deadlines: DeadlineSweep

  constructor(components: PipelineComponents) {
    this.c = components
    this.log = components.logger.child({ component: 'pipeline' })
    this.quota = new ConnectionQuota(components.limits)
    this.deadlines = new DeadlineSweep(components.clock)
  }

  /**
   * The grpc-js handler of method `path` on `listener`: `handler` through the whole pipeline, or
   * a third-party grpc-js handler behind steps 1-3. `shape` says what kind of call the method is.
   */
  wrap(
    listener: ListenerKind,
    path: string,
    shape: { readonly requestStream: boolean; readonly responseStream: boolean },
    handler: Handler | UntypedHandleCall,
  ): UntypedHandleCall {
    const method = path.slice(path.lastIndexOf('/') + 1)
    if (!isHandler(handler)) return this.guardRaw(listener, path, shape, handler)
    switch (handler.kind) {
      case 'unary':
        return this.unary(listener, path, method, handler.serve)
      case 'serverStream':
        return this.serverStream(listener, path, method, handler.serve)
      case 'clientStream':
        return this.clientStream(listener, path, method, handler.serve)
      case 'bidi':
        return this.bidi(listener, path, method, handler.serve)
    }
  }

  /** Steps 1-3 (see the file comment). Throws the refusal. */
  private admit(listener: ListenerKind, path: string, metadata: Metadata, auth: () => AuthContext): Admitted {
    const rule = ruleOf(path)
    const what = path.slice(1).replace('/', '.')
    if (rule === undefined) throw new KvError(ErrorCode.PermissionDenied, `${what} is not served here`)
    const caller = this.c.authenticator.authenticate(listener, auth(), metadata)
    const open = caller.kind === 'open'
    // Claims of being a node, or of speaking for a client.
    const claimed = (key: string): number | undefined => {
      const values = metadata.get(key)
      if (values.length === 0) return undefined
      const id = nodeIdText(values[0])
      if (id === undefined || values.length > 1)
        throw new KvError(ErrorCode.InvalidArgument, `${key} must be one node id`, {
          details: { field: key },
        })
      if (open) return id
      if (caller.kind !== 'node')
        throw new KvError(ErrorCode.PermissionDenied, `${key} may only come from a node`)
      if (caller.nodeId !== id)
        throw new KvError(
          ErrorCode.PermissionDenied,
          `${key} says node ${id}, but the certificate is ${describePrincipal(caller)}`,
        )
      return id
    }
    claimed(peerMetadataKeys.from)
    const forwardedBy = claimed(peerMetadataKeys.forwardedBy) as NodeId | undefined
    let principal = caller
    const onBehalf = metadata.get(peerMetadataKeys.principal)
    if (onBehalf.length > 0) {
      if (!open && (caller.kind !== 'node' || forwardedBy === undefined || listener !== 'peer'))
        throw new KvError(
          ErrorCode.PermissionDenied,
          `${peerMetadataKeys.principal} may only come with a request a node passes on`,
        )
      const first = onBehalf[0]
      const decodedPrincipal = decodePrincipal(
        typeof first === 'string' ? first : (first?.toString('utf8') ?? ''),
      )
      if (decodedPrincipal === undefined || onBehalf.length > 1)
        throw new KvError(ErrorCode.InvalidArgument, `malformed ${peerMetadataKeys.principal}`, {
          details: { field: peerMetadataKeys.principal },
        })
      if (!open) principal = decodedPrincipal
    }
    const access = rule[listener]
    if (!allows(access, caller, listener)) throw accessError(access, caller, what)
    if (forwardedBy !== undefined && this.c.cutOffFrom?.(forwardedBy) === true)
      throw new KvError(ErrorCode.Unavailable, `node ${forwardedBy} is cut off by an injected fault`)
    return { rule, caller, principal, forwardedBy }
  }

  /** The context of an admitted call, with its signal; `dispose` releases the deadline and listener. */
  private context(
    admitted: Admitted,
    listener: ListenerKind,
    path: string,
    method: string,
    call: ContextCall,
  ): { ctx: CallContext; dispose: () => void } {
    const { clock, limits } = this.c
    // One controller per call and its deadline in the pipeline's one sweep: this runs on every request.
    const controller = new AbortController()
    const onCancelled = (): void =>
      controller.abort(new KvError(ErrorCode.Cancelled, 'cancelled by the client'))
    call.once('cancelled', onCancelled)
    let expiry: DeadlineEntry | undefined
    const dispose = (): void => {
      if (expiry !== undefined) this.deadlines.remove(expiry)
      call.off('cancelled', onCancelled)
    }
    const deadline = call.getDeadline()
    if (admitted.rule.deadline === 'request') {
      const atMs = deadline instanceof Date ? deadline.getTime() : deadline
      let ms: number
      try {
        ms = checkDeadline(atMs === Infinity ? Infinity : atMs - clock.wallMs(), limits)
      } catch (err) {
        dispose()
        throw err
      }
      expiry = this.deadlines.add(ms, () => controller.abort(new DeadlineError()))
    }
    const { caller, principal, forwardedBy } = admitted
    const ctx: CallContext = {
      path,
      method,
      listener,
      caller,
      principal,
      forwardedBy,
      forwarded: forwardedBy !== undefined,
      signal: controller.signal,
      deadline,
      consistency: 'none',
      authorize: (access, what) => {
        if (!allows(access, principal, listener)) throw accessError(access, principal, what)
      },
    }
    return { ctx, dispose }
  }

  /**
   * Admission of a gated method (step 4); returns the release. Calls a member forwards share its
   * one connection: they count per original client on it.
   */
  private enter(admitted: Admitted, peer: string): () => void {
    if (!admitted.rule.gated) return () => {}
    const who = principalKey(admitted.principal)
    const releaseQuota = this.quota.admit(who, admitted.forwardedBy !== undefined ? `${peer}/${who}` : peer)
    try {
      this.c.gate.enter()
    } catch (err) {
      releaseQuota()
      throw err
    }
    this.c.metrics.inFlight.inc()
    return () => {
      this.c.metrics.inFlight.dec()
      this.c.gate.leave()
      releaseQuota()
    }
  }

  /** The status to send for `err`; a broken invariant is handed to onFatal after INTERNAL is chosen. */
  private statusOf(err: unknown): { status: StatusObject; fatal: AssertionError | undefined } {
    try {
      return { status: this.c.toStatus(err), fatal: undefined }
    } catch (fatal) {
      if (fatal instanceof AssertionError) return { status: this.c.internalStatus(), fatal }
      throw fatal
    }
  }

  private refusedBefore(listener: ListenerKind, path: string, err: unknown): void {
    const code = isKvError(err) ? err.code : ErrorCode.Internal
    if (code === ErrorCode.Unauthenticated || code === ErrorCode.PermissionDenied) {
      this.c.metrics.refused({ listener, code })
      this.log.debug({ listener, path, code, reason: (err as Error).message }, 'call refused')
    }
  }

  private observe(method: string, ctx: CallContext | undefined, startedMs: number, err: unknown): void {
    const code = err === undefined ? okCode : isKvError(err) ? err.code : asCode(err)
    this.c.metrics.observe(
      { method, consistency: ctx?.consistency ?? 'none', code },
      (this.c.clock.nowMs() - startedMs) / 1000,
    )
  }

  /**
   * One call's lifecycle, whatever its kind: admission, entry (quotas, the gate), its context
   * (deadline, cancellation), the handler; then, once it settles, release, metrics and `settled`.
   */
  private lifecycle<T>(
    listener: ListenerKind,
    path: string,
    method: string,
    call: ContextCall & {
      readonly metadata: Metadata
      getAuthContext(): AuthContext
      getPeer(): string
    },
    serve: (ctx: CallContext) => Promise<T>,
    settled: { ok(value: T): void; failed(err: unknown): void },
    onRefused: () => void = () => {},
  ): void {
    const startedMs = this.c.clock.nowMs()
    let ctx: CallContext | undefined
    let release = (): void => {}
    let dispose = (): void => {}
    const run = async (): Promise<T> => {
      let admitted: Admitted
      try {
        admitted = this.admit(listener, path, call.metadata, () => call.getAuthContext())
      } catch (err) {
        this.refusedBefore(listener, path, err)
        onRefused()
        throw err
      }
      release = this.enter(admitted, call.getPeer())
      const built = this.context(admitted, listener, path, method, call)
      ctx = built.ctx
      dispose = built.dispose
      return await serve(ctx)
    }
    const finish = (err: unknown): void => {
      dispose()
      release()
      this.observe(method, ctx, startedMs, err)
    }
    run().then(
      (value) => {
        finish(undefined)
        settled.ok(value)
      },
      (err: unknown) => {
        finish(err)
        settled.failed(err)
      },
    )
  }

  /** Answers `err` with its status through `send`; a broken invariant then fails the node. */
  private fail(err: unknown, send: (status: StatusObject) => void): void {
    const { status, fatal } = this.statusOf(err)
    send(status)
    if (fatal !== undefined) this.c.onFatal(fatal)
  }

  private unary(
    listener: ListenerKind,
    path: string,
    method: string,
    serve: Extract<Handler, { kind: 'unary' }>['serve'],
  ): handleUnaryCall<unknown, unknown> {
    return (call, callback) =>
      this.lifecycle(
        listener,
        path,
        method,
        call,
        (ctx) => serve(decoded(call.request) as never, ctx, call),
        {
          ok: (response) => callback(null, response),
          failed: (err) => this.fail(err, (status) => callback(status)),
        },
      )
  }

  private serverStream(
    listener: ListenerKind,
    path: string,
    method: string,
    serve: Extract<Handler, { kind: 'serverStream' }>['serve'],
  ): handleServerStreamingCall<unknown, unknown> {
    return (call) =>
      this.lifecycle(
        listener,
        path,
        method,
        call,
        async (ctx) => {
          await serve(decoded(call.request) as never, ctx, call)
          call.end()
        },
        {
          ok: () => {},
          failed: (err) => {
            if (call.cancelled && !(err instanceof AssertionError)) return
            this.fail(err, (status) => call.emit('error', status))
          },
        },
      )
  }

  private clientStream(
    listener: ListenerKind,
    path: string,
    method: string,
    serve: Extract<Handler, { kind: 'clientStream' }>['serve'],
  ): handleClientStreamingCall<unknown, unknown> {
    return (call, callback) => {
      let answered = false
      const answer = (...args: Parameters<typeof callback>): void => {
        if (answered) return
        answered = true
        callback(...args)
      }
      this.lifecycle(
        listener,
        path,
        method,
        call,
        (ctx) => serve(call as ServerReadableStream<never, unknown>, ctx),
        {
          ok: (response) => answer(null, response),
          failed: (err) => this.fail(err, (status) => answer(status)),
        },
        // Drain what the caller sends, so the refusal is not held up by flow control.
        () => call.on('data', () => {}),
      )
    }
  }

  private bidi(
    listener: ListenerKind,
    path: string,
    method: string,
    serve: Extract<Handler, { kind: 'bidi' }>['serve'],
  ): handleBidiStreamingCall<unknown, unknown> {
    return (call) => {
      let built: { ctx: CallContext; dispose: () => void }
      let release: () => void
      try {
        const admitted = this.admit(listener, path, call.metadata, () => call.getAuthContext())
        release = this.enter(admitted, call.getPeer())
        try {
          built = this.context(admitted, listener, path, method, call)
        } catch (err) {
          release()
          throw err
        }
      } catch (err) {
        this.refusedBefore(listener, path, err)
        call.on('data', () => {})
        const { status, fatal } = this.statusOf(err)
        call.emit('error', status)
        if (fatal !== undefined) this.c.onFatal(fatal)
        return
      }
      let ended = false
      const done = (): void => {
        if (ended) return
        ended = true
        built.dispose()
        release()
      }
      for (const event of ['cancelled', 'finish', 'error', 'close'] as const) call.once(event, done)
      try {
        serve(call as ServerDuplexStream<never, unknown>, built.ctx)
      } catch (err) {
        const { status, fatal } = this.statusOf(err)
        call.emit('error', status)
        if (fatal !== undefined) this.c.onFatal(fatal)
      }
    }
  }

  /** A third-party handler behind steps 1-3 (health, reflection). */
  private guardRaw(
    listener: ListenerKind,
    path: string,
    shape: { readonly requestStream: boolean; readonly responseStream: boolean },
    handler: UntypedHandleCall,
  ): UntypedHandleCall {
    const refusal = (metadata: Metadata, auth: () => AuthContext): StatusObject | undefined => {
      try {
        this.admit(listener, path, metadata, auth)
        return undefined
      } catch (err) {
        this.refusedBefore(listener, path, err)
        return this.statusOf(err).status
      }
    }
    if (!shape.requestStream && !shape.responseStream) {
      const h = handler as handleUnaryCall<unknown, unknown>
      return ((call, callback) => {
        const refused = refusal(call.metadata, () => call.getAuthContext())
        if (refused !== undefined) callback(refused)
        else h(call, callback)
      }) satisfies handleUnaryCall<unknown, unknown>
    }
    if (!shape.requestStream) {
      const h = handler as handleServerStreamingCall<unknown, unknown>
      return ((call) => {
        const refused = refusal(call.metadata, () => call.getAuthContext())
        if (refused !== undefined) call.emit('error', refused)
        else h(call)
      }) satisfies handleServerStreamingCall<unknown, unknown>
    }
    if (!shape.responseStream) {
      const h = handler as handleClientStreamingCall<unknown, unknown>
      return ((call, callback) => {
        const refused = refusal(call.metadata, () => call.getAuthContext())
        if (refused === undefined) return h(call, callback)
        call.on('data', () => {})
        callback(refused)
      }) satisfies handleClientStreamingCall<unknown, unknown>
    }
    const h = handler as handleBidiStreamingCall<unknown, unknown>
    return ((call) => {
      const refused = refusal(call.metadata, () => call.getAuthContext())
      if (refused === undefined) return h(call)
      call.on('data', () => {})
      call.emit('error', refused)
    }) satisfies handleBidiStreamingCall<unknown, unknown>
  }
}

/** The metrics code of a failure that is not a KvError. */
function asCode(err: unknown): string {
  if (err instanceof Error && err.name === 'DeadlineError') return ErrorCode.DeadlineExceeded
  if (err instanceof Error && err.name === 'AbortError') return ErrorCode.Cancelled
  return ErrorCode.Internal
}
