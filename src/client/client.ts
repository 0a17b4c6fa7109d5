/**
 * KvClient: the SDK over the public KvService and AdminService (kv.proto, admin.proto). It adds
 * what an application should not have to write: the consistency dial with client and per-call
 * defaults, session tokens, retries that are safe for writes (client id + seq, exactly-once via
 * the server's dedup table), deadlines sent as gRPC deadlines, endpoint failover, shard routing
 * (routing.ts: writes and linearizable reads go straight to their shard's leader), and a scan
 * that resumes from its cursor when a stream breaks and walks the shards in hash order.
 *
 * Where calls go (routing.ts; the shard map comes from KvService.ShardMap):
 * - writes and linearizable reads: the leader of the key's shard; a NOT_LEADER with a hint
 *   repairs that shard's leader and the call retries there at once;
 * - session, bounded and eventual reads: a replica of the key's shard, in the client's zone when
 *   `zone` is set and the shard has one there, else the replicas in turn; one that is behind
 *   (SESSION_BEHIND, STALENESS_BOUND_EXCEEDED) or unreachable is left for another;
 * - every request routed by the map carries `route` {shard, epoch}; a WRONG_SHARD answer with the
 *   shard's current descriptor repairs that entry in one step and the call retries at once;
 * - without a route (no map yet, a map without shards, routing off): the current endpoint, which
 *   forwards to the right node, failing over, following leader hints by address.
 *
 * How single-key calls travel (batcher.ts): each attempt of a get, put or delete, once routed, is
 * queued per endpoint and coalesced with the other attempts bound for that node into one Multi
 * call; its own answer or error settles it, so everything above (retries, redirects, exactly-once
 * tags) works per op exactly as for a unary call.
 */
import { getMaxListeners, setMaxListeners } from 'node:events'
import type { ChannelCredentials, ChannelOptions } from '@grpc/grpc-js'
import {
  bearerTokenInterceptor,
  clientChannelCredentials,
  clientTlsChannelOptions,
  type ClientTls,
} from '../net/index.ts'
import { deadlineSignal, type Clock } from '../common/clock.ts'
import { SystemClock } from '../common/clock-system.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import { limits } from '../common/limits.ts'
import type { Random } from '../common/random.ts'
import { SystemRandom } from '../common/random-system.ts'
import type { NodeStatus as WireNodeStatus, StatusResponse } from '../gen/ringkv/v1/admin.ts'
import type { Hasher } from '../hashing/index.ts'
import { Consistency } from '../gen/ringkv/v1/kv.ts'
import type {
  BatchGetResponse,
  BatchOp as WireBatchOp,
  BatchResponse,
  ShardDescriptor as WireShardDescriptor,
  ShardMapResponse,
  Receipt as WireReceipt,
  RegisterSessionResponse,
  ReadOptions as WireReadOptions,
  WriteOptions as WireWriteOptions,
} from '../gen/ringkv/v1/kv.ts'
import { CallBatcher, resolveBatchingConfig, type BatchingInit } from './batcher.ts'
import { fromWire, toBytes, toWire, utf8, type Bytes } from './codec.ts'
import { consistencyFromWire, readConsistencyToWire, writeConsistencyToWire } from './consistency.ts'
import { EndpointPool } from './endpoints.ts'
import { loadClientHasher } from './hasher.ts'
import {
  decideRetry,
  resolveRetryConfig,
  withRetries,
  type Attempt,
  type RetryConfig,
  type RetryInit,
  type RetryPace,
} from './retry.ts'
import { RouteChooser, repairState, type Route, type Target } from './route-choice.ts'
import {
  RoutingCache,
  resolveRoutingConfig,
  type RoutingInit,
  type RoutingTable,
  type ShardRoute,
} from './routing.ts'
import { unary, type RpcContext } from './rpc.ts'
import { KvScan, type ScanContext } from './scan.ts'
import { SessionTracker, type SessionToken } from './session.ts'
import { kvErrorFromGrpc } from './status.ts'
import { ShardSessions } from './shard-sessions.ts'
import { WriteSeqs } from './write-seqs.ts'
import type {
  BatchOp,
  BatchOpResult,
  BatchResult,
  CallOptions,
  DeleteOptions,
  DeleteResult,
  GetManyEntry,
  GetManyResult,
  GetResult,
  MapShard,
  NodeStatus,
  PutOptions,
  PutResult,
  ReadConsistency,
  ReadOptions,
  Receipt,
  ScanOptions,
  ShardMapResult,
  StatusOptions,
  StatusResult,
  WriteConsistency,
  WriteOptions,
} from './types.ts'

/** Listeners an attempt's signal may carry besides one per shard of a fanned-out call. */
const listenersBeyondFanOut = 10

