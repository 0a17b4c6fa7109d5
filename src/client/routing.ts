/**
 * The SDK's routing cache (ARCHITECTURE.md section 4, "A majority write"): the shard table (hash
 * range -> shard id -> leader node id) and node id -> address, so that a write or a linearizable
 * read goes straight to the leader of its key's shard, without a redirect.
 *
 * Where it comes from: `AdminService.Status` of any reachable node (the node's `shards[]` carry
 * the ranges and who it believes leads them, `peers[]` the other members' addresses). It is loaded
 * on first use and refreshed when an answer shows it is stale: NOT_LEADER without a hint,
 * WRONG_SHARD, or a node that cannot be reached. Refreshes are coalesced (one in flight; callers
 * share it) and rate-limited (at most one start per `refreshIntervalMsMin`; a request inside the
 * interval is deferred to its end, not dropped). A leader hint (`ringkv-leader`) or a receipt from
 * a leader repairs one shard's leader without a refresh.
 *
 * Keys are placed exactly as the nodes place them: xxh64 (seed 0) of the key bytes, a position in
 * [0, 2^64), and the shard whose [hash_start, hash_end) holds it.
 *
 * Until a Status has answered, or when it lists no shards (a server that predates sharding), or
 * for a hash no listed range covers, there is no route, and the client falls back to its plain
 * behaviour: the current endpoint, failing over, following leader hints by address.
 *
 * Time comes from the injected Clock; nothing here reads the real clock.
 */
import { deadlineSignal, type Clock, type TimerHandle } from '../common/clock.ts'
import type { StatusResponse, NodeStatus as WireNodeStatus } from '../gen/ringkv/v1/admin.ts'
import { hashSpaceEnd, type Hasher } from '../hashing/index.ts'
import type { KvError } from '../common/errors.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'

/** User-tunable routing settings (KvClientInit.routing). */
export interface RoutingInit {
  /** Route by shard (default true). False: every call goes to the current endpoint, as before sharding. */
  readonly enabled?: boolean
  /** The least time between the starts of two table refreshes. */
  readonly refreshIntervalMsMin?: number
  /** Budget of one Status call of a refresh, and the longest a call waits for the first table. */
  readonly statusTimeoutMs?: number
}

export interface RoutingConfig {
  readonly enabled: boolean
  readonly refreshIntervalMsMin: number
  readonly statusTimeoutMs: number
}

export const routingDefaults: RoutingConfig = {
  enabled: true,
  refreshIntervalMsMin: 250,
  statusTimeoutMs: 2_000,
}

/** Validates user settings; misuse is a RangeError of the caller. */
export function resolveRoutingConfig(init: RoutingInit | undefined): RoutingConfig {
  const config: RoutingConfig = {
    enabled: init?.enabled ?? routingDefaults.enabled,
    refreshIntervalMsMin: init?.refreshIntervalMsMin ?? routingDefaults.refreshIntervalMsMin,
    statusTimeoutMs: init?.statusTimeoutMs ?? routingDefaults.statusTimeoutMs,
  }
  if (!Number.isSafeInteger(config.refreshIntervalMsMin) || config.refreshIntervalMsMin < 0) {
    throw new RangeError(
      `routing.refreshIntervalMsMin must be a non-negative integer, got ${config.refreshIntervalMsMin}`,
    )
  }
  if (!Number.isSafeInteger(config.statusTimeoutMs) || config.statusTimeoutMs <= 0) {
    throw new RangeError(`routing.statusTimeoutMs must be a positive integer, got ${config.statusTimeoutMs}`)
  }
  return config
}

/** One shard of the table: the hash range [hashStart, hashEnd) it owns. */
export interface ShardRoute {
  readonly shardId: number
  readonly hashStart: bigint
  readonly hashEnd: bigint
  readonly voters: readonly number[]
}

