/**
 * NodeHost: the host of a CHANGING set of replicas (ARCHITECTURE.md section 3, node/). One tick
 * timer, one Ready loop, one bounded inbox:
 *
 *   - Peer envelopes (transport), client requests (RaftReplica through ReplicaLoop), snapshot
 *     installs and the mover's commands (create, change, transfer, destroy) all enter through the
 *     inbox as typed messages; nothing else calls into a RawNode. Full inbox: requests get
 *     OVERLOADED (RESOURCE_EXHAUSTED), peer envelopes are dropped (Raft tolerates loss).
 *   - One loop iteration: run the inbox and due ticks; take the Ready of every group with work;
 *     send their `messages` at once (the leader's appends travel while its own fsync runs);
 *     prefetch the keys every group's committed entries read (ONE multiGet); stage every group's
 *     snapshot, entries, hard state and applied effects, and the host's own record changes, into
 *     ONE WriteBatch; write it with ONE fsync (group commit across shards); then per group: update
 *     the log store, answer, advance, and send `messagesAfterPersist`.
 *   - Replicas come and go while every other shard keeps serving. Each has a persisted lifecycle
 *     (replica-record.ts: empty, installing, active, removing, tombstone). A replica is created
 *     only by an explicit request (createReplica, from the mover, carrying the shard's epoch),
 *     never by a message: messages for a shard this node does not hold, is removing or has a
 *     tombstone of are dropped, so a late message can never resurrect a removed replica.
 *   - Snapshots are made on demand: when a leader's core asks to send one, the host takes a view
 *     of the shard's ranges at the durable applied index (engine iterators take their view when
 *     created, and no write is in flight between iterations) and streams it, throttled by
 *     `snapshotBytesPerSecond` for the whole node. A receiver writes it into place
 *     (snapshot-install.ts) and makes it visible in one batch.
 *   - A replica whose removal is committed (it applied a configuration without itself, or the
 *     mover showed it one) stops, and its data is dropped in the background in paced chunks
 *     (replica-drop.ts); then only its tombstone stays.
 *
 * A failed engine write is fail-stop (STYLE.md 7.4): everything waiting fails and `onFatal` runs.
 */
import type { RestoreSource } from '../backup/index.ts'
import type { NodeId } from '../common/index.ts'
import {
  ErrorCode,
  KvError,
  ShardId,
  assert,
  type Clock,
  type Limits,
  type LogIndex,
  type Logger,
  type Random,
  type TimerHandle,
} from '../common/index.ts'
import { AssertionError } from '../common/assert.ts'
import { FixedHistogram, histogramBuckets, type HistogramSnapshot } from '../common/histogram.ts'
import { equalHashRanges, type HashRange, type Hasher } from '../hashing/index.ts'
import {
  ReadOnlyOption,
  emptyConfState,
  type ConfState,
  type Message,
  type MsgSnap,
  type Ready,
} from '../raft/index.ts'
import {
  ApplyOverlay,
  Deferred,
  RaftGroup,
  RaftReplica,
  firstDescriptor,
  membersOf,
  newGroupCounters,
  type ApplyResult,
  type Command,
  type InstalledSnapshot,
  type KvStateMachine,
  type ReplicaChange,
  type ReplicaLoop,
  type ShardConfigView,
  type StagedReady,
  type WriteAnswer,
  type WriteLevel,
} from '../shard/index.ts'
import { bytesKey, metaKey, raftAppliedIndexKey, type Engine, type Entry } from '../storage/index.ts'
import {
  emptyParts,
  loadMachineAt,
  newMachine,
  openHostState,
  replicaSpecError,
  type GroupParts,
} from './host-open.ts'
import { decodePeerPayload, encodeAppliedPayload, encodeRaftPayload } from './peer-payload.ts'
import { RateLimiter } from './rate-limiter.ts'
import { dropReplicaData } from './replica-drop.ts'
import {
  encodeReplicaRecord,
  replicaRecordKey,
  replicatedRanges,
  type ReplicaRecord,
} from './replica-record.ts'
import { receiveSnapshotInPlace, type InstallPort, type InstallTicket } from './snapshot-install.ts'
import { snapshotFrames } from './snapshot-send.ts'
import type { PeerEnvelope, PeerTransport, SnapshotHeader, TransportHandler } from './transport.ts'
import { preferredLeaderOf } from './leader-balance.ts'

/** A replica this node holds in a new cluster: a data shard (a range of the ring) or the meta shard. */
export interface HostedShard {
  readonly shardId: ShardId
  readonly kind: 'data' | 'meta'
  /** [hashStart, hashEnd) of the ring (the meta shard: the whole ring; it holds no user keys). */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** The voters it is created with (this node among them); later the Raft log owns the voters. */
  readonly voters: readonly NodeId[]
}

/** A replica the mover asks this node to create (empty, waiting for its first snapshot). */
export interface ReplicaSpec {
  readonly shardId: ShardId
  readonly kind: 'data' | 'meta'
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** The shard's epoch the request was planned at; a tombstone of a later removal refuses it. */
  readonly epoch: number
}

/**
 * The replicas of a cluster where every member holds every data shard: `shardCount` equal slices
 * of the ring, each voted by all of `members` (a 3-node cluster with 3 replicas; tests).
 */
export function everyMemberShards(members: readonly NodeId[], shardCount: number): HostedShard[] {
  return equalHashRanges(shardCount).map((range, i) => ({
    shardId: ShardId(i),
    kind: 'data',
    hashStart: range.start,
    hashEnd: range.end,
    voters: [...members],
  }))
}

export interface NodeHostInit {
  readonly nodeId: NodeId
  /**
   * The replicas this node holds in a new cluster, created on first start. Once the data
   * directory holds its replicas this is ignored.
   */
  readonly bootstrap: readonly HostedShard[]
  /** The cluster's data shard count; a data directory made with another count is refused. */
  readonly shardCount: number
  readonly tickMs: number
  readonly leaseReads: boolean
  /**
   * Bytes per second of snapshot data this node sends, all streams together (--snapshot-rate);
   * default limits.snapshotBytesPerSecondDefault.
   */
  readonly snapshotBytesPerSecond?: number
  /**
   * kvd --restore: the backup the data replicas of `bootstrap` are seeded from on first start
   * (host-open.ts); ignored, or refused, once the directory holds replicas.
   */
  readonly restore?: RestoreSource
}

export interface NodeHostComponents {
  readonly engine: Engine
  readonly hasher: Hasher
  readonly clock: Clock
  readonly random: Random
  readonly logger: Logger
  readonly limits: Readonly<Limits>
  readonly transport: PeerTransport
  /** Called once when a storage write fails or an invariant breaks; the process should exit. */
  readonly onFatal: (err: unknown) => void
}

/** Raft timing in ticks (tickMs each): elections after 10-20 ticks, a heartbeat every tick. */
export const electionTicks = 10
export const heartbeatTicks = 1
/** Ticks applied at once after the loop was held up; more would fire elections in a burst. */
const ticksPerIterationMax = 3
/**
 * Leader balancing: every this many ticks, a leader hands each shard to its preferred voter
 * (leader-balance.ts) when that voter was heard from within an election timeout and is at most
 * leaderBalanceLagMax entries behind (RaftGroup.balanceLeadership). Spreads the leaders, and with
 * them the write load.
 */
const leaderBalanceTicks = 30
const leaderBalanceLagMax = 256
/** Inbox items taken per iteration, so a flood cannot starve the Ready half of the loop. */
const inboxItemsPerIterationMax = 16_384

