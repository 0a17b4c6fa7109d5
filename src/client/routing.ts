/**
 * The SDK's routing cache (ARCHITECTURE.md section 4, "A majority write"): the shell around the one
 * route table and leader-seeking policy of src/routing, which every node's router and the cluster
 * agent use too. It holds the table the cluster's map gave it (hash range -> shard -> replicas,
 * leader hint and epoch; nodes with address, zone and state) and where each node is reached, so
 * that every request goes straight to a node that serves it (routing/policy.ts decides):
 *
 * - writes and linearizable reads: the shard's leader as best known (a leader learned from a
 *   NOT_LEADER hint or a receipt, else the map's hint), else its replicas in preference order;
 * - session, bounded and eventual reads: a replica in the client's zone when `KvClientInit.zone`
 *   is set and the shard has one there, else the shard's replicas in turn (round robin from a
 *   random start); nodes the map says are dead and nodes that just failed to answer (for
 *   `unreachableMs`) are passed over.
 *
 * Every request routed by the map carries `route` {shard id, epoch}: a node whose map knows better
 * refuses it with WRONG_SHARD and the shard's current descriptor, which replaces that shard's entry
 * here in one step (`applyDescriptor`; a changed range, or replicas at unknown addresses, also
 * schedule a full refresh). Nodes forward what they do not hold, so a stale route costs a hop, not
 * an error; the receipt names the node that served, and a leader's receipt repairs the leader.
 *
 * What this file does itself is the shell: fetching the map (`KvService.ShardMap` of any reachable
 * node), coalescing and rate-limiting refreshes, and the address book. The map is loaded on first
 * use and refreshed when an answer shows it is stale: NOT_LEADER without a hint, WRONG_SHARD
 * without a usable descriptor, or a node that cannot be reached. Refreshes are coalesced (one in
 * flight; callers share it) and rate-limited (at most one start per `refreshIntervalMsMin`; a
 * request inside the interval is deferred to its end, not dropped).
 *
 * Keys are placed exactly as the nodes place them: xxh64 (seed 0) of the key bytes, a position in
 * [0, 2^64), and the shard whose [hash_start, hash_end) holds it.
 *
 * Until a map has answered, or when it lists no shards, or for a hash no listed range covers,
 * there is no route, and the client falls back to its plain behaviour: the current endpoint (which
 * forwards), failing over, following leader hints by address.
 *
 * Time and randomness come from the injected Clock and Random; nothing here reads the real ones.
 */
import { deadlineSignal, type Clock, type TimerHandle } from '../common/clock.ts'
import type { ErrorCode, KvError, ShardDescriptorDetail } from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import type { Random } from '../common/random.ts'
import type { StatusResponse } from '../gen/ringkv/v1/admin.ts'
import type { RouteHint, ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import type { Hasher } from '../hashing/index.ts'
import {
  RoutePolicy,
  RouteTable,
  decodeShardMap,
  dialable,
  isNodeDown,
  type Lesson,
  type ShardRoute,
} from '../routing/index.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'

export type { ShardRoute }

/** User-tunable routing settings (KvClientInit.routing). */
export interface RoutingInit {
  /** Route by shard (default true). False: every call goes to the current endpoint, which forwards. */
  readonly enabled?: boolean
  /** The least time between the starts of two map refreshes. */
  readonly refreshIntervalMsMin?: number
  /** Budget of one ShardMap call of a refresh, and the longest a call waits for the first map. */
  readonly statusTimeoutMs?: number
  /** How long a node that did not answer is passed over when a replica or leader is chosen. */
  readonly unreachableMs?: number
}

export interface RoutingConfig {
  readonly enabled: boolean
  readonly refreshIntervalMsMin: number
  readonly statusTimeoutMs: number
  readonly unreachableMs: number
  /** The client's zone (KvClientInit.zone); '' = none, no preference. */
  readonly zone: string
}

export const routingDefaults: RoutingConfig = {
  enabled: true,
  refreshIntervalMsMin: 250,
  statusTimeoutMs: 2_000,
  unreachableMs: 1_000,
  zone: '',
}

/** Validates user settings; misuse is a RangeError (or TypeError) of the caller. */
export function resolveRoutingConfig(init: RoutingInit | undefined, zone?: string): RoutingConfig {
  const config: RoutingConfig = {
    enabled: init?.enabled ?? routingDefaults.enabled,
    refreshIntervalMsMin: init?.refreshIntervalMsMin ?? routingDefaults.refreshIntervalMsMin,
    statusTimeoutMs: init?.statusTimeoutMs ?? routingDefaults.statusTimeoutMs,
    unreachableMs: init?.unreachableMs ?? routingDefaults.unreachableMs,
    zone: zone ?? routingDefaults.zone,
  }
  if (!Number.isSafeInteger(config.refreshIntervalMsMin) || config.refreshIntervalMsMin < 0) {
    throw new RangeError(
      `routing.refreshIntervalMsMin must be a non-negative integer, got ${config.refreshIntervalMsMin}`,
    )
  }
  if (!Number.isSafeInteger(config.statusTimeoutMs) || config.statusTimeoutMs <= 0) {
    throw new RangeError(`routing.statusTimeoutMs must be a positive integer, got ${config.statusTimeoutMs}`)
  }
  if (!Number.isSafeInteger(config.unreachableMs) || config.unreachableMs < 0) {
    throw new RangeError(`routing.unreachableMs must be a non-negative integer, got ${config.unreachableMs}`)
  }
  if (typeof config.zone !== 'string') throw new TypeError('zone must be a string')
  return config
}

/** A node of the map as `routingTable()` shows it. */
export interface RoutingMember {
  readonly nodeId: number
  /** As the map advertises it ('' when not dialable; see `addressOf` for where we reach it). */
  readonly address: string
  /** '' = none. */
  readonly zone: string
  /** joining | active | draining | dead. */
  readonly state: string
}

/** Where one request goes: a node of the map and the address we reach it at. */
export interface NodeChoice {
  readonly nodeId: number
  readonly address: string
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
    /** Preference order (the first is the preferred leader). */
    readonly replicas: readonly number[]
    readonly epoch: number
  }[]
  /** Node id -> the address requests to it go to. */
  readonly nodes: Readonly<Record<number, string>>
  /** The nodes of the map, by id. */
  readonly members: readonly RoutingMember[]
  /** Map loads started so far (the first one included). */
  readonly refreshes: number
  /** Shard entries replaced from the descriptor of a WRONG_SHARD answer, without a full refresh. */
  readonly descriptorRepairs: number
}

