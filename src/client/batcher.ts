/**
 * Call batching (KvClientInit.batching): concurrent single-key get, put and delete calls bound for
 * the same node travel as one Multi call (kv.proto). A node's throughput is bounded by what each
 * gRPC call costs, not by the work of one op (a unary echo tops out at a few thousand calls per
 * second on a small box), and the node proposes the writes of one Multi in one Ready iteration.
 *
 * Where it sits: UNDER the retry loop. Every attempt of a get, put or delete (client.ts `call`,
 * after routing picked the attempt's endpoint: the shard's leader for writes and linearizable
 * reads, a nearby replica for weaker reads, the current endpoint without a map) is handed to
 * `get`/`put`/`delete` here instead of being sent as its own RPC. Each op keeps its own options,
 * route hint included, so one Multi to a node may carry ops of several shards, each checked (and,
 * on WRONG_SHARD, repaired) on its own. The attempt is queued per endpoint, and at the flush every queue
 * goes out as one Multi (split at maxOps ops and limits.batchBytesMax bytes). Each op's answer,
 * or its own error (OpError -> KvError, client/status.ts), settles that attempt alone, so the
 * retry loop above sees exactly what it sees for a unary call: a NOT_LEADER with a hint re-routes
 * that op (and the re-routed ops of one answer coalesce again); a write keeps its client id and
 * seq on every attempt (the tag is part of the queued request); a failure of the whole Multi
 * (UNAVAILABLE, DEADLINE_EXCEEDED...) is every op's failure, with the same "may have applied"
 * meaning for the writes in it.
 *
 * When: with maxDelayMs 0 (the default), at the end of the current turn of the event loop
 * (setImmediate: after every promise continuation of this turn has run, so the callers woken by
 * one answer all join the next batch), at no measurable cost in time; with maxDelayMs > 0, at most that
 * long after the first queued op, on the injected clock. A queue that reaches maxOps goes at once.
 * A flush of a single op sends its plain unary call (the same cost, and any node serves it).
 *
 * Deadlines and cancellation: a Multi carries the latest deadline of its ops (the server runs
 * every op under it); an op whose own deadline or signal fires first leaves at once with
 * DEADLINE_EXCEEDED or CANCELLED, exactly as a cancelled unary call does (a write may still apply,
 * which that code says), and a Multi whose every op left is cancelled.
 *
 * Older nodes: a Multi answered UNIMPLEMENTED (a node without the method) is sent again as unary
 * calls (nothing of it ran), and that endpoint gets unary calls for `unimplementedRecheckMs`. A
 * Multi refused as a whole for the node's (tightened) limits (INVALID_ARGUMENT, field `ops` or
 * `ops.bytes`, with `ringkv-limit`) lowers this endpoint's caps and its ops are queued again.
 */
