/**
 * An in-process fake of a sharded, replicated ringkv cluster for SDK and CLI tests: N nodes on
 * 127.0.0.1 port 0, each speaking the public API (KvService + AdminService) over real gRPC, all
 * holding a replica of every shard, as a 3-node cluster does. It follows the server contract the
 * SDK routes by:
 *
 * - keys are placed by xxh64 into `shards` equal slices of the hash space (shard ids start at 1,
 *   so an id is never mistaken for an index);
 * - a shard's leader (settable per shard) serves writes and linearizable reads; any other node
 *   answers NOT_LEADER (FAILED_PRECONDITION) with `ringkv-shard` and, when `hints` is on,
 *   `ringkv-leader`;
 * - session, bounded and eventual reads are served by any node; a node can lag on a shard
 *   (`lag`), and then answers a session read that needs more with SESSION_BEHIND;
 * - BatchGet at linearizable needs every key's shard led by the node; Batch must stay in one shard
 *   (else CROSS_SHARD); Scan serves one shard per stream and ends it without `done` with a cursor
 *   into the next shard;
 * - Status lists every shard with its range and leader, and the other nodes as peers;
 * - Multi answers each op as its unary call would (routing, dedup, injected failures of that
 *   method), its failure as an OpError; with `multi` off a node answers UNIMPLEMENTED, as a node
 *   from before Multi does.
 *
 * Not a model of Raft: one log per shard (an applied-index counter) shared by all nodes, writes
 * dedup'd by client id + seq per shard.
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
  type ReadOptions,
  type Receipt,
  type ScanRequest,
  type ScanResponse,
  type WriteOptions,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { createHasher, equalHashRanges, type HashRange, type Hasher } from '../../../src/hashing/index.ts'

export type Method = 'get' | 'put' | 'delete' | 'batchGet' | 'batch' | 'scan' | 'status' | 'multi'

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
}

interface Row {
  value: Buffer
  version: number
  createVersion: number
}

/** One shard's state, shared by every replica (the fake's stand-in for a replicated log). */
export class FakeShard {
  readonly rows = new Map<string, Row>()
  applied = 0
  applies = 0
  readonly dedup = new Map<string, unknown>()
  constructor(
    readonly shardId: number,
    readonly range: HashRange,
  ) {}
}

export interface FakeClusterInit {
  readonly nodes?: number
  readonly shards?: number
}

let hasherLoading: Promise<Hasher> | undefined

async function testHasher(): Promise<Hasher> {
  hasherLoading ??= import('xxhash-wasm').then(async ({ default: xxhash }) => createHasher(await xxhash()))
  return hasherLoading
}

const isLinearizableRead = (options: ReadOptions | undefined): boolean =>
  (options?.consistency ?? 0) === Consistency.CONSISTENCY_UNSPECIFIED ||
  options?.consistency === Consistency.CONSISTENCY_LINEARIZABLE

export class FakeCluster {
  readonly nodes: FakeNode[] = []
  readonly shards: FakeShard[]
  /** Shard id -> leader node id. */
  readonly leaders = new Map<number, number>()
  /** NOT_LEADER answers name the leader (`ringkv-leader`). */
  hints = true
  /** Status answers say leader_id 0 (unknown) for every shard. */
  statusLeadersUnknown = false
  /** Status answers list no shards (a server from before sharding). */
  statusWithoutShards = false
  readonly hasher: Hasher

  private constructor(hasher: Hasher, shardCount: number) {
    this.hasher = hasher
    this.shards = equalHashRanges(shardCount).map((range, i) => new FakeShard(i + 1, range))
  }

  static async start(init: FakeClusterInit = {}): Promise<FakeCluster> {
    const cluster = new FakeCluster(await testHasher(), init.shards ?? 4)
    const nodeCount = init.nodes ?? 3
    for (let i = 1; i <= nodeCount; i++) {
      const node = new FakeNode(cluster, i)
      await node.listen(0)
      cluster.nodes.push(node)
    }
    // Leaders spread round-robin: shard 1 on node 1, shard 2 on node 2, ...
    cluster.shards.forEach((s, i) => cluster.leaders.set(s.shardId, (i % nodeCount) + 1))
    return cluster
  }

  node(nodeId: number): FakeNode {
    const node = this.nodes.find((n) => n.nodeId === nodeId)
    if (node === undefined) throw new Error(`no node ${nodeId}`)
    return node
  }

