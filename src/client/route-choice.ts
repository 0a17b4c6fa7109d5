/**
 * Where each attempt of an SDK call goes, and what a failed attempt repairs: the glue between a
 * call's retries (retry.ts) and the routing cache (routing.ts, over the one route table and
 * leader-seeking policy of src/routing). The simulator runs this same code for its clients.
 *
 *   - An attempt with a route goes to the node the policy picks for its shard (the leader, or a
 *     nearby replica) and carries the shard's route hint {shard, epoch}; without a route (no map
 *     yet, routing off, a key no range covers) it goes to the current endpoint, which forwards.
 *   - A failed attempt teaches the cache (RoutingCache.learn) and says how soon the retry may go:
 *     at once when the repair sends it somewhere new (a newer descriptor, a leader hint at a known
 *     address), else after the backoff; the endpoint pool moves for calls without a route.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import type { RetryPace, RetryRoute } from './retry.ts'
import { routeHintOf, type NodeChoice, type RoutingCache, type ShardRoute } from './routing.ts'
import type { ScanTarget } from './scan.ts'

/** Where the attempts of one call go. */
export type Route =
  /** The current endpoint, failing over (status, shardMap). */
  | { readonly to: 'any' }
  /** The leader of the one shard `keys` map to (writes, linearizable reads). */
  | { readonly to: 'leader'; readonly keys: readonly Uint8Array[] }
  /** A nearby replica of the shard `key` maps to (session, bounded and eventual reads). */
  | { readonly to: 'replica'; readonly key: Uint8Array }

/** Where one attempt went, and why (what a failure of it says about the routes). */
export type Target = ScanTarget

/** Route repair state of one call, across its attempts. */
export interface RepairState {
  /** The last retry followed a hint at once; the next hint waits its backoff (no ping-pong). */
  hinted: boolean
  /** A map refresh was asked for: the next attempt waits for it (briefly). */
  fresh: boolean
  /** Nodes this call found behind or unreachable: replica reads go elsewhere. */
  readonly avoid: Set<number>
}

export function repairState(): RepairState {
  return { hinted: false, fresh: false, avoid: new Set() }
}

/** The endpoints calls without a route go to (client/endpoints.ts EndpointPool). */
export interface EndpointChoice {
  /** The endpoint new calls without a route go to. */
  readonly current: string
  /** Moves past `failed` (unless another call already moved away from it). */
  advance(failed: string): void
  /** Moves to the node `nodeId` when its address is known; false when it is not. */
  preferNode(nodeId: number): boolean
}

/** What a receipt says about routing (kv.proto Receipt, as the SDK reads it). */
export interface ReceiptRoute {
  readonly nodeId: number
  readonly shardId: number
  readonly term: number
  /** The level delivered ('linearizable', 'majority', ...). */
  readonly delivered: string
}

/** Levels only a shard's leader delivers: a receipt with one names the leader. */
const leaderLevels: ReadonlySet<string> = new Set(['linearizable', 'majority', 'all', 'leader'])

export class RouteChooser {
  constructor(
    readonly routing: RoutingCache,
    readonly pool: EndpointChoice,
  ) {}

  /** Where the next attempt of `route` goes. Throws CROSS_SHARD for keys of several shards. */
  target(route: Route, state: RepairState): Target {
    switch (route.to) {
      case 'any':
        return this.poolTarget(undefined)
      case 'replica': {
        const shard = this.routing.shardOf(route.key)
        return shard === undefined ? this.poolTarget(undefined) : this.replicaTarget(shard, state.avoid)
      }
      case 'leader': {
        const shards = this.routing.shardsOf(route.keys)
        if (shards !== undefined && shards.length > 1) throw crossShardError(shards)
        const shard = shards?.[0]
        return shard === undefined ? this.poolTarget(undefined) : this.leaderTarget(shard)
      }
    }
  }

  /** The leader of `shard` (or its first usable replica), else the current endpoint; with the route hint. */
  leaderTarget(shard: ShardRoute): Target {
    return this.nodeTarget(shard, this.routing.leaderTarget(shard.shardId), 'leader')
  }

  /** A nearby replica of `shard` not in `avoid`, else the current endpoint; with the route hint. */
  replicaTarget(shard: ShardRoute, avoid: ReadonlySet<number>): Target {
    return this.nodeTarget(shard, this.routing.replicaTarget(shard.shardId, avoid), 'replica')
  }

  /** The current endpoint; for `shard` (when known) with its route hint: that node forwards. */
  poolTarget(shard: ShardRoute | undefined): Target {
    return {
      endpoint: this.pool.current,
      shardId: shard?.shardId,
      nodeId: undefined,
      via: 'pool',
      route: shard === undefined ? undefined : routeHintOf(shard),
    }
  }