type InboxItem =
  | { readonly kind: 'envelopes'; readonly envelopes: readonly PeerEnvelope[] }
  | {
      readonly kind: 'propose'
      readonly shardId: ShardId
      readonly command: Command
      readonly level: WriteLevel
      readonly deferred: Deferred<WriteAnswer>
      readonly predicted: ((index: LogIndex) => ApplyResult) | undefined
    }
  | { readonly kind: 'readIndex'; readonly shardId: ShardId; readonly deferred: Deferred<LogIndex> }
  | {
      readonly kind: 'waitApplied'
      readonly shardId: ShardId
      readonly index: LogIndex
      readonly deferred: Deferred<LogIndex>
    }
  | {
      readonly kind: 'snapshotStatus'
      readonly shardId: ShardId
      readonly peer: NodeId
      readonly ok: boolean
    }
  | { readonly kind: 'unreachable'; readonly peer: NodeId }
  | { readonly kind: 'create'; readonly spec: ReplicaSpec; readonly deferred: Deferred<void> }
  | {
      readonly kind: 'change'
      readonly shardId: ShardId
      readonly epoch: number
      readonly change: ReplicaChange
      readonly deferred: Deferred<ShardConfigView>
    }
  | {
      readonly kind: 'transfer'
      readonly shardId: ShardId
      readonly to: NodeId
      readonly deferred: Deferred<ShardConfigView>
    }
  | {
      readonly kind: 'destroy'
      readonly shardId: ShardId
      readonly epoch: number
      readonly members: readonly NodeId[]
      readonly deferred: Deferred<void>
    }
  | {
      readonly kind: 'installBegin'
      readonly shardId: ShardId
      readonly message: MsgSnap
      readonly deferred: Deferred<InstallTicket>
    }
  | {
      readonly kind: 'installEnd'
      readonly ticket: InstallTicket
      readonly installed: InstalledSnapshot
      readonly deferred: Deferred<void>
    }
  | { readonly kind: 'installAbort'; readonly ticket: InstallTicket }
  | { readonly kind: 'dropped'; readonly shardId: ShardId }
  | {
      readonly kind: 'export'
      readonly shardId: ShardId
      readonly readIndex: LogIndex
      readonly signal: AbortSignal
      readonly deferred: Deferred<ShardExport>
    }

/** One replica of this node: its record, and its group while it has one. */
interface Slot {
  record: ReplicaRecord
  /** empty, installing (frozen) and active replicas have a group; removing and tombstone do not. */
  group: RaftGroup | undefined
  replica: RaftReplica | undefined
  /** The snapshot install in progress, if any. */
  install: InstallTicket | undefined
}

/** What `status()` shows per replica (for the admin API and kvctl). */
export interface ShardView {
  readonly shardId: ShardId
  readonly kind: 'data' | 'meta'
  readonly range: HashRange
  /** The replica's lifecycle (replica-record.ts). */
  readonly state: ReplicaRecord['state']
  readonly role: string
  readonly leaderId: NodeId | null
  readonly term: number
  readonly appliedIndex: LogIndex
  readonly commitIndex: LogIndex
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
  /** Voters of the outgoing half while the configuration is joint. */
  readonly votersOutgoing: readonly NodeId[]
  /** The shard's epoch as this replica applied it (removing/tombstone: the removal's; 0 unknown). */
  readonly epoch: number
}

/** What the leader knows of a peer's replication, and of a snapshot it is sending that peer. */
export interface PeerProgressView {
  readonly nodeId: NodeId
  readonly match: LogIndex
  readonly isLearner: boolean
  readonly recentActive: boolean
  /** Bytes of a snapshot being sent to it now (0: none). */
  readonly snapshotBytesSent: number
}

/** One replica in detail (the mover polls it while a learner catches up). */
export interface ReplicaView extends ShardView {
  readonly lastIndex: LogIndex
  /** On the leader: every other member's progress. */
  readonly progress: readonly PeerProgressView[]
  /** Bytes of a snapshot being received now (0: none). */
  readonly installBytes: number
}

/**
 * A data shard's replicated state at one applied index, for a backup (exportShard): its ranges'
 * entries in key order, read from engine views taken on the loop between iterations.
 */
export interface ShardExport {
  readonly shardId: ShardId
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** The durable applied index (and its term) the views hold; >= readIndex. */
  readonly appliedIndex: LogIndex
  readonly term: number
  /** The index the ReadIndex round confirmed before the views were taken. */
  readonly readIndex: LogIndex
  readonly epoch: number
  readonly chunks: AsyncIterable<readonly Entry[]>
  /** Releases the views and the export's place (idempotent); call when done, read whole or not. */
  release(): Promise<void>
}

const shardCountKey = metaKey('shard-count')

/** The Raft side of the node for the metrics: its groups' counters and the writes they wait on. */
export interface HostRaftStats {
  readonly leaderChanges: number
  readonly proposalsCommitted: number
  readonly proposalsNotLeader: number
  readonly proposalsRefused: number
  readonly proposalsLost: number
  /** Write proposals in the log of a live group, not yet applied here. */
  readonly proposalsPending: number
  /** Groups this node leads with a voter not heard from within an election timeout. */
  readonly leadersWithUnreachableVoters: number
}

/** The host's storage writes (one per loop iteration with work) for the metrics. */
export interface HostStorageStats {
  /** Seconds per synced write (the batch and its WAL fsync), on the injected clock. */
  readonly syncSeconds: HistogramSnapshot
  /** Operations per written batch (synced or not). */
  readonly batchOps: HistogramSnapshot
  /** Key and value bytes per written batch. */
  readonly batchBytes: HistogramSnapshot
}

interface SnapshotSend {
  readonly controller: AbortController
  readonly to: NodeId
  bytes: number
}

export class NodeHost implements ReplicaLoop {
  readonly nodeId: NodeId
  private readonly slots: Map<ShardId, Slot>
  private readonly engine: Engine
  private readonly components: NodeHostComponents
  private readonly init: NodeHostInit
  private readonly clock: Clock
  private readonly log: Logger
  private readonly limits: Readonly<Limits>
  private readonly transport: PeerTransport
  private readonly onFatal: (err: unknown) => void
  private readonly tickMs: number
  private readonly throttle: RateLimiter

  // Invariant: inboxCount <= limits.hostInboxMax (envelopes count one each).
  private inbox: InboxItem[] = []
  private inboxCount = 0
  private ticksDue = 0
  private ticksSinceBalance = 0
  private wake: (() => void) | undefined
  private tickTimer: TimerHandle | undefined
  private loopDone: Promise<void> | undefined
  private stopping = false
  private failed: unknown = undefined
  private readonly stopController = new AbortController()
  /** Record changes and their follow-ups for the next batch, staged by inbox handlers. */
  private hostWrites: ((batch: ReturnType<Engine['batch']>) => void)[] = []
  private afterWrite: (() => void)[] = []
  /** Snapshot sends in flight, by `${shard}:${peer}`. */
  private readonly snapshotSends = new Map<string, SnapshotSend>()
  private readonly drops = new Map<ShardId, Promise<void>>()
  private installIds = 0
  /** Exports whose views are held (exportShard); at most limits.exportStreamsMax. */
  private exportsOpen = 0
  private readonly stats = {
    iterations: 0,
    readies: 0,
    writes: 0,
    envelopesDropped: 0,
    /** Envelopes for a shard this node does not hold, is removing or has a tombstone of. */
    envelopesForNoReplica: 0,
  }
  /** Shared by every group of this host (RaftGroupComponents.counters). */
  private readonly groupCounters = newGroupCounters()
  private readonly syncSeconds = new FixedHistogram(histogramBuckets.syncSeconds)
  private readonly batchOps = new FixedHistogram(histogramBuckets.batchOps)
  private readonly batchBytes = new FixedHistogram(histogramBuckets.batchBytes)
  /**
   * Heartbeat round trips per peer: the first heartbeat sent to a peer while none is outstanding
   * is the probe (its shard and send time); that shard's next heartbeat response from the peer
   * ends it. A probe older than an election timeout (its heartbeat or answer lost) is replaced by
   * the next heartbeat. Bounded by the peers this node's groups have as voters or learners.
   */
  private readonly rttProbes = new Map<NodeId, { readonly shardId: ShardId; readonly sentMs: number }>()
  private readonly rtts = new Map<NodeId, FixedHistogram>()