/** User-tunable settings of a KvClient. */
export interface KvClientInit {
  /** Addresses `host:port` of kvd nodes; calls go to one and fail over to the next. */
  readonly endpoints: readonly string[]
  /** Defaults for calls that do not choose. Reads: 'linearizable'; writes: 'majority'. */
  readonly consistency?: {
    readonly read?: ReadConsistency
    readonly write?: WriteConsistency
    /** Default bound for 'bounded' reads. */
    readonly maxStalenessMs?: number
  }
  /** Default budget of a call, retries included. Default limits.requestDeadlineMsDefault. */
  readonly deadlineMs?: number
  /**
   * How long a call waits for its endpoint's connection to become ready before failing
   * UNAVAILABLE, naming the endpoint, so the retry moves to the next endpoint (etcd's
   * --dial-timeout; dial.ts). grpc-js has no connect timeout: without this, an endpoint that
   * accepts TCP but never answers holds every call for its whole deadline. Never longer than the
   * call's deadline. Default limits.dialTimeoutMsDefault.
   */
  readonly dialTimeoutMs?: number
  readonly retry?: RetryInit
  /**
   * Identifies this client's writes to the shards' dedup tables (1..limits.clientIdBytesMax UTF-8
   * bytes). Default: 128 random bits, which is right unless you need to know the id.
   *
   * The exactly-once contract (Raft thesis §6.3): each write gets the next seq of this client and
   * keeps it across its retries; every attempt also carries first_incomplete_seq, the lowest seq
   * whose call has not settled yet, so the shard keeps only the answers that may still be asked
   * for. Many writes may be in flight at once under one id; at most
   * limits.dedupResultsPerClientMax seqs above first_incomplete_seq are (more writes wait their
   * turn, within their deadline).
   *
   * An explicit id must be used by ONE live KvClient at a time (its sessions share it). Seqs start
   * at the wall clock in microseconds, so a process restarted with the same id continues above the
   * seqs of its previous life and its new writes are accepted, provided the wall clock did not step
   * back and the previous life averaged under a million writes per second. Otherwise a write may be
   * refused as a stale seq (INVALID_ARGUMENT); use a fresh id then. A write whose call failed for
   * good (e.g. DEADLINE_EXCEEDED, outcome unknown) is never retried by the SDK: repeat it as a new
   * write only if the application can tell it did not apply (e.g. with compare-and-set).
   */
  readonly clientId?: string
  /**
   * Tag writes with client id + seq so that retries are exactly-once (default true). When false,
   * a write is retried only after an error that proves it did not apply.
   */
  readonly dedup?: boolean
  /** Extra grpc-js channel options (the SDK's defaults set message sizes from limits). */
  readonly channelOptions?: ChannelOptions
  /**
   * TLS to the nodes (kvd --cert-file/--key-file/--ca-file): `ca`, the PEM of the CA that issued
   * the nodes' certificates; `cert` and `key`, a client certificate to authenticate with (`kvctl
   * certs client`); `serverName`, the name to check the nodes' certificates against instead of the
   * endpoint's host. Default: plaintext.
   */
  readonly tls?: ClientTls
  /**
   * A bearer token (kvd --auth-file; `kvctl certs token`), sent on every call as
   * `authorization: Bearer <token>`. Use it over TLS: over plaintext anyone on the path can read it.
   */
  readonly token?: string
  /**
   * Shard routing (routing.ts): the shard map is loaded from ShardMap on first use and refreshed
   * when an answer shows it stale, at most once per `refreshIntervalMsMin` (default 250 ms).
   * `enabled: false` sends every call to the current endpoint (which forwards it), without route
   * hints.
   */
  readonly routing?: RoutingInit
  /**
   * The client's zone (failure domain, as the nodes' `--zone`). Session, bounded and eventual
   * reads then go to a replica in this zone when the key's shard has one that answers. Default:
   * none (reads spread over the shard's replicas).
   */
  readonly zone?: string
  /**
   * Call batching (batcher.ts), on by default: concurrent get, put and delete calls bound for the
   * same node (after routing) travel as one Multi call, each op answered, retried and redirected
   * on its own exactly as its unary call would be. `maxOps` caps the ops of one Multi (default
   * limits.batchOpsMax); `maxDelayMs` is how long an op may wait for others (default 0: until
   * the end of the current event-loop turn). A node without Multi gets unary calls.
   * `enabled: false` sends one RPC per call.
   */
  readonly batching?: BatchingInit
}

/** Injected dependencies (STYLE.md 7.3 XInit/XComponents). */
export interface KvClientComponents {
  readonly clock?: Clock
  readonly random?: Random
  /** Channel credentials instead of the ones `tls` makes. */
  readonly credentials?: ChannelCredentials
  /** The key hasher (xxh64); default: xxhash-wasm, instantiated on first use (hasher.ts). */
  readonly hasher?: Hasher
}

export interface SessionInit {
  /** Resume a session from a token saved earlier (`session.token()`). */
  readonly token?: SessionToken
  /** The session's default read level. Default 'session'. */
  readonly read?: ReadConsistency
}

/** What the client and its sessions share. */
interface ClientCore {
  readonly pool: EndpointPool
  readonly clock: Clock
  readonly random: Random
  readonly retry: RetryConfig
  readonly deadlineMs: number
  readonly clientId: string
  readonly dedup: boolean
  readonly defaults: {
    readonly read: ReadConsistency
    readonly write: WriteConsistency
    readonly maxStalenessMs: number
  }
  /** Aborted by close(): every call in flight ends with CANCELLED. */
  readonly closing: AbortController
  /** The seqs of writes in flight, shared by the client and its sessions (write-seqs.ts). */
  readonly seqs: WriteSeqs
  /** The exactly-once session registered on each shard (shard-sessions.ts). */
  readonly shardSessions: ShardSessions
  /** The shard table and node addresses, shared by the client and its sessions. */
  readonly routing: RoutingCache
  /** Where each attempt goes, and what a failed one repairs (over `routing` and `pool`). */
  readonly chooser: RouteChooser
  /** Where single-key attempts go: coalesced into Multi calls per endpoint, or alone. */
  readonly batcher: CallBatcher
}

/**
 * The data operations, shared by KvClient and KvSession; each instance folds every receipt it
 * sees into its own session tracker.
 */
abstract class KvOperations {
  protected readonly core: ClientCore
  protected readonly tracker: SessionTracker
  private readonly defaultRead: ReadConsistency

  protected constructor(core: ClientCore, tracker: SessionTracker, defaultRead: ReadConsistency) {
    this.core = core
    this.tracker = tracker
    this.defaultRead = defaultRead
  }