/** The routing cache as `KvClient.routingTable()` shows it (JSON-friendly: ranges as decimal strings). */
export interface RoutingTable {
  /** In hash order. */
  readonly shards: readonly {
    readonly shardId: number
    readonly hashStart: string
    readonly hashEnd: string
    /** 0 when unknown. */
    readonly leaderId: number
    /** Where requests for the shard's leader go; null when its address is unknown. */
    readonly leaderAddress: string | null
    readonly voters: readonly number[]
  }[]
  /** Node id -> address. */
  readonly nodes: Readonly<Record<number, string>>
  /** Table loads started so far (the first one included). */
  readonly refreshes: number
}

/** What a Status answer says about routing, parsed and checked (wire input: never trusted). */
export interface ParsedShardTable {
  /** Sorted by hashStart, non-overlapping. */
  readonly shards: readonly ShardRoute[]
  /** Shard id -> leader node id (0 = unknown). */
  readonly leaders: ReadonlyMap<number, number>
}

const decimalU64 = /^\d{1,20}$/

function parseHash(text: string): bigint | undefined {
  const trimmed = text.trim()
  if (!decimalU64.test(trimmed)) return undefined
  const value = BigInt(trimmed)
  return value <= hashSpaceEnd ? value : undefined
}

/**
 * The shard table in a Status answer: the answering node's shards (or, when it lists none, the
 * first peer's that does). Ranges that do not parse, are empty, or overlap an earlier one are
 * skipped; `hash_end` "0" stands for the end of the ring (2^64). Pure.
 */
export function parseShardTable(res: StatusResponse): ParsedShardTable {
  const source: WireNodeStatus | undefined =
    res.node !== undefined && res.node.shards.length > 0
      ? res.node
      : res.peers.find((p) => p.shards.length > 0)
  const candidates: ShardRoute[] = []
  const leaders = new Map<number, number>()
  for (const s of source?.shards ?? []) {
    const start = parseHash(s.hashStart)
    let end = parseHash(s.hashEnd)
    if (end === 0n) end = hashSpaceEnd
    if (start === undefined || end === undefined || start >= end) continue
    if (!Number.isSafeInteger(s.shardId) || s.shardId < 0) continue
    candidates.push({ shardId: s.shardId, hashStart: start, hashEnd: end, voters: [...s.voters] })
    const selfLeads = (s.role === 'leader' || s.role === 'single') && source !== undefined
    const leaderId = s.leaderId > 0 ? s.leaderId : selfLeads ? source.nodeId : 0
    leaders.set(s.shardId, leaderId)
  }
  candidates.sort((a, b) => (a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0))
  const shards: ShardRoute[] = []
  const ids = new Set<number>()
  for (const shard of candidates) {
    const previous = shards[shards.length - 1]
    if (previous !== undefined && shard.hashStart < previous.hashEnd) continue
    if (ids.has(shard.shardId)) continue
    ids.add(shard.shardId)
    shards.push(shard)
  }
  for (const id of [...leaders.keys()]) if (!ids.has(id)) leaders.delete(id)
  return { shards, leaders }
}

/** The shard whose range holds `hash`, by binary search over `shards` (sorted, non-overlapping). */
export function shardOfHash(shards: readonly ShardRoute[], hash: bigint): ShardRoute | undefined {
  let lo = 0
  let hi = shards.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1
    const shard = shards[mid] as ShardRoute
    if (hash < shard.hashStart) hi = mid - 1
    else if (hash >= shard.hashEnd) lo = mid + 1
    else return shard
  }
  return undefined
}

/** True for an address a client can dial (not empty, not a wildcard listen address). */
function dialable(address: string): boolean {
  if (address.trim() === '') return false
  const host = address.replace(/:\d+$/, '')
  return host !== '0.0.0.0' && host !== '[::]' && host !== '::' && host !== ''
}