  private constructor(
    init: NodeHostInit,
    components: NodeHostComponents,
    records: readonly ReplicaRecord[],
    parts: ReadonlyMap<ShardId, GroupParts>,
  ) {
    this.nodeId = init.nodeId
    this.init = init
    this.components = components
    this.engine = components.engine
    this.clock = components.clock
    this.limits = components.limits
    this.transport = components.transport
    this.onFatal = components.onFatal
    this.tickMs = init.tickMs
    this.log = components.logger.child({ component: 'host' })
    const rate = init.snapshotBytesPerSecond ?? this.limits.snapshotBytesPerSecondDefault
    this.throttle = new RateLimiter(rate, Math.max(rate / 4, this.limits.exportChunkBytes), this.clock)
    this.slots = new Map()
    for (const record of records) {
      const p = parts.get(record.shardId)
      const slot: Slot = { record, group: undefined, replica: undefined, install: undefined }
      if (p !== undefined) this.attachGroup(slot, p)
      this.slots.set(record.shardId, slot)
    }
  }

  /**
   * Opens every replica of this node (host-open.ts): loads each one's Raft and applied state, or
   * creates the replicas of `init.bootstrap` on the first start of a new cluster; resets replicas
   * whose snapshot install a crash cut short.
   */
  static async open(init: NodeHostInit, components: NodeHostComponents): Promise<NodeHost> {
    const { records, parts } = await openHostState(init, components, shardCountKey)
    return new NodeHost(init, components, records, parts)
  }

  /** Starts the tick timer, the transport, the Ready loop and the drops of removed replicas. */
  start(): void {
    const handler: TransportHandler = {
      onEnvelopes: (envelopes) => this.enqueuePeer({ kind: 'envelopes', envelopes }, envelopes.length),
      onSnapshot: (header, chunks, signal) => this.receiveSnapshot(header, chunks, signal),
      onUnreachable: (peer) => this.enqueuePeer({ kind: 'unreachable', peer }, 1),
    }
    this.transport.start(handler)
    for (const slot of this.slots.values()) {
      // A group whose only voter is this node need not wait out an election timeout.
      const g = slot.group
      if (g !== undefined && slot.record.state === 'active') {
        const voters = g.voters()
        if (voters.length === 1 && voters[0] === this.nodeId) g.raw.campaign()
      }
      if (slot.record.state === 'removing') this.startDrop(slot)
    }
    this.scheduleTick()
    this.loopDone = this.run().catch((err: unknown) => this.fail(err))
  }

  // ---- what request handlers and the cluster read (plain field reads) ----

  /**
   * This node's replica of the data shard holding `hash` (it may not serve right now: its calls
   * then fail SHARD_MOVING); WRONG_SHARD when it holds none.
   */
  replicaForHash(hash: bigint): RaftReplica {
    for (const slot of this.slots.values()) {
      const r = slot.record
      if (r.kind === 'data' && r.hashStart <= hash && hash < r.hashEnd && slot.replica !== undefined)
        return slot.replica
    }
    throw new KvError(ErrorCode.WrongShard, 'this node holds no replica of the shard of this key')
  }

  /** This node's replica of `shardId`, if it holds one that has a group (it may not serve yet). */
  replica(shardId: ShardId): RaftReplica | undefined {
    return this.slots.get(shardId)?.replica
  }

  /** Every replica with a group. */
  get replicas(): readonly RaftReplica[] {
    const out: RaftReplica[] = []
    for (const slot of this.slots.values()) if (slot.replica !== undefined) out.push(slot.replica)
    return out
  }

  /** The replicas this node holds (empty, installing or active), as bootstrap specs. */
  get hostedShards(): readonly HostedShard[] {
    const out: HostedShard[] = []
    for (const slot of this.slots.values()) {
      if (slot.group === undefined) continue
      const r = slot.record
      out.push({
        shardId: r.shardId,
        kind: r.kind,
        hashStart: r.hashStart,
        hashEnd: r.hashEnd,
        voters: slot.group.voters(),
      })
    }
    return out
  }

  /** The shards this node leads now, with their terms, epochs and voters (the heartbeat's report). */
  leaderships(): { shardId: ShardId; term: number; epoch: number; voters: readonly NodeId[] }[] {
    const out: { shardId: ShardId; term: number; epoch: number; voters: readonly NodeId[] }[] = []
    for (const slot of this.slots.values()) {
      const g = slot.group
      if (g === undefined || g.role !== 'leader' || !g.serving) continue
      out.push({ shardId: g.shardId, term: g.term, epoch: g.epoch, voters: g.confState.voters })
    }
    return out
  }

  /** An estimate of the bytes each replica's user data takes on disk (one shard, or all). */
  async approximateBytes(): Promise<Map<ShardId, number>>
  async approximateBytes(shardId: ShardId): Promise<number>
  async approximateBytes(shardId?: ShardId): Promise<Map<ShardId, number> | number> {
    if (shardId !== undefined) {
      const g = this.slots.get(shardId)?.group
      return g === undefined ? 0 : await this.engine.approximateBytes(g.dataRange)
    }
    const out = new Map<ShardId, number>()
    for (const slot of this.slots.values())
      if (slot.group !== undefined)
        out.set(slot.record.shardId, await this.engine.approximateBytes(slot.group.dataRange))
    return out
  }

  status(): ShardView[] {
    return [...this.slots.values()].map((slot) => this.viewOf(slot))
  }

  /** One replica in detail, or undefined when this node has no record of the shard. */
  replicaView(shardId: ShardId): ReplicaView | undefined {
    const slot = this.slots.get(shardId)
    if (slot === undefined) return undefined
    const view = this.viewOf(slot)
    const g = slot.group
    const progress: PeerProgressView[] = []
    let lastIndex = 0 as LogIndex
    if (g !== undefined) {
      const st = g.raw.status()
      lastIndex = st.lastIndex
      for (const [id, p] of st.progress ?? []) {
        if (id === this.nodeId) continue
        progress.push({
          nodeId: id,
          match: p.match,
          isLearner: p.isLearner,
          recentActive: p.recentActive,
          snapshotBytesSent: this.snapshotSends.get(`${shardId}:${id}`)?.bytes ?? 0,
        })
      }
    }
    return { ...view, lastIndex, progress, installBytes: slot.install?.bytes ?? 0 }
  }

  counters(): Readonly<typeof this.stats> {
    return this.stats
  }