  /** Reads one key. A missing key is not an error: `found` is false and `value` null. */
  async get(key: Bytes, options: ReadOptions = {}): Promise<GetResult> {
    const keyBytes = checkKey(key)
    const readOptions = this.readOptions(options)
    const route: Route = isLinearizable(readOptions)
      ? { to: 'leader', keys: [keyBytes] }
      : { to: 'replica', key: keyBytes }
    const wireKey = toWire(keyBytes)
    const res = await this.call('read', options, route, (target, rpc) =>
      this.core.batcher.get(
        target.endpoint,
        { key: wireKey, options: { ...readOptions, route: target.route } },
        rpc,
      ),
    )
    const receipt = this.observe(res.receipt)
    return makeGetResult(keyBytes, res.found, res.value, res.version, res.createVersion, receipt)
  }

  /**
   * Reads several keys; results come in the order of `keys`, with one receipt per shard that
   * served part of them. The keys are split by shard, and each part goes to its shard's leader
   * (linearizable) or a nearby replica (weaker levels), all parts in parallel; a part that fails
   * is routed again and retried, the parts that succeeded are kept. Without a shard map: one call
   * to the current endpoint, which serves (or forwards) keys of every shard.
   */
  async getMany(keys: readonly Bytes[], options: ReadOptions = {}): Promise<GetManyResult> {
    if (keys.length > limits.batchOpsMax) {
      throw new KvError(ErrorCode.InvalidArgument, `getMany takes at most ${limits.batchOpsMax} keys`, {
        details: { limit: limits.batchOpsMax, field: 'keys' },
      })
    }
    const keyBytes = keys.map(checkKey)
    const readOptions = this.readOptions(options)
    if (keyBytes.length === 0) return { results: [], receipts: [] }
    return await this.getManyByShard(keyBytes, readOptions, options)
  }