/** A failed attempt, as the cache reads it (see RoutePolicy.learn). */
export interface AttemptRefusal {
  /** The shard the attempt was for, or the one the error names; undefined: no route. */
  readonly shardId: number | undefined
  /** The node that answered (or failed to), when known. */
  readonly from: number | undefined
  readonly code: ErrorCode
  readonly leaderHint?: number | undefined
  readonly descriptor?: ShardDescriptorDetail | undefined
  readonly sent?: RouteHint | undefined
}

/** The route hint a request for `shard` carries. */
export function routeHintOf(shard: ShardRoute): RouteHint {
  return { shardId: shard.shardId, epoch: shard.epoch }
}

export interface RoutingCacheComponents {
  readonly clock: Clock
  /** Picks where each shard's round robin over its replicas starts (so clients spread). Default: 0. */
  readonly random?: Random
  /** Resolves the key hasher (the xxhash module is instantiated asynchronously). */
  readonly hasher: () => Promise<Hasher>
  /** One ShardMap call to `endpoint`, cancelled by `signal`. */
  readonly fetchMap: (endpoint: string, signal: AbortSignal) => Promise<ShardMapResponse>
  /** Endpoints to ask, most preferred first (known node addresses are tried after them). */
  readonly candidates: () => readonly string[]
  /** `endpoint` did not answer a ShardMap call (DEADLINE_EXCEEDED: not within statusTimeoutMs). */
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
  /** The shards and nodes of the last map, repaired by descriptors since. */
  private table: RouteTable = RouteTable.empty()
  /** Who requests go to, and what refusals teach (shared rules with the nodes' routers). */
  private readonly policy: RoutePolicy
  /** Node id -> where requests to it go. */
  private readonly addresses = new Map<number, string>()
  /** Nodes whose address is where they answered us themselves (an advertisement does not override it). */
  private readonly confirmed = new Set<number>()
  private hasher: Hasher | undefined
  private loaded = false
  private inFlight: Promise<void> | undefined
  private scheduled: Scheduled | undefined
  private lastStartMs: number | undefined
  private loadsStarted = 0
  private repairs = 0
  private readonly closing = new AbortController()

  constructor(config: RoutingConfig, components: RoutingCacheComponents) {
    this.config = config
    this.components = components
    this.policy = new RoutePolicy(
      { self: 0, avoidMs: config.unreachableMs, zone: config.zone },
      { random: components.random },
    )
  }

  /** True once a map has answered (it may still list no shards). */
  get isLoaded(): boolean {
    return this.loaded
  }

  /** True when keys can be routed: a non-empty map and the hasher. */
  get routable(): boolean {
    return this.config.enabled && this.hasher !== undefined && this.table.shards.length > 0
  }

  /** Map loads started so far. */
  get refreshes(): number {
    return this.loadsStarted
  }