  /**
   * Repairs routes after an attempt to `target` failed with `err` (see `repair`), and says how soon
   * the retry may go; two hint-following retries in a row wait their backoff, so two confused
   * nodes cannot bounce a call between them.
   */
  repairPace(err: KvError, target: Target, route: RetryRoute, state: RepairState): RetryPace {
    const pace = this.repair(err, target, route, state)
    const now = pace === 'now' && !state.hinted
    state.hinted = now
    return now ? 'now' : 'backoff'
  }

  /**
   * Repairs routes after an attempt to `target` failed with `err`, and says how soon the retry may
   * go. A WRONG_SHARD with a newer descriptor replaces that shard's entry and the retry goes at
   * once. A leader hint that names a known address updates that shard's leader and the retry goes
   * there at once. NOT_LEADER without a hint and WRONG_SHARD without a usable descriptor make the
   * map refresh, and the next attempt waits for it (briefly, rate limit included). A node that
   * does not answer (or has no quorum) loses its leaderships and is passed over for a while; the
   * map refreshes in the background. A replica that is behind is left for another. Calls without
   * a route move the current endpoint, as before sharding.
   */
  repair(err: KvError, target: Target, route: RetryRoute, state: RepairState): RetryPace {
    const { pool, routing } = this
    if (route === 'same' && err.code !== ErrorCode.WrongShard) return 'backoff'
    const details = err.details
    const lesson = routing.learn({
      shardId: details?.shardId ?? target.shardId,
      from: target.nodeId ?? routing.nodeAt(target.endpoint),
      code: err.code,
      leaderHint: details?.leaderHint,
      descriptor: details?.descriptor,
      sent: target.route,
    })
    const refreshAndWait = (): RetryPace => {
      void routing.refresh()
      state.fresh = true
      if (target.via === 'pool') pool.advance(target.endpoint)
      return 'backoff'
    }
    switch (lesson.kind) {
      case 'descriptor':
        return lesson.routesPast ? 'now' : refreshAndWait()
      case 'refresh':
      case 'not-leader':
        // No descriptor newer than ours, or a node that names no leader: only the whole map can
        // say where the key lives now.
        return refreshAndWait()
      case 'leader': {
        const hint = lesson.nodeId
        if (lesson.noted) {
          const address = routing.addressOf(hint)
          if (address !== undefined) return address === target.endpoint ? 'backoff' : 'now'
          // The leader's address is unknown: learn it from a fresh map.
          void routing.refresh()
          state.fresh = true
          return target.via === 'pool' && pool.preferNode(hint) ? 'now' : 'backoff'
        }
        // No route for this shard: as before sharding, move to the hinted node by address.
        if (target.via === 'pool' && pool.preferNode(hint)) return 'now'
        if (routing.isLoaded) {
          void routing.refresh()
          state.fresh = true
        }
        pool.advance(target.endpoint)
        return 'backoff'
      }
      case 'failed':
        // Unreachable, or cut off in a minority: no longer leading anything, and passed over for a
        // while. The retry does not wait for the refresh: it goes to the shard's next replica (or
        // the current endpoint), which forwards or names the leader.
        if (target.nodeId !== undefined) state.avoid.add(target.nodeId)
        void routing.refresh()
        pool.advance(target.endpoint)
        return 'backoff'
      case 'behind':
        // SESSION_BEHIND, STALENESS_BOUND_EXCEEDED: another replica may serve it.
        if (target.nodeId !== undefined) state.avoid.add(target.nodeId)
        pool.advance(target.endpoint)
        return 'backoff'
      case 'wait':
        return 'backoff'
    }
  }

  /**
   * What a receipt says about routes. It names the node that served (after any forwarding): that
   * node is reachable, and when the level is one only a leader delivers, it is the shard's leader
   * (in the receipt's term), whoever the request was sent to.
   */
  observe(receipt: ReceiptRoute): void {
    if (receipt.nodeId <= 0) return
    this.routing.noteServed(receipt.nodeId)
    if (leaderLevels.has(receipt.delivered))
      this.routing.noteLeader(receipt.shardId, receipt.nodeId, receipt.term)
  }

  private nodeTarget(shard: ShardRoute, choice: NodeChoice | undefined, via: 'leader' | 'replica'): Target {
    if (choice === undefined) return this.poolTarget(shard)
    return {
      endpoint: choice.address,
      shardId: shard.shardId,
      nodeId: choice.nodeId,
      via,
      route: routeHintOf(shard),
    }
  }
}

/** A batch whose keys map to several shards: refused before anything is sent. */
function crossShardError(shards: readonly ShardRoute[]): KvError {
  const ids = shards.map((s) => s.shardId)
  return new KvError(
    ErrorCode.CrossShard,
    `batch keys map to shards ${ids.join(', ')}; a batch is atomic within one shard only`,
    { details: { field: 'ops', ...(ids[1] !== undefined ? { shardId: ids[1] } : {}) } },
  )
}