export interface RoutingCacheComponents {
  readonly clock: Clock
  /** Resolves the key hasher (the xxhash module is instantiated asynchronously). */
  readonly hasher: () => Promise<Hasher>
  /** One Status call to `endpoint`, cancelled by `signal`. */
  readonly fetchStatus: (endpoint: string, signal: AbortSignal) => Promise<StatusResponse>
  /** Endpoints to ask, most preferred first (known node addresses are tried after them). */
  readonly candidates: () => readonly string[]
  /** `endpoint` did not answer a Status call (DEADLINE_EXCEEDED: not within statusTimeoutMs). */
  readonly onUnreachable?: (endpoint: string, err: KvError) => void
  /** A node's address became known. */
  readonly onAddress?: (nodeId: number, address: string) => void
}

interface Scheduled {
  readonly promise: Promise<void>
  readonly timer: TimerHandle
  readonly resolve: () => void
}

export class RoutingCache {
  private readonly config: RoutingConfig
  private readonly components: RoutingCacheComponents
  // Invariant: sorted by hashStart, non-overlapping, shard ids distinct (parseShardTable).
  private shards: readonly ShardRoute[] = []
  private readonly byId = new Map<number, ShardRoute>()
  /** Shard id -> leader node id; 0 = unknown. Only ids of `shards`. */
  private readonly leaders = new Map<number, number>()
  private readonly addresses = new Map<number, string>()
  /** Nodes whose address is where they answered us themselves (a peer's advertisement does not override it). */
  private readonly confirmed = new Set<number>()
  private hasher: Hasher | undefined
  private loaded = false
  private inFlight: Promise<void> | undefined
  private scheduled: Scheduled | undefined
  private lastStartMs: number | undefined
  private loadsStarted = 0
  private readonly closing = new AbortController()

  constructor(config: RoutingConfig, components: RoutingCacheComponents) {
    this.config = config
    this.components = components
  }

  /** True once a Status has answered (the table may still be empty). */
  get isLoaded(): boolean {
    return this.loaded
  }

  /** True when keys can be routed: a non-empty table and the hasher. */
  get routable(): boolean {
    return this.config.enabled && this.hasher !== undefined && this.shards.length > 0
  }

  /** Table loads started so far. */
  get refreshes(): number {
    return this.loadsStarted
  }

  /** The shard of `key`, or undefined when there is no route (see the file comment). */
  shardOf(key: Uint8Array): ShardRoute | undefined {
    if (!this.routable || this.hasher === undefined) return undefined
    return shardOfHash(this.shards, this.hasher.hash64(key))
  }

  /**
   * The distinct shards of `keys`, in order of first appearance; undefined when any key has no
   * route (then nothing can be said about them).
   */
  shardsOf(keys: readonly Uint8Array[]): ShardRoute[] | undefined {
    const out: ShardRoute[] = []
    for (const key of keys) {
      const shard = this.shardOf(key)
      if (shard === undefined) return undefined
      if (!out.includes(shard)) out.push(shard)
    }
    return out
  }

  shard(shardId: number): ShardRoute | undefined {
    return this.byId.get(shardId)
  }

  /** The shard that owns hash 0 onwards (where a scan starts). */
  firstShard(): ShardRoute | undefined {
    return this.routable ? this.shards[0] : undefined
  }

  /** The shard whose range starts where `shardId`'s ends (a scan's next stop). */
  nextShard(shardId: number): ShardRoute | undefined {
    const shard = this.byId.get(shardId)
    if (shard === undefined) return undefined
    const next = shardOfHash(this.shards, shard.hashEnd)
    return next !== undefined && next.hashStart === shard.hashEnd ? next : undefined
  }

  /** The leader of `shardId` as far as we know; 0 when unknown. */
  leaderOf(shardId: number): number {
    return this.leaders.get(shardId) ?? 0
  }

  /** Where the leader of `shardId` listens, when both are known. */
  leaderAddress(shardId: number): string | undefined {
    const leader = this.leaderOf(shardId)
    return leader > 0 ? this.addresses.get(leader) : undefined
  }

  addressOf(nodeId: number): string | undefined {
    return this.addresses.get(nodeId)
  }

  /** The node listening at `address`, if known. */
  nodeAt(address: string): number | undefined {
    for (const [nodeId, a] of this.addresses) if (a === address) return nodeId
    return undefined
  }