  /** The groups' Raft counters and the proposals waiting now (plain reads; for the metrics). */
  raftStats(): HostRaftStats {
    let pending = 0
    let unreachable = 0
    for (const g of this.liveGroups()) {
      pending += g.pendingProposals
      if (g.role === 'leader' && g.unreachableVoterCount() > 0) unreachable++
    }
    return { ...this.groupCounters, proposalsPending: pending, leadersWithUnreachableVoters: unreachable }
  }

  /** Histograms of the host's engine writes (for the metrics). */
  storageStats(): HostStorageStats {
    return {
      syncSeconds: this.syncSeconds.snapshot(),
      batchOps: this.batchOps.snapshot(),
      batchBytes: this.batchBytes.snapshot(),
    }
  }

  /** Heartbeat round trips per peer measured so far, in seconds (for the metrics). */
  peerRoundTrips(): ReadonlyMap<NodeId, HistogramSnapshot> {
    const out = new Map<NodeId, HistogramSnapshot>()
    for (const [peer, h] of this.rtts) out.set(peer, h.snapshot())
    return out
  }

  /** Stops the loop (waiters fail UNAVAILABLE; writes in flight end with an unknown outcome). */
  async close(): Promise<void> {
    if (this.stopping) return await this.loopDone
    this.stopping = true
    this.stopController.abort(new KvError(ErrorCode.Unavailable, 'node stopping'))
    this.tickTimer?.cancel()
    for (const s of this.snapshotSends.values())
      s.controller.abort(new KvError(ErrorCode.Unavailable, 'node stopping'))
    this.wake?.()
    await this.loopDone
    const err = new KvError(ErrorCode.Unavailable, 'node is stopping')
    this.failInbox(err)
    for (const slot of this.slots.values()) slot.group?.failAll(err)
    for (const slot of this.slots.values()) await slot.replica?.close()
    await Promise.allSettled([...this.drops.values()])
  }

  // ---- the mover's commands (cluster/, through the replica service) ----

  /**
   * Creates an empty replica of `spec` (idempotent: an existing one of the same range is fine).
   * Refused with STALE_EPOCH over a tombstone of a removal after `spec.epoch` (the request was
   * planned before this node left), SHARD_BUSY while the old replica's data is still being dropped.
   */
  async createReplica(spec: ReplicaSpec): Promise<void> {
    const problem = replicaSpecError(spec)
    if (problem !== undefined)
      throw new KvError(ErrorCode.InvalidArgument, problem, { details: { field: 'spec' } })
    const deferred = new Deferred<void>()
    this.enqueueRequest({ kind: 'create', spec, deferred })
    await deferred.promise
  }

  /** Carries out `change` as the shard's leader; settles with the configuration once applied here. */
  async changeReplicas(
    shardId: ShardId,
    epoch: number,
    change: ReplicaChange,
    signal: AbortSignal,
  ): Promise<ShardConfigView> {
    const deferred = new Deferred<ShardConfigView>()
    this.enqueueRequest({ kind: 'change', shardId, epoch, change, deferred })
    return await until(deferred, signal)
  }

  /** Moves the shard's leadership to `to`; settles once `to` leads (as seen here). */
  async transferLeader(shardId: ShardId, to: NodeId, signal: AbortSignal): Promise<ShardConfigView> {
    const deferred = new Deferred<ShardConfigView>()
    this.enqueueRequest({ kind: 'transfer', shardId, to, deferred })
    return await until(deferred, signal)
  }

  /**
   * Removes this node's replica of `shardId`, given the shard's configuration at `epoch` without
   * this node (its removal is committed). Idempotent; refused with MOVE_REFUSED when `members`
   * has this node, STALE_EPOCH when this replica applied a later configuration that has it.
   */
  async destroyReplica(shardId: ShardId, epoch: number, members: readonly NodeId[]): Promise<void> {
    const deferred = new Deferred<void>()
    this.enqueueRequest({ kind: 'destroy', shardId, epoch, members, deferred })
    await deferred.promise
  }

  /**
   * The state of data shard `shardId` for a backup, as its leader: a ReadIndex round first (so
   * every write acknowledged before the call is in it), then views of the shard's ranges at the
   * durable applied index, taken on the loop between iterations (as a snapshot's are). NOT_LEADER
   * on a follower, OVERLOADED beyond limits.exportStreamsMax exports open on this node.
   */
  async exportShard(shardId: ShardId, signal: AbortSignal): Promise<ShardExport> {
    const kind = this.slots.get(shardId)?.record.kind
    if (kind === 'meta')
      throw new KvError(
        ErrorCode.InvalidArgument,
        'the meta shard is not exported (a backup carries the shard map)',
        {
          details: { shardId, field: 'shard_id' },
        },
      )
    if (this.exportsOpen >= this.limits.exportStreamsMax)
      throw new KvError(ErrorCode.Overloaded, `node ${this.nodeId} is exporting as many shards as it may`, {
        details: { limit: this.limits.exportStreamsMax },
      })
    const read = new Deferred<LogIndex>()
    this.enqueueRequest({ kind: 'readIndex', shardId, deferred: read })
    const readIndex = await until(read, signal)
    const deferred = new Deferred<ShardExport>()
    this.enqueueRequest({ kind: 'export', shardId, readIndex, signal, deferred })
    return await until(deferred, signal)
  }

  // ---- ReplicaLoop: the requests of this node's replicas ----

  propose(
    shardId: ShardId,
    command: Command,
    level: WriteLevel,
    deferred: Deferred<WriteAnswer>,
    predicted: ((index: LogIndex) => ApplyResult) | undefined,
  ): void {
    this.enqueueRequest({ kind: 'propose', shardId, command, level, deferred, predicted })
  }

  readIndex(shardId: ShardId, deferred: Deferred<LogIndex>): void {
    this.enqueueRequest({ kind: 'readIndex', shardId, deferred })
  }

  waitApplied(shardId: ShardId, index: LogIndex, deferred: Deferred<LogIndex>): void {
    this.enqueueRequest({ kind: 'waitApplied', shardId, index, deferred })
  }

  // ---- inbox ----

  private enqueueRequest(item: InboxItem): void {
    if (this.failed !== undefined)
      throw new KvError(ErrorCode.Internal, 'node stopped after a storage failure')
    if (this.stopping) throw new KvError(ErrorCode.Unavailable, 'node is stopping')
    if (this.inboxCount >= this.limits.hostInboxMax)
      throw new KvError(ErrorCode.Overloaded, 'node is overloaded: its Raft inbox is full', {
        details: { limit: this.limits.hostInboxMax },
      })
    this.push(item, 1)
  }

  private enqueuePeer(item: InboxItem, count: number): void {
    if (this.stopping || this.failed !== undefined) return
    if (this.inboxCount + count > this.limits.hostInboxMax) {
      this.stats.envelopesDropped += count
      return
    }
    this.push(item, count)
  }

  /**
   * The host's own follow-ups (an install cut short, a drop finished): never refused for a full
   * inbox, since losing one would strand a replica; a handful per replica at most.
   */
  private enqueueControl(item: InboxItem): void {
    if (this.stopping || this.failed !== undefined) return
    this.push(item, 1)
  }

  /** Answers `err` to every request still in the inbox once the loop has stopped (none waits for ever). */
  private failInbox(err: KvError): void {
    for (const item of this.inbox.splice(0)) if ('deferred' in item) item.deferred.reject(err)
    this.inboxCount = 0
  }

  private push(item: InboxItem, count: number): void {
    this.inbox.push(item)
    this.inboxCount += count
    this.wake?.()
  }

