/**
 * The public types of the SDK. Everything here crosses the package boundary, so fields are
 * readonly and numbers are plain safe integers (uint64 fields of the wire contract are decoded
 * as numbers and refused above Number.MAX_SAFE_INTEGER by the generated code).
 */
import type { Bytes } from './codec.ts'

/** Read levels (ARCHITECTURE.md section 2). Default: 'linearizable'. */
export type ReadConsistency = 'linearizable' | 'session' | 'bounded' | 'eventual'
/** Write levels (ARCHITECTURE.md section 2). Default: 'majority'. */
export type WriteConsistency = 'majority' | 'all' | 'leader'
/** A level as a receipt names it: what the serving replica actually delivered. */
export type DeliveredConsistency = ReadConsistency | WriteConsistency | 'unspecified'

export const readConsistencies: readonly ReadConsistency[] = [
  'linearizable',
  'session',
  'bounded',
  'eventual',
]
export const writeConsistencies: readonly WriteConsistency[] = ['majority', 'all', 'leader']

/** What an answer cost: who served it, how far that replica had applied, how stale it may be. */
export interface Receipt {
  readonly nodeId: number
  readonly shardId: number
  /**
   * The replica's applied index when it answered: a valid session token for the shard. For a write,
   * an index at or after the write's own (a retried write answered from the exactly-once table is
   * answered at the index the replica had applied then; writes grouped into one entry share it).
   */
  readonly appliedIndex: number
  readonly delivered: DeliveredConsistency
  /** Upper bound on how far behind the leader the answer may be, in milliseconds (0 = fresh). */
  readonly stalenessMs: number
  readonly term: number
}

/** Options every call takes. */
export interface CallOptions {
  /** Time budget of the whole call, retries included; sent to the server as the gRPC deadline. */
  readonly deadlineMs?: number
  /** Aborts the call (and its retries); the call then fails with KvError CANCELLED. */
  readonly signal?: AbortSignal
}

export interface ReadOptions extends CallOptions {
  readonly consistency?: ReadConsistency
  /** For 'bounded': the largest staleness accepted. Giving it alone implies 'bounded'. */
  readonly maxStalenessMs?: number
}

export interface WriteOptions extends CallOptions {
  readonly consistency?: WriteConsistency
}

export interface PutOptions extends WriteOptions {
  /** Compare-and-set: write only if the key's version equals this (0 = the key must not exist). */
  readonly expectedVersion?: number
}

export type DeleteOptions = PutOptions

export interface GetResult {
  readonly key: Uint8Array
  readonly found: boolean
  /** The value, or null when the key was not found. */
  readonly value: Uint8Array | null
  /** The log index that last wrote the key (0 when not found); the CAS version. */
  readonly version: number
  /** The log index that created the key (0 when not found). */
  readonly createVersion: number
  readonly receipt: Receipt
  /** The value as UTF-8 text, or null when not found. */
  valueText(): string | null
}

export interface PutResult {
  /** The new version of the key. */
  readonly version: number
  readonly receipt: Receipt
}

export interface DeleteResult {
  /** False when the key did not exist. */
  readonly deleted: boolean
  readonly receipt: Receipt
}

/** One key of a getMany, in the order asked. */
export interface GetManyEntry {
  readonly key: Uint8Array
  readonly found: boolean
  readonly value: Uint8Array | null
  readonly version: number
  readonly createVersion: number
  valueText(): string | null
}

export interface GetManyResult {
  readonly results: readonly GetManyEntry[]
  /** One receipt per shard that served part of the request. */
  readonly receipts: readonly Receipt[]
}

export type BatchOp =
  | { readonly type: 'put'; readonly key: Bytes; readonly value: Bytes; readonly expectedVersion?: number }
  | { readonly type: 'delete'; readonly key: Bytes; readonly expectedVersion?: number }

export type BatchOpResult =
  { readonly type: 'put'; readonly version: number } | { readonly type: 'delete'; readonly deleted: boolean }

export interface BatchResult {
  /** In the order of the ops. */
  readonly results: readonly BatchOpResult[]
  readonly receipt: Receipt
}

/** One key-value pair of a scan. */
export interface Entry {
  readonly key: Uint8Array
  readonly value: Uint8Array
  readonly version: number
  readonly createVersion: number
  keyText(): string
  valueText(): string
}

export interface ScanOptions extends ReadOptions {
  /** Only keys starting with these bytes; empty or absent = every key. */
  readonly prefix?: Bytes
  /** Entries to return in total (absent = all of them, page by page). */
  readonly limit?: number
}

export interface ShardStatus {
  readonly shardId: number
  readonly role: string
  readonly appliedIndex: number
  readonly commitIndex: number
  readonly term: number
  readonly leaderId: number
  readonly voters: readonly number[]
  readonly learners: readonly number[]
  readonly hashStart: string
  readonly hashEnd: string
  /** Size of the shard's user data on this node as RocksDB estimates it (0 until the first flush). */
  readonly approximateBytes: number
  /** The shard's epoch as this node's replica applied it. */
  readonly epoch: number
  /** The replica's lifecycle: empty | installing | active | removing | tombstone. */
  readonly state: string
  /** Voters of the outgoing half while the shard's configuration is joint. */
  readonly votersOutgoing: readonly number[]
}

export interface NodeStatus {
  readonly nodeId: number
  readonly address: string
  /** '' = none. */
  readonly zone: string
  readonly version: string
  readonly uptimeMs: number
  readonly dataDir: string
  readonly requestsInFlight: number
  /** Requests this node forwarded to another node since it started. */
  readonly forwardedRequests: number
  readonly shards: readonly ShardStatus[]
}

export interface StatusResult {
  /** The endpoint that answered. */
  readonly endpoint: string
  readonly clusterId: string
  readonly node: NodeStatus | null
  readonly peers: readonly NodeStatus[]
}

export interface StatusOptions extends CallOptions {
  /** Ask this endpoint (one of the client's, or any address) instead of the current one, without failover. */
  readonly endpoint?: string
}

/** One node of the shard map (kv.proto NodeInfo). */
export interface MapNode {
  readonly nodeId: number
  readonly address: string
  /** '' = none. */
  readonly zone: string
  /** joining | active | draining | dead */
  readonly state: string
  /** Wall-clock milliseconds (of the meta leader) of the node's last heartbeat; 0 = never. */
  readonly lastHeartbeatMs: number
  /** Relative capacity on the ring (0 = the default, 1). */
  readonly weight: number
}

/** One shard of the shard map (kv.proto ShardDescriptor). */
export interface MapShard {
  readonly shardId: number
  /** [hashStart, hashEnd) as decimal strings of the 64-bit ring (hashEnd may be 2^64). */
  readonly hashStart: string
  readonly hashEnd: string
  /** Preference order: the first is the preferred leader. */
  readonly replicas: readonly number[]
  /** The node last known to lead the shard; 0 = unknown. */
  readonly leaderId: number
  readonly leaderTerm: number
  readonly epoch: number
}

export interface ShardMapResult {
  /** The endpoint that answered. */
  readonly endpoint: string
  readonly clusterId: string
  /** The node that answered. */
  readonly servedBy: number
  readonly replicaCount: number
  readonly vnodesPerNode: number
  readonly nodes: readonly MapNode[]
  /** In hash order. */
  readonly shards: readonly MapShard[]
  /** The meta shard (the cluster's own records; no user keys), when the node named it. */
  readonly metaShard: MapShard | null
}
