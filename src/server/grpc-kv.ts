/**
 * The KvService handlers: wiring only. Each call goes through the same steps:
 *
 *   admit (RequestGate: OVERLOADED / UNAVAILABLE while draining) -> decode check (malformed bytes
 *   are INVALID_ARGUMENT) -> validate.ts (proto -> shard types, limits) -> deadline -> the replica
 *   -> proto response with its Receipt; any error -> status.ts.
 *
 * Every call is counted in the metrics by method, requested consistency and outcome code. Logs
 * carry the key's hash and length, never the key or value.
 *
 * Scan streams pages of at most limits.scanPageEntriesMax entries (and at most one gRPC frame of
 * bytes), each with a cursor that resumes strictly after its last entry. It waits for 'drain'
 * when the client reads slowly (backpressure) and stops reading the replica as soon as the client
 * cancels or the deadline passes.
 */
import type {
  handleServerStreamingCall,
  handleUnaryCall,
  sendUnaryData,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js'
import { AssertionError } from '../common/assert.ts'
import { DeadlineError, type Clock, type TimerHandle } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { Limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import {
  KvServiceService,
  type BatchGetRequest,
  type BatchGetResponse,
  type BatchRequest,
  type BatchResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type KeyValue,
  type KvServiceServer,
  type MultiOp,
  type MultiOpResult,
  type MultiRequest,
  type MultiResponse,
  type PutRequest,
  type PutResponse,
  type Receipt as ProtoReceipt,
  type ScanRequest,
  type ScanResponse,
} from '../gen/ringkv/v1/kv.ts'
import type { Hasher } from '../hashing/index.ts'
import type { BatchOp, Receipt, Replica, ScanPosition, ShardSet } from '../shard/index.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'
import { decoded, withTolerantDecoding, type MalformedRequest } from './decode.ts'
import type { RequestGate } from './gate.ts'
import type { KvdMetrics } from './http.ts'
import { asKvError, internalStatus, metadataKeys, okCode, toOpError, toStatus } from './status.ts'
import {
  checkBatch,
  checkBatchGet,
  checkDeadline,
  checkDelete,
  checkGet,
  checkMulti,
  checkPut,
  checkScan,
  consistencyOfLevel,
} from './validate.ts'

export interface KvServiceComponents {
  /** The shards of this node; every request goes to the replica of its key's shard. */
  readonly shards: ShardSet
  readonly limits: Readonly<Limits>
  readonly clock: Clock
  readonly logger: Logger
  readonly metrics: KvdMetrics
  readonly hasher: Hasher
  readonly gate: RequestGate
  /** 16 bytes; binds scan cursors to this cluster. */
  readonly clusterId: Uint8Array
  /** Called with a broken invariant (AssertionError) met while serving; must not return normally. */
  readonly onFatal: (err: AssertionError) => void
}

/** KvService with request decoding that turns garbage into INVALID_ARGUMENT (decode.ts). */
export const kvServiceDefinition = withTolerantDecoding(KvServiceService)

/** What a handler learns while it runs, for the metrics and logs of the call. */
interface CallContext {
  consistency: string
  readonly signal: AbortSignal
}

/** A Uint8Array as a Buffer without copying (the generated types want Buffer). */
function buf(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

const emptyBuffer = Buffer.alloc(0)

/** The proto receipt of a shard receipt. term is 0 on a single unreplicated node. */
export function toProtoReceipt(receipt: Receipt): ProtoReceipt {
  return {
    nodeId: receipt.nodeId,
    shardId: receipt.shardId,
    appliedIndex: receipt.appliedIndex,
    delivered: consistencyOfLevel[receipt.level],
    stalenessMs: Math.max(0, Math.round(receipt.stalenessMs)),
    term: receipt.term ?? 0,
  }
}

type VersionedValueLike = {
  readonly value: Uint8Array
  readonly version: number
  readonly createVersion: number
}

/** The answer of one op of a Multi call, with what its metrics need. */
interface MultiOpServed {
  /** A result, or the op's OpError. */
  readonly result: NonNullable<MultiOpResult['result']>
  /** The level the op asked for; 'none' when it was refused before that was known. */
  readonly consistency: string
  /** The metrics label of the op's kind. */
  readonly method: string
  readonly finishedMs: number
}

const multiMethods = { get: 'Multi.Get', put: 'Multi.Put', delete: 'Multi.Delete' } as const

/** Framing and receipt we reserve per result of a Multi answer. */
const multiResultOverheadBytes = 96
/** Per-entry framing we reserve when filling a scan page up to one gRPC frame. */
const scanEntryOverheadBytes = 32
/** Room left in a frame for the page's own fields (cursor, receipt). */
const scanPageReserveBytes = 64 * 1024

export function createKvService(components: KvServiceComponents): KvServiceServer {
  const { shards, limits, clock, metrics, gate, hasher, clusterId } = components
  const log = components.logger

  /** The replica of the shard owning `key` (any bytes: validation comes after routing). */
  const replicaOf = (key: Uint8Array | undefined): Replica =>
    shards.replicaAt(shards.indexOfHash(hasher.hash64(key ?? emptyBuffer)))

  // Per-request trace lines hash the key (keys never go into logs); only pay for it when
  // trace is on, which it rarely is: this runs on every request.
  const traceRequests = log.isLevelEnabled('trace')
  const traceRequest = (method: string, key: Uint8Array, extra: Record<string, number> = {}): void => {
    if (!traceRequests) return
    log.trace({ method, keyHash: hasher.hash64(key).toString(16), keyBytes: key.length, ...extra }, 'request')
  }

  /** Admission, deadline and cancellation around one call; returns a release function. */
  const begin = (
    call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>,
  ): { ctx: CallContext; release: () => void } => {
    gate.enter()
    metrics.inFlight.inc()
    // One signal per call, aborted by the client's cancel or by our deadline timer, whichever
    // comes first (one controller and one timer: this runs on every request).
    const controller = new AbortController()
    const onCancelled = (): void =>
      controller.abort(new KvError(ErrorCode.Cancelled, 'cancelled by the client'))
    call.once('cancelled', onCancelled)
    let deadline: TimerHandle | undefined
    const release = (): void => {
      deadline?.cancel()
      call.off('cancelled', onCancelled)
      metrics.inFlight.dec()
      gate.leave()
    }
    try {
      const at = call.getDeadline()
      const atMs = at instanceof Date ? at.getTime() : at
      const ms = checkDeadline(atMs === Infinity ? Infinity : atMs - clock.wallMs(), limits)
      deadline = clock.setTimer(ms, () => controller.abort(new DeadlineError()))
    } catch (err) {
      release()
      throw err
    }
    return { ctx: { consistency: 'none', signal: controller.signal }, release }
  }

  const finish = (method: string, ctx: CallContext | undefined, startedMs: number, err: unknown): void => {
    const code = err === undefined ? okCode : (asKvError(err)?.code ?? ErrorCode.Internal)
    metrics.observe(
      { method, consistency: ctx?.consistency ?? 'none', code },
      (clock.nowMs() - startedMs) / 1000,
    )
  }

  const fail = (err: unknown): never => {
    if (err instanceof AssertionError) {
      components.onFatal(err)
    }
    throw err
  }

  function unary<Req, Res>(
    method: string,
    serve: (request: Req, ctx: CallContext) => Promise<Res>,
  ): handleUnaryCall<Req | MalformedRequest, Res> {
    return (call: ServerUnaryCall<Req | MalformedRequest, Res>, callback: sendUnaryData<Res>): void => {
      const startedMs = clock.nowMs()
      let ctx: CallContext | undefined
      let release: (() => void) | undefined
      const run = async (): Promise<Res> => {
        const begun = begin(call)
        ctx = begun.ctx
        release = begun.release
        return await serve(decoded(call.request), ctx)
      }
      run().then(
        (response) => {
          release?.()
          finish(method, ctx, startedMs, undefined)
          callback(null, response)
        },
        (err: unknown) => {
          release?.()
          finish(method, ctx, startedMs, err)
          let status
          try {
            status = toStatus(err, log)
          } catch (fatal) {
            callback(internalStatus())
            fail(fatal)
            return
          }
          log.debug({ method, code: status.metadata.get(metadataKeys.code)[0] }, 'request failed')
          callback(status)
        },
      )
    }
  }

  const get = unary<GetRequest, GetResponse>('Get', async (request, ctx) => {
    const replica = replicaOf(request.key)
    const { key, read } = checkGet(request, limits, replica.shardId)
    ctx.consistency = read.level
    traceRequest('Get', key)
    const { found, receipt } = await replica.get(key, { ...read, signal: ctx.signal })
    return {
      found: found !== null,
      value: found === null ? emptyBuffer : buf(found.value),
      version: found?.version ?? 0,
      createVersion: found?.createVersion ?? 0,
      receipt: toProtoReceipt(receipt),
    }
  })

  const put = unary<PutRequest, PutResponse>('Put', async (request, ctx) => {
    const { key, value, expectedVersion, write } = checkPut(request, limits)
    ctx.consistency = write.level
    traceRequest('Put', key, { valueBytes: value.length })
    const replica = replicaOf(key)
    const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
    const { version, receipt } = await replica.put(key, value, { ...opts, signal: ctx.signal })
    return { version, receipt: toProtoReceipt(receipt) }
  })

  const del = unary<DeleteRequest, DeleteResponse>('Delete', async (request, ctx) => {
    const { key, expectedVersion, write } = checkDelete(request, limits)
    ctx.consistency = write.level
    traceRequest('Delete', key)
    const replica = replicaOf(key)
    const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
    const { deleted, receipt } = await replica.delete(key, { ...opts, signal: ctx.signal })
    return { deleted, receipt: toProtoReceipt(receipt) }
  })

  const batchGet = unary<BatchGetRequest, BatchGetResponse>('BatchGet', async (request, ctx) => {
    // Keys go to their shards' replicas in parallel; each shard's part has its own receipt.
    const byShard = new Map<number, number[]>()
    for (const [i, key] of (request.keys ?? []).entries()) {
      const index = shards.indexOfHash(hasher.hash64(key))
      const positions = byShard.get(index)
      if (positions === undefined) byShard.set(index, [i])
      else positions.push(i)
    }
    const firstShard = byShard.size === 0 ? 0 : shards.replicaAt([...byShard.keys()][0]!).shardId
    const { keys, read } = checkBatchGet(request, limits, firstShard)
    ctx.consistency = read.level
    const found: (VersionedValueLike | null)[] = keys.map(() => null)
    const receipts = await Promise.all(
      [...byShard.entries()].map(async ([index, positions]) => {
        const replica = shards.replicaAt(index)
        const { read: shardRead } = checkBatchGet(request, limits, replica.shardId)
        const part = await replica.getMany(
          positions.map((p) => keys[p]!),
          { ...shardRead, signal: ctx.signal },
        )
        for (const [j, p] of positions.entries()) found[p] = part.found[j] ?? null
        return toProtoReceipt(part.receipt)
      }),
    )
    return {
      results: keys.map((key, i) => {
        const value = found[i] ?? null
        return {
          key: buf(key),
          found: value !== null,
          value: value === null ? emptyBuffer : buf(value.value),
          version: value?.version ?? 0,
          createVersion: value?.createVersion ?? 0,
        }
      }),
      receipts,
    }
  })

  const batch = unary<BatchRequest, BatchResponse>('Batch', async (request, ctx) => {
    const { ops, write } = checkBatch(request, limits)
    ctx.consistency = write.level
    const replica = replicaOfOps(ops)
    const { results, receipt } = await replica.batch(ops, { ...write, signal: ctx.signal })
    return {
      results: results.map((r) =>
        r.kind === 'put'
          ? { result: { $case: 'put' as const, put: { version: r.version, receipt: undefined } } }
          : { result: { $case: 'delete' as const, delete: { deleted: r.deleted, receipt: undefined } } },
      ),
      receipt: toProtoReceipt(receipt),
    }
  })

  /**
   * One op of a Multi call, served exactly as its unary handler (Get, Put, Delete) serves it:
   * routed by its key's hash to its shard's replica, checked by validate.ts, under the call's
   * signal. Throws what that handler would throw.
   */
  const serveMultiOp = async (
    op: MultiOp['op'],
    i: number,
    signal: AbortSignal,
    asked: { level: string },
  ): Promise<NonNullable<MultiOpResult['result']>> => {
    if (op === undefined)
      throw new KvError(ErrorCode.InvalidArgument, `ops[${i}] is neither get, put nor delete`, {
        details: { field: `ops[${i}]` },
      })
    switch (op.$case) {
      case 'get': {
        const replica = replicaOf(op.get.key)
        const { key, read } = checkGet(op.get, limits, replica.shardId)
        asked.level = read.level
        traceRequest(multiMethods.get, key)
        const { found, receipt } = await replica.get(key, { ...read, signal })
        const get: GetResponse = {
          found: found !== null,
          value: found === null ? emptyBuffer : buf(found.value),
          version: found?.version ?? 0,
          createVersion: found?.createVersion ?? 0,
          receipt: toProtoReceipt(receipt),
        }
        return { $case: 'get', get }
      }
      case 'put': {
        const { key, value, expectedVersion, write } = checkPut(op.put, limits)
        asked.level = write.level
        traceRequest(multiMethods.put, key, { valueBytes: value.length })
        const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
        const { version, receipt } = await replicaOf(key).put(key, value, { ...opts, signal })
        return { $case: 'put', put: { version, receipt: toProtoReceipt(receipt) } }
      }
      case 'delete': {
        const { key, expectedVersion, write } = checkDelete(op.delete, limits)
        asked.level = write.level
        traceRequest(multiMethods.delete, key)
        const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
        const { deleted, receipt } = await replicaOf(key).delete(key, { ...opts, signal })
        return { $case: 'delete', delete: { deleted, receipt: toProtoReceipt(receipt) } }
      }
    }
  }

  // Multi: independent single-key ops in one call (kv.proto MultiRequest). Every op runs at once,
  // so the writes of one call reach the Ready loop together and are proposed in one iteration (one
  // fsync, one append per peer for all of them). An op's failure is its own OpError, mapped by
  // status.ts exactly as a whole call's error; only a broken invariant fails the call (and the
  // node). Each op is counted in the metrics as `Multi.Get` / `Multi.Put` / `Multi.Delete` with
  // its own level and code; the call itself as `Multi`.
  const multiResponseBytesMax = limits.grpcMessageBytesMax - scanPageReserveBytes
  const multi = unary<MultiRequest, MultiResponse>('Multi', async (request, ctx) => {
    checkMulti(request, limits)
    const startedMs = clock.nowMs()
    const served = await Promise.all(
      request.ops.map(async ({ op }, i): Promise<MultiOpServed> => {
        const asked = { level: 'none' }
        const method = op === undefined ? 'Multi' : multiMethods[op.$case]
        let result: MultiOpServed['result']
        try {
          result = await serveMultiOp(op, i, ctx.signal, asked)
        } catch (err) {
          result = { $case: 'error', error: toOpError(err, log) }
        }
        return { result, consistency: asked.level, method, finishedMs: clock.nowMs() }
      }),
    )
    // The answer must fit one gRPC frame: a get whose value would overflow it is answered
    // OVERLOADED instead (a read has no side effect, so the client just asks again). The first get
    // with a value is always kept, so every call makes progress.
    let responseBytes = 0
    let keptValue = false
    const results = served.map(({ result }): MultiOpResult => {
      const valueBytes = result.$case === 'get' ? result.get.value.length : 0
      responseBytes += multiResultOverheadBytes + valueBytes
      if (valueBytes === 0 || responseBytes <= multiResponseBytesMax || !keptValue) {
        keptValue ||= valueBytes > 0
        return { result }
      }
      responseBytes -= multiResultOverheadBytes + valueBytes
      const error = toOpError(
        new KvError(ErrorCode.Overloaded, 'the answer of this Multi call is full; ask for this key again', {
          details: { limit: multiResponseBytesMax },
        }),
        log,
      )
      return { result: { $case: 'error', error } }
    })
    const levels = new Set<string>()
    for (const [i, { consistency, method, finishedMs }] of served.entries()) {
      const result = results[i]?.result
      const code = result?.$case === 'error' ? result.error.code : okCode
      metrics.observe({ method, consistency, code }, (finishedMs - startedMs) / 1000)
      levels.add(consistency)
    }
    ctx.consistency = levels.size === 1 ? [...levels][0]! : 'mixed'
    return { results }
  })

  const pageBytesMax = limits.grpcMessageBytesMax - scanPageReserveBytes

  /** The one shard every op of an atomic batch belongs to, else CROSS_SHARD. */
  const replicaOfOps = (ops: readonly BatchOp[]): Replica => {
    const first = ops[0]
    if (first === undefined) return replicaOf(undefined)
    const index = shards.indexOfHash(hasher.hash64(first.key))
    for (const op of ops)
      if (shards.indexOfHash(hasher.hash64(op.key)) !== index)
        throw new KvError(
          ErrorCode.CrossShard,
          'an atomic batch must keep to the keys of one shard; split it by shard (the SDK does for reads)',
          { details: { field: 'ops' } },
        )
    return shards.replicaAt(index)
  }

  const scan: handleServerStreamingCall<ScanRequest | MalformedRequest, ScanResponse> = (call) => {
    const startedMs = clock.nowMs()
    let ctx: CallContext | undefined
    let release: (() => void) | undefined
    const run = async (): Promise<void> => {
      const begun = begin(call)
      ctx = begun.ctx
      release = begun.release
      const signal = ctx.signal
      const request = decoded(call.request)
      const after = decodeCursor(request.cursor, clusterId)
      // One shard per call: the shard of the cursor's position (the first shard without one).
      const shardIndex = after === undefined ? 0 : shards.indexOfHash(after.hash)
      const replica = shards.replicaAt(shardIndex)
      const nextShard = shards.ranges[shardIndex + 1]
      const { prefix, limit, read } = checkScan(request, limits, replica.shardId)
      ctx.consistency = read.level
      const stream = replica.scan(after === undefined ? { prefix, limit } : { prefix, limit, after }, {
        ...read,
        signal,
      })
      let page: KeyValue[] = []
      let pageBytes = 0
      let last: ScanPosition | undefined = after
      let count = 0
      let sentAny = false
      const send = async (done: boolean): Promise<void> => {
        const message: ScanResponse = {
          entries: page,
          cursor: last === undefined ? emptyBuffer : encodeCursor(last, clusterId),
          done,
          // Read at send time: the replica's receipt is final once its read gate passed.
          receipt: toProtoReceipt(stream.receipt),
        }
        page = []
        pageBytes = 0
        sentAny = true
        await writeWithBackpressure(call, message, signal)
      }
      for await (const entry of stream) {
        const entryBytes = entry.key.length + entry.value.value.length + scanEntryOverheadBytes
        if (page.length > 0 && pageBytes + entryBytes > pageBytesMax) await send(false)
        page.push({
          key: buf(entry.key),
          value: buf(entry.value.value),
          version: entry.value.version,
          createVersion: entry.value.createVersion,
        })
        pageBytes += entryBytes
        last = entry.position
        count++
        if (page.length >= limits.scanPageEntriesMax && count < limit) await send(false)
        if (count >= limit) break
      }
      // Fewer entries than asked for: this shard is exhausted. The last shard: the key space is
      // done. Another shard follows: the cursor moves to its start (an empty key sorts before
      // every key of that hash) and the client resumes there. Exactly `limit`: the client
      // resumes from the cursor (and may get an empty page).
      const shardDone = count < limit
      if (shardDone && nextShard !== undefined) last = { hash: nextShard.start, key: new Uint8Array(0) }
      const done = shardDone && nextShard === undefined
      if (page.length > 0 || shardDone || !sentAny) await send(done)
      call.end()
    }
    run().then(
      () => {
        release?.()
        finish('Scan', ctx, startedMs, undefined)
      },
      (err: unknown) => {
        release?.()
        finish('Scan', ctx, startedMs, err)
        if (call.cancelled) return
        let status
        try {
          status = toStatus(err, log)
        } catch (fatal) {
          call.emit('error', internalStatus())
          fail(fatal)
          return
        }
        call.emit('error', status)
      },
    )
  }

  return { get, put, delete: del, batchGet, batch, scan, multi } as KvServiceServer
}

/** Writes one message, waiting for 'drain' when the stream's buffer is full; rejects on abort. */
async function writeWithBackpressure(
  call: ServerWritableStream<unknown, ScanResponse>,
  message: ScanResponse,
  signal: AbortSignal,
): Promise<void> {
  signal.throwIfAborted()
  if (call.write(message)) return
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }
    const onAbort = (): void => {
      call.off('drain', onDrain)
      reject(signal.reason as Error)
    }
    call.once('drain', onDrain)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
