/**
 * The SDK's routing cache (ARCHITECTURE.md section 4, "A majority write"): the cluster's shard map
 * (hash range -> shard -> replicas, leader hint and epoch) and its nodes (id -> address, zone,
 * state), so that every request goes straight to a node that serves it:
 *
 * - writes and linearizable reads: the shard's leader (the hint, else the first replica: the
 *   preferred leader);
 * - session, bounded and eventual reads: a nearby replica: one in the client's zone when
 *   `KvClientInit.zone` is set and the shard has one there, else the shard's replicas in turn
 *   (round robin from a random start), skipping nodes the map says are dead and nodes that just
 *   failed to answer (for `unreachableMs`).
 *
 * Every request routed by the map carries `route` {shard id, epoch}: a node whose map knows better
 * refuses it with WRONG_SHARD and the shard's current descriptor, which replaces that shard's entry
 * here in one step (`applyDescriptor`; a changed range, or replicas at unknown addresses, also
 * schedule a full refresh). Nodes forward what they do not hold, so a stale route costs a hop, not
 * an error; the receipt names the node that served, and a leader's receipt repairs the leader.
 *
 * Where it comes from: `KvService.ShardMap` of any reachable node. It is loaded on first use and
 * refreshed when an answer shows it is stale: NOT_LEADER without a hint, WRONG_SHARD without a
 * usable descriptor, or a node that cannot be reached. Refreshes are coalesced (one in flight;
 * callers share it) and rate-limited (at most one start per `refreshIntervalMsMin`; a request
 * inside the interval is deferred to its end, not dropped). A leader hint (`ringkv-leader`) or a
 * receipt from a leader repairs one shard's leader without a refresh.
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
import type { KvError, ShardDescriptorDetail } from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import type { Random } from '../common/random.ts'
import type { StatusResponse } from '../gen/ringkv/v1/admin.ts'
import type { RouteHint, ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import type { Hasher } from '../hashing/index.ts'
import { descriptorFromWire } from './descriptor.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'

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

/** One shard of the map: the hash range [hashStart, hashEnd) it owns, its replicas and epoch. */
export interface ShardRoute {
  readonly shardId: number
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** Preference order: the first is the preferred leader. */
  readonly replicas: readonly number[]
  /** Rises with every change of the range or replicas (not of the leader). */
  readonly epoch: number
}

/** One node of the map, as far as routing needs it. */
export interface NodeRoute {
  readonly nodeId: number
  /** As the map advertises it ('' when not dialable; see `addressOf` for where we reach it). */
  readonly address: string
  /** '' = none. */
  readonly zone: string
  /** joining | active | draining | dead ('' when unknown). */
  readonly state: string
}

/** A shard's leader as far as we know, and the term it was seen leading in (0 = unknown). */
interface LeaderNote {
  readonly nodeId: number
  readonly term: number
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
  readonly members: readonly NodeRoute[]
  /** Map loads started so far (the first one included). */
  readonly refreshes: number
  /** Shard entries replaced from the descriptor of a WRONG_SHARD answer, without a full refresh. */
  readonly descriptorRepairs: number
}

/** What a ShardMap answer says about routing, parsed and checked (wire input: never trusted). */
export interface ParsedShardMap {
  /** Sorted by hashStart, non-overlapping, shard ids distinct. */
  readonly shards: readonly ShardRoute[]
  /** Shard id -> leader hint; only shards with a hint. */
  readonly leaders: ReadonlyMap<number, LeaderNote>
  readonly nodes: readonly NodeRoute[]
}

/**
 * The routing part of a ShardMap answer. Shards whose range does not parse, is empty, or overlaps
 * an earlier one (in hash order), and repeated shard ids, are skipped; so are nodes without a
 * valid id. Pure.
 */
export function parseShardMap(res: ShardMapResponse): ParsedShardMap {
  const candidates: ShardDescriptorDetail[] = []
  for (const wire of res.shards) {
    const d = descriptorFromWire(wire)
    if (d !== undefined) candidates.push(d)
  }
  candidates.sort((a, b) => (a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0))
  const shards: ShardRoute[] = []
  const leaders = new Map<number, LeaderNote>()
  const ids = new Set<number>()
  for (const d of candidates) {
    const previous = shards[shards.length - 1]
    if (previous !== undefined && d.hashStart < previous.hashEnd) continue
    if (ids.has(d.shardId)) continue
    ids.add(d.shardId)
    shards.push(routeOf(d))
    if (d.leaderHint > 0) leaders.set(d.shardId, { nodeId: d.leaderHint, term: d.leaderTerm })
  }
  const nodes: NodeRoute[] = []
  const nodeIds = new Set<number>()
  for (const n of res.nodes) {
    if (!isSafeUint(n.nodeId) || n.nodeId <= 0 || nodeIds.has(n.nodeId)) continue
    nodeIds.add(n.nodeId)
    nodes.push({
      nodeId: n.nodeId,
      address: dialable(n.address) ? n.address : '',
      zone: n.zone,
      state: n.state,
    })
  }
  return { shards, leaders, nodes }
}

