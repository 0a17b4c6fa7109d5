/**
 * RoutePolicy: the one leader-seeking policy (ARCHITECTURE.md section 3, routing/). The SDK
 * (which replica or leader a call goes to), the router (where a node forwards what it does not
 * serve) and the cluster agent (where a call to the meta shard goes) each hold one, over their own
 * RouteTable, and follow the same rules:
 *
 *   - A request that needs the leader goes to the leader as best known: the deciding node's own
 *     replica's Raft view when it holds one; else a leader it learned (a NOT_LEADER hint, a
 *     receipt, a descriptor), unless the table's hint is from a newer term; else the table's hint.
 *     When that leader is unknown or cannot be sent to, the shard's replicas in preference order
 *     (the first is the preferred leader).
 *   - A node that just failed a request (no answer in time, cut off from its quorum) is passed over
 *     for `avoidMs` and forgotten as the leader of anything, unless a NOT_LEADER hint or a
 *     receipt names it again (fresher news than its silence). When every candidate is passed over,
 *     a caller with nowhere else to go (`lastResort`) takes one anyway.
 *   - A node that answered NOT_LEADER naming nobody else is forgotten as that shard's leader and
 *     asked last for that shard until a leader is known again, so a stale replica cannot keep a
 *     caller from the others (when none knows a leader, the replicas are asked in turn).
 *   - Dead nodes (by the table's states; but not a leader the deciding node's own replica sees
 *     leading, which is alive whatever a lagging map says), the deciding node itself and nodes the
 *     caller cannot reach are never chosen.
 *   - A request that can be served by any replica (session, bounded, eventual reads) goes to one
 *     in the caller's zone when there is one, else round robin over the usable replicas, from a
 *     random start per shard so that clients spread.
 *   - Repairs come in one step: a NOT_LEADER hint or a receipt notes the leader (a note older than
 *     what is known, by term, is ignored); a WRONG_SHARD descriptor newer than the table's entry
 *     (by epoch) replaces that entry, dropping the entries its range overlaps; a changed range, or
 *     a replica the caller does not know, asks for a full refresh.
 *
 * Pure: time comes in as `nowMs` arguments, randomness as the injected Random; no I/O. Every
 * structure is bounded by the table (notes and turns per shard of it, avoidance per node, pruned
 * by `retain` and on expiry).
 */
import { ErrorCode } from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import type { Random } from '../common/random.ts'
import type { RouteTable } from './route-table.ts'
import { isNodeDown, type LocalView, type RouteHint, type ShardRoute } from './types.ts'

export interface RoutePolicyConfig {
  /** The deciding node's id (a router, an agent); 0 for a client, which is no node. */
  readonly self: number
  /** How long a node that failed a request is passed over (ms on the caller's clock). */
  readonly avoidMs: number
  /** The zone replica reads prefer; '' = none. */
  readonly zone: string
}

export interface RoutePolicyComponents {
  /** Where each shard's round robin over its replicas starts. Default: at 0. */
  readonly random?: Random | undefined
}

/** What the caller adds to one choice. */
export interface ChoiceOptions {
  /** The deciding node's own replica of the shard, when it holds one. */
  readonly local?: LocalView | undefined
  /** Whether a node can be sent to (the SDK: its address is known). Default: it is in the table. */
  readonly reachable?: ((nodeId: number) => boolean) | undefined
  /** Nodes this one request already found unable to serve it (behind, unreachable). */
  readonly exclude?: ReadonlySet<number> | undefined
  /**
   * When every candidate is passed over: false (default) answers undefined (the caller has
   * somewhere else to go: the SDK its current endpoint); true takes the first one anyway.
   */
  readonly lastResort?: boolean | undefined
}

/** A failed request, as routing reads it. */
export interface Refusal {
  readonly shardId: number
  /** The node that answered (or failed to); undefined when the caller does not know which. */
  readonly from: number | undefined
  readonly code: ErrorCode
  readonly leaderHint?: number | undefined
  /** The shard's current entry (a WRONG_SHARD answer's descriptor). */
  readonly descriptor?: ShardRoute | undefined
  /** The route the refused request carried. */
  readonly sent?: RouteHint | undefined
}