  private scheduleTick(): void {
    this.tickTimer = this.clock.setTimer(this.tickMs, () => {
      this.ticksDue++
      this.wake?.()
      if (!this.stopping) this.scheduleTick()
    })
  }

  // ---- the Ready loop ----

  private async run(): Promise<void> {
    while (!this.stopping) {
      if (
        this.inbox.length === 0 &&
        this.ticksDue === 0 &&
        this.hostWrites.length === 0 &&
        !this.anyReady()
      ) {
        await new Promise<void>((resolve) => {
          this.wake = resolve
        })
        this.wake = undefined
        continue
      }
      this.runInbox()
      // The writes of this turn become entries (grouped per client), then the reads' rounds start.
      for (const g of this.liveGroups()) g.flushWrites()
      for (const g of this.liveGroups()) g.flushReads()
      const ticks = Math.min(this.ticksDue, ticksPerIterationMax)
      this.ticksDue = 0
      for (let t = 0; t < ticks; t++) for (const g of this.liveGroups()) g.tick()
      this.ticksSinceBalance += ticks
      if (this.ticksSinceBalance >= leaderBalanceTicks) {
        this.ticksSinceBalance = 0
        this.balanceLeaders()
      }
      await this.handleReadies()
      this.retireRemoved()
    }
  }

  /** Groups that run (tick, step, Ready): every group but those frozen by an install. */
  private *liveGroups(): Generator<RaftGroup> {
    for (const slot of this.slots.values())
      if (slot.group !== undefined && slot.install === undefined) yield slot.group
  }

  private anyReady(): boolean {
    for (const g of this.liveGroups()) if (g.hasReady()) return true
    return false
  }

  private balanceLeaders(): void {
    for (const g of this.liveGroups()) {
      const preferred = preferredLeaderOf(g.shardId, g.confState)
      if (preferred !== undefined) g.balanceLeadership(preferred, leaderBalanceLagMax)
    }
  }

  private runInbox(): void {
    const items = this.inbox.splice(0, inboxItemsPerIterationMax)
    for (const item of items) {
      this.inboxCount -= item.kind === 'envelopes' ? item.envelopes.length : 1
      this.runItem(item)
    }
  }

  private runItem(item: InboxItem): void {
    switch (item.kind) {
      case 'envelopes':
        for (const env of item.envelopes) this.deliver(env)
        return
      case 'propose': {
        const g = this.servingGroup(item.shardId, item.deferred)
        g?.proposeWrite(item.command, item.level, item.deferred, item.predicted)
        return
      }
      case 'readIndex':
        this.servingGroup(item.shardId, item.deferred)?.startReadIndex(item.deferred)
        return
      case 'waitApplied':
        this.servingGroup(item.shardId, item.deferred)?.waitApplied(item.index, item.deferred)
        return
      case 'snapshotStatus': {
        const slot = this.slots.get(item.shardId)
        if (slot?.install === undefined) slot?.group?.raw.reportSnapshot(item.peer, item.ok)
        return
      }
      case 'unreachable':
        for (const g of this.liveGroups()) g.raw.reportUnreachable(item.peer)
        return
      case 'create':
        return this.runCreate(item.spec, item.deferred)
      case 'change':
        this.servingGroup(item.shardId, item.deferred)?.proposeChange(item.change, item.epoch, item.deferred)
        return
      case 'transfer':
        this.servingGroup(item.shardId, item.deferred)?.startTransfer(item.to, item.deferred)
        return
      case 'destroy':
        return this.runDestroy(item.shardId, item.epoch, item.members, item.deferred)
      case 'installBegin':
        return this.runInstallBegin(item.shardId, item.message, item.deferred)
      case 'installEnd':
        return this.runInstallEnd(item.ticket, item.installed, item.deferred)
      case 'installAbort':
        return this.runInstallAbort(item.ticket)
      case 'dropped':
        return this.runDropped(item.shardId)
      case 'export':
        return this.runExport(item.shardId, item.readIndex, item.signal, item.deferred)
    }
  }

  /** The group of `shardId` if it serves; else `deferred` fails (NOT_LEADER names no leader). */
  private servingGroup<T>(shardId: ShardId, deferred: Deferred<T>): RaftGroup | undefined {
    const slot = this.slots.get(shardId)
    const g = slot?.group
    if (g !== undefined && slot?.install === undefined && g.serving) return g
    deferred.reject(
      g !== undefined
        ? new KvError(
            ErrorCode.ShardMoving,
            `node ${this.nodeId}: the replica of shard ${shardId} does not serve now`,
            {
              details: { shardId },
            },
          )
        : new KvError(ErrorCode.WrongShard, `node ${this.nodeId} holds no replica of shard ${shardId}`, {
            details: { shardId },
          }),
    )
    return undefined
  }

  private deliver(env: PeerEnvelope): void {
    if (env.to !== this.nodeId) return
    const slot = this.slots.get(env.shardId)
    const g = slot?.group
    if (g === undefined || slot?.install !== undefined) {
      // No replica here (never created, removing, tombstone), or frozen by an install: never
      // resurrected or woken by a message.
      this.stats.envelopesForNoReplica++
      return
    }
    let payload
    try {
      payload = decodePeerPayload(env.payload)
    } catch (err) {
      this.log.warn(
        { shard: env.shardId, from: env.from, err: (err as Error).message },
        'malformed peer payload dropped',
      )
      return
    }
    if (payload.kind === 'applied') g.onAppliedReport(env.from, payload.index)
    else if (payload.message.from === env.from && payload.message.to === this.nodeId) {
      if (payload.message.type === 'MsgHeartbeatResp') this.endRttProbe(env.shardId, env.from)
      g.step(payload.message)
    }
  }

  private startRttProbe(shardId: ShardId, to: NodeId): void {
    const now = this.clock.nowMs()
    const probe = this.rttProbes.get(to)
    if (probe !== undefined && now - probe.sentMs <= electionTicks * this.tickMs) return
    this.rttProbes.set(to, { shardId, sentMs: now })
  }

  private endRttProbe(shardId: ShardId, from: NodeId): void {
    const probe = this.rttProbes.get(from)
    if (probe === undefined || probe.shardId !== shardId) return
    this.rttProbes.delete(from)
    let h = this.rtts.get(from)
    if (h === undefined) {
      h = new FixedHistogram(histogramBuckets.peerRttSeconds)
      this.rtts.set(from, h)
    }
    h.observe((this.clock.nowMs() - probe.sentMs) / 1000)
  }

  private async handleReadies(): Promise<void> {
    const work: { readonly group: RaftGroup; readonly rd: Ready }[] = []
    for (const group of this.liveGroups()) if (group.hasReady()) work.push({ group, rd: group.ready() })
    this.stats.iterations++
    const hostWrites = this.hostWrites
    const afterWrite = this.afterWrite
    this.hostWrites = []
    this.afterWrite = []
    if (work.length === 0 && hostWrites.length === 0) return
    this.stats.readies += work.length
    for (const { group, rd } of work) this.send(group, rd.messages)

    const keys: Uint8Array[] = []
    for (const { group, rd } of work) keys.push(...group.readKeys(rd))
    const unique = dedupeKeys(keys)
    const values = unique.length === 0 ? [] : await this.engine.multiGet(unique)
    const batch = this.engine.batch()
    const overlay = new ApplyOverlay(
      batch,
      unique.map((k, i) => [k, values[i] ?? null] as const),
    )
    const staged: StagedReady[] = work.map(({ group, rd }) => group.stage(rd, batch, overlay))
    this.prefetchAppended(work)
    for (const write of hostWrites) write(batch)
    if (batch.length > 0) {
      const sync = hostWrites.length > 0 || work.some(({ rd }) => rd.mustSync || rd.snapshot !== null)
      this.batchOps.observe(batch.length)
      this.batchBytes.observe(batch.byteLength)
      const startedMs = this.clock.nowMs()
      await this.engine.write(batch, { sync })
      if (sync) this.syncSeconds.observe((this.clock.nowMs() - startedMs) / 1000)
      this.stats.writes++
    }
    for (const [i, { group, rd }] of work.entries()) {
      group.commit(rd, staged[i]!)
      this.send(group, rd.messagesAfterPersist)
    }
    for (const after of afterWrite) after()
    this.reportApplied()
  }