  /** The node leading `shardId`. */
  leaderNode(shardId: number): FakeNode {
    return this.node(this.leaders.get(shardId) ?? 0)
  }

  shardOf(key: Uint8Array): FakeShard {
    const hash = this.hasher.hash64(key)
    const shard = this.shards.find((s) => hash >= s.range.start && hash < s.range.end)
    if (shard === undefined) throw new Error('hash outside every range')
    return shard
  }

  /** The first `count` keys `${prefix}${i}` that land on `shardId`. */
  keysOn(shardId: number, prefix: string, count = 1): string[] {
    const out: string[] = []
    for (let i = 0; out.length < count; i++) {
      const key = `${prefix}${i}`
      if (this.shardOf(new TextEncoder().encode(key)).shardId === shardId) out.push(key)
    }
    return out
  }

  /** Every node's recorded requests of `method`, as [nodeId, count]. */
  counts(method: Method): Record<number, number> {
    return Object.fromEntries(this.nodes.map((n) => [n.nodeId, n.count(method)]))
  }

  clearRequests(): void {
    for (const n of this.nodes) n.requests.length = 0
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) await n.kill()
  }
}

export class FakeNode {
  readonly nodeId: number
  readonly requests: RecordedRequest[] = []
  address = ''
  /** Shard id -> the applied index this replica is frozen at for reads (a lagging follower). */
  readonly lag = new Map<number, number>()
  /** Entries per scan page. */
  scanPageEntries = 2
  /** Serves Multi; false: answers it UNIMPLEMENTED (a node from before Multi). */
  multi = true
  private readonly cluster: FakeCluster
  private readonly failures = new Map<Method, Failure[]>()
  private server: Server | undefined
  private port = 0