  /**
   * Repairs one shard's leader (from a NOT_LEADER hint or a leader's receipt). True when the shard
   * is in the table; the leader's address may still be unknown (see `addressOf`).
   */
  noteLeader(shardId: number, nodeId: number): boolean {
    if (!this.byId.has(shardId) || !Number.isSafeInteger(nodeId) || nodeId <= 0) return false
    this.leaders.set(shardId, nodeId)
    return true
  }

  /** Forgets every leader listening at `address` (it did not answer); those shards have no route until repaired. */
  forgetLeadersAt(address: string): void {
    for (const [shardId, nodeId] of this.leaders) {
      if (nodeId > 0 && this.addresses.get(nodeId) === address) this.leaders.set(shardId, 0)
    }
  }

  /** Forgets `nodeId` as the leader of `shardId` (it said it is not, and named nobody). */
  forgetLeader(shardId: number, nodeId: number | undefined): void {
    const current = this.leaders.get(shardId)
    if (current !== undefined && (nodeId === undefined || current === nodeId)) this.leaders.set(shardId, 0)
  }

  /** Remembers where `nodeId` listens (from a Status answer's peers). Wildcard addresses are skipped. */
  learnAddress(nodeId: number, address: string): void {
    if (!Number.isSafeInteger(nodeId) || nodeId <= 0 || !dialable(address)) return
    if (this.confirmed.has(nodeId)) return
    this.setAddress(nodeId, address)
  }

  /**
   * Folds a Status answer from `endpoint` into the cache: the answering node lives at `endpoint`
   * (whatever it advertises), its peers where they advertise, and the answer's shard table
   * replaces ours when `table` is true.
   */
  absorb(res: StatusResponse, endpoint: string, table: boolean): void {
    const node = res.node
    if (node !== undefined && Number.isSafeInteger(node.nodeId) && node.nodeId > 0) {
      this.confirmed.add(node.nodeId)
      this.setAddress(node.nodeId, endpoint)
    }
    for (const peer of res.peers) this.learnAddress(peer.nodeId, peer.address)
    if (!table) return
    const parsed = parseShardTable(res)
    this.shards = parsed.shards
    this.byId.clear()
    for (const shard of parsed.shards) this.byId.set(shard.shardId, shard)
    this.leaders.clear()
    for (const [shardId, leaderId] of parsed.leaders) this.leaders.set(shardId, leaderId)
    this.loaded = true
  }

  /**
   * Resolves once the first table is known, or at once when it is (or when routing is off). Waits
   * at most `statusTimeoutMs` for a load in flight; after that (or when loads keep failing) the
   * caller goes on without a route. With `fresh` (the caller asked for a refresh because its
   * route failed), also waits for the refresh in flight or deferred by the rate limit, at most
   * `refreshIntervalMsMin + statusTimeoutMs`. Rejects only with the abort error of `signal`.
   */
  async ready(signal: AbortSignal, fresh = false): Promise<void> {
    if (!this.config.enabled || this.closing.signal.aborted) return
    if (this.loaded && this.hasher !== undefined) {
      const pending = fresh ? (this.inFlight ?? this.scheduled?.promise) : undefined
      if (pending !== undefined) {
        const waitMs = this.config.refreshIntervalMsMin + this.config.statusTimeoutMs
        await waitAtMost(this.components.clock, pending, waitMs, signal)
      }
      return
    }
    const pending = this.refresh()
    // A deferred load (rate limit): do not wait for it, go on without a route.
    if (this.inFlight === undefined) return
    await waitAtMost(this.components.clock, pending, this.config.statusTimeoutMs, signal)
  }