/** What a refusal teaches, and what the caller should do next. */
export type Lesson =
  /** A leader was named and noted: go there now. `noted` is false when the shard is not in the table. */
  | { readonly kind: 'leader'; readonly nodeId: number; readonly noted: boolean }
  /**
   * A newer entry for the shard: `table` replaces the caller's (it may be the same table when an
   * equal or newer entry is there already). `routesPast`: the table now routes past what the
   * refused request carried, so a retry goes somewhere new. `refresh`: reload the whole map too.
   */
  | {
      readonly kind: 'descriptor'
      readonly table: RouteTable
      readonly routesPast: boolean
      readonly refresh: boolean
    }
  /** The table is stale and nothing in the answer repairs it: reload the map. */
  | { readonly kind: 'refresh' }
  /** The node answered but knows no leader: forgotten as this shard's leader, and asked last. */
  | { readonly kind: 'not-leader' }
  /** The node did not answer (or cannot reach its quorum): passed over for a while. */
  | { readonly kind: 'failed' }
  /** The replica is behind what the request needs: another replica may serve it. */
  | { readonly kind: 'behind' }
  /** Nothing to learn: the same again after a backoff (busy, a dropped proposal...). */
  | { readonly kind: 'wait' }

/** What the policy believes of one shard's leader beyond the table's hint. */
interface Note {
  /** 0: known not to be known (the hinted leader said it is not, or failed). */
  readonly nodeId: number
  /** The newest term this belief stands for (a termless note takes the known term). */
  readonly term: number
  /** The range of the entry it was made for: a note for another range says nothing. */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /**
   * Nodes that answered NOT_LEADER without a hint, oldest first: asked last (in this order) until a
   * leader is noted, so that when none knows a leader the replicas are asked in turn.
   */
  readonly refused: readonly number[]
}

/** Refusals remembered per shard (more than any shard has replicas). */
const refusedPerShardMax = 16
const noneRefused: readonly number[] = []

export class RoutePolicy {
  private readonly config: RoutePolicyConfig
  private readonly random: Random | undefined
  /** Shard id -> leader belief. Only shards of the caller's table (see `retain`). */
  private readonly notes = new Map<number, Note>()
  /** Node id -> clock time until which it is passed over. */
  private readonly avoided = new Map<number, number>()
  /** Shard id -> next turn of its round robin over replicas. */
  private readonly turns = new Map<number, number>()

  constructor(config: RoutePolicyConfig, components: RoutePolicyComponents = {}) {
    this.config = config
    this.random = components.random
  }

  /** The leader of `shardId` as best known (see the file comment); 0 when unknown. */
  leaderOf(table: RouteTable, shardId: number, local?: LocalView): number {
    if (local?.isLeader === true && this.config.self > 0) return this.config.self
    if (local?.leaderId !== undefined && local.leaderId !== null) return local.leaderId
    const shard = table.shard(shardId)
    if (shard === undefined) return 0
    const note = this.noteOf(shard)
    if (note !== undefined && note.term >= shard.leaderTerm) return note.nodeId
    return shard.leaderHint
  }

  /** True while `nodeId` is passed over (it failed a request less than avoidMs ago). */
  isAvoided(nodeId: number, nowMs: number): boolean {
    const until = this.avoided.get(nodeId)
    if (until === undefined) return false
    if (until > nowMs) return true
    this.avoided.delete(nodeId)
    return false
  }

  /**
   * Notes `nodeId` as the leader of `shardId` (a NOT_LEADER hint, a leader's receipt, a
   * descriptor) in `term` (0: unknown, always taken). A term older than the one known is ignored.
   * The node is no longer passed over. True when the shard is in the table and the note was taken.
   */
  noteLeader(table: RouteTable, shardId: number, nodeId: number, term = 0): boolean {
    const shard = table.shard(shardId)
    if (shard === undefined || !isSafeUint(nodeId) || nodeId === 0 || !isSafeUint(term)) return false
    const known = this.knownTerm(shard)
    if (term > 0 && term < known) return false
    this.setNote(shard, nodeId, Math.max(term, known), [])
    this.avoided.delete(nodeId)
    return true
  }

  /**
   * `nodeId` answered a request for `shardId` with NOT_LEADER and named no other leader: it is
   * forgotten as that shard's leader and asked last for it until a leader is noted again.
   */
  noteNotLeader(table: RouteTable, shardId: number, nodeId: number): void {
    const shard = table.shard(shardId)
    if (shard === undefined) return
    const leader = this.leaderOf(table, shardId)
    const refused = [...(this.noteOf(shard)?.refused ?? []).filter((id) => id !== nodeId), nodeId]
    this.setNote(
      shard,
      leader === nodeId ? 0 : leader,
      this.knownTerm(shard),
      refused.slice(-refusedPerShardMax),
    )
  }

