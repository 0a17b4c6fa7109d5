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
 *   `ringkv-leader`; with `forward` on, it forwards the request to the leader instead (once), as
 *   kvd does, and the receipt names the leader (the node counts it in `forwarded`);
 * - session, bounded and eventual reads are served by any node; a node can lag on a shard
 *   (`lag`), and then answers a session read that needs more with SESSION_BEHIND;
 * - a request whose `route` {shard, epoch} names another shard than the key's, or an older epoch,
 *   is refused with WRONG_SHARD carrying the key's shard's current descriptor
 *   (`ringkv-descriptor-bin`; OpError.descriptor in a Multi) unless `descriptors` is off;
 * - BatchGet at linearizable needs every key's shard led by the node; Batch must stay in one shard
 *   (else CROSS_SHARD); Scan serves one shard per stream and ends it without `done` with a cursor
 *   into the next shard;
 * - ShardMap lists the nodes (address, zone, state, heartbeat) and every shard with its range,
 *   replicas (preference order: the first leader of the shard first), leader hint and epoch;
 *   `split` and `moveShard` change them (raising epochs) as the meta shard would;
 * - Status lists the shards the node holds with their range, leader, size and epoch, and the
 *   other nodes as peers; Join and Heartbeat answer UNIMPLEMENTED (node-to-node only);
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
  type ShardStatus,
  type StatusRequest,
  type StatusResponse,
} from '../../../src/gen/ringkv/v1/admin.ts'
import { ShardDescriptor } from '../../../src/gen/ringkv/v1/kv.ts'
import { metaShardId } from '../../../src/cluster/cluster-map.ts'
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
  type RouteHint,
  type ScanRequest,
  type ScanResponse,
  type ShardMapRequest,
  type ShardMapResponse,
  type WriteOptions,
} from '../../../src/gen/ringkv/v1/kv.ts'
import {
  createHasher,
  equalHashRanges,
  hashSpaceEnd,
  type HashRange,
  type Hasher,
} from '../../../src/hashing/index.ts'

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
  /** With WRONG_SHARD: the descriptor sent as `ringkv-descriptor-bin` (OpError.descriptor in a Multi). */
  readonly descriptor?: ShardDescriptor
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
  /** The meta shard's record of it: rises with every change of range or replicas. */
  epoch = 1
  /** The term its leader leads in (receipts and the map's leader_term). */
  term = 1
  constructor(
    readonly shardId: number,
    public range: HashRange,
    /** Node ids in preference order (the first is the preferred leader). */
    public replicas: number[],
  ) {}

  /** Key and value bytes of its rows (what the fake's Status reports as approximate_bytes). */
  bytes(): number {
    let n = 0
    for (const [k, row] of this.rows) n += k.length / 2 + row.value.length
    return n
  }
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
  /** In hash order. */
  readonly shards: FakeShard[]
  /** Shard id -> leader node id. */
  readonly leaders = new Map<number, number>()
  /** NOT_LEADER answers name the leader (`ringkv-leader`). */
  hints = true
  /** A node that does not lead a shard forwards writes and linearizable reads to its leader (kvd does). */
  forward = false
  /** Requests with a `route` are checked against the map (WRONG_SHARD when it knows better). */
  checkRoutes = true
  /** WRONG_SHARD carries the current descriptor. */
  descriptors = true
  /** ShardMap answers say leader_hint 0 (unknown) for every shard. */
  mapLeadersUnknown = false
  /** ShardMap answers list no shards. */
  mapWithoutShards = false
  /**
   * Every node holds a replica of the meta shard (id `metaShardId`) led by `metaLeader` and says so
   * in its Status, as kvd does; off by default (the map still names the meta shard).
   */
  metaReplicas = false
  metaLeader = 1
  readonly vnodesPerNode = 16
  readonly hasher: Hasher

  private constructor(hasher: Hasher, shardCount: number, nodeCount: number) {
    this.hasher = hasher
    const ids = Array.from({ length: nodeCount }, (_, i) => i + 1)
    // Replicas on every node, the shard's first leader first (the preferred leader).
    this.shards = equalHashRanges(shardCount).map(
      (range, i) =>
        new FakeShard(i + 1, range, [...ids.slice(i % nodeCount), ...ids.slice(0, i % nodeCount)]),
    )
  }

  static async start(init: FakeClusterInit = {}): Promise<FakeCluster> {
    const nodeCount = init.nodes ?? 3
    const cluster = new FakeCluster(await testHasher(), init.shards ?? 4, nodeCount)
    for (let i = 1; i <= nodeCount; i++) {
      const node = new FakeNode(cluster, i)
      await node.listen(0)
      cluster.nodes.push(node)
    }
    // Leaders spread round-robin: shard 1 on node 1, shard 2 on node 2, ...
    cluster.shards.forEach((s, i) => cluster.leaders.set(s.shardId, (i % nodeCount) + 1))
    return cluster
  }

  shard(shardId: number): FakeShard {
    const shard = this.shards.find((s) => s.shardId === shardId)
    if (shard === undefined) throw new Error(`no shard ${shardId}`)
    return shard
  }

  /** The meta shard's record of `shard`, as ShardMap and WRONG_SHARD carry it. */
  descriptor(shard: FakeShard): ShardDescriptor {
    return {
      shardId: shard.shardId,
      hashStart: shard.range.start.toString(),
      hashEnd: shard.range.end.toString(),
      replicas: [...shard.replicas],
      leaderHint: this.mapLeadersUnknown ? 0 : (this.leaders.get(shard.shardId) ?? 0),
      leaderTerm: shard.term,
      epoch: shard.epoch,
    }
  }

  /**
   * Moves `shardId` to `replicas` (preference order) with `leader` leading it in a new term, as a
   * rebalance does: the epoch rises; the range stays.
   */
  moveShard(shardId: number, replicas: number[], leader: number = replicas[0] ?? 0): FakeShard {
    const shard = this.shard(shardId)
    shard.replicas = [...replicas]
    shard.epoch += 1
    shard.term += 1
    this.leaders.set(shardId, leader)
    return shard
  }

  /**
   * Splits `shardId` at the middle of its range: it keeps the lower half (epoch + 1), a new shard
   * `newShardId` (epoch 1, same replicas and leader) takes the upper half and its rows.
   */
  split(shardId: number, newShardId: number): FakeShard {
    const index = this.shards.findIndex((s) => s.shardId === shardId)
    const shard = this.shards[index]
    if (shard === undefined) throw new Error(`no shard ${shardId}`)
    const middle = (shard.range.start + shard.range.end) / 2n
    const upper = new FakeShard(newShardId, { start: middle, end: shard.range.end }, [...shard.replicas])
    for (const [k, row] of [...shard.rows]) {
      if (this.hasher.hash64(Buffer.from(k, 'hex')) < middle) continue
      upper.rows.set(k, row)
      shard.rows.delete(k)
    }
    upper.applied = shard.applied
    shard.range = { start: shard.range.start, end: middle }
    shard.epoch += 1
    this.shards.splice(index + 1, 0, upper)
    this.leaders.set(newShardId, this.leaders.get(shardId) ?? 0)
    return upper
  }

  /**
   * WRONG_SHARD when `route` says another shard than `shard` (the key's), or an older epoch than
   * the meta shard's: with the key's shard's current descriptor (unless `descriptors` is off).
   */
  routeCheck(shard: FakeShard, route: RouteHint | undefined): Failure | undefined {
    if (!this.checkRoutes || route === undefined) return undefined
    if (route.shardId === shard.shardId && route.epoch >= shard.epoch) return undefined
    return {
      code: 'WRONG_SHARD',
      message: `the key is in shard ${shard.shardId} at epoch ${shard.epoch}, not shard ${route.shardId} at epoch ${route.epoch}`,
      metadata: { 'ringkv-shard': String(shard.shardId), 'ringkv-epoch': String(shard.epoch) },
      ...(this.descriptors ? { descriptor: this.descriptor(shard) } : {}),
    }
  }

  shardMap(servedBy: number): ShardMapResponse {
    return {
      clusterId: 'fake-cluster',
      nodes: this.nodes.map((n) => ({
        nodeId: n.nodeId,
        address: n.address,
        zone: n.zone,
        state: n.state,
        lastHeartbeatMs: n.lastHeartbeatMs,
        peerAddress: '',
        weight: n.weight,
      })),
      shards: this.mapWithoutShards ? [] : this.shards.map((s) => this.descriptor(s)),
      replicaCount: Math.max(0, ...this.shards.map((s) => s.replicas.length)),
      vnodesPerNode: this.vnodesPerNode,
      metaShard: {
        shardId: metaShardId,
        hashStart: '0',
        hashEnd: hashSpaceEnd.toString(),
        replicas: this.nodes.map((n) => n.nodeId),
        leaderHint: 1,
        leaderTerm: 1,
        epoch: 1,
      },
      servedBy,
    }
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

/** How a node serves one kind of request (unary, or an op of a Multi). */
interface Handler<Req, Res> {
  /** The shards the request's keys are in (the first one deduplicates writes). */
  shards(request: Req): FakeShard[]
  /** The route hint the request carries. */
  route(request: Req): RouteHint | undefined
  /** Why this node may not serve it (NOT_LEADER, SESSION_BEHIND, CROSS_SHARD), if it may not. */
  check(request: Req): Failure | undefined
  handle(request: Req): Res | Failure
  writeOptions(request: Req): WriteOptions | undefined
}

type DataMethod = 'get' | 'put' | 'delete' | 'batchGet' | 'batch'

export class FakeNode {
  readonly nodeId: number
  readonly requests: RecordedRequest[] = []
  address = ''
  /** As the map lists it. */
  zone = ''
  state = 'active'
  weight = 1
  lastHeartbeatMs = 0
  /** Shard id -> the applied index this replica is frozen at for reads (a lagging follower). */
  readonly lag = new Map<number, number>()
  /** Shard id -> approximate_bytes this node's Status reports (default: the shard's key and value bytes). */
  readonly reportedBytes = new Map<number, number>()
  /** Requests this node forwarded to a leader (Status forwarded_requests). */
  forwarded = 0
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

  get alive(): boolean {
    return this.server !== undefined
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

  /** This node's replica of the meta shard as its Status shows it (FakeCluster.metaReplicas). */
  private metaReplica(): ShardStatus {
    const c = this.cluster
    return {
      shardId: metaShardId,
      role: c.metaLeader === this.nodeId ? 'leader' : 'follower',
      appliedIndex: 1,
      commitIndex: 1,
      term: 1,
      leaderId: c.metaLeader,
      voters: c.nodes.map((n) => n.nodeId),
      learners: [],
      hashStart: '0',
      hashEnd: hashSpaceEnd.toString(),
      approximateBytes: 0,
      epoch: 1,
      state: 'active',
      votersOutgoing: [],
    }
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
      term: shard.term,
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
    if (failure.descriptor !== undefined)
      metadata.set('ringkv-descriptor-bin', Buffer.from(ShardDescriptor.encode(failure.descriptor).finish()))
    const status = failure.status ?? (failure.code !== undefined ? errorCodeTable[failure.code].status : 13)
    return { code: status, details: failure.message ?? failure.code ?? 'injected failure', metadata }
  }

  /** A Failure as the OpError of one op of a Multi call (what errorOf sends as status and trailers). */
  private static opErrorOf(failure: Failure): OpError {
    const md = failure.metadata ?? {}
    const uint = (key: string): number | undefined => (md[key] === undefined ? undefined : Number(md[key]))
    const leaderHint = uint('ringkv-leader')
    const shardId = uint('ringkv-shard')
    const shardMapEpoch = uint('ringkv-epoch')
    const currentVersion = uint('ringkv-current-version')
    return {
      code: failure.code ?? '',
      status: failure.status ?? (failure.code !== undefined ? errorCodeTable[failure.code].status : 13),
      message: failure.message ?? failure.code ?? 'injected failure',
      ...(leaderHint !== undefined ? { leaderHint } : {}),
      ...(shardId !== undefined ? { shardId } : {}),
      ...(shardMapEpoch !== undefined ? { shardMapEpoch } : {}),
      ...(currentVersion !== undefined ? { currentVersion } : {}),
      descriptor: failure.descriptor,
    }
  }

  private handler(method: DataMethod): Handler<unknown, unknown> {
    const c = this.cluster
    const keyOf = (op: BatchRequest['ops'][number]): Buffer =>
      (op.op?.$case === 'put' ? op.op.put.key : op.op?.delete.key) ?? Buffer.alloc(0)
    const handlers: { [M in DataMethod]: Handler<never, unknown> } = {
      get: {
        shards: (q: GetRequest) => [c.shardOf(q.key)],
        route: (q: GetRequest) => q.options?.route,
        check: (q: GetRequest) => this.readCheck(c.shardOf(q.key), q.options),
        handle: (q: GetRequest) => this.getHandle(q),
        writeOptions: () => undefined,
      },
      put: {
        shards: (q: PutRequest) => [c.shardOf(q.key)],
        route: (q: PutRequest) => q.options?.route,
        check: (q: PutRequest) => this.writeCheck(c.shardOf(q.key)),
        handle: (q: PutRequest) => this.put(c.shardOf(q.key), q.key, q.value, q.expectedVersion),
        writeOptions: (q: PutRequest) => q.options,
      },
      delete: {
        shards: (q: DeleteRequest) => [c.shardOf(q.key)],
        route: (q: DeleteRequest) => q.options?.route,
        check: (q: DeleteRequest) => this.writeCheck(c.shardOf(q.key)),
        handle: (q: DeleteRequest) => this.del(c.shardOf(q.key), q.key, q.expectedVersion),
        writeOptions: (q: DeleteRequest) => q.options,
      },
      batchGet: {
        shards: (q: BatchGetRequest) => q.keys.map((k) => c.shardOf(k)),
        route: (q: BatchGetRequest) => q.options?.route,
        check: (q: BatchGetRequest) => {
          for (const key of q.keys) {
            const failure = this.readCheck(c.shardOf(key), q.options)
            if (failure !== undefined) return failure
          }
          return undefined
        },
        handle: (q: BatchGetRequest) => this.batchGet(q),
        writeOptions: () => undefined,
      },
      batch: {
        shards: (q: BatchRequest) => q.ops.map((op) => c.shardOf(keyOf(op))),
        route: (q: BatchRequest) => q.options?.route,
        check: (q: BatchRequest) => {
          const shards = new Set(q.ops.map((op) => c.shardOf(keyOf(op))))
          if (shards.size !== 1) return { code: 'CROSS_SHARD', message: 'batch spans shards' }
          return this.writeCheck([...shards][0] as FakeShard)
        },
        handle: (q: BatchRequest) => this.batch(q, c.shardOf(keyOf(q.ops[0] ?? { op: undefined }))),
        writeOptions: (q: BatchRequest) => q.options,
      },
    }
    return handlers[method] as Handler<unknown, unknown>
  }

  /**
   * One request, unary or an op of a Multi: applies an injected failure of `method`, checks the
   * route hint against the map, then whether this node may serve it (forwarding to the leader
   * once when `forward` is on and it may not), and dedups writes per shard by client id + seq.
   */
  private respond(method: DataMethod, request: unknown, forwarded = false): unknown {
    const h = this.handler(method)
    const injected = this.failures.get(method)?.shift()
    if (injected !== undefined && injected.afterApply !== true) return injected
    const shards = h.shards(request)
    const route = h.route(request)
    for (const shard of shards) {
      const wrong = this.cluster.routeCheck(shard, route)
      if (wrong !== undefined) return wrong
    }
    const failure = h.check(request)
    if (failure !== undefined) {
      const shard = shards.find((s) => !this.leads(s))
      const leader = shard === undefined ? undefined : this.cluster.leaderNode(shard.shardId)
      if (
        failure.code === 'NOT_LEADER' &&
        this.cluster.forward &&
        !forwarded &&
        leader !== undefined &&
        leader !== this &&
        leader.alive
      ) {
        this.forwarded += 1
        return leader.respond(method, request, true)
      }
      return failure
    }
    const shard = shards[0]
    const options = h.writeOptions(request)
    const dedupKey =
      shard !== undefined && options !== undefined && options.clientId !== ''
        ? `${options.clientId}/${options.seq}`
        : undefined
    let result: unknown
    if (dedupKey !== undefined && shard?.dedup.has(dedupKey) === true) {
      result = shard.dedup.get(dedupKey)
    } else {
      result = h.handle(request)
      if (dedupKey !== undefined) shard?.dedup.set(dedupKey, result)
    }
    return injected ?? result
  }

  /** A unary handler over `respond`, recording the request. */
  private unary<Req, Res>(
    method: DataMethod,
  ): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
    return (call, callback) => {
      this.requests.push({ method, request: call.request })
      const result = this.respond(method, call.request)
      if (isFailure(result)) callback(FakeNode.errorOf(result))
      else callback(null, result as Res)
    }
  }

  private getHandle(req: GetRequest): GetResponse {
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

  private batchGet(req: BatchGetRequest): BatchGetResponse {
    const shards: FakeShard[] = []
    const results = req.keys.map((key) => {
      const shard = this.cluster.shardOf(key)
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
  }

  private batch(req: BatchRequest, shard: FakeShard): BatchResponse {
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
  }

  /** Multi: every op as its unary call (recorded once, as 'multi'). */
  private multiHandler(): (
    call: ServerUnaryCall<MultiRequest, MultiResponse>,
    callback: sendUnaryData<MultiResponse>,
  ) => void {
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
            const r = this.respond('get', op.get)
            result = isFailure(r) ? r : { $case: 'get', get: r as GetResponse }
            break
          }
          case 'put': {
            const r = this.respond('put', op.put)
            result = isFailure(r) ? r : { $case: 'put', put: r as PutResponse }
            break
          }
          case 'delete': {
            const r = this.respond('delete', op.delete)
            result = isFailure(r) ? r : { $case: 'delete', delete: r as DeleteResponse }
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

  private writeCheck(shard: FakeShard): Failure | undefined {
    return this.leads(shard) ? undefined : this.notLeader(shard)
  }

  private kv(): KvServiceServer {
    return {
      get: this.unary<GetRequest, GetResponse>('get'),
      multi: this.multiHandler(),
      put: this.unary<PutRequest, PutResponse>('put'),
      delete: this.unary<DeleteRequest, DeleteResponse>('delete'),
      batchGet: this.unary<BatchGetRequest, BatchGetResponse>('batchGet'),
      batch: this.unary<BatchRequest, BatchResponse>('batch'),
      // Sessions are the shard's business (tested there); here every registration succeeds, unrecorded.
      registerSession: (_call: unknown, callback: (err: null, res: { receipt: undefined }) => void) =>
        callback(null, { receipt: undefined }),
      scan: (call: ServerWritableStream<ScanRequest, ScanResponse>) => {
        this.requests.push({ method: 'scan', request: call.request })
        const injected = this.failures.get('scan')?.shift()
        if (injected !== undefined) {
          call.emit('error', FakeNode.errorOf(injected))
          return
        }
        void this.scan(call)
      },
      shardMap: (
        call: ServerUnaryCall<ShardMapRequest, ShardMapResponse>,
        callback: sendUnaryData<ShardMapResponse>,
      ) => {
        this.requests.push({ method: 'shardMap', request: call.request })
        const injected = this.failures.get('shardMap')?.shift()
        if (injected !== undefined) callback(FakeNode.errorOf(injected))
        else callback(null, this.cluster.shardMap(this.nodeId))
      },
    }
  }

  /**
   * Cursor: `${shard index}:${hex of the last key served}` (opaque to the SDK). A node that does
   * not lead the cursor's shard forwards a linearizable scan to its leader when `forward` is on.
   */
  private async scan(
    call: ServerWritableStream<ScanRequest, ScanResponse>,
    forwarded = false,
  ): Promise<void> {
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
    const failure = c.routeCheck(shard, req.options?.route) ?? this.readCheck(shard, req.options)
    if (failure !== undefined) {
      const leader = c.leaderNode(shard.shardId)
      if (failure.code === 'NOT_LEADER' && c.forward && !forwarded && leader !== this && leader.alive) {
        this.forwarded += 1
        await leader.scan(call, true)
        return
      }
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
    const unimplemented = (
      _call: unknown,
      callback: (err: { code: number; details: string }) => void,
    ): void => callback({ code: 12, details: 'node-to-node only' })
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
        callback(null, {
          clusterId: 'fake-cluster',
          node: {
            nodeId: this.nodeId,
            address: this.address,
            version: '0.1.0',
            uptimeMs: 1000,
            dataDir: `/tmp/fake-${this.nodeId}`,
            requestsInFlight: 0,
            forwardedRequests: this.forwarded,
            zone: this.zone,
            shards: c.shards
              .filter((s) => s.replicas.includes(this.nodeId))
              .map((s): ShardStatus => {
                const leader = c.leaders.get(s.shardId) ?? 0
                return {
                  shardId: s.shardId,
                  role: leader === this.nodeId ? 'leader' : 'follower',
                  appliedIndex: this.view(s),
                  commitIndex: s.applied,
                  term: s.term,
                  leaderId: leader,
                  voters: [...s.replicas].sort((a, b) => a - b),
                  learners: [],
                  hashStart: s.range.start.toString(),
                  hashEnd: s.range.end.toString(),
                  approximateBytes: this.reportedBytes.get(s.shardId) ?? s.bytes(),
                  epoch: s.epoch,
                  state: 'active',
                  votersOutgoing: [],
                }
              })
              .concat(c.metaReplicas ? [this.metaReplica()] : []),
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
              forwardedRequests: 0,
              zone: n.zone,
              shards: [],
            })),
        })
      },
      injectFault: (_call, callback) => {
        callback(
          FakeNode.errorOf({ code: 'FAULT_INJECTION_DISABLED', message: 'fault injection is disabled' }),
        )
      },
      join: unimplemented,
      heartbeat: unimplemented,
      moveReplica: unimplemented,
      listMoves: unimplemented,
      transferShardLeader: unimplemented,
      rebalance: unimplemented,
      nodeAction: unimplemented,
      exportShard: (call) => call.destroy(Object.assign(new Error('not faked'), { code: 12 })),
    }
  }
}

function isFailure(x: unknown): x is Failure {
  return typeof x === 'object' && x !== null && ('code' in x || 'status' in x) && !('receipt' in x)
}