  /** Writes a value. With `expectedVersion` it is a compare-and-set (see `cas`). */
  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    const keyBytes = checkKey(key)
    const valueBytes = checkValue(value)
    const expectedVersion = checkExpectedVersion(options.expectedVersion)
    const wireKey = toWire(keyBytes)
    const wireValue = toWire(valueBytes)
    const res = await this.write(options, [keyBytes], (writeOptions, endpoint, rpc) =>
      this.core.batcher.put(
        endpoint,
        { key: wireKey, value: wireValue, ...expectedVersion, options: writeOptions },
        rpc,
      ),
    )
    return { version: res.version, receipt: this.observe(res.receipt) }
  }

  /**
   * Compare-and-set: writes `value` only if the key's version is `expectedVersion` (0: only if
   * the key does not exist). A mismatch throws KvError VERSION_MISMATCH with
   * `details.currentVersion` (0 or absent when the key does not exist).
   */
  cas(
    key: Bytes,
    change: { readonly expectedVersion: number; readonly value: Bytes },
    options: WriteOptions = {},
  ): Promise<PutResult> {
    return this.put(key, change.value, { ...options, expectedVersion: change.expectedVersion })
  }

  /** Deletes a key; `deleted` is false when it did not exist. With `expectedVersion`: compare-and-delete. */
  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    const keyBytes = checkKey(key)
    const expectedVersion = checkExpectedVersion(options.expectedVersion)
    const wireKey = toWire(keyBytes)
    const res = await this.write(options, [keyBytes], (writeOptions, endpoint, rpc) =>
      this.core.batcher.delete(endpoint, { key: wireKey, ...expectedVersion, options: writeOptions }, rpc),
    )
    return { deleted: res.deleted, receipt: this.observe(res.receipt) }
  }

  /**
   * Applies puts and deletes atomically. All keys must belong to one shard: keys of different
   * shards fail with CROSS_SHARD, before anything is sent when the routing table is known (else
   * the server refuses the batch). A compare-and-set mismatch in any op fails the whole batch with
   * VERSION_MISMATCH.
   */
  async batch(ops: readonly BatchOp[], options: WriteOptions = {}): Promise<BatchResult> {
    if (ops.length === 0) throw new KvError(ErrorCode.InvalidArgument, 'batch needs at least one op')
    if (ops.length > limits.batchOpsMax) {
      throw new KvError(ErrorCode.InvalidArgument, `batch takes at most ${limits.batchOpsMax} ops`, {
        details: { limit: limits.batchOpsMax, field: 'ops' },
      })
    }
    const keys: Uint8Array[] = []
    const wireOps: WireBatchOp[] = ops.map((op) => {
      const keyBytes = checkKey(op.key)
      keys.push(keyBytes)
      const key = toWire(keyBytes)
      const expectedVersion = checkExpectedVersion(op.expectedVersion)
      switch (op.type) {
        case 'put':
          return {
            op: { $case: 'put', put: { key, value: toWire(checkValue(op.value)), ...expectedVersion } },
          }
        case 'delete':
          return { op: { $case: 'delete', delete: { key, ...expectedVersion } } }
        default:
          throw new TypeError(`unknown batch op type '${String((op as { type: unknown }).type)}'`)
      }
    })
    const res = await this.write(options, keys, (writeOptions, endpoint, rpc) =>
      unary<BatchResponse>(rpc, (md, co, cb) =>
        this.core.pool.kv(endpoint).batch({ ops: wireOps, options: writeOptions }, md, co, cb),
      ),
    )
    const receipt = this.observe(res.receipt)
    const results = res.results.map((r): BatchOpResult => {
      switch (r.result?.$case) {
        case 'put':
          return { type: 'put', version: r.result.put.version }
        case 'delete':
          return { type: 'delete', deleted: r.result.delete.deleted }
        default:
          throw new KvError(ErrorCode.Internal, 'batch response carries an empty result')
      }
    })
    return { results, receipt }
  }

  /**
   * Scans keys by prefix, in hash order (not key order), as an async iterator of entries. A
   * stream that breaks with a retryable error is reopened from the cursor of the last message
   * received, so every entry is delivered once. A node serves one shard per stream; the scan then
   * continues from the cursor into the next shard (linearizable: on that shard's leader).
   * `deadlineMs` bounds the whole scan.
   *
   * @example
   * for await (const entry of client.scan({ prefix: 'user/' })) console.log(entry.keyText())
   */
  scan(options: ScanOptions = {}): KvScan {
    const prefix = toBytes(options.prefix ?? new Uint8Array())
    if (prefix.byteLength > limits.keyBytesMax) {
      throw new KvError(
        ErrorCode.KeyTooLarge,
        `prefix is ${prefix.byteLength} bytes, at most ${limits.keyBytesMax}`,
      )
    }
    if (options.limit !== undefined && !(Number.isSafeInteger(options.limit) && options.limit > 0)) {
      throw new KvError(
        ErrorCode.InvalidArgument,
        `scan limit must be a positive integer, got ${options.limit}`,
        {
          details: { field: 'limit' },
        },
      )
    }
    const readOptions = this.readOptions(options)
    const linearizable = isLinearizable(readOptions)
    const routing = this.core.routing
    const repair = repairState()
    const context: ScanContext = {
      pool: this.core.pool,
      clock: this.core.clock,
      random: this.core.random,
      retry: this.core.retry,
      deadlineMs: this.deadlineMs(options),
      signal: this.signal(options),
      readOptions,
      prefix,
      limit: options.limit,
      observe: (r) => this.observe(r),
      ready: async (signal) => {
        const fresh = repair.fresh
        repair.fresh = false
        await routing.ready(signal, fresh)
      },
      firstShard: () => routing.firstShard()?.shardId,
      nextShard: (shardId) => routing.nextShard(shardId)?.shardId,
      target: (shardId) => {
        const shard = shardId === undefined ? undefined : routing.shard(shardId)
        if (shard === undefined) return this.core.chooser.poolTarget(undefined)
        return linearizable
          ? this.core.chooser.leaderTarget(shard)
          : this.core.chooser.replicaTarget(shard, repair.avoid)
      },
      repair: (err, target, route) => this.core.chooser.repair(err, target, route, repair),
    }
    return new KvScan(context)
  }

  /** Runs one call with retries, routing each attempt by `route` and repairing routes on failures. */
  protected call<T>(
    kind: 'read' | 'write',
    options: CallOptions,
    route: Route,
    run: (target: Target, rpc: RpcContext) => Promise<T>,
  ): Promise<T> {
    const state = repairState()
    let target: Target = this.core.chooser.poolTarget(undefined)
    return withRetries(
      {
        op: { kind, deduplicated: kind === 'write' && this.core.dedup },
        config: this.core.retry,
        clock: this.core.clock,
        random: this.core.random,
        deadlineMs: this.deadlineMs(options),
        signal: this.signal(options),
        beforeRetry: (err, retryRoute) => this.core.chooser.repairPace(err, target, retryRoute, state),
      },
      async (attempt) => {
        if (route.to !== 'any') {
          const fresh = state.fresh
          state.fresh = false
          await this.core.routing.ready(attempt.signal, fresh)
        }
        target = this.core.chooser.target(route, state)
        return await run(target, this.rpcContext(attempt))
      },
    )
  }

  /**
   * The gRPC deadline (absolute wall time; grpc-js turns it back into a timeout header) and signal.
   * Computed when the RPC starts, so time spent waiting for a route is not given to the server.
   */
  protected rpcContext(attempt: Attempt): RpcContext {
    const remainingMs = Math.max(1, attempt.deadlineAtMs - this.core.clock.nowMs())
    return { signal: attempt.signal, deadline: new Date(this.core.clock.wallMs() + remainingMs) }
  }

  /**
   * getMany: the keys split by shard, one BatchGet per shard (to its leader at 'linearizable',
   * else to a nearby replica), each with its route hint, all in parallel; keys without a route go
   * together to the current endpoint. Parts that fail are retried together (split again by the
   * repaired routes) within the call's deadline and attempts; parts that succeeded are kept.
   */
  private async getManyByShard(
    keyBytes: readonly Uint8Array[],
    readOptions: WireReadOptions,
    options: ReadOptions,
  ): Promise<GetManyResult> {
    const { pool, routing } = this.core
    const linearizable = isLinearizable(readOptions)
    const entries: (GetManyEntry | undefined)[] = keyBytes.map(() => undefined)
    const receipts: Receipt[] = []
    let pending = keyBytes.map((_, i) => i)
    let pace: RetryPace = 'backoff'
    const state = repairState()
    const op = { kind: 'read', deduplicated: false } as const
    await withRetries(
      {
        op,
        config: this.core.retry,
        clock: this.core.clock,
        random: this.core.random,
        deadlineMs: this.deadlineMs(options),
        signal: this.signal(options),
        beforeRetry: () => pace,
      },
      async (attempt) => {
        const fresh = state.fresh
        state.fresh = false
        await routing.ready(attempt.signal, fresh)
        // Shard id (-1: no route) -> the indices of its keys, in the order asked.
        const parts = new Map<number, { shard: ShardRoute | undefined; indices: number[] }>()
        for (const i of pending) {
          const shard = routing.shardOf(keyBytes[i] as Uint8Array)
          const id = shard?.shardId ?? -1
          let part = parts.get(id)
          if (part === undefined) {
            part = { shard, indices: [] }
            parts.set(id, part)
          }
          part.indices.push(i)
        }
        const groups = [...parts.values()].map(({ shard, indices }) => ({
          indices,
          target:
            shard === undefined
              ? this.core.chooser.poolTarget(undefined)
              : linearizable
                ? this.core.chooser.leaderTarget(shard)
                : this.core.chooser.replicaTarget(shard, state.avoid),
        }))
        const rpc = this.rpcContext(attempt)
        // One call per shard, each listening on the attempt's signal: as many listeners as shards.
        setMaxListeners(
          Math.max(getMaxListeners(rpc.signal), groups.length + listenersBeyondFanOut),
          rpc.signal,
        )
        const outcomes = await Promise.all(
          groups.map(async (group) => {
            try {
              const res = await unary<BatchGetResponse>(rpc, (md, co, cb) =>
                pool.kv(group.target.endpoint).batchGet(
                  {
                    keys: group.indices.map((i) => toWire(keyBytes[i] as Uint8Array)),
                    options: { ...readOptions, route: group.target.route },
                  },
                  md,
                  co,
                  cb,
                ),
              )
              return { group, res, err: undefined }
            } catch (e) {
              return { group, res: undefined, err: kvErrorFromGrpc(e, attempt.signal) }
            }
          }),
        )
        const failed: number[] = []
        let fatal: KvError | undefined
        let retryable: KvError | undefined
        let allNow = true
        for (const { group, res, err } of outcomes) {
          if (res !== undefined) {
            if (res.results.length !== group.indices.length) {
              fatal ??= new KvError(
                ErrorCode.Internal,
                `BatchGet answered ${res.results.length} results for ${group.indices.length} keys`,
              )
              continue
            }
            group.indices.forEach((i, j) => {
              const r = res.results[j] as (typeof res.results)[number]
              entries[i] = makeGetResult(
                keyBytes[i] as Uint8Array,
                r.found,
                r.value,
                r.version,
                r.createVersion,
                undefined,
              )
            })
            for (const r of res.receipts) receipts.push(this.observe(r))
            continue
          }
          failed.push(...group.indices)
          const decision = decideRetry(err, op)
          if (!decision.retry) {
            fatal ??= err
            continue
          }
          retryable ??= err
          if (this.core.chooser.repair(err, group.target, decision.route, state) !== 'now') allNow = false
        }
        pending = failed.sort((a, b) => a - b)
        if (fatal !== undefined) throw fatal
        if (retryable !== undefined) {
          pace = allNow && !state.hinted ? 'now' : 'backoff'
          state.hinted = pace === 'now'
          throw retryable
        }
      },
    )
    return { results: entries as GetManyEntry[], receipts }
  }

  protected deadlineMs(options: CallOptions): number {
    const deadlineMs = options.deadlineMs ?? this.core.deadlineMs
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs <= 0 || deadlineMs > limits.requestDeadlineMsMax) {
      throw new KvError(
        ErrorCode.InvalidArgument,
        `deadlineMs must be an integer in 1..${limits.requestDeadlineMsMax}, got ${deadlineMs}`,
        { details: { field: 'deadlineMs', limit: limits.requestDeadlineMsMax } },
      )
    }
    return deadlineMs
  }

  protected signal(options: CallOptions): AbortSignal {
    const closing = this.core.closing.signal
    return options.signal === undefined ? closing : AbortSignal.any([closing, options.signal])
  }

  private readOptions(options: ReadOptions): WireReadOptions {
    const level: ReadConsistency =
      options.consistency ?? (options.maxStalenessMs !== undefined ? 'bounded' : this.defaultRead)
    const maxStalenessMs = options.maxStalenessMs ?? this.core.defaults.maxStalenessMs
    if (level === 'bounded' && !(Number.isSafeInteger(maxStalenessMs) && maxStalenessMs > 0)) {
      throw new KvError(ErrorCode.InvalidArgument, "'bounded' reads need maxStalenessMs > 0", {
        details: { field: 'maxStalenessMs' },
      })
    }
    return {
      consistency: readConsistencyToWire(level),
      maxStalenessMs: level === 'bounded' ? maxStalenessMs : 0,
      session: level === 'session' ? this.tracker.toWire() : undefined,
      // Set per attempt, from the target (routing.ts).
      route: undefined,
    }
  }

  /**
   * Runs one write with retries. With dedup on, the write takes one seq (write-seqs.ts) from its
   * first attempt until its outcome is settled, and every attempt carries the client id, that seq
   * and the client's current first_incomplete_seq, so the shard applies it at most once however
   * often it is retried, while other writes of the client are in flight. Waiting for room in the
   * window counts against the call's deadline.
   */
  private async write<T>(
    options: WriteOptions,
    keys: readonly Uint8Array[],
    run: (writeOptions: WireWriteOptions, endpoint: string, rpc: RpcContext) => Promise<T>,
  ): Promise<T> {
    const consistency = writeConsistencyToWire(options.consistency ?? this.core.defaults.write)
    const deadlineMs = this.deadlineMs(options)
    const route: Route = { to: 'leader', keys }
    if (!this.core.dedup) {
      return await this.call('write', options, route, (target, rpc) =>
        run(
          { consistency, clientId: '', seq: 0, firstIncompleteSeq: 0, route: target.route },
          target.endpoint,
          rpc,
        ),
      )
    }
    const { clock, seqs, shardSessions } = this.core
    const startedMs = clock.nowMs()
    // The common case takes a free seq at once; only a wait for room needs its own deadline timer.
    let seq = this.signal(options).aborted ? undefined : seqs.tryAcquire()
    if (seq === undefined) {
      const waiting = deadlineSignal(clock, deadlineMs, this.signal(options))
      try {
        seq = await seqs.acquire(waiting.signal)
      } finally {
        waiting.dispose()
      }
    }
    let used: { shardId: number | undefined; clientId: string } | undefined
    try {
      const remainingMs = Math.max(1, Math.floor(deadlineMs - (clock.nowMs() - startedMs)))
      // The seq and client id stay the same on every attempt, redirects included: whichever
      // node leads the shard when an attempt lands deduplicates it against the earlier ones. The
      // id is the session registered on the target shard (registered first, once).
      return await this.call('write', { ...options, deadlineMs: remainingMs }, route, async (target, rpc) => {
        const clientId = await shardSessions.ensure(target.shardId, (id) =>
          this.registerSession(id, keys[0], target, rpc),
        )
        used = { shardId: target.shardId, clientId }
        return await run(
          {
            consistency,
            clientId,
            seq,
            firstIncompleteSeq: seqs.firstIncomplete(),
            route: target.route,
          },
          target.endpoint,
          rpc,
        )
      })
    } catch (err) {
      if (used !== undefined && err instanceof KvError && err.code === ErrorCode.SessionExpired)
        shardSessions.expire(used.shardId, used.clientId)
      throw err
    } finally {
      seqs.release(seq)
    }
  }

  /**
   * Registers session `id` on the shard of `key` (at the write's target), for this client's
   * principal, with the first incomplete seq as its floor: every seq below it is settled, so no
   * retry of an earlier write can apply under the session.
   */
  private async registerSession(
    id: string,
    key: Uint8Array | undefined,
    target: Target,
    rpc: RpcContext,
  ): Promise<void> {
    const res = await unary<RegisterSessionResponse>(rpc, (md, co, cb) =>
      this.core.pool.kv(target.endpoint).registerSession(
        {
          clientId: id,
          key: toWire(key ?? new Uint8Array(0)),
          floor: this.core.seqs.firstIncomplete(),
          route: target.route,
        },
        md,
        co,
        cb,
      ),
    )
    this.observe(res.receipt)
  }

  /**
   * Folds a receipt into the session. The receipt names the node that served (after any
   * forwarding): that node is reachable, and when the level is one only a leader delivers, it is
   * the shard's leader (in the receipt's term), whoever the request was sent to.
   */
  private observe(wire: WireReceipt | undefined): Receipt {
    const receipt = receiptFromWire(wire)
    this.tracker.observe(receipt)
    this.core.chooser.observe(receipt)
    return receipt
  }
}