  /**
   * `nodeId` failed a request (it did not answer, or answered that it cannot reach its quorum): it
   * is passed over for avoidMs from `nowMs`, and forgotten as the leader of every shard.
   */
  noteFailed(table: RouteTable, nodeId: number, nowMs: number): void {
    if (!isSafeUint(nodeId) || nodeId === 0) return
    for (const [id, until] of this.avoided) if (until <= nowMs) this.avoided.delete(id)
    this.avoided.set(nodeId, nowMs + this.config.avoidMs)
    for (const shard of [...table.shards, ...table.offRing])
      if (this.leaderOf(table, shard.shardId) === nodeId)
        this.setNote(shard, 0, this.knownTerm(shard), this.noteOf(shard)?.refused ?? [])
  }

  /** `nodeId` served a request: it is reachable again. */
  noteServed(nodeId: number): void {
    this.avoided.delete(nodeId)
  }

  /**
   * Where a request of `shardId` that needs the leader goes: the leader as best known when it can
   * be sent to, else the shard's replicas in preference order (one that refused last), skipping
   * passed-over nodes unless `lastResort`. Undefined when there is no candidate.
   */
  leaderTarget(
    table: RouteTable,
    shardId: number,
    nowMs: number,
    options: ChoiceOptions = {},
  ): number | undefined {
    const shard = table.shard(shardId)
    if (shard === undefined) return undefined
    const leader = this.leaderOf(table, shardId, options.local)
    const refused = this.noteOf(shard)?.refused ?? noneRefused
    // A leader this node's own replica sees leading is alive, whatever the map's state says.
    const seen = options.local?.leaderId ?? null
    // The candidates in order (the leader, the replicas in preference order, the refused last):
    // the first usable one not passed over wins, else the first usable one as a last resort.
    let fallback: number | undefined
    const pick = (id: number): number | undefined => {
      if (!this.usable(table, id, options, id === seen)) return undefined
      if (!this.isAvoided(id, nowMs)) return id
      fallback ??= id
      return undefined
    }
    if (leader > 0) {
      const got = pick(leader)
      if (got !== undefined) return got
    }
    for (const r of shard.replicas) {
      if (r === leader || refused.includes(r)) continue
      const got = pick(r)
      if (got !== undefined) return got
    }
    for (const r of refused) {
      if (r === leader) continue
      const got = pick(r)
      if (got !== undefined) return got
    }
    return options.lastResort === true ? fallback : undefined
  }

  /**
   * Where a request of `shardId` that any replica can serve goes: a usable replica in the
   * configured zone when there is one, else the usable replicas in turn. Passed-over nodes and
   * `exclude` are skipped. Undefined when no replica is left.
   */
  replicaTarget(
    table: RouteTable,
    shardId: number,
    nowMs: number,
    options: ChoiceOptions = {},
  ): number | undefined {
    const shard = table.shard(shardId)
    if (shard === undefined) return undefined
    const eligible = shard.replicas.filter((r) => this.usable(table, r, options) && !this.isAvoided(r, nowMs))
    if (eligible.length === 0) return undefined
    const zone = this.config.zone
    const local = zone === '' ? [] : eligible.filter((r) => table.node(r)?.zone === zone)
    const pool = local.length > 0 ? local : eligible
    let turn = this.turns.get(shardId)
    if (turn === undefined) turn = this.random?.int(Math.max(1, shard.replicas.length)) ?? 0
    this.turns.set(shardId, turn + 1)
    return pool[turn % pool.length]
  }

