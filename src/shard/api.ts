/**
 * The shard API: what one replica of one shard offers the server (and, later, the node host).
 * The wire engineers code against these names; index.ts re-exports them.
 */
import type { LogIndex, NodeId, ShardId } from '../common/index.ts'

/** Read consistency levels (ARCHITECTURE.md section 2). Default: linearizable. */
export const ReadLevel = {
  Linearizable: 'linearizable',
  Session: 'session',
  Bounded: 'bounded',
  Eventual: 'eventual',
} as const
export type ReadLevel = (typeof ReadLevel)[keyof typeof ReadLevel]

/** Write durability levels (ARCHITECTURE.md section 2). Default: majority. */
export const WriteLevel = { Majority: 'majority', All: 'all', Leader: 'leader' } as const
export type WriteLevel = (typeof WriteLevel)[keyof typeof WriteLevel]

/**
 * Who answered and how fresh the answer is. Every answer carries one, so the cost of the chosen
 * consistency level can be seen and tested. `appliedIndex` is a valid session token: the answer
 * reflects at least every write up to that index of this shard.
 */
export interface Receipt {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  readonly appliedIndex: LogIndex
  /** The level that was actually delivered (on one node: the level asked for). */
  readonly level: ReadLevel | WriteLevel
  /** How far behind the leader this answer may be; 0 when served with the newest state. */
  readonly stalenessMs: number
  /** The Raft term the serving replica was in (absent on an unreplicated replica). */
  readonly term?: number
}

/** A stored value with its versions: the log index that last wrote it, and the one that created it. */
export interface VersionedValue {
  readonly value: Uint8Array
  readonly version: LogIndex
  /** Kept across overwrites; a put after a delete creates the key anew. */
  readonly createVersion: LogIndex
}

export interface ReadOptions {
  readonly level: ReadLevel
  /** Session reads: the replica must have applied at least this index (else SESSION_BEHIND). */
  readonly sessionIndex?: LogIndex
  /** Bounded reads: the largest staleness accepted (else STALENESS_BOUND_EXCEEDED). */
  readonly stalenessMsMax?: number
  readonly signal?: AbortSignal
}

export interface WriteOptions {
  readonly level: WriteLevel
  /** Aborted before the write is queued: CANCELLED / DEADLINE_EXCEEDED. Once queued it completes. */
  readonly signal?: AbortSignal
  /**
   * Exactly-once tag (Raft thesis §6.3; shard/dedup.ts): a retried write with the same clientId and
   * seq returns the original result and is applied once. Give all three or none. A client may have
   * many writes in flight; `firstIncompleteSeq` (<= seq) is the lowest seq it has no answer for
   * yet, so every lower seq is acknowledged and its saved result discarded. A seq below the
   * highest firstIncompleteSeq the shard has seen is refused (INVALID_ARGUMENT, stale seq); a new
   * seq while the client has limits.dedupResultsPerClientMax results saved is refused (OVERLOADED).
   */
  readonly clientId?: string
  readonly seq?: number
  readonly firstIncompleteSeq?: number
  /**
   * Who is writing (the authenticated principal; the server always sets it). With it, `clientId`
   * names a session registered on the shard for this principal (`registerSession`); a write whose
   * session is not registered, is another principal's, or expired is refused SESSION_EXPIRED and
   * not applied. Without it (in-process callers only) the client is created on first use.
   */
  readonly principal?: string
}

export interface RegisterSessionOptions {
  /** The principal the session belongs to. */
  readonly principal: string
  /** The session's writes must carry seqs >= floor (its watermark starts there). */
  readonly floor: number
  readonly signal?: AbortSignal
}

export type BatchOp =
  | {
      readonly kind: 'put'
      readonly key: Uint8Array
      readonly value: Uint8Array
      readonly expectedVersion?: number
    }
  | { readonly kind: 'delete'; readonly key: Uint8Array; readonly expectedVersion?: number }