  constructor(cluster: FakeCluster, nodeId: number) {
    this.cluster = cluster
    this.nodeId = nodeId
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

  async kill(): Promise<void> {
    this.server?.forceShutdown()
    this.server = undefined
  }

  async restart(): Promise<void> {
    await this.listen(this.port)
  }

  async listen(port: number): Promise<void> {
    const server = new Server()
    server.addService(KvServiceService, this.kv())
    server.addService(AdminServiceService, this.admin())
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, bound) =>
        err === null ? resolve(bound) : reject(err),
      ),
    )
    this.server = server
    this.address = `127.0.0.1:${this.port}`
  }

  private view(shard: FakeShard): number {
    return this.lag.get(shard.shardId) ?? shard.applied
  }

  private leads(shard: FakeShard): boolean {
    return this.cluster.leaders.get(shard.shardId) === this.nodeId
  }

  private notLeader(shard: FakeShard): Failure {
    const leader = this.cluster.leaders.get(shard.shardId) ?? 0
    return {
      code: 'NOT_LEADER',
      message: `node ${this.nodeId} does not lead shard ${shard.shardId}`,
      metadata: {
        'ringkv-shard': String(shard.shardId),
        ...(this.cluster.hints && leader > 0 ? { 'ringkv-leader': String(leader) } : {}),
      },
    }
  }

  private receipt(shard: FakeShard, delivered: Consistency, appliedIndex?: number): Receipt {
    const level =
      delivered === Consistency.CONSISTENCY_UNSPECIFIED ? Consistency.CONSISTENCY_LINEARIZABLE : delivered
    const fresh = level === Consistency.CONSISTENCY_LINEARIZABLE || level >= Consistency.CONSISTENCY_MAJORITY
    return {
      nodeId: this.nodeId,
      shardId: shard.shardId,
      appliedIndex: appliedIndex ?? this.view(shard),
      delivered: level,
      stalenessMs: fresh ? 0 : 7,
      term: 1,
    }
  }

  private readCheck(shard: FakeShard, options: ReadOptions | undefined): Failure | undefined {
    if (isLinearizableRead(options)) return this.leads(shard) ? undefined : this.notLeader(shard)
    if (options?.consistency === Consistency.CONSISTENCY_SESSION) {
      const needed = options.session?.appliedIndexByShard[shard.shardId] ?? 0
      if (needed > this.view(shard)) {
        return {
          code: 'SESSION_BEHIND',
          message: `node ${this.nodeId} at ${this.view(shard)} on shard ${shard.shardId}, session needs ${needed}`,
        }
      }
    }
    return undefined
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
    }
  }

  /**
   * One request, unary or an op of a Multi: applies an injected failure of `method`, checks
   * routing (`route` answers a Failure when this node must not serve), dedups writes per shard by
   * client id + seq.
   */
  private respond<Req, Res>(
    method: Method,
    request: Req,
    route: (request: Req) => { shard: FakeShard | undefined; failure: Failure | undefined },
    handle: (request: Req) => Res | Failure,
    writeOptions: (request: Req) => WriteOptions | undefined,
  ): Res | Failure {
    const injected = this.failures.get(method)?.shift()
    if (injected !== undefined && injected.afterApply !== true) return injected
    const { shard, failure } = route(request)
    if (failure !== undefined) return failure
    const options = writeOptions(request)
    const dedupKey =
      shard !== undefined && options !== undefined && options.clientId !== ''
        ? `${options.clientId}/${options.seq}`
        : undefined
    let result: Res | Failure
    if (dedupKey !== undefined && shard?.dedup.has(dedupKey) === true) {
      result = shard.dedup.get(dedupKey) as Res | Failure
    } else {
      result = handle(request)
      if (dedupKey !== undefined) shard?.dedup.set(dedupKey, result)
    }
    return injected ?? result
  }

  /** A unary handler over `respond`, recording the request. */
  private unary<Req, Res>(
    method: Method,
    route: (request: Req) => { shard: FakeShard | undefined; failure: Failure | undefined },
    handle: (request: Req) => Res | Failure,
    writeOptions: (request: Req) => WriteOptions | undefined,
  ): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
    return (call, callback) => {
      this.requests.push({ method, request: call.request })
      const result = this.respond(method, call.request, route, handle, writeOptions)
      if (isFailure(result)) callback(FakeNode.errorOf(result))
      else callback(null, result)
    }
  }

  private getRoute = (req: GetRequest): { shard: FakeShard; failure: Failure | undefined } => {
    const shard = this.cluster.shardOf(req.key)
    return { shard, failure: this.readCheck(shard, req.options) }
  }

  private getHandle = (req: GetRequest): GetResponse => {
    const shard = this.cluster.shardOf(req.key)
    const row = shard.rows.get(req.key.toString('hex'))
    return {
      found: row !== undefined,
      value: row?.value ?? Buffer.alloc(0),
      version: row?.version ?? 0,
      createVersion: row?.createVersion ?? 0,
      receipt: this.receipt(shard, req.options?.consistency ?? 0),
    }
  }

  /** Multi: every op as its unary call (recorded once, as 'multi'). */
  private multiHandler(): (
    call: ServerUnaryCall<MultiRequest, MultiResponse>,
    callback: sendUnaryData<MultiResponse>,
  ) => void {
    const c = this.cluster
    return (call, callback) => {
      this.requests.push({ method: 'multi', request: call.request })
      if (!this.multi) {
        callback({
          code: 12,
          details: 'The server does not implement the method Multi',
          metadata: new Metadata(),
        })
        return
      }
      const injected = this.failures.get('multi')?.shift()
      if (injected !== undefined) {
        callback(FakeNode.errorOf(injected))
        return
      }
      const results = call.request.ops.map(({ op }): MultiOpResult => {
        let result: MultiOpResult['result'] | Failure
        switch (op?.$case) {
          case 'get': {
            const r = this.respond('get', op.get, this.getRoute, this.getHandle, () => undefined)
            result = isFailure(r) ? r : { $case: 'get', get: r }
            break
          }
          case 'put': {
            const req = op.put
            const r = this.respond(
              'put',
              req,
              (q) => this.writeRoute(q.key),
              (q) => this.put(c.shardOf(q.key), q.key, q.value, q.expectedVersion),
              (q) => q.options,
            )
            result = isFailure(r) ? r : { $case: 'put', put: r }
            break
          }
          case 'delete': {
            const r = this.respond(
              'delete',
              op.delete,
              (q) => this.writeRoute(q.key),
              (q) => this.del(c.shardOf(q.key), q.key, q.expectedVersion),
              (q) => q.options,
            )
            result = isFailure(r) ? r : { $case: 'delete', delete: r }
            break
          }
          default:
            result = { code: 'INVALID_ARGUMENT', message: 'empty op' }
        }
        return isFailure(result)
          ? { result: { $case: 'error', error: FakeNode.opErrorOf(result) } }
          : { result: result as NonNullable<MultiOpResult['result']> }
      })
      callback(null, { results })
    }
  }

  private put(
    shard: FakeShard,
    key: Buffer,
    value: Buffer,
    expected: number | undefined,
  ): PutResponse | Failure {
    const row = shard.rows.get(key.toString('hex'))
    const current = row?.version ?? 0
    if (expected !== undefined && expected !== current) {
      return {
        code: 'VERSION_MISMATCH',
        message: `expected ${expected}, at ${current}`,
        metadata: { 'ringkv-current-version': String(current) },
      }
    }
    const index = ++shard.applied
    shard.applies += 1
    shard.rows.set(key.toString('hex'), {
      value: Buffer.from(value),
      version: index,
      createVersion: row?.createVersion ?? index,
    })
    return { version: index, receipt: this.receipt(shard, Consistency.CONSISTENCY_MAJORITY, index) }
  }

  private del(shard: FakeShard, key: Buffer, expected: number | undefined): DeleteResponse | Failure {
    const row = shard.rows.get(key.toString('hex'))
    const current = row?.version ?? 0
    if (expected !== undefined && expected !== current) {
      return { code: 'VERSION_MISMATCH', message: `expected ${expected}, at ${current}` }
    }
    const index = ++shard.applied
    shard.applies += 1
    const deleted = shard.rows.delete(key.toString('hex'))
    return { deleted, receipt: this.receipt(shard, Consistency.CONSISTENCY_MAJORITY, index) }
  }

  private writeRoute(key: Buffer): { shard: FakeShard; failure: Failure | undefined } {
    const shard = this.cluster.shardOf(key)
    return { shard, failure: this.leads(shard) ? undefined : this.notLeader(shard) }
  }

  private kv(): KvServiceServer {
    const c = this.cluster
    return {
      get: this.unary<GetRequest, GetResponse>('get', this.getRoute, this.getHandle, () => undefined),
      multi: this.multiHandler(),
      put: this.unary<PutRequest, PutResponse>(
        'put',
        (req) => this.writeRoute(req.key),
        (req) => this.put(c.shardOf(req.key), req.key, req.value, req.expectedVersion),
        (req) => req.options,
      ),
      delete: this.unary<DeleteRequest, DeleteResponse>(
        'delete',
        (req) => this.writeRoute(req.key),
        (req) => this.del(c.shardOf(req.key), req.key, req.expectedVersion),
        (req) => req.options,
      ),
      batchGet: this.unary<BatchGetRequest, BatchGetResponse>(
        'batchGet',
        (req) => {
          for (const key of req.keys) {
            const failure = this.readCheck(c.shardOf(key), req.options)
            if (failure !== undefined) return { shard: undefined, failure }
          }
          return { shard: undefined, failure: undefined }
        },
        (req) => {
          const shards: FakeShard[] = []
          const results = req.keys.map((key) => {
            const shard = c.shardOf(key)
            if (!shards.includes(shard)) shards.push(shard)
            const row = shard.rows.get(key.toString('hex'))
            return {
              key,
              found: row !== undefined,
              value: row?.value ?? Buffer.alloc(0),
              version: row?.version ?? 0,
              createVersion: row?.createVersion ?? 0,
            }
          })
          return { results, receipts: shards.map((s) => this.receipt(s, req.options?.consistency ?? 0)) }
        },
        () => undefined,
      ),
      batch: this.unary<BatchRequest, BatchResponse>(
        'batch',
        (req) => {
          const keys = req.ops.map((op) => (op.op?.$case === 'put' ? op.op.put.key : op.op?.delete.key))
          const shards = new Set(keys.map((k) => c.shardOf(k ?? Buffer.alloc(0))))
          if (shards.size !== 1) {
            return { shard: undefined, failure: { code: 'CROSS_SHARD', message: 'batch spans shards' } }
          }
          const shard = [...shards][0] as FakeShard
          return { shard, failure: this.leads(shard) ? undefined : this.notLeader(shard) }
        },
        (req) => {
          const first = req.ops[0]?.op
          const shard = c.shardOf(
            (first?.$case === 'put' ? first.put.key : first?.delete.key) ?? Buffer.alloc(0),
          )
          const results: BatchOpResult[] = []
          for (const op of req.ops) {
            if (op.op?.$case === 'put') {
              const r = this.put(shard, op.op.put.key, op.op.put.value, undefined) as PutResponse
              results.push({ result: { $case: 'put', put: r } })
            } else if (op.op?.$case === 'delete') {
              const r = this.del(shard, op.op.delete.key, undefined) as DeleteResponse
              results.push({ result: { $case: 'delete', delete: r } })
            }
          }
          return { results, receipt: this.receipt(shard, Consistency.CONSISTENCY_MAJORITY, shard.applied) }
        },
        (req) => req.options,
      ),
      scan: (call: ServerWritableStream<ScanRequest, ScanResponse>) => {
        this.requests.push({ method: 'scan', request: call.request })
        const injected = this.failures.get('scan')?.shift()
        if (injected !== undefined) {
          call.emit('error', FakeNode.errorOf(injected))
          return
        }
        void this.scan(call)
      },
    }
  }

  /** Cursor: `${shard index}:${hex of the last key served}` (opaque to the SDK). */
  private async scan(call: ServerWritableStream<ScanRequest, ScanResponse>): Promise<void> {
    const c = this.cluster
    const req = call.request
    const text = req.cursor.toString('utf8')
    const [indexText = '0', after = ''] = text === '' ? [] : text.split(':')
    const index = Number(indexText)
    const shard = c.shards[index]
    if (shard === undefined) {
      call.emit('error', FakeNode.errorOf({ code: 'INVALID_ARGUMENT', message: 'bad cursor' }))
      return
    }
    const failure = this.readCheck(shard, req.options)
    if (failure !== undefined) {
      call.emit('error', FakeNode.errorOf(failure))
      return
    }
    const prefix = req.prefix.toString('hex')
    let rows = [...shard.rows.entries()]
      .filter(([k]) => k.startsWith(prefix) && k > after)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const limited = req.limit > 0 && rows.length >= req.limit
    if (req.limit > 0) rows = rows.slice(0, req.limit)
    const receipt = this.receipt(shard, req.options?.consistency ?? 0)
    for (let i = 0; i < rows.length; i += this.scanPageEntries) {
      const page = rows.slice(i, i + this.scanPageEntries)
      const last = page[page.length - 1] as [string, Row]
      call.write({
        entries: page.map(([k, row]) => ({
          key: Buffer.from(k, 'hex'),
          value: row.value,
          version: row.version,
          createVersion: row.createVersion,
        })),
        cursor: Buffer.from(`${index}:${last[0]}`, 'utf8'),
        done: false,
        receipt,
      })
      await new Promise((r) => setImmediate(r))
      if (call.cancelled) return
    }
    if (!limited) {
      // The shard is finished: the cursor moves to the next shard's range, or the scan is done.
      const next = index + 1 < c.shards.length ? index + 1 : undefined
      call.write({
        entries: [],
        cursor: Buffer.from(next === undefined ? `${index}:~` : `${next}:`, 'utf8'),
        done: next === undefined,
        receipt,
      })
    }
    call.end()
  }

  private admin(): AdminServiceServer {
    const c = this.cluster
    return {
      status: (
        call: ServerUnaryCall<StatusRequest, StatusResponse>,
        callback: sendUnaryData<StatusResponse>,
      ) => {
        this.requests.push({ method: 'status', request: call.request })
        const injected = this.failures.get('status')?.shift()
        if (injected !== undefined) {
          callback(FakeNode.errorOf(injected))
          return
        }
        const allIds = c.nodes.map((n) => n.nodeId)
        callback(null, {
          clusterId: 'fake-cluster',
          node: {
            nodeId: this.nodeId,
            address: this.address,
            version: '0.1.0',
            uptimeMs: 1000,
            dataDir: `/tmp/fake-${this.nodeId}`,
            requestsInFlight: 0,
            shards: (c.statusWithoutShards ? [] : c.shards).map((s) => {
              const leader = c.leaders.get(s.shardId) ?? 0
              return {
                shardId: s.shardId,
                role: leader === this.nodeId ? 'leader' : 'follower',
                appliedIndex: this.view(s),
                commitIndex: s.applied,
                term: 1,
                leaderId: c.statusLeadersUnknown ? 0 : leader,
                voters: allIds,
                learners: [],
                hashStart: s.range.start.toString(),
                hashEnd: s.range.end.toString(),
              }
            }),
          },
          peers: c.nodes
            .filter((n) => n !== this)
            .map((n) => ({
              nodeId: n.nodeId,
              address: n.address,
              version: '',
              uptimeMs: 0,
              dataDir: '',
              requestsInFlight: 0,
              shards: [],
            })),
        })
      },
      injectFault: (_call, callback) => {
        callback(
          FakeNode.errorOf({ code: 'FAULT_INJECTION_DISABLED', message: 'fault injection is disabled' }),
        )
      },
    }
  }
}

function isFailure(x: unknown): x is Failure {
  return typeof x === 'object' && x !== null && ('code' in x || 'status' in x) && !('receipt' in x)
}