import { Metadata, status as GrpcCode, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js'
import type { Clock, TimerHandle } from '../common/clock.ts'
import { ErrorCode, KvError, errorMetadataKeys } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import type {
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  KvServiceClient,
  MultiOp,
  MultiOpResult,
  MultiResponse,
  PutRequest,
  PutResponse,
} from '../gen/ringkv/v1/kv.ts'
import { unary, type RpcContext } from './rpc.ts'
import { abortError, detailsFromMetadata, kvErrorFromOpError } from './status.ts'

/** User-tunable batching settings (KvClientInit.batching). */
export interface BatchingInit {
  /** Coalesce concurrent calls bound for one node into Multi calls (default true). */
  readonly enabled?: boolean
  /** Ops in one Multi call, 1..limits.batchOpsMax (default limits.batchOpsMax). */
  readonly maxOps?: number
  /**
   * How long a queued op may wait for others, in milliseconds. 0 (the default): until the end of
   * the current turn of the event loop, which adds no measurable latency and still catches every
   * call started in the same turn (e.g. by a Promise.all, or by the callers one answer woke).
   */
  readonly maxDelayMs?: number
}

export interface BatchingConfig {
  readonly enabled: boolean
  readonly maxOps: number
  readonly maxDelayMs: number
}

export const batchingDefaults: BatchingConfig = {
  enabled: true,
  maxOps: limits.batchOpsMax,
  maxDelayMs: 0,
}

/** Validates user settings; misuse is a RangeError of the caller. */
export function resolveBatchingConfig(init: BatchingInit | undefined): BatchingConfig {
  const config: BatchingConfig = {
    enabled: init?.enabled ?? batchingDefaults.enabled,
    maxOps: init?.maxOps ?? batchingDefaults.maxOps,
    maxDelayMs: init?.maxDelayMs ?? batchingDefaults.maxDelayMs,
  }
  if (!Number.isSafeInteger(config.maxOps) || config.maxOps < 1 || config.maxOps > limits.batchOpsMax) {
    throw new RangeError(
      `batching.maxOps must be an integer in 1..${limits.batchOpsMax}, got ${config.maxOps}`,
    )
  }
  if (
    !Number.isSafeInteger(config.maxDelayMs) ||
    config.maxDelayMs < 0 ||
    config.maxDelayMs > limits.requestDeadlineMsMax
  ) {
    throw new RangeError(
      `batching.maxDelayMs must be an integer in 0..${limits.requestDeadlineMsMax}, got ${config.maxDelayMs}`,
    )
  }
  return config
}

/** How long an endpoint that answered UNIMPLEMENTED gets unary calls before a Multi is tried again. */
export const unimplementedRecheckMs = 60_000

export interface CallBatcherComponents {
  /** The KvService stub of an endpoint (throws once the client is closed). */
  readonly kv: (endpoint: string) => KvServiceClient
  readonly clock: Clock
  /** Runs `task` after the current turn of the event loop. Default: setImmediate. */
  readonly defer?: (task: () => void) => void
}

/** One Multi call in flight: how many of its ops still wait for it. */
interface Flight {
  live: number
  call: ClientUnaryCall | undefined
}

/** One queued attempt. Settles exactly once (`status` 'done' afterwards). */
interface Entry {
  readonly op: MultiOp
  /** Key and value bytes, as the server counts them against limits.batchBytesMax. */
  readonly bytes: number
  readonly rpc: RpcContext
  status: 'queued' | 'flying' | 'done'
  flight: Flight | undefined
  /** Settles with the op's part of a Multi answer. */
  deliver(result: MultiOpResult): void
  /** Sends the op as its own unary call, and settles with that call. */
  sendAlone(): void
  /** Settles with the failure of the whole Multi (the retry loop reads it with this op's signal). */
  fail(err: unknown): void
}

/** The queue and learned capabilities of one endpoint. */
interface EndpointState {
  // Invariant: `count` and `bytes` cover exactly the entries of `queue` whose status is 'queued'.
  queue: Entry[]
  count: number
  bytes: number
  /** Ops per Multi: the configured maxOps, lowered by the node's own limit when it said so. */
  opsMax: number
  /** Key and value bytes per Multi: limits.batchBytesMax, lowered likewise. */
  bytesMax: number
  /** The node answered UNIMPLEMENTED: unary calls until this time on the clock. */
  unaryUntilMs: number
}

export class CallBatcher {
  private readonly config: BatchingConfig
  private readonly components: CallBatcherComponents
  private readonly defer: (task: () => void) => void
  private readonly endpoints = new Map<string, EndpointState>()
  private scheduled = false
  private timer: TimerHandle | undefined

  constructor(config: BatchingConfig, components: CallBatcherComponents) {
    this.config = config
    this.components = components
    this.defer = components.defer ?? ((task) => void setImmediate(task))
  }

  /** One get attempt to `endpoint`, in the next Multi (or alone). */
  get(endpoint: string, request: GetRequest, rpc: RpcContext): Promise<GetResponse> {
    return this.submit(
      endpoint,
      { op: { $case: 'get', get: request } },
      request.key.length,
      rpc,
      (r) => (r?.$case === 'get' ? r.get : undefined),
      () => unary<GetResponse>(rpc, (md, co, cb) => this.components.kv(endpoint).get(request, md, co, cb)),
    )
  }

  /** One put attempt to `endpoint` (its exactly-once tag inside `request`), in the next Multi (or alone). */
  put(endpoint: string, request: PutRequest, rpc: RpcContext): Promise<PutResponse> {
    return this.submit(
      endpoint,
      { op: { $case: 'put', put: request } },
      request.key.length + request.value.length,
      rpc,
      (r) => (r?.$case === 'put' ? r.put : undefined),
      () => unary<PutResponse>(rpc, (md, co, cb) => this.components.kv(endpoint).put(request, md, co, cb)),
    )
  }

  /** One delete attempt to `endpoint`, in the next Multi (or alone). */
  delete(endpoint: string, request: DeleteRequest, rpc: RpcContext): Promise<DeleteResponse> {
    return this.submit(
      endpoint,
      { op: { $case: 'delete', delete: request } },
      request.key.length,
      rpc,
      (r) => (r?.$case === 'delete' ? r.delete : undefined),
      () =>
        unary<DeleteResponse>(rpc, (md, co, cb) => this.components.kv(endpoint).delete(request, md, co, cb)),
    )
  }

  /** Cancels the pending flush timer (queued ops end through their own signals). */
  close(): void {
    this.timer?.cancel()
    this.timer = undefined
    this.scheduled = false
  }

  private submit<Res>(
    endpoint: string,
    op: MultiOp,
    bytes: number,
    rpc: RpcContext,
    take: (result: MultiOpResult['result']) => Res | undefined,
    alone: () => Promise<Res>,
  ): Promise<Res> {
    if (!this.config.enabled || this.config.maxOps === 1) return alone()
    const state = this.stateOf(endpoint)
    if (state.unaryUntilMs > this.components.clock.nowMs()) return alone()
    return new Promise<Res>((resolve, reject) => {
      const signal = rpc.signal
      if (signal.aborted) {
        reject(abortError(signal))
        return
      }
      const settle = (): boolean => {
        if (entry.status === 'done') return false
        if (entry.status === 'queued') {
          state.count -= 1
          state.bytes -= entry.bytes
        }
        entry.status = 'done'
        signal.removeEventListener('abort', onAbort)
        return true
      }
      const onAbort = (): void => {
        const flight = entry.flight
        if (!settle()) return
        reject(abortError(signal))
        if (flight !== undefined) leaveFlight(flight)
      }
      const entry: Entry = {
        op,
        bytes,
        rpc,
        status: 'queued',
        flight: undefined,
        deliver: (result) => {
          if (!settle()) return
          const answer = result.result
          if (answer?.$case === 'error') {
            reject(kvErrorFromOpError(answer.error))
            return
          }
          const res = take(answer)
          if (res !== undefined) resolve(res)
          else
            reject(
              new KvError(
                ErrorCode.Internal,
                `Multi answered ${answer?.$case ?? 'nothing'} for a ${op.op?.$case ?? 'missing'} op`,
              ),
            )
        },
        sendAlone: () => {
          if (settle()) alone().then(resolve, reject)
        },
        fail: (err) => {
          if (settle()) reject(err)
        },
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.enqueue(endpoint, state, entry)
    })
  }

  private stateOf(endpoint: string): EndpointState {
    let state = this.endpoints.get(endpoint)
    if (state === undefined) {
      state = {
        queue: [],
        count: 0,
        bytes: 0,
        opsMax: this.config.maxOps,
        bytesMax: limits.batchBytesMax,
        unaryUntilMs: 0,
      }
      this.endpoints.set(endpoint, state)
    }
    return state
  }

  private enqueue(endpoint: string, state: EndpointState, entry: Entry): void {
    // An op that would overflow the batch sends the batch first.
    if (state.count > 0 && state.bytes + entry.bytes > state.bytesMax) this.flush(endpoint, state)
    entry.status = 'queued'
    entry.flight = undefined
    state.queue.push(entry)
    state.count += 1
    state.bytes += entry.bytes
    if (state.count >= state.opsMax) this.flush(endpoint, state)
    else this.schedule()
  }

  private schedule(): void {
    if (this.scheduled) return
    this.scheduled = true
    const run = (): void => {
      this.scheduled = false
      this.timer = undefined
      for (const [endpoint, state] of this.endpoints) if (state.count > 0) this.flush(endpoint, state)
    }
    if (this.config.maxDelayMs === 0) this.defer(run)
    // keepAlive: callers are blocked on this wait, as on a retry backoff.
    else this.timer = this.components.clock.setTimer(this.config.maxDelayMs, run, { keepAlive: true })
  }

  /** Sends every queued op of `endpoint`: Multi calls of at most opsMax ops and bytesMax bytes. */
  private flush(endpoint: string, state: EndpointState): void {
    const entries = state.queue.filter((e) => e.status === 'queued')
    state.queue = []
    state.count = 0
    state.bytes = 0
    for (const e of entries) e.status = 'flying'
    if (state.unaryUntilMs > this.components.clock.nowMs()) {
      for (const e of entries) e.sendAlone()
      return
    }
    let chunk: Entry[] = []
    let bytes = 0
    for (const e of entries) {
      if (chunk.length > 0 && (chunk.length >= state.opsMax || bytes + e.bytes > state.bytesMax)) {
        this.send(endpoint, state, chunk)
        chunk = []
        bytes = 0
      }
      chunk.push(e)
      bytes += e.bytes
    }
    if (chunk.length > 0) this.send(endpoint, state, chunk)
  }

  private send(endpoint: string, state: EndpointState, chunk: readonly Entry[]): void {
    if (chunk.length === 1) {
      chunk[0]?.sendAlone()
      return
    }
    const flight: Flight = { live: chunk.length, call: undefined }
    let deadlineMs = 0
    for (const e of chunk) {
      e.flight = flight
      deadlineMs = Math.max(deadlineMs, e.rpc.deadline.getTime())
    }
    try {
      flight.call = this.components
        .kv(endpoint)
        .multi(
          { ops: chunk.map((e) => e.op) },
          new Metadata(),
          { deadline: new Date(deadlineMs) },
          (err, res) => this.answered(endpoint, state, chunk, err, res),
        )
    } catch (err) {
      // The stub is gone (the client closed): every op fails as its unary call would have.
      for (const e of chunk) e.fail(err)
    }
  }

  private answered(
    endpoint: string,
    state: EndpointState,
    chunk: readonly Entry[],
    err: ServiceError | null,
    res: MultiResponse | undefined,
  ): void {
    const live = chunk.filter((e) => e.status === 'flying')
    if (err !== null) {
      if (isUnimplemented(err)) {
        // A node without Multi: nothing ran. Unary calls for a while, this batch included.
        state.unaryUntilMs = this.components.clock.nowMs() + unimplementedRecheckMs
        for (const e of live) e.sendAlone()
        return
      }
      if (this.learnLimit(state, err)) {
        // Refused as a whole before any op ran: queued again under the node's own limits.
        for (const e of live) this.enqueue(endpoint, state, e)
        return
      }
      for (const e of live) e.fail(err)
      return
    }
    const results = res?.results ?? []
    if (results.length !== chunk.length) {
      const mismatch = new KvError(
        ErrorCode.Internal,
        `Multi answered ${results.length} results for ${chunk.length} ops`,
      )
      for (const e of live) e.fail(mismatch)
      return
    }
    chunk.forEach((e, i) => e.deliver(results[i] as MultiOpResult))
  }

  /**
   * Lowers this endpoint's caps when the node refused a Multi for exceeding its limits (a node may
   * run with tightened limits). False when `err` is not that, or says nothing new (then the ops
   * fail with it rather than loop).
   */
  private learnLimit(state: EndpointState, err: ServiceError): boolean {
    if (err.metadata?.get(errorMetadataKeys.code)[0] !== ErrorCode.InvalidArgument) return false
    const { field, limit } = detailsFromMetadata(err.metadata)
    if (limit === undefined) return false
    if (field === 'ops' && limit >= 1 && limit < state.opsMax) {
      state.opsMax = limit
      return true
    }
    if (field === 'ops.bytes' && limit < state.bytesMax) {
      state.bytesMax = limit
      return true
    }
    return false
  }
}

/** One op of `flight` left early; the last one to leave cancels the call. */
function leaveFlight(flight: Flight): void {
  flight.live -= 1
  if (flight.live === 0) flight.call?.cancel()
}

/** The node has no Multi method (grpc-js answers so for a method a server does not register). */
function isUnimplemented(err: ServiceError): boolean {
  return err.code === GrpcCode.UNIMPLEMENTED && (err.metadata?.get(errorMetadataKeys.code).length ?? 0) === 0
}