  /**
   * Reads the versions of the keys the Readies' new entries will write, in one read for every
   * group, while the entries replicate (not awaited: a read that fails or comes late only means
   * the apply reads them itself).
   */
  private prefetchAppended(work: readonly { readonly group: RaftGroup; readonly rd: Ready }[]): void {
    const asks: { group: RaftGroup; machine: KvStateMachine; keys: Uint8Array[]; token: number }[] = []
    for (const { group, rd } of work) {
      const ask = group.appendedKeys(rd)
      if (ask !== null) asks.push({ group, machine: group.stateMachine, ...ask })
    }
    if (asks.length === 0) return
    this.engine.multiGet(asks.flatMap((a) => a.keys)).then(
      (values) => {
        let at = 0
        for (const a of asks) {
          a.group.learnAppended(a.token, a.keys, values.slice(at, at + a.keys.length), a.machine)
          at += a.keys.length
        }
      },
      () => undefined,
    )
  }

  /** Replicas whose removal they applied themselves become `removing` (written next iteration). */
  private retireRemoved(): void {
    for (const slot of this.slots.values()) {
      const g = slot.group
      if (g === undefined || slot.record.state !== 'active' || !g.removed) continue
      this.log.info(
        { shard: slot.record.shardId, epoch: g.epoch },
        'removed from the shard: dropping the replica',
      )
      this.beginRemoving(slot, g.epoch)
    }
  }

  /**
   * Tells the other voters of each group how far this node has applied (for `all` writes). Every
   * voter, not only the leader it knows: a leader that loses its leadership with `all` writes
   * waiting still learns when they applied everywhere (else they would wait out their deadline).
   */
  private reportApplied(): void {
    for (const g of this.liveGroups()) {
      if (g.durableApplied <= g.reportedApplied) continue
      g.reportedApplied = g.durableApplied
      const payload = encodeAppliedPayload(g.durableApplied)
      for (const to of g.voters())
        if (to !== this.nodeId) this.transport.send({ shardId: g.shardId, from: this.nodeId, to, payload })
    }
  }

