/**
 * The KvService handlers: wiring only. Each call comes through the request pipeline (net/:
 * authentication, authorization, admission with the per-connection and per-client quotas,
 * deadline, decoding, errors, metrics) and then:
 *
 *   validate.ts (proto -> shard types, limits) -> the replica here, or the node that holds it
 *   -> proto response with its Receipt.
 *
 * The pipeline counts every call in the metrics by method, requested consistency and outcome
 * code (a handler sets `ctx.consistency`). A write op of a Multi call needs role readwrite like a
 * Put (checked per op). Exactly-once sessions and stream budgets belong to the call's principal
 * (net principalKey: for a request a member passed on, the client it came from). Logs carry the
 * key's hash and length, never the key or value.
 *
 * Scan streams pages of at most limits.scanPageEntriesMax entries (and at most one gRPC frame of
 * bytes), each with a cursor that resumes strictly after its last entry. It waits for 'drain'
 * when the client reads slowly (backpressure) and stops reading the replica as soon as the client
 * cancels or the deadline passes.
 */
import { assert } from '../common/assert.ts'
import type { Clock } from '../common/clock.ts'
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
  type MultiOp,
  type MultiOpResult,
  type MultiRequest,
  type MultiResponse,
  type RegisterSessionRequest,
  type RegisterSessionResponse,
  type PutRequest,
  type PutResponse,
  type Receipt as ProtoReceipt,
  type ScanRequest,
  type ScanResponse,
  type ShardMapRequest,
  type ShardMapResponse,
} from '../gen/ringkv/v1/kv.ts'
import type { ShardRecord } from '../cluster/index.ts'
import type { Hasher } from '../hashing/index.ts'
import {
  principalKey,
  serverStream,
  unary,
  withTolerantDecoding,
  type CallContext,
  type Handler,
} from '../net/index.ts'
import { mapToProto, type ForwardCall, type Forwarder, type Need, type Router } from '../router/index.ts'
import type { BatchOp, Receipt, ReadLevel, Replica, ScanEntry, ScanPosition } from '../shard/index.ts'
import { decodeCursor, encodeCursor } from './cursor.ts'
import { StreamBudgets, type StreamWriter } from './stream-budget.ts'
import type { KvdMetrics } from './http.ts'
import { okCode, toOpError } from './status.ts'
import {
  checkBatch,
  checkBatchGet,
  checkDelete,
  checkGet,
  checkMulti,
  checkRegisterSession,
  checkPut,
  checkScan,
  consistencyOfLevel,
} from './validate.ts'

export interface KvServiceComponents {
  /** Key -> shard -> who serves it (this node's replica, or another node to forward to). */
  readonly router: Router
  /** Sends a request this node cannot serve to the node that can. */
  readonly forwarder: Forwarder
  readonly limits: Readonly<Limits>
  readonly clock: Clock
  readonly logger: Logger
  /** Where the ops of a Multi call are counted one by one (the pipeline counts the call). */
  readonly metrics: Pick<KvdMetrics, 'observe'>
  readonly hasher: Hasher
  /** 16 bytes; binds scan cursors to this cluster. */
  readonly clusterId: Uint8Array
}

/** KvService with request decoding that turns garbage into INVALID_ARGUMENT (decode.ts). */
export const kvServiceDefinition = withTolerantDecoding(KvServiceService)

