/**
 * An in-process fake of kvd's public API (KvService + AdminService from src/gen) on 127.0.0.1
 * port 0, for SDK and CLI unit tests. It keeps a tiny versioned map, speaks the error contract
 * (gRPC status + `ringkv-*` trailing metadata), deduplicates writes by client id + seq (refusing
 * seqs below the client's highest first_incomplete_seq as stale, like the shard), and has
 * knobs to inject failures, latency, lagging replicas and broken scan streams. Multi answers each op
 * as its unary call would (an injected failure of 'put' hits the next put, alone or in a Multi);
 * with `multi` off it answers UNIMPLEMENTED, as a server from before Multi does. ShardMap lists
 * this node alone, holding one shard (id 0) over the whole ring and leading it; route hints are not
 * checked (fake-cluster.ts checks them). Join and Heartbeat answer UNIMPLEMENTED.
 *
 * Not a model of Raft: one "applied index" counter stands for the shard log, every write takes
 * the next index, and a key's version is the index that wrote it.
 */
import {
  Metadata,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js'
import { errorCodeTable, type ErrorCode } from '../../../src/common/errors.ts'
import {
  AdminServiceService,
  type AdminServiceServer,
  type StatusRequest,
  type StatusResponse,
} from '../../../src/gen/ringkv/v1/admin.ts'
import {
  Consistency,
  KvServiceService,
  type BatchGetRequest,
  type BatchGetResponse,
  type BatchOpResult,
  type BatchRequest,
  type BatchResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type KvServiceServer,
  type MultiOpResult,
  type MultiRequest,
  type MultiResponse,
  type OpError,
  type PutRequest,
  type PutResponse,
  type Receipt,
  type ScanRequest,
  type ScanResponse,
  type ShardMapRequest,
  type ShardMapResponse,
  type WriteOptions,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { hashSpaceEnd } from '../../../src/hashing/index.ts'

export type Method =
  'get' | 'put' | 'delete' | 'batchGet' | 'batch' | 'scan' | 'status' | 'multi' | 'shardMap'

/** A failure to answer with: a KvError code (sent with `ringkv-code`), or a bare gRPC status. */
export interface Failure {
  readonly code?: ErrorCode
  /** Bare gRPC status (no `ringkv-code`), e.g. 14 UNAVAILABLE as a transport error looks. */
  readonly status?: number
  readonly message?: string
  readonly metadata?: Readonly<Record<string, string>>
  /** For writes: apply the write first, then fail (the "outcome unknown" case). */
  readonly afterApply?: boolean
}

export interface RecordedRequest {
  readonly method: Method
  readonly request: unknown
  /** The gRPC deadline the client sent, in ms from when the request arrived (Infinity if none). */
  readonly deadlineInMs: number
}

interface Row {
  value: Buffer
  version: number
  createVersion: number
}

/** The data shared by fake "replicas" of one cluster. */
export class FakeStore {
  readonly rows = new Map<string, Row>()
  appliedIndex = 0
  /** Writes actually applied (a deduplicated retry does not count). */
  applies = 0
  readonly dedup = new Map<string, unknown>()
  /** Per client id: the highest first_incomplete_seq seen (seqs below it are stale). */
  readonly watermarks = new Map<string, number>()
}

export interface FakeServerInit {
  readonly nodeId?: number
  readonly store?: FakeStore
  /** Number of shards keys are spread over (shard = first key byte mod shards). */
  readonly shards?: number
}

export class FakeKvServer {
  readonly nodeId: number
  readonly store: FakeStore
  readonly shards: number
  readonly requests: RecordedRequest[] = []
  address = ''
  /** Entries per scan page. */
  scanPageEntries = 2
  /** Break the next scan streams after sending this many pages (then UNAVAILABLE), once per entry. */
  readonly scanBreaks: number[] = []
  /** When set, this replica is a lagging follower frozen at this applied index for reads. */
  frozenAt: number | undefined
  /** Staleness this replica reports on non-linearizable reads. */
  stalenessMs = 0
  /** Milliseconds to wait before answering each request. */
  latencyMs = 0
  /** Serves Multi; false: answers it UNIMPLEMENTED (a server from before Multi). */
  multi = true
  private readonly failures = new Map<Method, Failure[]>()
  private server: Server | undefined
  private port = 0

  private constructor(init: FakeServerInit) {
    this.nodeId = init.nodeId ?? 1
    this.store = init.store ?? new FakeStore()
    this.shards = init.shards ?? 4
  }

  static async start(init: FakeServerInit = {}): Promise<FakeKvServer> {
    const fake = new FakeKvServer(init)
    await fake.listen(0)
    return fake
  }

  /** Answers the next `times` calls of `method` with `failure`. */
  /** Drops every failure still queued (a test that queued more than a call used). */
  clearFailures(): void {
    this.failures.clear()
  }

  failNext(method: Method, failure: Failure, times = 1): void {
    const queue = this.failures.get(method) ?? []
    for (let i = 0; i < times; i++) queue.push(failure)
    this.failures.set(method, queue)
  }

  count(method: Method): number {
    return this.requests.filter((r) => r.method === method).length
  }

  requestsOf<T>(method: Method): T[] {
    return this.requests.filter((r) => r.method === method).map((r) => r.request as T)
  }

  /** The requests of `method` in arrival order, whether sent alone or as ops of a Multi call. */
  opsOf<T>(method: 'get' | 'put' | 'delete'): T[] {
    return this.requests.flatMap((r): T[] => {
      if (r.method === method) return [r.request as T]
      if (r.method !== 'multi') return []
      return (r.request as MultiRequest).ops.flatMap(({ op }) =>
        op?.$case === method ? [(op as Record<string, unknown>)[method] as T] : [],
      )
    })
  }

  /** Stops at once, dropping connections (like a killed process). */
  async kill(): Promise<void> {
    this.server?.forceShutdown()
    this.server = undefined
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.listen(this.port)
  }

  async stop(): Promise<void> {
    await this.kill()
  }

  private async listen(port: number): Promise<void> {
    const server = new Server()
    server.addService(KvServiceService, this.kvImplementation())
    server.addService(AdminServiceService, this.adminImplementation())
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) =>
        err === null ? resolve(bound) : reject(err),
      ),
    )
    this.server = server
    this.address = `127.0.0.1:${this.port}`
  }

  private shardOf(key: Buffer): number {
    return (key[0] ?? 0) % this.shards
  }

  private receipt(shardId: number, delivered: Consistency, appliedIndex?: number): Receipt {
    const linearizable = delivered === Consistency.CONSISTENCY_LINEARIZABLE || delivered >= 5
    return {
      nodeId: this.nodeId,
      shardId,
      appliedIndex: appliedIndex ?? this.readIndex(),
      delivered:
        delivered === Consistency.CONSISTENCY_UNSPECIFIED ? Consistency.CONSISTENCY_LINEARIZABLE : delivered,
      stalenessMs: linearizable ? 0 : this.stalenessMs,
      term: 1,
    }
  }

  private readIndex(): number {
    return this.frozenAt ?? this.store.appliedIndex
  }

  /** Records the request and decides on an injected failure. */
  private async admit(
    method: Method,
    request: unknown,
    deadline: Date | number,
  ): Promise<Failure | undefined> {
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline
    this.requests.push({ method, request, deadlineInMs: deadlineMs - Date.now() })
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs))
    return this.failures.get(method)?.shift()
  }

  private static errorOf(failure: Failure): { code: number; details: string; metadata: Metadata } {
    const metadata = new Metadata()
    if (failure.code !== undefined) metadata.set('ringkv-code', failure.code)
    for (const [k, v] of Object.entries(failure.metadata ?? {})) metadata.set(k, v)
    const status = failure.status ?? (failure.code !== undefined ? errorCodeTable[failure.code].status : 13)
    return { code: status, details: failure.message ?? failure.code ?? 'injected failure', metadata }
  }

  /** A Failure as the OpError of one op of a Multi call (what errorOf sends as status and trailers). */
  private static opErrorOf(failure: Failure): OpError {
    const md = failure.metadata ?? {}
    const uint = (key: string): number | undefined => (md[key] === undefined ? undefined : Number(md[key]))
    const leaderHint = uint('ringkv-leader')
    const shardId = uint('ringkv-shard')
    const currentVersion = uint('ringkv-current-version')
    return {
      code: failure.code ?? '',
      status: failure.status ?? (failure.code !== undefined ? errorCodeTable[failure.code].status : 13),
      message: failure.message ?? failure.code ?? 'injected failure',
      ...(leaderHint !== undefined ? { leaderHint } : {}),
      ...(shardId !== undefined ? { shardId } : {}),
      ...(currentVersion !== undefined ? { currentVersion } : {}),
      descriptor: undefined,
    }
  }

  /** One admitted request, unary or an op of a Multi: `failure` is its injected failure, if any. */
  private respond<Req, Res>(
    request: Req,
    failure: Failure | undefined,
    handle: (request: Req) => Res | Failure,
    isWrite: (request: Req) => WriteOptions | undefined,
  ): Res | Failure {
    if (failure !== undefined && failure.afterApply !== true) return failure
    const options = isWrite(request)
    const dedupKey =
      options !== undefined && options.clientId !== '' ? `${options.clientId}/${options.seq}` : undefined
    let result: Res | Failure
    const watermark = options === undefined ? 0 : (this.store.watermarks.get(options.clientId) ?? 0)
    if (dedupKey !== undefined && options !== undefined && options.seq < watermark) {
      result = { code: 'INVALID_ARGUMENT', message: `stale seq ${options.seq} below ${watermark}` }
    } else if (dedupKey !== undefined && this.store.dedup.has(dedupKey)) {
      result = this.store.dedup.get(dedupKey) as Res | Failure
    } else {
      result = handle(request)
      if (dedupKey !== undefined) this.store.dedup.set(dedupKey, result)
    }
    if (dedupKey !== undefined && options !== undefined && options.firstIncompleteSeq > watermark)
      this.store.watermarks.set(options.clientId, options.firstIncompleteSeq)
    return failure ?? result
  }

  private unary<Req, Res>(
    method: Method,
    handle: (request: Req) => Res | Failure,
    isWrite: (request: Req) => WriteOptions | undefined,
  ): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
    return (call, callback) => {
      void (async () => {
        const failure = await this.admit(method, call.request, call.getDeadline())
        if (call.cancelled) return
        const result = this.respond(call.request, failure, handle, isWrite)
        if (isFailure(result)) callback(FakeKvServer.errorOf(result))
        else callback(null, result)
      })()
    }
  }

  private getHandle = (req: GetRequest): GetResponse | Failure => {
    const shard = this.shardOf(req.key)
    const behind = this.sessionCheck(req.options, shard)
    if (behind !== undefined) return behind
    const row = this.store.rows.get(req.key.toString('hex'))
    return {
      found: row !== undefined,
      value: row?.value ?? Buffer.alloc(0),
      version: row?.version ?? 0,
      createVersion: row?.createVersion ?? 0,
      receipt: this.receipt(shard, req.options?.consistency ?? 0),
    }
  }

  /** Multi: recorded once as 'multi'; every op answered as its unary call (its method's failures). */
  private multiHandler(): (
    call: ServerUnaryCall<MultiRequest, MultiResponse>,
    callback: sendUnaryData<MultiResponse>,
  ) => void {
    return (call, callback) => {
      void (async () => {
        const failure = await this.admit('multi', call.request, call.getDeadline())
        if (call.cancelled) return
        if (!this.multi) {
          callback({
            code: 12,
            details: 'The server does not implement the method Multi',
            metadata: new Metadata(),
          })
          return
        }
        if (failure !== undefined) {
          callback(FakeKvServer.errorOf(failure))
          return
        }
        const results = call.request.ops.map(({ op }): MultiOpResult => {
          let result: MultiOpResult['result'] | Failure
          switch (op?.$case) {
            case 'get': {
              const r = this.respond(
                op.get,
                this.failures.get('get')?.shift(),
                this.getHandle,
                () => undefined,
              )
              result = isFailure(r) ? r : { $case: 'get', get: r }
              break
            }
            case 'put': {
              const r = this.respond(
                op.put,
                this.failures.get('put')?.shift(),
                (q) => this.put(q.key, q.value, q.expectedVersion),
                (q) => q.options,
              )
              result = isFailure(r) ? r : { $case: 'put', put: r }
              break
            }
            case 'delete': {
              const r = this.respond(
                op.delete,
                this.failures.get('delete')?.shift(),
                (q) => this.del(q.key, q.expectedVersion),
                (q) => q.options,
              )
              result = isFailure(r) ? r : { $case: 'delete', delete: r }
              break
            }
            default:
              result = { code: 'INVALID_ARGUMENT', message: 'empty op' }
          }
          return isFailure(result)
            ? { result: { $case: 'error', error: FakeKvServer.opErrorOf(result) } }
            : { result: result as NonNullable<MultiOpResult['result']> }
        })
        callback(null, { results })
      })()
    }
  }

  private sessionCheck(options: GetRequest['options'], shardId: number): Failure | undefined {
    if (options?.consistency !== Consistency.CONSISTENCY_SESSION) return undefined
    const needed = options.session?.appliedIndexByShard[shardId] ?? 0
    if (needed > this.readIndex()) {
      return { code: 'SESSION_BEHIND', message: `replica at ${this.readIndex()}, session needs ${needed}` }
    }
    return undefined
  }

  private put(key: Buffer, value: Buffer, expectedVersion: number | undefined): PutResponse | Failure {
    const row = this.store.rows.get(key.toString('hex'))
    const current = row?.version ?? 0
    if (expectedVersion !== undefined && expectedVersion !== current) {
      return {
        code: 'VERSION_MISMATCH',
        message: `expected version ${expectedVersion}, key is at ${current}`,
        metadata: { 'ringkv-current-version': String(current) },
      }
    }
    const index = ++this.store.appliedIndex
    this.store.applies += 1
    this.store.rows.set(key.toString('hex'), {
      value: Buffer.from(value),
      version: index,
      createVersion: row?.createVersion ?? index,
    })
    return {
      version: index,
      receipt: this.receipt(this.shardOf(key), Consistency.CONSISTENCY_MAJORITY, index),
    }
  }

  private del(key: Buffer, expectedVersion: number | undefined): DeleteResponse | Failure {
    const row = this.store.rows.get(key.toString('hex'))
    const current = row?.version ?? 0
    if (expectedVersion !== undefined && expectedVersion !== current) {
      return {
        code: 'VERSION_MISMATCH',
        message: `expected version ${expectedVersion}, key is at ${current}`,
        metadata: { 'ringkv-current-version': String(current) },
      }
    }
    const index = ++this.store.appliedIndex
    this.store.applies += 1
    const deleted = this.store.rows.delete(key.toString('hex'))
    return { deleted, receipt: this.receipt(this.shardOf(key), Consistency.CONSISTENCY_MAJORITY, index) }
  }

  private kvImplementation(): KvServiceServer {
    return {
      // Sessions are the shard's business (tested there); here every registration succeeds, unrecorded.
      registerSession: (_call: unknown, callback: (err: null, res: { receipt: undefined }) => void) =>
        callback(null, { receipt: undefined }),
      get: this.unary<GetRequest, GetResponse>('get', this.getHandle, () => undefined),
      multi: this.multiHandler(),
      put: this.unary<PutRequest, PutResponse>(
        'put',
        (req) => this.put(req.key, req.value, req.expectedVersion),
        (req) => req.options,
      ),
      delete: this.unary<DeleteRequest, DeleteResponse>(
        'delete',
        (req) => this.del(req.key, req.expectedVersion),
        (req) => req.options,
      ),
      batchGet: this.unary<BatchGetRequest, BatchGetResponse>(
        'batchGet',
        (req) => {
          const shards = new Set<number>()
          const results = req.keys.map((key) => {
            shards.add(this.shardOf(key))
            const row = this.store.rows.get(key.toString('hex'))
            return {
              key,
              found: row !== undefined,
              value: row?.value ?? Buffer.alloc(0),
              version: row?.version ?? 0,
              createVersion: row?.createVersion ?? 0,
            }
          })
          const receipts = [...shards].map((s) => this.receipt(s, req.options?.consistency ?? 0))
          return { results, receipts }
        },
        () => undefined,
      ),
      batch: this.unary<BatchRequest, BatchResponse>(
        'batch',
        (req) => {
          const keys = req.ops.map((op) => (op.op?.$case === 'put' ? op.op.put.key : op.op?.delete.key))
          const shards = new Set(keys.map((k) => this.shardOf(k ?? Buffer.alloc(0))))
          if (shards.size > 1) return { code: 'WRONG_SHARD', message: 'batch spans shards' }
          for (const op of req.ops) {
            const o = op.op?.$case === 'put' ? op.op.put : op.op?.delete
            if (o?.expectedVersion === undefined) continue
            const current = this.store.rows.get(o.key.toString('hex'))?.version ?? 0
            if (current !== o.expectedVersion) {
              return {
                code: 'VERSION_MISMATCH',
                message: 'batch compare failed',
                metadata: { 'ringkv-current-version': String(current) },
              }
            }
          }
          const results: BatchOpResult[] = []
          for (const op of req.ops) {
            if (op.op?.$case === 'put') {
              const r = this.put(op.op.put.key, op.op.put.value, undefined) as PutResponse
              results.push({ result: { $case: 'put', put: r } })
            } else if (op.op?.$case === 'delete') {
              const r = this.del(op.op.delete.key, undefined) as DeleteResponse
              results.push({ result: { $case: 'delete', delete: r } })
            }
          }
          return { results, receipt: this.receipt([...shards][0] ?? 0, Consistency.CONSISTENCY_MAJORITY) }
        },
        (req) => req.options,
      ),
      scan: (call: ServerWritableStream<ScanRequest, ScanResponse>) => {
        void (async () => {
          const failure = await this.admit('scan', call.request, call.getDeadline())
          if (failure !== undefined) {
            call.emit('error', FakeKvServer.errorOf(failure))
            return
          }
          const req = call.request
          const prefix = req.prefix.toString('hex')
          const after = req.cursor.length > 0 ? req.cursor.toString('utf8') : ''
          let rows = [...this.store.rows.entries()]
            .filter(([k]) => k.startsWith(prefix) && k > after)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          const limited = req.limit > 0 && rows.length > req.limit
          if (req.limit > 0) rows = rows.slice(0, req.limit)
          const breakAfter = this.scanBreaks.shift()
          let pages = 0
          for (let i = 0; i < rows.length || (i === 0 && rows.length === 0); i += this.scanPageEntries) {
            if (breakAfter !== undefined && pages === breakAfter) {
              call.emit('error', FakeKvServer.errorOf({ status: 14, message: 'connection reset (injected)' }))
              return
            }
            const page = rows.slice(i, i + this.scanPageEntries)
            const last = page[page.length - 1]
            const isLast = i + this.scanPageEntries >= rows.length
            call.write({
              entries: page.map(([k, row]) => ({
                key: Buffer.from(k, 'hex'),
                value: row.value,
                version: row.version,
                createVersion: row.createVersion,
              })),
              cursor: last === undefined ? Buffer.alloc(0) : Buffer.from(last[0], 'utf8'),
              done: isLast && !limited,
              receipt: this.receipt(0, req.options?.consistency ?? 0),
            })
            pages += 1
            await new Promise((r) => setImmediate(r))
            if (call.cancelled) return
          }
          call.end()
        })()
      },
      shardMap: (
        call: ServerUnaryCall<ShardMapRequest, ShardMapResponse>,
        callback: sendUnaryData<ShardMapResponse>,
      ) => {
        void (async () => {
          const failure = await this.admit('shardMap', call.request, call.getDeadline())
          if (failure !== undefined) {
            callback(FakeKvServer.errorOf(failure))
            return
          }
          callback(null, {
            clusterId: 'fake-cluster',
            nodes: [
              {
                nodeId: this.nodeId,
                address: this.address,
                zone: '',
                state: 'active',
                lastHeartbeatMs: 0,
                weight: 1,
                peerAddress: '',
              },
            ],
            shards: [
              {
                shardId: 0,
                hashStart: '0',
                hashEnd: hashSpaceEnd.toString(),
                replicas: [this.nodeId],
                leaderHint: this.nodeId,
                leaderTerm: 1,
                epoch: 1,
              },
            ],
            replicaCount: 1,
            vnodesPerNode: 16,
            metaShard: undefined,
            servedBy: this.nodeId,
          })
        })()
      },
    }
  }

  private adminImplementation(): AdminServiceServer {
    return {
      status: (
        call: ServerUnaryCall<StatusRequest, StatusResponse>,
        callback: sendUnaryData<StatusResponse>,
      ) => {
        void (async () => {
          const failure = await this.admit('status', call.request, call.getDeadline())
          if (failure !== undefined) {
            callback(FakeKvServer.errorOf(failure))
            return
          }
          callback(null, {
            clusterId: 'fake-cluster',
            node: {
              nodeId: this.nodeId,
              address: this.address,
              version: '0.1.0',
              uptimeMs: 1234,
              dataDir: '/tmp/fake',
              requestsInFlight: 0,
              forwardedRequests: 0,
              zone: '',
              shards: [
                {
                  shardId: 0,
                  role: 'leader',
                  appliedIndex: this.store.appliedIndex,
                  commitIndex: this.store.appliedIndex,
                  term: 1,
                  leaderId: this.nodeId,
                  voters: [this.nodeId],
                  learners: [],
                  hashStart: '0',
                  hashEnd: '18446744073709551615',
                  approximateBytes: 0,
                  epoch: 1,
                  state: 'active',
                  votersOutgoing: [],
                },
              ],
            },
            peers: [],
          })
        })()
      },
      // Like a kvd started without --allow-fault-injection.
      injectFault: (_call, callback) => {
        callback(
          FakeKvServer.errorOf({ code: 'FAULT_INJECTION_DISABLED', message: 'fault injection is disabled' }),
        )
      },
      join: (_call, callback) => callback({ code: 12, details: 'node-to-node only' }),
      heartbeat: (_call, callback) => callback({ code: 12, details: 'node-to-node only' }),
      moveReplica: (_call, callback) => callback({ code: 12, details: 'not faked' }),
      listMoves: (_call, callback) => callback({ code: 12, details: 'not faked' }),
      transferShardLeader: (_call, callback) => callback({ code: 12, details: 'not faked' }),
      rebalance: (_call, callback) => callback({ code: 12, details: 'not faked' }),
      nodeAction: (_call, callback) => callback({ code: 12, details: 'not faked' }),
      exportShard: (call) => call.destroy(Object.assign(new Error('not faked'), { code: 12 })),
    }
  }
}

function isFailure(x: unknown): x is Failure {
  return typeof x === 'object' && x !== null && ('code' in x || 'status' in x) && !('receipt' in x)
}