/**
 * A client of a ringkv cluster.
 *
 * @example
 * const client = new KvClient({ endpoints: ['127.0.0.1:7001'] })
 * const { version } = await client.put('greeting', 'hello')
 * const got = await client.get('greeting', { consistency: 'eventual' })
 * console.log(got.valueText(), got.receipt.stalenessMs)
 * await client.cas('greeting', { expectedVersion: version, value: 'hi' })
 * client.close()
 */
export class KvClient extends KvOperations {
  constructor(init: KvClientInit, components: KvClientComponents = {}) {
    const random = components.random ?? new SystemRandom()
    const defaults = {
      read: init.consistency?.read ?? 'linearizable',
      write: init.consistency?.write ?? 'majority',
      maxStalenessMs: init.consistency?.maxStalenessMs ?? 0,
    } as const
    readConsistencyToWire(defaults.read)
    writeConsistencyToWire(defaults.write)
    const deadlineMs = init.deadlineMs ?? limits.requestDeadlineMsDefault
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs <= 0 || deadlineMs > limits.requestDeadlineMsMax) {
      throw new RangeError(
        `deadlineMs must be an integer in 1..${limits.requestDeadlineMsMax}, got ${deadlineMs}`,
      )
    }
    const dialTimeoutMs = init.dialTimeoutMs ?? limits.dialTimeoutMsDefault
    if (
      !Number.isSafeInteger(dialTimeoutMs) ||
      dialTimeoutMs <= 0 ||
      dialTimeoutMs > limits.requestDeadlineMsMax
    ) {
      throw new RangeError(
        `dialTimeoutMs must be an integer in 1..${limits.requestDeadlineMsMax}, got ${dialTimeoutMs}`,
      )
    }
    const clock = components.clock ?? new SystemClock()
    const clientId = init.clientId ?? randomClientId(random)
    if (clientId === '' || new TextEncoder().encode(clientId).byteLength > limits.clientIdBytesMax) {
      throw new TypeError(`clientId must be 1..${limits.clientIdBytesMax} bytes`)
    }
    // Every call in flight listens on `closing`; hundreds at once are normal, not a leak.
    const closing = new AbortController()
    setMaxListeners(0, closing.signal)
    const pool = new EndpointPool(
      {
        endpoints: init.endpoints,
        credentials: components.credentials ?? clientChannelCredentials(init.tls),
        channelOptions: { ...clientTlsChannelOptions(init.tls), ...init.channelOptions },
        interceptors: init.token === undefined ? [] : [bearerTokenInterceptor(init.token)],
        dialTimeoutMs,
      },
      { clock },
    )
    const hasher = components.hasher
    const routingConfig = resolveRoutingConfig(init.routing, init.zone)
    const routing = new RoutingCache(routingConfig, {
      clock,
      random,
      hasher: hasher === undefined ? loadClientHasher : () => Promise.resolve(hasher),
      fetchMap: (endpoint, signal) =>
        unary<ShardMapResponse>(
          { signal, deadline: new Date(clock.wallMs() + routingConfig.statusTimeoutMs) },
          (md, co, cb) => pool.kv(endpoint).shardMap({}, md, co, cb),
        ),
      candidates: () => [pool.current, ...pool.endpoints],
      onUnreachable: (endpoint, err) => {
        // Only a node that cannot be reached (or not in time) is left; one that answered with an
        // error still serves the data API (e.g. a server without ShardMap).
        if (err.code === ErrorCode.Unavailable || err.code === ErrorCode.DeadlineExceeded)
          pool.advance(endpoint)
      },
      onAddress: (nodeId, address) => pool.learnNode(nodeId, address),
    })
    const core: ClientCore = {
      pool,
      clock,
      random,
      retry: resolveRetryConfig(init.retry),
      deadlineMs,
      clientId,
      dedup: init.dedup ?? true,
      defaults,
      closing,
      // Restart-safe start (see KvClientInit.clientId): microseconds of wall time, below 2^53.
      seqs: new WriteSeqs({ seqStart: Math.floor(clock.wallMs()) * 1000 }),
      shardSessions: new ShardSessions(clientId, () => randomClientId(random)),
      routing,
      chooser: new RouteChooser(routing, pool),
      batcher: new CallBatcher(resolveBatchingConfig(init.batching), { kv: (e) => pool.kv(e), clock }),
    }
    super(core, new SessionTracker(), defaults.read)
  }

  /** The id this client tags its writes with. */
  get clientId(): string {
    return this.core.clientId
  }

  /**
   * The endpoint calls without a shard route go to (every call before the shard map is known, or
   * with routing off, and keys the map does not cover). It is the first endpoint given until that
   * one fails, then the next.
   */
  get currentEndpoint(): string {
    return this.core.pool.current
  }

  /**
   * The routing cache: shards in hash order with their ranges, replicas, leaders and epochs, the
   * nodes of the map, and counters (map loads, repairs from WRONG_SHARD descriptors). Undefined
   * until a map has been loaded (the first routed call loads it, or `refreshRouting`).
   */
  routingTable(): RoutingTable | undefined {
    return this.core.routing.snapshot()
  }

  /**
   * Reloads the shard map from ShardMap now (subject to the refresh rate limit: a refresh
   * within `routing.refreshIntervalMsMin` of the last one waits for the end of the interval), and
   * returns it. Useful to warm a new client before latency-sensitive work.
   */
  async refreshRouting(): Promise<RoutingTable | undefined> {
    await this.core.routing.refresh()
    return this.core.routing.snapshot()
  }

  /**
   * A session: its reads default to 'session' and see every write made through it (and every
   * state seen by its earlier reads), on whichever replica serves them.
   */
  session(init: SessionInit = {}): KvSession {
    return new KvSession(this.core, new SessionTracker(init.token), init.read ?? 'session')
  }

  /** The position of the client's implicit session (used by 'session' reads made on the client). */
  sessionToken(): SessionToken {
    return this.tracker.token()
  }

  /**
   * Node and shard status from one endpoint (the current one, with failover; or `endpoint`,
   * without). Node addresses in the answer are remembered for following leader hints.
   */
  async status(options: StatusOptions = {}): Promise<StatusResult> {
    const { endpoint, res } = await this.askOne(options, (endpoint, rpc) =>
      unary<StatusResponse>(rpc, (md, co, cb) => this.core.pool.admin(endpoint).status({}, md, co, cb)),
    )
    const node = res.node === undefined ? null : nodeStatusFromWire(res.node)
    const peers = res.peers.map(nodeStatusFromWire)
    for (const n of [...(node === null ? [] : [node]), ...peers])
      this.core.pool.learnNode(n.nodeId, n.address)
    // Addresses only: the map comes from the routing cache's own loads, so that an explicit
    // status of some node does not swap routes under calls in flight.
    this.core.routing.absorbStatus(res, endpoint)
    return { endpoint, clusterId: res.clusterId, node, peers }
  }

  /**
   * The cluster's shard map as one endpoint serves it from its cached copy (the current endpoint,
   * with failover; or `endpoint`, without): nodes with address, zone, state and last heartbeat;
   * shards in hash order with range, replicas, leader hint and epoch. For display and tools; the
   * client's own routing uses its cache (`routingTable()`), which this call does not change.
   */
  async shardMap(options: StatusOptions = {}): Promise<ShardMapResult> {
    const { endpoint, res } = await this.askOne(options, (endpoint, rpc) =>
      unary<ShardMapResponse>(rpc, (md, co, cb) => this.core.pool.kv(endpoint).shardMap({}, md, co, cb)),
    )
    return {
      endpoint,
      clusterId: res.clusterId,
      servedBy: res.servedBy,
      replicaCount: res.replicaCount,
      vnodesPerNode: res.vnodesPerNode,
      nodes: res.nodes.map((n) => ({
        nodeId: n.nodeId,
        address: n.address,
        zone: n.zone,
        state: n.state,
        lastHeartbeatMs: n.lastHeartbeatMs,
        weight: n.weight,
      })),
      shards: res.shards.map(mapShardFromWire),
      metaShard: res.metaShard === undefined ? null : mapShardFromWire(res.metaShard),
    }
  }

  /** One admin-style call: to the current endpoint with failover, or to `options.endpoint` once. */
  private async askOne<T>(
    options: StatusOptions,
    run: (endpoint: string, rpc: RpcContext) => Promise<T>,
  ): Promise<{ endpoint: string; res: T }> {
    const fixed = options.endpoint
    const ask = (endpoint: string, rpc: RpcContext): Promise<{ endpoint: string; res: T }> =>
      run(endpoint, rpc).then((res) => ({ endpoint, res }))
    if (fixed === undefined) {
      return await this.call('read', options, { to: 'any' }, (target, rpc) => ask(target.endpoint, rpc))
    }
    return await withRetries(
      {
        op: { kind: 'read', deduplicated: false },
        config: { ...this.core.retry, attemptsMax: 1 },
        clock: this.core.clock,
        random: this.core.random,
        deadlineMs: this.deadlineMs(options),
        signal: this.signal(options),
      },
      (attempt) => ask(fixed, this.rpcContext(attempt)),
    )
  }

  /** Closes every channel; calls in flight end with CANCELLED. Idempotent. */
  close(): void {
    if (this.core.closing.signal.aborted) return
    this.core.closing.abort(new KvError(ErrorCode.Cancelled, 'client closed'))
    this.core.batcher.close()
    this.core.routing.close()
    this.core.pool.close()
  }
}