export type BatchOpResult =
  | { readonly kind: 'put'; readonly version: LogIndex }
  | { readonly kind: 'delete'; readonly deleted: boolean }

/** A place in hash order; a scan resumes strictly after it. */
export interface ScanPosition {
  readonly hash: bigint
  readonly key: Uint8Array
}

export interface ScanEntry {
  readonly key: Uint8Array
  readonly value: VersionedValue
  readonly position: ScanPosition
}

export interface ScanArgs {
  readonly prefix: Uint8Array
  readonly after?: ScanPosition
  /** 1..limits.scanLimitMax entries. */
  readonly limit: number
}

/**
 * The entries of a scan, as an async iterable from one point-in-time view taken when `scan()` was
 * called; `receipt` describes that view.
 */
export interface ScanStream extends AsyncIterable<ScanEntry> {
  readonly receipt: Receipt
}

export type ReplicaRole = 'leader' | 'follower' | 'learner' | 'single'

export interface ReplicaStatus {
  readonly appliedIndex: LogIndex
  readonly role: ReplicaRole
  readonly keysApprox?: number
  /** Writes waiting in the queue. */
  readonly queuedWrites?: number
}

/**
 * One replica of one shard. Every method validates its input (never trusting the server) and
 * fails with KvError codes: INVALID_ARGUMENT, KEY_TOO_LARGE, VALUE_TOO_LARGE, VERSION_MISMATCH
 * (details.currentVersion; 0 = absent), OVERLOADED (write queue full), CANCELLED /
 * DEADLINE_EXCEEDED (signal), SESSION_BEHIND, STALENESS_BOUND_EXCEEDED, UNAVAILABLE (closed).
 * `expectedVersion`: 0 means "the key must not exist", n > 0 means "its version must be n".
 */
export interface Replica {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  get(
    key: Uint8Array,
    opts: ReadOptions,
  ): Promise<{ readonly found: VersionedValue | null; readonly receipt: Receipt }>
  getMany(
    keys: readonly Uint8Array[],
    opts: ReadOptions,
  ): Promise<{ readonly found: readonly (VersionedValue | null)[]; readonly receipt: Receipt }>
  put(
    key: Uint8Array,
    value: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly version: LogIndex; readonly receipt: Receipt }>
  delete(
    key: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly deleted: boolean; readonly receipt: Receipt }>
  /**
   * Registers the exactly-once session `clientId` for `opts.principal` through the log (Raft
   * thesis §6.3 RegisterClient), or renews it when that principal holds it already. INVALID_ARGUMENT
   * when another principal holds the id; OVERLOADED when the shard holds its limit of live
   * sessions of other principals. Idempotent for its principal: a retry is harmless.
   */
  registerSession(clientId: string, opts: RegisterSessionOptions): Promise<{ readonly receipt: Receipt }>
  /** Atomic: any CAS mismatch fails the whole batch with VERSION_MISMATCH and writes nothing. */
  batch(
    ops: readonly BatchOp[],
    opts: WriteOptions,
  ): Promise<{ readonly results: readonly BatchOpResult[]; readonly receipt: Receipt }>
  /**
   * Keys starting with `prefix`, in hash order (the layout is hash-first), at most `limit`.
   * NB(storage): a prefix scan reads the whole shard range and filters; only `limit` bounds output.
   */
  scan(args: ScanArgs, opts: ReadOptions): ScanStream
  status(): ReplicaStatus
  /** Stops accepting writes, drains the queue, then stops. Does not close the engine (the caller owns it). */
  close(): Promise<void>
}

/**
 * The shards this node serves, in hash order: shard `i` covers `ranges[i]` of the hash space.
 * The server picks the replica of a request's key through it.
 */
export interface ShardSet {
  readonly ranges: readonly { readonly start: bigint; readonly end: bigint }[]
  replicaAt(index: number): Replica
  /** The index of the shard whose range holds `hash`. */
  indexOfHash(hash: bigint): number
}