  private send(group: RaftGroup, messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.type === 'MsgSnap') {
        this.sendSnapshot(group, m)
        continue
      }
      if (m.type === 'MsgHeartbeat') this.startRttProbe(group.shardId, m.to)
      this.transport.send({
        shardId: group.shardId,
        from: this.nodeId,
        to: m.to,
        payload: encodeRaftPayload(m),
      })
    }
  }

  // ---- records and lifecycle ----

  /** Stages `record` into the next batch (synced) and runs `then` once it is durable. */
  private writeRecord(record: ReplicaRecord, then?: () => void): void {
    this.hostWrites.push((batch) => batch.put(replicaRecordKey(record.shardId), encodeReplicaRecord(record)))
    if (then !== undefined) this.afterWrite.push(then)
    this.wake?.()
  }

  private attachGroup(slot: Slot, parts: GroupParts): void {
    const r = slot.record
    const group = new RaftGroup(
      {
        nodeId: this.nodeId,
        shardId: r.shardId,
        hashStart: r.hashStart,
        hashEnd: r.hashEnd,
        ranges: replicatedRanges(r),
        tickMs: this.tickMs,
        raft: {
          electionTicks,
          heartbeatTicks,
          preVote: true,
          checkQuorum: true,
          readOnly: this.init.leaseReads ? ReadOnlyOption.LeaseBased : ReadOnlyOption.Safe,
          awaitingSnapshot: r.state === 'empty',
        },
      },
      {
        store: parts.store,
        machine: parts.machine,
        descriptor: parts.descriptor,
        clock: this.components.clock,
        random: this.components.random,
        logger: this.components.logger,
        limits: this.limits,
        counters: this.groupCounters,
      },
    )
    slot.group = group
    slot.replica = new RaftReplica(group, {
      engine: this.engine,
      clock: this.clock,
      limits: this.limits,
      loop: this,
    })
  }

  private runCreate(spec: ReplicaSpec, deferred: Deferred<void>): void {
    const slot = this.slots.get(spec.shardId)
    if (slot !== undefined) {
      const r = slot.record
      const same = r.kind === spec.kind && r.hashStart === spec.hashStart && r.hashEnd === spec.hashEnd
      switch (r.state) {
        case 'empty':
        case 'installing':
        case 'active':
          if (same) return deferred.resolve()
          return deferred.reject(
            new KvError(ErrorCode.InvalidArgument, `shard ${spec.shardId} is held here with another range`, {
              details: { shardId: spec.shardId, field: 'spec' },
            }),
          )
        case 'removing':
          return deferred.reject(
            new KvError(
              ErrorCode.ShardBusy,
              `node ${this.nodeId} is still dropping its old replica of shard ${spec.shardId}`,
              { details: { shardId: spec.shardId } },
            ),
          )
        case 'tombstone':
          // removedEpoch is the first epoch whose configuration lacks this node: a request planned
          // at it or later knows the node left (a move back); one planned before does not (a stale
          // replay of an old move).
          if (spec.epoch < r.removedEpoch)
            return deferred.reject(
              new KvError(
                ErrorCode.StaleEpoch,
                `node ${this.nodeId} left shard ${spec.shardId} at epoch ${r.removedEpoch}; the request is of epoch ${spec.epoch}`,
                { details: { shardId: spec.shardId, shardMapEpoch: r.removedEpoch } },
              ),
            )
      }
    }
    const record: ReplicaRecord = {
      shardId: spec.shardId,
      kind: spec.kind,
      hashStart: spec.hashStart,
      hashEnd: spec.hashEnd,
      state: 'empty',
      removedEpoch: 0,
    }
    this.writeRecord(record, () => {
      const created: Slot = { record, group: undefined, replica: undefined, install: undefined }
      this.attachGroup(created, emptyParts(record, this.components))
      this.slots.set(record.shardId, created)
      this.log.info({ shard: record.shardId, epoch: spec.epoch }, 'replica created: waiting for a snapshot')
      deferred.resolve()
    })
  }

  private runDestroy(
    shardId: ShardId,
    epoch: number,
    members: readonly NodeId[],
    deferred: Deferred<void>,
  ): void {
    if (members.includes(this.nodeId))
      return deferred.reject(
        new KvError(ErrorCode.MoveRefused, `node ${this.nodeId} is still a member of shard ${shardId}`, {
          details: { shardId, field: 'members' },
        }),
      )
    const slot = this.slots.get(shardId)
    if (slot === undefined || slot.record.state === 'removing' || slot.record.state === 'tombstone')
      return deferred.resolve()
    const g = slot.group
    if (
      g !== undefined &&
      slot.record.state === 'active' &&
      g.epoch >= epoch &&
      membersOf(g.confState).has(this.nodeId)
    )
      return deferred.reject(
        new KvError(
          ErrorCode.StaleEpoch,
          `node ${this.nodeId} applied epoch ${g.epoch} of shard ${shardId}, which has it; the request is of epoch ${epoch}`,
          { details: { shardId, shardMapEpoch: g.epoch } },
        ),
      )
    this.log.info({ shard: shardId, epoch }, 'removal confirmed by the mover: dropping the replica')
    this.beginRemoving(slot, epoch)
    this.afterWrite.push(() => deferred.resolve())
  }

  /**
   * Stops the replica's group and records it `removing`; the drop starts once that is durable and
   * an install in progress (which is given up) has stopped writing into the ranges.
   */
  private beginRemoving(slot: Slot, epoch: number): void {
    const install = slot.install
    slot.install = undefined
    install?.cancel.abort(new KvError(ErrorCode.WrongShard, 'the replica is being removed'))
    slot.group?.retire(
      new KvError(ErrorCode.WrongShard, `node ${this.nodeId} no longer holds shard ${slot.record.shardId}`, {
        details: { shardId: slot.record.shardId },
      }),
    )
    slot.group = undefined
    slot.replica = undefined
    slot.record = {
      ...slot.record,
      state: 'removing',
      removedEpoch: Math.max(epoch, slot.record.removedEpoch),
    }
    this.writeRecord(slot.record, () => this.startDrop(slot))
  }

  private startDrop(slot: Slot): void {
    const shardId = slot.record.shardId
    if (this.drops.has(shardId)) return
    const drop = dropReplicaData(slot.record, {
      engine: this.engine,
      clock: this.clock,
      chunkKeys: this.limits.replicaDropChunkKeys,
      pauseMs: this.limits.replicaDropPauseMs,
      signal: this.stopController.signal,
    }).then(
      () => this.enqueueControl({ kind: 'dropped', shardId }),
      (err: unknown) => {
        if (!this.stopping) this.log.warn({ shard: shardId, err }, 'dropping a removed replica failed')
      },
    )
    this.drops.set(
      shardId,
      drop.finally(() => this.drops.delete(shardId)),
    )
  }

  private runDropped(shardId: ShardId): void {
    const slot = this.slots.get(shardId)
    if (slot === undefined || slot.record.state !== 'removing') return
    slot.record = { ...slot.record, state: 'tombstone' }
    this.writeRecord(slot.record, () =>
      this.log.info({ shard: shardId, epoch: slot.record.removedEpoch }, 'replica dropped: tombstone kept'),
    )
  }

  private runExport(
    shardId: ShardId,
    readIndex: LogIndex,
    signal: AbortSignal,
    deferred: Deferred<ShardExport>,
  ): void {
    if (deferred.isSettled) return // the caller gave up (its signal): take no views
    const g = this.servingGroup(shardId, deferred)
    if (g === undefined) return
    const record = this.slots.get(shardId)!.record
    if (g.role !== 'leader') return deferred.reject(g.notLeader())
    if (this.exportsOpen >= this.limits.exportStreamsMax)
      return deferred.reject(
        new KvError(ErrorCode.Overloaded, `node ${this.nodeId} is exporting as many shards as it may`, {
          details: { limit: this.limits.exportStreamsMax },
        }),
      )
    const point = g.snapshotPoint()
    if (point === null)
      return deferred.reject(
        new KvError(
          ErrorCode.Unavailable,
          `shard ${shardId}: the term of the applied index is not known yet`,
          {
            details: { shardId },
          },
        ),
      )
    // Invariant: the read index was applied and durable before this item ran (readIndex settles
    // after waitApplied), and durable only grows.
    assert(point.meta.index >= readIndex, `shard ${shardId}: export below its read index`)
    // The views are taken now, between iterations: they hold exactly the durable applied state.
    const iterators = point.ranges.map((range) =>
      this.engine.exportRange(range, { chunkBytes: this.limits.exportChunkBytes, signal }),
    )
    this.exportsOpen++
    let released = false
    const release = async (): Promise<void> => {
      if (released) return
      released = true
      this.exportsOpen--
      await Promise.allSettled(iterators.map((it) => it.return?.()))
    }
    async function* chunks(): AsyncGenerator<readonly Entry[]> {
      for (const it of iterators) for await (const chunk of it) yield chunk
    }
    deferred.resolve({
      shardId,
      hashStart: record.hashStart,
      hashEnd: record.hashEnd,
      appliedIndex: point.meta.index,
      term: point.meta.term,
      readIndex,
      epoch: g.epoch,
      chunks: chunks(),
      release,
    })
  }

  // ---- snapshots ----

  private sendSnapshot(group: RaftGroup, m: MsgSnap): void {
    const key = `${group.shardId}:${m.to}`
    if (this.snapshotSends.has(key)) return
    const point = group.snapshotPoint()
    if (point === null) {
      group.raw.reportSnapshot(m.to, false)
      return
    }
    const message: MsgSnap = { ...m, snapshot: { meta: point.meta, data: new Uint8Array(0) } }
    const controller = new AbortController()
    const send: SnapshotSend = { controller, to: m.to, bytes: 0 }
    // The views are taken now: no write is in flight between iterations, so they hold exactly the
    // durable applied state that point.meta describes.
    const frames = snapshotFrames(this.engine, message, point.ranges, {
      throttle: this.throttle,
      signal: controller.signal,
      onBytes: (n) => {
        send.bytes += n
      },
    })
    const timer = this.clock.setTimer(this.limits.snapshotSendMsMax, () =>
      controller.abort(new KvError(ErrorCode.DeadlineExceeded, 'snapshot send took too long')),
    )
    this.snapshotSends.set(key, send)
    const header: SnapshotHeader = {
      shardId: group.shardId,
      from: this.nodeId,
      to: m.to,
      index: point.meta.index,
      term: point.meta.term,
    }
    this.log.info({ shard: group.shardId, to: m.to, index: point.meta.index }, 'sending snapshot')
    const finish = (ok: boolean, err?: unknown): void => {
      timer.cancel()
      this.snapshotSends.delete(key)
      if (!ok)
        this.log.warn(
          { shard: group.shardId, to: m.to, err: (err as Error | undefined)?.message },
          'snapshot send failed',
        )
      else
        this.log.info(
          { shard: group.shardId, to: m.to, index: point.meta.index, bytes: send.bytes },
          'snapshot sent',
        )
      this.enqueuePeer({ kind: 'snapshotStatus', shardId: group.shardId, peer: m.to, ok }, 1)
      void frames.release()
    }
    this.transport.sendSnapshot(header, frames, controller.signal).then(
      () => finish(true),
      (err: unknown) => finish(false, err),
    )
  }

  private receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    const port: InstallPort = {
      nodeId: this.nodeId,
      engine: this.engine,
      clearChunkKeys: this.limits.replicaDropChunkKeys,
      frameBytesMax: this.limits.snapshotChunkBytes + this.limits.exportChunkBytes + this.limits.keyBytesMax,
      begin: (shardId, message) => {
        const deferred = new Deferred<InstallTicket>()
        this.enqueueRequest({ kind: 'installBegin', shardId, message, deferred })
        return deferred.promise
      },
      load: (ticket) => this.loadInstalled(ticket),
      end: (ticket, installed) => {
        const deferred = new Deferred<void>()
        this.enqueueControl({ kind: 'installEnd', ticket, installed, deferred })
        return deferred.promise
      },
      abort: (ticket, err) => {
        this.log.warn(
          { shard: ticket.shardId, from: ticket.from, err: (err as Error).message },
          'snapshot install cut short',
        )
        this.enqueueControl({ kind: 'installAbort', ticket })
      },
    }
    return receiveSnapshotInPlace(port, header, chunks, signal)
  }

  private runInstallBegin(shardId: ShardId, message: MsgSnap, deferred: Deferred<InstallTicket>): void {
    const slot = this.slots.get(shardId)
    const g = slot?.group
    const refuse = (why: string, code: ErrorCode = ErrorCode.InvalidArgument): void =>
      deferred.reject(
        new KvError(code, `node ${this.nodeId} refuses a snapshot of shard ${shardId}: ${why}`, {
          details: { shardId },
        }),
      )
    if (slot === undefined || g === undefined)
      return refuse('it holds no replica of the shard', ErrorCode.WrongShard)
    if (slot.install !== undefined) return refuse('another snapshot is being installed', ErrorCode.ShardBusy)
    if (slot.record.state !== 'empty' && slot.record.state !== 'active')
      return refuse(`the replica is ${slot.record.state}`)
    if (message.term < g.term) return refuse(`the snapshot's term ${message.term} is stale (term ${g.term})`)
    // What Raft would refuse to step at the end is refused before anything is written.
    const refusal = g.raw.refusal(message)
    if (refusal !== null) return refuse(`Raft refuses it (${refusal})`)
    if (!g.wouldRestore(message.snapshot.meta)) return refuse('it is not newer than what the replica has')
    let finish!: () => void
    const finished = new Promise<void>((resolve) => (finish = resolve))
    const ticket: InstallTicket = {
      shardId,
      from: message.from,
      id: ++this.installIds,
      message,
      ranges: replicatedRanges(slot.record),
      bytes: 0,
      cancel: new AbortController(),
      finished,
      finish,
    }
    slot.install = ticket
    g.freeze()
    slot.record = { ...slot.record, state: 'installing' }
    this.log.info(
      { shard: shardId, from: message.from, index: message.snapshot.meta.index },
      'installing snapshot',
    )
    this.writeRecord(slot.record, () => deferred.resolve(ticket))
  }

  /** The state machine and descriptor of a snapshot written in place (outside the loop: it reads). */
  private async loadInstalled(ticket: InstallTicket): Promise<InstalledSnapshot> {
    const slot = this.slots.get(ticket.shardId)
    assert(slot !== undefined, 'install of an unknown replica')
    const meta = ticket.message.snapshot.meta
    const { machine, descriptor } = await loadMachineAt(this.engine, slot.record, meta.index, this.components)
    return { meta, machine, descriptor }
  }

  private runInstallEnd(ticket: InstallTicket, installed: InstalledSnapshot, deferred: Deferred<void>): void {
    const slot = this.slots.get(ticket.shardId)
    const g = slot?.group
    if (slot === undefined || g === undefined || slot.install !== ticket)
      return deferred.reject(new KvError(ErrorCode.Unavailable, 'the install was abandoned'))
    slot.install = undefined
    g.setPendingInstall(installed)
    g.step(ticket.message)
    // Frozen since the install began, nothing changed, so the core restores it now; the Ready of
    // this same iteration writes the log, configuration and applied index with the record.
    assert(g.raw.status().commit >= installed.meta.index, `shard ${ticket.shardId}: snapshot not restored`)
    slot.record = { ...slot.record, state: 'active' }
    this.writeRecord(slot.record, () => {
      // Serves only once that batch is written: the snapshot's data is in place already, and a read
      // before the applied index that goes with it would name the replica's old state.
      const now = this.slots.get(ticket.shardId)
      if (now?.group === g && now.install === undefined && now.record.state === 'active') g.thaw()
      this.log.info(
        { shard: ticket.shardId, index: installed.meta.index, bytes: ticket.bytes },
        'snapshot installed',
      )
      deferred.resolve()
    })
  }

  /**
   * An install cut short: the ranges hold garbage, so the replica forgets its log (keeping its
   * term and vote) and waits, fenced from voting, for a new snapshot. The ticket stays on the slot
   * until the reset is written: the old group stays frozen out of the loop (no tick, step or
   * Ready of its old log in the batch that forgets that log), and no new install starts meanwhile.
   */
  private runInstallAbort(ticket: InstallTicket): void {
    const slot = this.slots.get(ticket.shardId)
    const g = slot?.group
    if (slot === undefined || g === undefined || slot.install !== ticket) return
    const store = g.logStore
    const conf = g.confState
    slot.record = { ...slot.record, state: 'empty' }
    this.hostWrites.push((batch) => {
      store.stageReset(batch, conf)
      batch.del(raftAppliedIndexKey(ticket.shardId))
    })
    this.writeRecord(slot.record, () => {
      // Removed meanwhile (beginRemoving took the ticket): the drop owns the slot now.
      if (slot.install !== ticket) return
      slot.install = undefined
      store.commitReset(conf)
      g.retire(new KvError(ErrorCode.ShardMoving, `the replica of shard ${ticket.shardId} is being reset`))
      this.attachGroup(slot, {
        store,
        machine: newMachine(slot.record, 0 as LogIndex, [], this.components),
        descriptor: firstDescriptor,
      })
      this.log.info({ shard: ticket.shardId }, 'replica reset: waiting for a new snapshot')
    })
  }

  private fail(err: unknown): void {
    if (this.failed !== undefined) return
    this.failed = err
    this.stopping = true
    this.stopController.abort(err)
    this.tickTimer?.cancel()
    this.log.fatal({ err }, 'node loop failed: stopping')
    const error = new KvError(ErrorCode.Internal, 'node stopped after a failure', { cause: err })
    this.failInbox(error)
    for (const slot of this.slots.values()) slot.group?.failAll(error)
    this.onFatal(err)
    if (err instanceof AssertionError)
      queueMicrotask(() => {
        throw err
      })
  }

  private viewOf(slot: Slot): ShardView {
    const r = slot.record
    const g = slot.group
    const cs: ConfState = g?.confState ?? emptyConfState
    return {
      shardId: r.shardId,
      kind: r.kind,
      range: { start: r.hashStart, end: r.hashEnd },
      state: r.state,
      role: g === undefined ? r.state : r.state === 'active' ? g.role : r.state,
      leaderId: g?.leaderId ?? null,
      term: g?.term ?? 0,
      appliedIndex: g?.durableApplied ?? (0 as LogIndex),
      commitIndex: g?.commitIndex ?? (0 as LogIndex),
      voters: [...cs.voters],
      learners: [...cs.learners],
      votersOutgoing: [...cs.votersOutgoing],
      epoch: g !== undefined && r.state === 'active' ? g.epoch : r.removedEpoch,
    }
  }
}

/** The deferred's value, or the signal's reason if it fires first. */
async function until<T>(d: Deferred<T>, signal: AbortSignal): Promise<T> {
  const onAbort = (): void => d.reject(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await d.promise
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** One copy of each key (the same key may be read by several commands of the batch). */
function dedupeKeys(keys: readonly Uint8Array[]): Uint8Array[] {
  const byHex = new Map<string, Uint8Array>()
  for (const k of keys) byHex.set(bytesKey(k), k)
  return [...byHex.values()]
}