/** A session of a KvClient (see `KvClient.session`). Closing the client ends it. */
export class KvSession extends KvOperations {
  /** @internal Use `client.session()`. */
  constructor(core: ClientCore, tracker: SessionTracker, defaultRead: ReadConsistency) {
    super(core, tracker, defaultRead)
  }

  /** The session's position, to save and resume later with `client.session({ token })`. */
  token(): SessionToken {
    return this.tracker.token()
  }
}

function makeGetResult(
  key: Uint8Array,
  found: boolean,
  value: Uint8Array,
  version: number,
  createVersion: number,
  receipt: Receipt,
): GetResult
function makeGetResult(
  key: Uint8Array,
  found: boolean,
  value: Uint8Array,
  version: number,
  createVersion: number,
  receipt: undefined,
): GetManyEntry
function makeGetResult(
  key: Uint8Array,
  found: boolean,
  value: Uint8Array,
  version: number,
  createVersion: number,
  receipt: Receipt | undefined,
): GetResult | GetManyEntry {
  const bytes = found ? fromWire(value) : null
  const base = {
    key,
    found,
    value: bytes,
    version: found ? version : 0,
    createVersion: found ? createVersion : 0,
    valueText: (): string | null => (bytes === null ? null : utf8(bytes)),
  }
  return receipt === undefined ? base : { ...base, receipt }
}

