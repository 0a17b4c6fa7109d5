/**
 * Router: key -> hash -> shard -> the replica that can serve the request (ARCHITECTURE.md
 * section 3, router/). Any node accepts any request; the router says whether this node serves it
 * or which node it goes to:
 *
 *   - writes and linearizable reads need the shard's leader: this node's replica when it leads,
 *     else the leader as best known (this node's own replica's view of Raft first, then what
 *     forwards taught it, then the map's hint), else the shard's first replica;
 *   - session, bounded and eventual reads need any replica: this node's when it holds one, else
 *     the leader as best known (it is never behind), else the first live replica.
 *
 * A request already forwarded once is never forwarded again: where the second node cannot serve
 * it, it answers NOT_LEADER with its best hint, so a stale view costs one error, not a loop. A
 * request that names the shard its caller computed (RouteHint) and names it wrong or at an older
 * epoch is refused with WRONG_SHARD and the current descriptor, so the caller repairs its map in
 * one step. Pure decisions over injected state; the forwarding itself is forward-grpc.ts.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId, ShardId } from '../common/ids.ts'
import { peerAddressOf, wrongShard, type ClusterMap, type ShardRecord } from '../cluster/index.ts'
import type { Replica } from '../shard/index.ts'

/** What a request needs from its shard. */
export type Need = 'leader' | 'replica'

export type Target =
  | { readonly kind: 'local'; readonly replica: Replica }
  /** `address`: the node's peer address, where requests are forwarded. */
  | { readonly kind: 'remote'; readonly nodeId: NodeId; readonly address: string }

/** This node's replica of a shard, with its view of Raft (plain field reads). */
export interface LocalReplica {
  readonly replica: Replica
  readonly isLeader: boolean
  readonly leaderId: NodeId | null
  /** The shard's epoch as this replica applied it (0 = unknown). */
  readonly epoch?: number
}

export interface RouterComponents {
  readonly nodeId: NodeId
  /** The current map (the cluster agent's copy). */
  readonly map: () => ClusterMap
  readonly local: (shardId: ShardId) => LocalReplica | undefined
}

export interface RouteHint {
  readonly shardId: number
  readonly epoch: number
}

export class Router {
  private readonly c: RouterComponents
  /** Leaders learned from forwards (receipts, NOT_LEADER hints), by shard; at most one per shard. */
  private readonly learned = new Map<ShardId, NodeId>()

  constructor(components: RouterComponents) {
    this.c = components
  }

  get nodeId(): NodeId {
    return this.c.nodeId
  }

  get map(): ClusterMap {
    return this.c.map()
  }

  shardOfHash(hash: bigint): ShardRecord {
    return this.c.map().shardOfHash(hash)
  }

  /** The shard after `shard` in hash order (scans move on to it), undefined after the last. */
  next(shard: ShardRecord): ShardRecord | undefined {
    return this.c.map().next(shard.shardId)
  }

  /**
   * WRONG_SHARD when the caller's map put the key in another shard or at an older epoch. The epoch
   * this node knows is the newer of its map's and its own replica's (the shard's own configuration
   * is the truth; the map follows it within a heartbeat).
   */
  checkHint(shard: ShardRecord, hint: RouteHint | undefined): void {
    if (hint === undefined) return
    const epoch = Math.max(shard.epoch, this.c.local(shard.shardId)?.epoch ?? 0)
    if (hint.shardId !== shard.shardId || hint.epoch < epoch) throw wrongShard({ ...shard, epoch }, hint)
  }

  /** A leader seen serving (a forwarded answer's receipt) or named by a NOT_LEADER hint. */
  learnLeader(shardId: ShardId, leader: NodeId): void {
    const shard = this.c.map().shard(shardId)
    if (shard === undefined || !shard.replicas.includes(leader)) return
    this.learned.set(shardId, leader)
  }

  /** The leader of `shard` as best known here, or undefined. */
  leaderOf(shard: ShardRecord): NodeId | undefined {
    const local = this.c.local(shard.shardId)
    if (local?.isLeader === true) return this.c.nodeId
    const fromRaft = local?.leaderId ?? null
    if (fromRaft !== null) return fromRaft
    const learned = this.learned.get(shard.shardId)
    if (learned !== undefined) return learned
    return shard.leaderHint === 0 ? undefined : (shard.leaderHint as NodeId)
  }

  /** Who serves a request on `shard` that needs `need`; `forwarded`: it came from another node. */
  target(shard: ShardRecord, need: Need, forwarded: boolean): Target {
    const local = this.c.local(shard.shardId)
    if (local !== undefined && (need === 'replica' || local.isLeader))
      return { kind: 'local', replica: local.replica }
    const leader = this.leaderOf(shard)
    // The local replica answers NOT_LEADER with its hint itself; with no better idea, let it.
    if (local !== undefined && (forwarded || leader === undefined || leader === this.c.nodeId))
      return { kind: 'local', replica: local.replica }
    if (forwarded) throw this.notLeader(shard, leader)
    const remote = this.remoteFor(shard, leader)
    if (remote === undefined) throw this.notLeader(shard, leader)
    return remote
  }

  /** The node to forward to: the leader when known and alive, else the first live replica. */
  private remoteFor(shard: ShardRecord, leader: NodeId | undefined): Target | undefined {
    const map = this.c.map()
    const candidates = leader === undefined ? [...shard.replicas] : [leader, ...shard.replicas]
    for (const id of candidates) {
      if (id === this.c.nodeId) continue
      const node = map.node(id)
      if (node === undefined || node.state === 'dead') continue
      return { kind: 'remote', nodeId: id, address: peerAddressOf(node) }
    }
    return undefined
  }

  private notLeader(shard: ShardRecord, leader: NodeId | undefined): KvError {
    return new KvError(
      ErrorCode.NotLeader,
      `node ${this.c.nodeId} cannot serve shard ${shard.shardId} for this request`,
      {
        details: {
          shardId: shard.shardId,
          shardMapEpoch: shard.epoch,
          ...(leader === undefined || leader === this.c.nodeId ? {} : { leaderHint: leader }),
        },
      },
    )
  }
}
