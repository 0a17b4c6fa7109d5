/**
 * Router: key -> hash -> shard -> the replica that can serve the request (ARCHITECTURE.md
 * section 3, router/). Any node accepts any request; the router says whether this node serves it
 * or which node it goes to, by the one route table (the cluster agent's map) and the one
 * leader-seeking policy (routing/RoutePolicy) the SDK and the agent use too:
 *
 *   - writes and linearizable reads need the shard's leader: this node's replica when it leads,
 *     else the leader as best known (this node's own replica's view of Raft first, then what
 *     forwards taught it, then the map's hint), else the shard's replicas in preference order;
 *     a node whose forward just failed is passed over for `forwardAvoidMs`;
 *   - session, bounded and eventual reads need any replica: this node's when it holds one, else
 *     the leader as best known (it is never behind), else the first usable replica.
 *
 * `serve` runs one request: here, or forwarded once. A local follower refuses a leader's request
 * before proposing it (NOT_LEADER, nothing applied), so it is passed on to the leader it names; a
 * forward answered NOT_LEADER is passed on once more to the leader named then. A request that came
 * from another node is never forwarded again: where the second node cannot serve it, it answers
 * NOT_LEADER with its best hint, so a stale view costs one error, not a loop. A request that names
 * the shard its caller computed (RouteHint) and names it wrong or at an older epoch is refused with
 * WRONG_SHARD and the current descriptor, so the caller repairs its map in one step.
 *
 * Decisions over injected state (the map, the local replicas, the clock); the forwarding itself is
 * the caller's `remote` (forward-grpc.ts in kvd, the simulated network in test/sim).
 */
import type { Clock } from '../common/clock.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { NodeId, ShardId } from '../common/ids.ts'
import { peerAddressOf, wrongShard, type ClusterMap, type ShardRecord } from '../cluster/index.ts'
import { RoutePolicy, type RouteHint } from '../routing/index.ts'
import type { Replica } from '../shard/index.ts'

export type { RouteHint }

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
  readonly clock: Clock
}

/** What a served request's answer says about who served it (kv.proto Receipt). */
interface ReceiptLike {
  readonly nodeId: number
  readonly term: number
}

/**
 * How long a node whose forward failed (unreachable, cut off from its quorum) is passed over:
 * long enough that requests behind it go to a replica that can name the new leader, short
 * enough that a restarted node is used again within a second or two.
 */
export const forwardAvoidMs = 1_000

export class Router {
  private readonly c: RouterComponents
  private readonly policy: RoutePolicy
  /** The map the policy's knowledge was last pruned against. */
  private seen: ClusterMap | undefined

  constructor(components: RouterComponents) {
    this.c = components
    this.policy = new RoutePolicy({ self: components.nodeId, avoidMs: forwardAvoidMs, zone: '' })
  }

  get nodeId(): NodeId {
    return this.c.nodeId
  }

  /** The current map; the policy forgets shards a new map no longer has. */
  get map(): ClusterMap {
    const map = this.c.map()
    if (map !== this.seen) {
      this.seen = map
      this.policy.retain(map)
    }
    return map
  }

  shardOfHash(hash: bigint): ShardRecord {
    return this.map.shardOfHash(hash)
  }

  /** The shard after `shard` in hash order (scans move on to it), undefined after the last. */
  next(shard: ShardRecord): ShardRecord | undefined {
    return this.map.next(shard.shardId)
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

  /** A leader seen serving (a forwarded answer's receipt, in `term`) or named by a NOT_LEADER hint. */
  learnLeader(shardId: ShardId, leader: NodeId, term = 0): void {
    this.policy.noteLeader(this.map, shardId, leader, term)
  }

  /** The leader of `shard` as best known here, or undefined. */
  leaderOf(shard: ShardRecord): NodeId | undefined {
    const leader = this.policy.leaderOf(this.map, shard.shardId, this.c.local(shard.shardId))
    return leader === 0 ? undefined : (leader as NodeId)
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
    const map = this.map
    const id = this.policy.leaderTarget(map, shard.shardId, this.c.clock.nowMs(), { local, lastResort: true })
    const node = id === undefined ? undefined : map.node(id as NodeId)
    if (node === undefined) throw this.notLeader(shard, leader)
    return { kind: 'remote', nodeId: node.id, address: peerAddressOf(node) }
  }

  /**
   * Serves one request on `shard`: `local` with this node's replica, or `remote` with the address
   * of the node it is forwarded to (see the file comment for the forward-once rules). Throws what
   * the last of them threw.
   */
  async serve<Res extends { readonly receipt?: ReceiptLike | undefined }>(
    shard: ShardRecord,
    need: Need,
    forwarded: boolean,
    local: (replica: Replica) => Promise<Res>,
    remote: (address: string) => Promise<Res>,
  ): Promise<Res> {
    const target = this.target(shard, need, forwarded)
    if (target.kind === 'remote') return await this.forward(shard, need, target.nodeId, remote, false)
    try {
      return await local(target.replica)
    } catch (err) {
      const next = forwarded ? undefined : this.passOnTo(err, shard)
      if (next === undefined) throw err
      return await this.forward(shard, need, next, remote, true)
    }
  }

  /** The leader a local NOT_LEADER refusal names, when the request may be passed on to it. */
  private passOnTo(err: unknown, shard: ShardRecord): NodeId | undefined {
    if (!isKvError(err) || err.code !== ErrorCode.NotLeader) return undefined
    const lesson = this.policy.learn(
      this.map,
      { shardId: shard.shardId, from: this.c.nodeId, code: err.code, leaderHint: err.details?.leaderHint },
      this.c.clock.nowMs(),
    )
    if (lesson.kind !== 'leader' || lesson.nodeId === this.c.nodeId) return undefined
    return this.map.node(lesson.nodeId as NodeId) === undefined ? undefined : (lesson.nodeId as NodeId)
  }

  private async forward<Res extends { readonly receipt?: ReceiptLike | undefined }>(
    shard: ShardRecord,
    need: Need,
    nodeId: NodeId,
    remote: (address: string) => Promise<Res>,
    last: boolean,
  ): Promise<Res> {
    const node = this.map.node(nodeId)
    const address = node === undefined ? undefined : peerAddressOf(node)
    if (address === undefined) throw new KvError(ErrorCode.Unavailable, `node ${nodeId} is not in the map`)
    let res: Res
    try {
      res = await remote(address)
    } catch (err) {
      // Only the peer's own answers teach anything: the forward runs on the caller's deadline, so
      // its running out (or the caller cancelling) says nothing of the peer.
      if (!isKvError(err) || err.code === ErrorCode.DeadlineExceeded) throw err
      const lesson = this.policy.learn(
        this.map,
        { shardId: shard.shardId, from: nodeId, code: err.code, leaderHint: err.details?.leaderHint },
        this.c.clock.nowMs(),
      )
      if (last || lesson.kind !== 'leader' || lesson.nodeId === this.c.nodeId) throw err
      return await this.forward(shard, need, lesson.nodeId as NodeId, remote, true)
    }
    this.policy.noteServed(nodeId)
    const receipt = res.receipt
    if (need === 'leader' && receipt !== undefined && receipt.nodeId > 0)
      this.policy.noteLeader(this.map, shard.shardId, receipt.nodeId, receipt.term)
    return res
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