  /**
   * What a refused request teaches (see Lesson), with the policy's own knowledge updated. The
   * caller applies a descriptor lesson's table and reloads the map when told to.
   * `known`: whether the caller can reach a node (a descriptor naming one it cannot asks for a
   * refresh); default: the node is in the table.
   */
  learn(table: RouteTable, r: Refusal, nowMs: number, known?: (nodeId: number) => boolean): Lesson {
    switch (r.code) {
      case ErrorCode.WrongShard: {
        if (r.descriptor === undefined) return { kind: 'refresh' }
        const repair = this.repair(table, r.descriptor, r.sent, known)
        if (!repair.applied && !repair.routesPast) return { kind: 'refresh' }
        return {
          kind: 'descriptor',
          table: repair.table,
          routesPast: repair.routesPast,
          refresh: repair.refresh,
        }
      }
      case ErrorCode.NotLeader: {
        const hint = r.leaderHint ?? 0
        if (isSafeUint(hint) && hint > 0 && hint !== r.from)
          return { kind: 'leader', nodeId: hint, noted: this.noteLeader(table, r.shardId, hint) }
        if (r.from !== undefined) this.noteNotLeader(table, r.shardId, r.from)
        return { kind: 'not-leader' }
      }
      case ErrorCode.Unavailable:
      case ErrorCode.NoQuorum:
      case ErrorCode.DeadlineExceeded:
        if (r.from !== undefined) this.noteFailed(table, r.from, nowMs)
        return { kind: 'failed' }
      case ErrorCode.SessionBehind:
      case ErrorCode.StalenessBoundExceeded:
        return { kind: 'behind' }
      default:
        return { kind: 'wait' }
    }
  }

  /**
   * Replaces the entry of descriptor `d`'s shard in `table` when `d` is newer (a higher epoch, or a
   * shard the table lacks), in one step (RouteTable.withShard). `applied`: it was; `refresh`: the
   * range changed, or a replica is not `known`, so the rest of the map may have moved with it.
   * `routesPast`: the resulting table routes past what the refused request carried (`sent`): `d`
   * was applied, or an equal or newer entry is there already and `sent` named another shard or an
   * older epoch (another op of the same Multi brought it).
   */
  repair(
    table: RouteTable,
    d: ShardRoute,
    sent?: RouteHint,
    known: (nodeId: number) => boolean = (id) => table.node(id) !== undefined,
  ): {
    readonly table: RouteTable
    readonly applied: boolean
    readonly routesPast: boolean
    readonly refresh: boolean
  } {
    const current = table.shard(d.shardId)
    if (current !== undefined && d.epoch <= current.epoch) {
      const routesPast =
        sent !== undefined && (sent.shardId !== current.shardId || sent.epoch < current.epoch)
      return { table, applied: false, routesPast, refresh: false }
    }
    const next = table.withShard(d)
    const sameRange = current?.hashStart === d.hashStart && current.hashEnd === d.hashEnd
    if (d.leaderHint > 0) this.noteLeader(next, d.shardId, d.leaderHint, d.leaderTerm)
    this.retain(next)
    return {
      table: next,
      applied: true,
      routesPast: true,
      refresh: !sameRange || d.replicas.some((id) => !known(id)),
    }
  }

  /** Forgets what concerns shards `table` does not have (call when the caller's table changes). */
  retain(table: RouteTable): void {
    for (const id of [...this.notes.keys()]) if (table.shard(id) === undefined) this.notes.delete(id)
    for (const id of [...this.turns.keys()]) if (table.shard(id) === undefined) this.turns.delete(id)
  }

  /**
   * A node a request may be sent to: in the table, not down (unreachable or dead) unless `alive`
   * (seen alive first hand),
   * not the deciding node, reachable, not excluded.
   */
  private usable(table: RouteTable, nodeId: number, options: ChoiceOptions, alive = false): boolean {
    if (nodeId === this.config.self || options.exclude?.has(nodeId) === true) return false
    const node = table.node(nodeId)
    if (options.reachable !== undefined) {
      if (!options.reachable(nodeId)) return false
    } else if (node === undefined) return false
    return alive || !isNodeDown(node?.state)
  }

  /** The note of `shard`, if it was made for the entry's current range. */
  private noteOf(shard: ShardRoute): Note | undefined {
    const note = this.notes.get(shard.shardId)
    if (note === undefined) return undefined
    if (note.hashStart === shard.hashStart && note.hashEnd === shard.hashEnd) return note
    this.notes.delete(shard.shardId)
    return undefined
  }

  /** The newest term known for `shard`'s leader: the table's hint's or a note's. */
  private knownTerm(shard: ShardRoute): number {
    return Math.max(shard.leaderTerm, this.noteOf(shard)?.term ?? 0)
  }

  private setNote(shard: ShardRoute, nodeId: number, term: number, refused: readonly number[]): void {
    this.notes.set(shard.shardId, {
      nodeId,
      term,
      hashStart: shard.hashStart,
      hashEnd: shard.hashEnd,
      refused,
    })
  }
}