function routeOf(d: ShardDescriptorDetail): ShardRoute {
  return {
    shardId: d.shardId,
    hashStart: d.hashStart,
    hashEnd: d.hashEnd,
    replicas: [...d.replicas],
    epoch: d.epoch,
  }
}

/** The route hint a request for `shard` carries. */
export function routeHintOf(shard: ShardRoute): RouteHint {
  return { shardId: shard.shardId, epoch: shard.epoch }
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
  // Invariant: sorted by hashStart, non-overlapping, shard ids distinct; `byId` indexes it.
  private shards: readonly ShardRoute[] = []
  private readonly byId = new Map<number, ShardRoute>()
  /** Shard id -> leader as far as we know. Only ids of `shards`; absent = unknown. */
  private readonly leaders = new Map<number, LeaderNote>()
  /** Node id -> where requests to it go. */
  private readonly addresses = new Map<number, string>()
  /** Nodes whose address is where they answered us themselves (an advertisement does not override it). */
  private readonly confirmed = new Set<number>()
  /** The nodes of the last map. */
  private nodes = new Map<number, NodeRoute>()
  /** Node id -> clock time until which it is passed over (it did not answer). */
  private readonly unreachableUntil = new Map<number, number>()
  /** Shard id -> next turn of its round robin over replicas. */
  private readonly turns = new Map<number, number>()
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
  }

  /** True once a map has answered (it may still list no shards). */
  get isLoaded(): boolean {
    return this.loaded
  }

  /** True when keys can be routed: a non-empty map and the hasher. */
  get routable(): boolean {
    return this.config.enabled && this.hasher !== undefined && this.shards.length > 0
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
    const first = this.routable ? this.shards[0] : undefined
    return first?.hashStart === 0n ? first : undefined
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
    return this.leaders.get(shardId)?.nodeId ?? 0
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

  /** The node `nodeId` as the last map lists it. */
  node(nodeId: number): NodeRoute | undefined {
    return this.nodes.get(nodeId)
  }

  /**
   * Where a write or linearizable read of `shardId` goes: its leader (when known, reachable and
   * not dead), else the first replica in preference order that is; undefined when none is (the
   * caller falls back to its current endpoint, which forwards).
   */
  leaderTarget(shardId: number): NodeChoice | undefined {
    const shard = this.byId.get(shardId)
    if (shard === undefined) return undefined
    const leader = this.leaderOf(shardId)
    if (leader > 0 && this.usable(leader)) return this.choice(leader)
    for (const replica of shard.replicas) if (this.usable(replica)) return this.choice(replica)
    return undefined
  }

  /**
   * Where a session, bounded or eventual read of `shardId` goes: a replica in the client's zone
   * when one is usable, else the shard's usable replicas in turn; never one of `avoid` (the nodes
   * this call already found behind or unreachable). Undefined when no replica is left.
   */
  replicaTarget(shardId: number, avoid: ReadonlySet<number> = new Set()): NodeChoice | undefined {
    const shard = this.byId.get(shardId)
    if (shard === undefined) return undefined
    const eligible = shard.replicas.filter((r) => !avoid.has(r) && this.usable(r))
    if (eligible.length === 0) return undefined
    const zone = this.config.zone
    const local = zone === '' ? [] : eligible.filter((r) => this.nodes.get(r)?.zone === zone)
    const pool = local.length > 0 ? local : eligible
    let turn = this.turns.get(shardId)
    if (turn === undefined) turn = this.components.random?.int(Math.max(1, shard.replicas.length)) ?? 0
    this.turns.set(shardId, turn + 1)
    return this.choice(pool[turn % pool.length] as number)
  }

  /**
   * Repairs one shard's leader (from a NOT_LEADER hint, a leader's receipt or a descriptor). A
   * note with a term older than the one we know is ignored (0: no term, always taken). A node
   * named as leader is fresher news than its failure to answer us: it is no longer passed over.
   * True when the shard is in the map and the note was taken; the leader's address may still be
   * unknown.
   */
  noteLeader(shardId: number, nodeId: number, term = 0): boolean {
    if (!this.byId.has(shardId) || !Number.isSafeInteger(nodeId) || nodeId <= 0) return false
    const known = this.leaders.get(shardId)
    if (term > 0 && known !== undefined && known.term > term) return false
    this.leaders.set(shardId, { nodeId, term: Math.max(term, known?.term ?? 0) })
    this.unreachableUntil.delete(nodeId)
    return true
  }

  /** `nodeId` served a request: it is reachable again. */
  noteServed(nodeId: number): void {
    this.unreachableUntil.delete(nodeId)
  }

  /**
   * The node at `address` did not answer (or is cut off): it loses its leaderships (those shards
   * go to their first other replica until repaired) and is passed over for `unreachableMs`.
   */
  markUnreachable(address: string): void {
    const untilMs = this.components.clock.nowMs() + this.config.unreachableMs
    for (const [nodeId, a] of this.addresses) {
      if (a !== address) continue
      this.unreachableUntil.set(nodeId, untilMs)
      for (const [shardId, leader] of this.leaders) {
        if (leader.nodeId === nodeId) this.leaders.delete(shardId)
      }
    }
  }

  /** Forgets `nodeId` as the leader of `shardId` (it said it is not, and named nobody). */
  forgetLeader(shardId: number, nodeId: number | undefined): void {
    const current = this.leaders.get(shardId)
    if (current !== undefined && (nodeId === undefined || current.nodeId === nodeId))
      this.leaders.delete(shardId)
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
    if (!this.config.enabled || this.closing.signal.aborted) return false
    const current = this.byId.get(d.shardId)
    if (current !== undefined && d.epoch <= current.epoch) {
      return sent !== undefined && (sent.shardId !== current.shardId || sent.epoch < current.epoch)
    }
    const route = routeOf(d)
    const kept = this.shards.filter(
      (s) => s.shardId !== d.shardId && (s.hashEnd <= d.hashStart || s.hashStart >= d.hashEnd),
    )
    for (const s of this.shards) {
      if (!kept.includes(s)) {
        this.byId.delete(s.shardId)
        this.leaders.delete(s.shardId)
      }
    }
    kept.push(route)
    kept.sort((a, b) => (a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0))
    this.shards = kept
    this.byId.set(route.shardId, route)
    const sameRange = current?.hashStart === d.hashStart && current.hashEnd === d.hashEnd
    if (!sameRange) this.leaders.delete(d.shardId)
    if (d.leaderHint > 0) this.noteLeader(d.shardId, d.leaderHint, d.leaderTerm)
    this.repairs += 1
    if (!sameRange || d.replicas.some((r) => !this.addresses.has(r))) void this.refresh()
    return true
  }

  /** Remembers where `nodeId` listens (from an advertisement). Wildcard addresses are skipped. */
  learnAddress(nodeId: number, address: string): void {
    if (!Number.isSafeInteger(nodeId) || nodeId <= 0 || !dialable(address)) return
    if (this.confirmed.has(nodeId)) return
    this.setAddress(nodeId, address)
  }

  /**
   * Folds a ShardMap answer from `endpoint` into the cache: the answering node lives at `endpoint`
   * (whatever it advertises), the others where they advertise, and the answer's shards, leaders
   * and nodes replace ours.
   */
  absorbMap(res: ShardMapResponse, endpoint: string): void {
    this.confirm(res.servedBy, endpoint)
    const parsed = parseShardMap(res)
    for (const n of parsed.nodes) this.learnAddress(n.nodeId, n.address)
    this.nodes = new Map(parsed.nodes.map((n) => [n.nodeId, n]))
    this.shards = parsed.shards
    this.byId.clear()
    for (const shard of parsed.shards) this.byId.set(shard.shardId, shard)
    this.leaders.clear()
    for (const [shardId, leader] of parsed.leaders) this.leaders.set(shardId, leader)
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
      shards: this.shards.map((s) => {
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
      members: [...this.nodes.values()].sort((a, b) => a.nodeId - b.nodeId),
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

  /** A node that can be sent requests: its address is known, the map does not say it is dead, and it did not just fail to answer. */
  private usable(nodeId: number): boolean {
    if (!this.addresses.has(nodeId)) return false
    if (this.nodes.get(nodeId)?.state === 'dead') return false
    const untilMs = this.unreachableUntil.get(nodeId)
    return untilMs === undefined || untilMs <= this.components.clock.nowMs()
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