  /** Shard entries replaced from a WRONG_SHARD descriptor so far. */
  get descriptorRepairs(): number {
    return this.repairs
  }

  /** The shard of `key`, or undefined when there is no route (see the file comment). */
  shardOf(key: Uint8Array): ShardRoute | undefined {
    if (!this.routable || this.hasher === undefined) return undefined
    return this.table.shardOfHash(this.hasher.hash64(key))
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
    return this.table.shard(shardId)
  }

  /** The shard that owns hash 0 onwards (where a scan starts). */
  firstShard(): ShardRoute | undefined {
    return this.routable ? this.table.first() : undefined
  }

  /** The shard whose range starts where `shardId`'s ends (a scan's next stop). */
  nextShard(shardId: number): ShardRoute | undefined {
    return this.table.next(shardId)
  }

  /** The leader of `shardId` as far as we know; 0 when unknown. */
  leaderOf(shardId: number): number {
    return this.policy.leaderOf(this.table, shardId)
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
   * Where a write or linearizable read of `shardId` goes: its leader (when known, reachable and
   * not dead), else the first replica in preference order that is; undefined when none is (the
   * caller falls back to its current endpoint, which forwards).
   */
  leaderTarget(shardId: number): NodeChoice | undefined {
    const nodeId = this.policy.leaderTarget(this.table, shardId, this.components.clock.nowMs(), {
      reachable: (id) => this.addresses.has(id),
    })
    return nodeId === undefined ? undefined : this.choice(nodeId)
  }

  /**
   * Where a session, bounded or eventual read of `shardId` goes: a replica in the client's zone
   * when one is usable, else the shard's usable replicas in turn; never one of `avoid` (the nodes
   * this call already found behind or unreachable). Undefined when no replica is left.
   */
  replicaTarget(shardId: number, avoid: ReadonlySet<number> = new Set()): NodeChoice | undefined {
    const nodeId = this.policy.replicaTarget(this.table, shardId, this.components.clock.nowMs(), {
      reachable: (id) => this.addresses.has(id),
      exclude: avoid,
    })
    return nodeId === undefined ? undefined : this.choice(nodeId)
  }

  /**
   * Repairs one shard's leader (from a NOT_LEADER hint, a leader's receipt or a descriptor). A
   * note with a term older than the one we know is ignored (0: no term, always taken). A node
   * named as leader is fresher news than its failure to answer us: it is no longer passed over.
   * True when the shard is in the map and the note was taken; the leader's address may still be
   * unknown.
   */
  noteLeader(shardId: number, nodeId: number, term = 0): boolean {
    if (!this.config.enabled) return false
    return this.policy.noteLeader(this.table, shardId, nodeId, term)
  }

  /**
   * `nodeId` served a request: it is reachable again. A node the map says is dead that serves is
   * news the map is stale (the node came back, and nothing else would tell us: requests routed
   * around it still succeed, one forward each), so the map is reloaded (rate-limited).
   */
  noteServed(nodeId: number): void {
    this.policy.noteServed(nodeId)
    if (isNodeDown(this.table.node(nodeId)?.state)) void this.refresh()
  }

  /**
   * The node at `address` did not answer (or is cut off): it loses its leaderships (those shards
   * go to their first other replica until repaired) and is passed over for `unreachableMs`.
   */
  markUnreachable(address: string): void {
    const nowMs = this.components.clock.nowMs()
    for (const [nodeId, a] of this.addresses)
      if (a === address) this.policy.noteFailed(this.table, nodeId, nowMs)
  }

  /**
   * `nodeId` said it does not lead `shardId` and named nobody: it is forgotten as that shard's
   * leader, and asked last for it until a leader is known.
   */
  forgetLeader(shardId: number, nodeId: number | undefined): void {
    if (nodeId !== undefined) this.policy.noteNotLeader(this.table, shardId, nodeId)
  }

  /**
   * What a failed attempt teaches (routing/RoutePolicy.learn), with the cache repaired: a
   * descriptor newer than our entry replaces it (and a changed range or an unknown replica
   * schedules a full refresh); hints and failures update the leaders and the nodes passed over.
   * The caller decides where the retry goes and whether to wait for a refresh.
   */
  learn(r: AttemptRefusal): Lesson {
    // Routing off (or closing): no table to repair, but hints and failures still say where to go.
    const repairs = this.config.enabled && !this.closing.signal.aborted
    const lesson = this.policy.learn(
      this.table,
      {
        shardId: r.shardId ?? r.descriptor?.shardId ?? -1,
        from: r.from,
        code: r.code,
        leaderHint: r.leaderHint,
        descriptor: repairs ? r.descriptor : undefined,
        sent: r.sent,
      },
      this.components.clock.nowMs(),
      (id) => this.addresses.has(id),
    )
    if (lesson.kind === 'descriptor' && lesson.table !== this.table) {
      this.table = lesson.table
      this.repairs += 1
    }
    if (lesson.kind === 'descriptor' && lesson.refresh) void this.refresh()
    return lesson
  }

  /**
   * Replaces one shard's entry with the current descriptor a WRONG_SHARD answer carried, in one
   * step, when it is newer than ours (a higher epoch, or a shard we do not have). Entries its
   * range overlaps are dropped (their ranges are stale). A range that is not the one we had, or a
   * replica whose address we do not know, also schedules a full refresh: the rest of the map may
   * have moved with it.
   *
   * True when the cache now routes past what the refused request carried (`sent`): the
   * descriptor was applied, or an equal or newer entry for its shard is here already (another op
   * of the same Multi brought it) and `sent` named another shard or an older epoch. False
   * otherwise: the descriptor says nothing new, and only a refresh can help.
   */
  applyDescriptor(d: ShardDescriptorDetail, sent?: RouteHint): boolean {
    const lesson = this.learn({
      shardId: d.shardId,
      from: undefined,
      code: 'WRONG_SHARD',
      descriptor: d,
      sent,
    })
    return lesson.kind === 'descriptor' && lesson.routesPast
  }

  /** Remembers where `nodeId` listens (from an advertisement). Wildcard addresses are skipped. */
  learnAddress(nodeId: number, address: string): void {
    if (!isSafeUint(nodeId) || nodeId <= 0 || !dialable(address)) return
    if (this.confirmed.has(nodeId)) return
    this.setAddress(nodeId, address)
  }

  /**
   * Folds a ShardMap answer from `endpoint` into the cache: the answering node lives at `endpoint`
   * (whatever it advertises), the others where they advertise, and the answer's well-formed shards
   * and nodes replace ours (routing/wire.ts checks every field; what is malformed is left out,
   * and keys in what was left out go to the current endpoint, which forwards). Leaders learned
   * since are kept unless the map's hint is from a newer term.
   */
  absorbMap(res: ShardMapResponse, endpoint: string): void {
    this.confirm(res.servedBy, endpoint)
    const m = decodeShardMap(res)
    for (const n of m.nodes) this.learnAddress(n.id, n.address)
    this.table = new RouteTable(m.shards, m.nodes, m.meta === undefined ? [] : [m.meta])
    this.policy.retain(this.table)
    this.loaded = true
  }

  /**
   * Folds the addresses of an admin Status answer from `endpoint` into the cache (the answering
   * node lives at `endpoint`, its peers where they advertise). The map is left alone, so that a
   * status of some node does not swap routes under calls in flight.
   */
  absorbStatus(res: StatusResponse, endpoint: string): void {
    if (res.node !== undefined) this.confirm(res.node.nodeId, endpoint)
    for (const peer of res.peers) this.learnAddress(peer.nodeId, peer.address)
  }

  /**
   * Resolves once the first map is known, or at once when it is (or when routing is off). Waits
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
   * Reloads the map from ShardMap: joins the load in flight, or starts one when the last started
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

  /** A JSON-friendly copy (undefined before the first map). */
  snapshot(): RoutingTable | undefined {
    if (!this.loaded) return undefined
    return {
      shards: this.table.shards.map((s) => {
        const leaderId = this.leaderOf(s.shardId)
        return {
          shardId: s.shardId,
          hashStart: s.hashStart.toString(),
          hashEnd: s.hashEnd.toString(),
          leaderId,
          leaderAddress: (leaderId > 0 ? this.addresses.get(leaderId) : undefined) ?? null,
          replicas: s.replicas,
          epoch: s.epoch,
        }
      }),
      nodes: Object.fromEntries(this.addresses),
      members: [...this.table.nodes.values()].map((n) => ({
        nodeId: n.id,
        address: dialable(n.address) ? n.address : '',
        zone: n.zone,
        state: n.state,
      })),
      refreshes: this.loadsStarted,
      descriptorRepairs: this.repairs,
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

  private choice(nodeId: number): NodeChoice {
    return { nodeId, address: this.addresses.get(nodeId) as string }
  }

  /** `nodeId` answered us at `endpoint` itself: that is where it lives, whatever it advertises. */
  private confirm(nodeId: number, endpoint: string): void {
    if (!Number.isSafeInteger(nodeId) || nodeId <= 0) return
    this.confirmed.add(nodeId)
    this.setAddress(nodeId, endpoint)
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
        const res = await this.components.fetchMap(endpoint, deadline.signal)
        if (closing.aborted) return
        this.absorbMap(res, endpoint)
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