  /**
   * Reloads the table from Status: joins the load in flight, or starts one when the last started
   * at least `refreshIntervalMsMin` ago, or else defers one to the end of that interval (one
   * deferred at most). Resolves when that load has ended; never rejects.
   */
  refresh(): Promise<void> {
    if (!this.config.enabled || this.closing.signal.aborted) return Promise.resolve()
    if (this.inFlight !== undefined) return this.inFlight
    if (this.scheduled !== undefined) return this.scheduled.promise
    const { clock } = this.components
    const nowMs = clock.nowMs()
    const earliestMs =
      this.lastStartMs === undefined ? nowMs : this.lastStartMs + this.config.refreshIntervalMsMin
    if (earliestMs <= nowMs) return this.start()
    let resolve: () => void = () => undefined
    const promise = new Promise<void>((r) => (resolve = r))
    // keepAlive: a call may be waiting for this refresh, and it must not end the process early.
    const timer = clock.setTimer(
      earliestMs - nowMs,
      () => {
        this.scheduled = undefined
        void this.start().then(resolve)
      },
      { keepAlive: true },
    )
    this.scheduled = { promise, timer, resolve }
    return promise
  }

  /** A JSON-friendly copy (undefined before the first table). */
  snapshot(): RoutingTable | undefined {
    if (!this.loaded) return undefined
    return {
      shards: this.shards.map((s) => {
        const leaderId = this.leaderOf(s.shardId)
        return {
          shardId: s.shardId,
          hashStart: s.hashStart.toString(),
          hashEnd: s.hashEnd.toString(),
          leaderId,
          leaderAddress: (leaderId > 0 ? this.addresses.get(leaderId) : undefined) ?? null,
          voters: s.voters,
        }
      }),
      nodes: Object.fromEntries(this.addresses),
      refreshes: this.loadsStarted,
    }
  }

  /** Stops refreshing; a load in flight is cancelled. Idempotent. */
  close(): void {
    if (this.closing.signal.aborted) return
    this.closing.abort()
    if (this.scheduled !== undefined) {
      this.scheduled.timer.cancel()
      this.scheduled.resolve()
      this.scheduled = undefined
    }
  }

  private setAddress(nodeId: number, address: string): void {
    if (this.addresses.get(nodeId) === address) return
    this.addresses.set(nodeId, address)
    this.components.onAddress?.(nodeId, address)
  }

  private start(): Promise<void> {
    if (this.closing.signal.aborted) return Promise.resolve()
    this.lastStartMs = this.components.clock.nowMs()
    this.loadsStarted += 1
    const load = this.load().finally(() => {
      if (this.inFlight === load) this.inFlight = undefined
    })
    this.inFlight = load
    return load
  }

  /** Asks the candidates one after another until one answers. Never rejects. */
  private async load(): Promise<void> {
    const closing = this.closing.signal
    if (this.hasher === undefined) {
      try {
        this.hasher = await this.components.hasher()
      } catch {
        // No hasher, no routes: calls fall back to the current endpoint. The next refresh retries.
        return
      }
    }
    const tried = new Set<string>()
    const candidates = [...this.components.candidates(), ...this.addresses.values()]
    for (const endpoint of candidates) {
      if (closing.aborted) return
      if (tried.has(endpoint)) continue
      tried.add(endpoint)
      const deadline = deadlineSignal(this.components.clock, this.config.statusTimeoutMs, closing)
      try {
        const res = await this.components.fetchStatus(endpoint, deadline.signal)
        if (closing.aborted) return
        this.absorb(res, endpoint, true)
        return
      } catch (err) {
        if (closing.aborted) return
        this.components.onUnreachable?.(endpoint, kvErrorFromGrpc(err, deadline.signal))
      } finally {
        deadline.dispose()
      }
    }
  }
}

/**
 * Resolves when `promise` settles or after `ms` on `clock`, whichever comes first; rejects with the
 * abort error when `signal` fires first.
 */
function waitAtMost(clock: Clock, promise: Promise<unknown>, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal))
      return
    }
    const cleanup = (): void => {
      timer.cancel()
      signal.removeEventListener('abort', onAbort)
    }
    const done = (): void => {
      cleanup()
      resolve()
    }
    const onAbort = (): void => {
      cleanup()
      reject(abortError(signal))
    }
    // keepAlive: the caller is blocked on this wait (as on a retry backoff).
    const timer = clock.setTimer(ms, done, { keepAlive: true })
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(done, done)
  })
}