export function receiptFromWire(wire: WireReceipt | undefined): Receipt {
  if (wire === undefined) {
    return { nodeId: 0, shardId: 0, appliedIndex: 0, delivered: 'unspecified', stalenessMs: 0, term: 0 }
  }
  return {
    nodeId: wire.nodeId,
    shardId: wire.shardId,
    appliedIndex: wire.appliedIndex,
    delivered: consistencyFromWire(wire.delivered),
    stalenessMs: wire.stalenessMs,
    term: wire.term,
  }
}

function mapShardFromWire(d: WireShardDescriptor): MapShard {
  return {
    shardId: d.shardId,
    hashStart: d.hashStart,
    hashEnd: d.hashEnd,
    replicas: [...d.replicas],
    leaderId: d.leaderHint,
    leaderTerm: d.leaderTerm,
    epoch: d.epoch,
  }
}

function nodeStatusFromWire(n: WireNodeStatus): NodeStatus {
  return {
    nodeId: n.nodeId,
    address: n.address,
    zone: n.zone,
    version: n.version,
    uptimeMs: n.uptimeMs,
    dataDir: n.dataDir,
    requestsInFlight: n.requestsInFlight,
    forwardedRequests: n.forwardedRequests,
    shards: n.shards.map((s) => ({
      shardId: s.shardId,
      role: s.role,
      appliedIndex: s.appliedIndex,
      commitIndex: s.commitIndex,
      term: s.term,
      leaderId: s.leaderId,
      voters: [...s.voters],
      learners: [...s.learners],
      hashStart: s.hashStart,
      hashEnd: s.hashEnd,
      approximateBytes: s.approximateBytes,
      epoch: s.epoch,
      state: s.state === '' ? 'active' : s.state,
      votersOutgoing: [...s.votersOutgoing],
    })),
  }
}