/** Where a handler notes the level a request asked for (a call's context, or one Multi op's). */
interface Asked {
  consistency: string
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

/** One shard's part of a BatchGet, served here or forwarded. */
interface ShardPart {
  readonly found: readonly (VersionedValueLike | null)[]
  readonly receipt: ProtoReceipt | undefined
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

/** The KvService handlers, by the generated definition's method names, for a GrpcListener. */
export type KvServiceHandlers = Readonly<Record<keyof typeof kvServiceDefinition, Handler>>

export function createKvService(components: KvServiceComponents): KvServiceHandlers {
  const { router, forwarder, limits, clock, metrics, hasher, clusterId } = components
  const log = components.logger
  const streams = new StreamBudgets(limits)

  /** The shard owning `key` (any bytes: validation comes after routing). */
  const shardOf = (key: Uint8Array | undefined): ShardRecord =>
    router.shardOfHash(hasher.hash64(key ?? emptyBuffer))
  const needOfRead = (level: ReadLevel): Need => (level === 'linearizable' ? 'leader' : 'replica')
  const forwardCall = (ctx: CallContext): ForwardCall => ({
    deadline: ctx.deadline,
    signal: ctx.signal,
    principal: ctx.principal,
  })

  /** Serves a request on `shard` here or forwarded (Router.serve: forward once, never loop). */
  const routed = <Res extends { receipt?: ProtoReceipt | undefined }>(
    shard: ShardRecord,
    need: Need,
    ctx: CallContext,
    local: (replica: Replica) => Promise<Res>,
    remote: (address: string) => Promise<Res>,
  ): Promise<Res> => router.serve(shard, need, ctx.forwarded, local, remote)

  // Per-request trace lines hash the key (keys never go into logs); only pay for it when
  // trace is on, which it rarely is: this runs on every request.
  const traceRequests = log.isLevelEnabled('trace')
  const traceRequest = (method: string, key: Uint8Array, extra: Record<string, number> = {}): void => {
    if (!traceRequests) return
    log.trace({ method, keyHash: hasher.hash64(key).toString(16), keyBytes: key.length, ...extra }, 'request')
  }

  // Get, Put and Delete, whole calls or ops of a Multi call: validated, checked against the
  // caller's route, then served here or passed on. `asked` learns the level for the metrics.
  const serveGet = async (
    request: GetRequest,
    ctx: CallContext,
    asked: Asked,
    method: string,
  ): Promise<GetResponse> => {
    const shard = shardOf(request.key)
    const { key, read } = checkGet(request, limits, shard.shardId)
    asked.consistency = read.level
    router.checkHint(shard, request.options?.route)
    traceRequest(method, key)
    return await routed(
      shard,
      needOfRead(read.level),
      ctx,
      async (replica): Promise<GetResponse> => {
        const { found, receipt } = await replica.get(key, { ...read, signal: ctx.signal })
        return {
          found: found !== null,
          value: found === null ? emptyBuffer : buf(found.value),
          version: found?.version ?? 0,
          createVersion: found?.createVersion ?? 0,
          receipt: toProtoReceipt(receipt),
        }
      },
      (address) => forwarder.unary(address, 'get', request, forwardCall(ctx)),
    )
  }

  const servePut = async (
    request: PutRequest,
    ctx: CallContext,
    asked: Asked,
    method: string,
  ): Promise<PutResponse> => {
    ctx.authorize('readwrite', method)
    const { key, value, expectedVersion, write } = checkPut(request, limits)
    asked.consistency = write.level
    traceRequest(method, key, { valueBytes: value.length })
    const shard = shardOf(key)
    router.checkHint(shard, request.options?.route)
    const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
    return await routed(
      shard,
      'leader',
      ctx,
      async (replica): Promise<PutResponse> => {
        const { version, receipt } = await replica.put(key, value, {
          ...opts,
          principal: principalKey(ctx.principal),
          signal: ctx.signal,
        })
        return { version, receipt: toProtoReceipt(receipt) }
      },
      (address) => forwarder.unary(address, 'put', request, forwardCall(ctx)),
    )
  }

  const serveDelete = async (
    request: DeleteRequest,
    ctx: CallContext,
    asked: Asked,
    method: string,
  ): Promise<DeleteResponse> => {
    ctx.authorize('readwrite', method)
    const { key, expectedVersion, write } = checkDelete(request, limits)
    asked.consistency = write.level
    traceRequest(method, key)
    const shard = shardOf(key)
    router.checkHint(shard, request.options?.route)
    const opts = expectedVersion === undefined ? write : { ...write, expectedVersion }
    return await routed(
      shard,
      'leader',
      ctx,
      async (replica): Promise<DeleteResponse> => {
        const { deleted, receipt } = await replica.delete(key, {
          ...opts,
          principal: principalKey(ctx.principal),
          signal: ctx.signal,
        })
        return { deleted, receipt: toProtoReceipt(receipt) }
      },
      (address) => forwarder.unary(address, 'delete', request, forwardCall(ctx)),
    )
  }

  const get = unary<GetRequest, GetResponse>((request, ctx) => serveGet(request, ctx, ctx, 'Get'))
  const put = unary<PutRequest, PutResponse>((request, ctx) => servePut(request, ctx, ctx, 'Put'))
  const del = unary<DeleteRequest, DeleteResponse>((request, ctx) => serveDelete(request, ctx, ctx, 'Delete'))

  const batchGet = unary<BatchGetRequest, BatchGetResponse>(async (request, ctx) => {
    // Keys go to their shards in parallel (here or forwarded); each shard's part has its own receipt.
    const byShard = new Map<ShardRecord, number[]>()
    for (const [i, key] of (request.keys ?? []).entries()) {
      const shard = shardOf(key)
      const positions = byShard.get(shard)
      if (positions === undefined) byShard.set(shard, [i])
      else positions.push(i)
    }
    const firstShard = byShard.size === 0 ? 0 : [...byShard.keys()][0]!.shardId
    const { keys, read } = checkBatchGet(request, limits, firstShard)
    ctx.consistency = read.level
    if (byShard.size === 1) router.checkHint([...byShard.keys()][0]!, request.options?.route)
    const found: (VersionedValueLike | null)[] = keys.map(() => null)
    // The answer's value bytes, counted as parts and reads come in (BatchGet has no per-key error:
    // the whole call is OVERLOADED, with the limit, once they pass answerBytesMax).
    let answerBytes = 0
    const countAnswer = (bytes: number): void => {
      answerBytes += bytes
      if (answerBytes > limits.answerBytesMax)
        throw new KvError(
          ErrorCode.Overloaded,
          `the values asked for exceed what one answer carries (${limits.answerBytesMax} bytes); ask for fewer keys`,
          { details: { limit: limits.answerBytesMax } },
        )
    }
    const receipts = await Promise.all(
      [...byShard.entries()].map(async ([shard, positions]) => {
        const { read: shardRead } = checkBatchGet(request, limits, shard.shardId)
        const part = await routed<ShardPart>(
          shard,
          needOfRead(shardRead.level),
          ctx,
          async (replica) => {
            // Each distinct key is read once, a few at a time, counting the answer between reads.
            const wanted = new Map<string, { key: Uint8Array; times: number }>()
            for (const p of positions) {
              const k = keys[p]!
              const id = Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1')
              const w = wanted.get(id)
              if (w === undefined) wanted.set(id, { key: k, times: 1 })
              else w.times++
            }
            const distinct = [...wanted.entries()]
            const values = new Map<string, VersionedValueLike | null>()
            let receipt: Receipt | undefined
            for (let i = 0; i < distinct.length; i += limits.batchGetReadKeysMax) {
              const chunk = distinct.slice(i, i + limits.batchGetReadKeysMax)
              const got = await replica.getMany(
                chunk.map(([, w]) => w.key),
                { ...shardRead, signal: ctx.signal },
              )
              receipt = got.receipt
              for (const [j, [id, w]] of chunk.entries()) {
                const v = got.found[j] ?? null
                values.set(id, v)
                if (v !== null) countAnswer(v.value.length * w.times)
              }
            }
            assert(receipt !== undefined, 'a shard part of a BatchGet without keys')
            return {
              found: positions.map((p) => {
                const k = keys[p]!
                return (
                  values.get(Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('latin1')) ?? null
                )
              }),
              receipt: toProtoReceipt(receipt),
            }
          },
          async (address) => {
            const res = await forwarder.unary(
              address,
              'batchGet',
              {
                keys: positions.map((p) => buf(keys[p]!)),
                options: request.options === undefined ? undefined : { ...request.options, route: undefined },
              },
              forwardCall(ctx),
            )
            countAnswer(res.results.reduce((n, r) => n + r.value.length, 0))
            return {
              found: res.results.map((r) =>
                r.found ? { value: r.value, version: r.version, createVersion: r.createVersion } : null,
              ),
              receipt: res.receipts[0],
            }
          },
        )
        for (const [j, p] of positions.entries()) found[p] = part.found[j] ?? null
        return part.receipt
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
      receipts: receipts.filter((r): r is ProtoReceipt => r !== undefined),
    }
  })

  const batch = unary<BatchRequest, BatchResponse>(async (request, ctx) => {
    const { ops, write } = checkBatch(request, limits)
    ctx.consistency = write.level
    const shard = shardOfOps(ops)
    router.checkHint(shard, request.options?.route)
    return await routed(
      shard,
      'leader',
      ctx,
      async (replica) => {
        const { results, receipt } = await replica.batch(ops, {
          ...write,
          principal: principalKey(ctx.principal),
          signal: ctx.signal,
        })
        return {
          results: results.map((r) =>
            r.kind === 'put'
              ? { result: { $case: 'put' as const, put: { version: r.version, receipt: undefined } } }
              : { result: { $case: 'delete' as const, delete: { deleted: r.deleted, receipt: undefined } } },
          ),
          receipt: toProtoReceipt(receipt),
        }
      },
      (address) => forwarder.unary(address, 'batch', request, forwardCall(ctx)),
    )
  })

  /**
   * One op of a Multi call, served exactly as its unary handler (Get, Put, Delete) serves it:
   * routed by its key's hash to its shard's replica, checked by validate.ts, under the call's
   * signal. Throws what that handler would throw.
   */
  const serveMultiOp = async (
    op: MultiOp['op'],
    i: number,
    ctx: CallContext,
    asked: Asked,
  ): Promise<NonNullable<MultiOpResult['result']>> => {
    if (op === undefined)
      throw new KvError(ErrorCode.InvalidArgument, `ops[${i}] is neither get, put nor delete`, {
        details: { field: `ops[${i}]` },
      })
    switch (op.$case) {
      case 'get':
        return { $case: 'get', get: await serveGet(op.get, ctx, asked, multiMethods.get) }
      case 'put':
        return { $case: 'put', put: await servePut(op.put, ctx, asked, multiMethods.put) }
      case 'delete':
        return { $case: 'delete', delete: await serveDelete(op.delete, ctx, asked, multiMethods.delete) }
    }
  }

  // Multi: independent single-key ops in one call (kv.proto MultiRequest). Every op runs at once,
  // so the writes of one call reach the Ready loop together and are proposed in one iteration (one
  // fsync, one append per peer for all of them). An op's failure is its own OpError, mapped by
  // status.ts exactly as a whole call's error; only a broken invariant fails the call (and the
  // node). Each op is counted in the metrics as `Multi.Get` / `Multi.Put` / `Multi.Delete` with
  // its own level and code; the call itself as `Multi`.
  const multiResponseBytesMax = limits.answerBytesMax
  /** The OpError of a Multi get whose value does not fit the answer (a retry asks again). */
  const answerFull = (): NonNullable<MultiOpResult['result']> => ({
    $case: 'error',
    error: toOpError(
      new KvError(ErrorCode.Overloaded, 'the answer of this Multi call is full; ask for this key again', {
        details: { limit: multiResponseBytesMax },
      }),
      log,
    ),
  })

  const multi = unary<MultiRequest, MultiResponse>(async (request, ctx) => {
    checkMulti(request, limits)
    const startedMs = clock.nowMs()
    const serveOne = async (i: number): Promise<MultiOpServed> => {
      const op = request.ops[i]?.op
      const asked: Asked = { consistency: 'none' }
      const method = op === undefined ? 'Multi' : multiMethods[op.$case]
      let result: MultiOpServed['result']
      try {
        result = await serveMultiOp(op, i, ctx, asked)
      } catch (err) {
        result = { $case: 'error', error: toOpError(err, log) }
      }
      return { result, consistency: asked.consistency, method, finishedMs: clock.nowMs() }
    }
    // Writes all start at once. Gets are read a few at a time, in op order, and once the values
    // read pass what one answer carries the rest are OVERLOADED unread: a Multi naming a large
    // value a thousand times reads it a few times, not a thousand (like BatchGet).
    const served: MultiOpServed[] = new Array<MultiOpServed>(request.ops.length)
    const gets: number[] = []
    const writes: Promise<void>[] = []
    for (const [i, { op }] of request.ops.entries()) {
      if (op?.$case === 'get') gets.push(i)
      else writes.push(serveOne(i).then((r) => void (served[i] = r)))
    }
    let readBytes = 0
    let nextGet = 0
    const getReader = async (): Promise<void> => {
      for (let at = nextGet++; at < gets.length; at = nextGet++) {
        const i = gets[at]!
        if (readBytes > multiResponseBytesMax) {
          served[i] = {
            result: answerFull(),
            consistency: 'none',
            method: 'Multi.Get',
            finishedMs: clock.nowMs(),
          }
          continue
        }
        const r = await serveOne(i)
        if (r.result.$case === 'get') readBytes += r.result.get.value.length
        served[i] = r
      }
    }
    await Promise.all([
      ...writes,
      ...Array.from({ length: Math.min(limits.batchGetReadKeysMax, gets.length) }, getReader),
    ])
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
      return { result: answerFull() }
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

  const pageBytesMax = Math.min(limits.scanPageBytesMax, limits.grpcMessageBytesMax - scanPageReserveBytes)

  /** The one shard every op of an atomic batch belongs to, else CROSS_SHARD. */
  const shardOfOps = (ops: readonly BatchOp[]): ShardRecord => {
    const first = ops[0]
    const shard = shardOf(first?.key)
    for (const op of ops)
      if (shardOf(op.key) !== shard)
        throw new KvError(
          ErrorCode.CrossShard,
          'an atomic batch must keep to the keys of one shard; split it by shard (the SDK does for reads)',
          { details: { field: 'ops' } },
        )
    return shard
  }

  const scan = serverStream<ScanRequest, ScanResponse>(async (request, ctx, call) => {
    // Counted for the client it serves; a scan a peer forwards counts on that client's share
    // here, not on the peer's one connection (which carries every forwarded scan of that node).
    const who = principalKey(ctx.principal)
    const connection = ctx.forwarded ? `${call.getPeer()}/${who}` : call.getPeer()
    const writer: StreamWriter<ScanResponse> = streams.openStream(who, connection, call)
    try {
      const signal = ctx.signal
      const out = writer
      const after = decodeCursor(request.cursor, clusterId)
      // One shard per call: the shard of the cursor's position (the first shard without one).
      const shard = router.shardOfHash(after === undefined ? 0n : after.hash)
      const nextShard = router.next(shard)
      const { prefix, limit, read } = checkScan(request, limits, shard.shardId)
      ctx.consistency = read.level
      router.checkHint(shard, request.options?.route)
      const target = router.target(shard, needOfRead(read.level), ctx.forwarded)
      if (target.kind === 'remote') {
        // The node that holds the shard pages it; its pages pass through as they come.
        for await (const page of forwarder.scan(target.address, request, forwardCall(ctx)))
          await out.write(page, scanMessageBytes(page), signal)
        return
      }
      const replica = target.replica
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
        const bytes = scanMessageBytes(message)
        page = []
        pageBytes = 0
        sentAny = true
        await out.write(message, bytes, signal)
      }
      // Entries are pulled only with room reserved for the page they go into: a stream whose
      // reader stopped reading waits here, holding no page (stream-budget.ts).
      const entries = stream[Symbol.asyncIterator]()
      let pending: ScanEntry | undefined
      try {
        await out.reserve(pageBytesMax, signal)
        while (count < limit) {
          let next = pending
          pending = undefined
          if (next === undefined) {
            const r: IteratorResult<ScanEntry> = await entries.next()
            if (r.done === true) break
            next = r.value
          }
          const entryBytes = next.key.length + next.value.value.length + scanEntryOverheadBytes
          if (page.length > 0 && pageBytes + entryBytes > pageBytesMax) {
            pending = next
            await send(false)
            await out.reserve(pageBytesMax, signal)
            continue
          }
          page.push({
            key: buf(next.key),
            value: buf(next.value.value),
            version: next.value.version,
            createVersion: next.value.createVersion,
          })
          pageBytes += entryBytes
          last = next.position
          count++
          if (page.length >= limits.scanPageEntriesMax && count < limit) {
            await send(false)
            await out.reserve(pageBytesMax, signal)
          }
        }
      } finally {
        await entries.return?.()
      }
      // Fewer entries than asked for: this shard is exhausted. The last shard: the key space is
      // done. Another shard follows: the cursor moves to its start (an empty key sorts before
      // every key of that hash) and the client resumes there. Exactly `limit`: the client
      // resumes from the cursor (and may get an empty page).
      const shardDone = count < limit
      if (shardDone && nextShard !== undefined) last = { hash: nextShard.hashStart, key: new Uint8Array(0) }
      const done = shardDone && nextShard === undefined
      if (page.length > 0 || shardDone || !sentAny) await send(done)
    } finally {
      writer.close()
    }
  })

  // The map as this node has it (the cluster agent refreshes it from the meta shard).
  // RegisterSession: an exactly-once session for the caller's principal, through the log of the
  // shard of `key` (its leader; forwarded like a write).
  const registerSession = unary<RegisterSessionRequest, RegisterSessionResponse>(async (request, ctx) => {
    const { clientId, key, floor } = checkRegisterSession(request, limits)
    ctx.consistency = 'majority'
    const shard = shardOf(key)
    router.checkHint(shard, request.route)
    return await routed(
      shard,
      'leader',
      ctx,
      async (replica) => {
        const { receipt } = await replica.registerSession(clientId, {
          principal: principalKey(ctx.principal),
          floor,
          signal: ctx.signal,
        })
        return { receipt: toProtoReceipt(receipt) }
      },
      (address) => forwarder.unary(address, 'registerSession', request, forwardCall(ctx)),
    )
  })

  const shardMap = unary<ShardMapRequest, ShardMapResponse>(async () =>
    Promise.resolve(mapToProto(router.map, router.nodeId)),
  )

  return { get, put, delete: del, batchGet, batch, scan, multi, registerSession, shardMap }
}

/** About the bytes a scan message takes on the wire (what the stream budgets count). */
function scanMessageBytes(message: ScanResponse): number {
  let bytes = 1024 + message.cursor.length
  for (const e of message.entries) bytes += e.key.length + e.value.length + scanEntryOverheadBytes
  return bytes
}