function isLinearizable(options: WireReadOptions): boolean {
  return (
    options.consistency === Consistency.CONSISTENCY_LINEARIZABLE ||
    options.consistency === Consistency.CONSISTENCY_UNSPECIFIED
  )
}

function checkKey(key: Bytes): Uint8Array {
  const bytes = toBytes(key)
  if (bytes.byteLength > limits.keyBytesMax) {
    throw new KvError(
      ErrorCode.KeyTooLarge,
      `key is ${bytes.byteLength} bytes, at most ${limits.keyBytesMax}`,
      {
        details: { limit: limits.keyBytesMax, field: 'key' },
      },
    )
  }
  return bytes
}

function checkValue(value: Bytes): Uint8Array {
  const bytes = toBytes(value)
  if (bytes.byteLength > limits.valueBytesMax) {
    throw new KvError(
      ErrorCode.ValueTooLarge,
      `value is ${bytes.byteLength} bytes, at most ${limits.valueBytesMax}`,
      { details: { limit: limits.valueBytesMax, field: 'value' } },
    )
  }
  return bytes
}

function checkExpectedVersion(expectedVersion: number | undefined): { expectedVersion?: number } {
  if (expectedVersion === undefined) return {}
  if (!isSafeUint(expectedVersion)) {
    throw new KvError(
      ErrorCode.InvalidArgument,
      `expectedVersion must be a non-negative integer, got ${expectedVersion}`,
      {
        details: { field: 'expectedVersion' },
      },
    )
  }
  return { expectedVersion }
}

/** 128 random bits as 32 hex digits, from the injected Random. */
function randomClientId(random: Random): string {
  let id = ''
  for (let i = 0; i < 4; i++) id += random.int(0x1_0000_0000).toString(16).padStart(8, '0')
  return id
}
