/**
 * RaftGroup: this node's replica of one shard as a member of the shard's Raft group. It owns the
 * group's RawNode, log store and KV state machine, and the waiters of the requests in flight.
 *
 * Only the node's Ready loop calls the methods below `// ---- loop side ----` (the RawNode is not
 * re-entrant); request handlers reach them through the host's bounded inbox (RaftReplica). The
 * loop drives one iteration as:
 *
 *   step/tick/requests  ->  flushWrites() (the turn's writes become entries: one client's writes to
 *   the shard share one entry, commands.ts encodeEntry)  ->  ready()  ->  send rd.messages  ->  readKeys(rd) (prefetched by the host
 *   for every group at once)  ->  stage(rd, batch)  ->  ONE engine write for all groups  ->
 *   commit(rd)  ->  send rd.messagesAfterPersist
 *
 * stage() writes the snapshot, the entries and the hard state into the node's batch and applies
 * the committed entries into the same batch (the batch is atomic, so the data and the applied
 * index always agree after a crash). commit() runs once the batch is durable: only then are
 * answers given, receipts issued (`durableApplied`) and the core advanced.
 *
 * Write levels: `majority` answers when the entry is applied here (the leader) after commit;
 * `leader` answers once the entry is durable on this node alone (its result is what the leader's
 * state predicts; a compare-and-set needs a quorum, so it is refused at this level); `all`
 * answers once every voter reports it applied the entry (peers report their applied index after
 * each apply), and is refused at once while a voter has not been heard from within an election
 * timeout.
 *
 * Staleness (the receipt's upper bound on how far behind this answer may be): on the leader, the
 * time since a quorum (itself included) was last heard from; on a follower, the time since the
 * leader's last message whose commit index this replica has applied.
 */
import {
  ErrorCode,
  KvError,
  assert,
  limits,
  type Clock,
  type Limits,
  type LogIndex,
  type Logger,
  type NodeId,
  type Random,
  type ShardId,
  type Term,
} from '../common/index.ts'
import {
  EntryType,
  RawNode,
  confStateAfter,
  type ConfState,
  type Entry,
  type LogStorage,
  type Message,
  type RaftConfig,
  type Ready,
  type SnapshotMeta,
} from '../raft/index.ts'
import {
  dataRangeForHashRange,
  raftAppliedIndexKey,
  shardDescriptorKey,
  bytesKey,
  type KeyRange,
  type WriteBatch,
} from '../storage/index.ts'
import type { Receipt, ReadLevel, ReplicaRole, WriteLevel } from './api.ts'
import { approxCommandBytes, decodeEntry, encodeEntry, groupable, type Command } from './commands.ts'
import type { ApplyResult } from './dedup.ts'
import { encodeDescriptor, type ShardDescriptorRecord } from './descriptor.ts'
import { changeDone, isJointConf, membersOf, planConfChange, type ReplicaChange } from './replica-change.ts'
import { resultOfOutcome } from './replica-common.ts'
import { acceptableCommands } from './validate.ts'
import {
  encodeAppliedIndex,
  type KvStateMachine,
  type ApplyOutcome,
  type ApplyReader,
  type ApplyWriter,
} from './state-machine.ts'

/** The log store the group needs: what the core reads, plus two-phase writes into the node's batch. */
export interface GroupLogStore extends LogStorage {
  stage(batch: WriteBatch, write: LogWrite): void
  commit(write: LogWrite): void
  stageSnapshotMeta(batch: WriteBatch, meta: SnapshotMeta): void
  commitSnapshotMeta(meta: SnapshotMeta): void
  stageCompact(batch: WriteBatch, index: LogIndex): void
  commitCompact(index: LogIndex): void
  stageConfState(batch: WriteBatch, cs: ConfState): void
  commitConfState(cs: ConfState): void
  /** Forgets the log, keeping term and vote (node/log-store.ts). */
  stageReset(batch: WriteBatch, cs: ConfState): void
  commitReset(cs: ConfState): void
  snapshotMeta(): SnapshotMeta
  /** The applied configuration as stored. */
  confState(): ConfState
  /** Bytes of the entries the store holds in memory. */
  entryBytes(): number
  /**
   * Where compaction may drop up to, keeping at most `entriesMax` entries and about `bytesMax`
   * bytes behind `snapIndex` for followers just behind (at least the entry at `snapIndex`).
   */
  retainFrom(snapIndex: LogIndex, entriesMax: number, bytesMax: number): LogIndex
}

export interface LogWrite {
  readonly hardState: Ready['hardState']
  readonly entries: readonly Entry[]
  readonly snapshot: SnapshotMeta | null
}

export interface WriteAnswer {
  readonly result: ApplyResult
  readonly outcome: ApplyOutcome
  readonly receipt: Receipt
}

/** A promise with its settle functions; settling twice is a no-op. */
export class Deferred<T> {
  readonly promise: Promise<T>
  private settled = false
  private res!: (value: T) => void
  private rej!: (err: unknown) => void
  constructor() {
    this.promise = new Promise<T>((resolve, reject) => {
      this.res = resolve
      this.rej = reject
    })
  }
  get isSettled(): boolean {
    return this.settled
  }
  resolve(value: T): void {
    if (this.settled) return
    this.settled = true
    this.res(value)
  }
  reject(err: unknown): void {
    if (this.settled) return
    this.settled = true
    this.rej(err)
  }
}

interface PendingProposal {
  readonly term: Term
  readonly level: WriteLevel
  readonly command: Command
  readonly deferred: Deferred<WriteAnswer>
  /** For `leader` writes: the answer predicted from the leader's state, given the entry's index. */
  readonly predicted: ((index: LogIndex) => ApplyResult) | undefined
}

type QueuedWrite = Omit<PendingProposal, 'term'>

interface AllWaiter {
  readonly index: LogIndex
  readonly deferred: Deferred<WriteAnswer>
  readonly answer: WriteAnswer
}

/** One ReadIndex round and every read that shares it. */
interface ReadWaiter {
  readonly deferreds: readonly Deferred<LogIndex>[]
  readonly startedMs: number
}

interface ApplyWaiter {
  readonly index: LogIndex
  readonly deferred: Deferred<LogIndex>
}

/** A membership change in flight: settled once its end state holds in the applied configuration. */
interface ChangeWaiter {
  readonly change: ReplicaChange
  readonly deferred: Deferred<ShardConfigView>
}

/** A leadership transfer in flight: settled once `to` leads. */
interface TransferWaiter {
  readonly to: NodeId
  readonly deferred: Deferred<ShardConfigView>
}

/**
 * A snapshot the host has written into the shard's ranges in place (node/snapshot-install.ts):
 * the point it describes, the state machine loaded from it and its descriptor. The group makes it
 * visible to Raft (log, configuration, applied index) in the batch of the Ready that restores it.
 */
export interface InstalledSnapshot {
  readonly meta: SnapshotMeta
  readonly machine: KvStateMachine
  readonly descriptor: ShardDescriptorRecord
}

/** The shard's configuration as the group has applied it, with its epoch and leader. */
export interface ShardConfigView {
  readonly epoch: number
  readonly confIndex: LogIndex
  readonly conf: ConfState
  readonly leaderId: NodeId | null
  readonly term: Term
}

export interface RaftGroupInit {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** Where the shard's data lives; default the user data of [hashStart, hashEnd) (the meta shard's is elsewhere). */
  readonly dataRange?: KeyRange
  /**
   * Every key range of the shard's replicated state (user data and the shard's own key space):
   * what a snapshot carries, an install clears and fills, and a removed replica drops.
   */
  readonly ranges: readonly KeyRange[]
  readonly raft: Omit<RaftConfig, 'id'>
  readonly tickMs: number
}

/**
 * Counts the node's groups keep together (one object per node host, shared by its groups): plain
 * numbers, only ever raised, read by the metrics at scrape time. Writes only (not configuration
 * changes or reads).
 */
export interface GroupCounters {
  /** A group saw a leader it did not know before (a new one, or one after a time without). */
  leaderChanges: number
  /** Write proposals whose entry applied at the index and term they were proposed at. */
  proposalsCommitted: number
  /** Write proposals refused here because this replica does not lead (NOT_LEADER). */
  proposalsNotLeader: number
  /** Write proposals refused for other reasons (overloaded, too large, `all` voters unreachable). */
  proposalsRefused: number
  /** Write proposals that lost their place in the log (a new leader, or a snapshot replaced it). */
  proposalsLost: number
}

/** Counters that start at zero. */
export function newGroupCounters(): GroupCounters {
  return {
    leaderChanges: 0,
    proposalsCommitted: 0,
    proposalsNotLeader: 0,
    proposalsRefused: 0,
    proposalsLost: 0,
  }
}

export interface RaftGroupComponents {
  readonly store: GroupLogStore
  readonly machine: KvStateMachine
  /** The shard's descriptor as stored at the machine's applied index. */
  readonly descriptor: ShardDescriptorRecord
  readonly clock: Clock
  readonly random: Random
  readonly logger: Logger
  readonly limits: Readonly<Limits>
  /** Where the group counts (the host's, shared by its groups); default: its own. */
  readonly counters?: GroupCounters
}

/** Reads of keys applied earlier in the same batch; the host prefetches readKeys() into it. */
export type ApplyIo = ApplyReader & ApplyWriter

export class RaftGroup {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  readonly hashStart: bigint
  readonly hashEnd: bigint
  readonly dataRange: KeyRange
  /** RaftGroupInit.ranges. */
  readonly ranges: readonly KeyRange[]
  readonly raw: RawNode
  private readonly store: GroupLogStore
  private machine: KvStateMachine
  private readonly clock: Clock
  private readonly log: Logger
  private readonly limits: Readonly<Limits>
  private readonly counters: GroupCounters
  private readonly electionMs: number
  /** The applied configuration and the descriptor (epoch) that goes with it. */
  private confNow: ConfState
  private descriptorNow: ShardDescriptorRecord
  /** A snapshot the host wrote in place, waiting for the Ready that restores it. */
  private pendingInstall: InstalledSnapshot | undefined
  /**
   * False once the group stopped serving: frozen while a snapshot is written into its ranges, or
   * retired (replaced after a reset, or removed). Read by the request paths.
   */
  private servingNow = true
  /** Rises whenever `serving` changes: a read whose view spans a change is not trusted. */
  private servingGeneration = 0
  /** Set when an applied configuration no longer has this node (its removal committed). */
  private removedNow = false
  private readonly changeWaiters: ChangeWaiter[] = []
  private readonly transferWaiters: TransferWaiter[] = []

  /** The applied index whose effects are durable: every receipt and read is based on it. */
  private durable: LogIndex
  private roleNow: ReplicaRole = 'follower'
  private leader: NodeId | null = null
  private termNow = 0 as Term
  private commitNow = 0 as LogIndex
  /** The voters of the applied configuration, refreshed with the soft state (status() allocates). */
  private voterIds: readonly NodeId[] = []

  // Invariant: every pending proposal's index is > durable or settled. An entry's proposals are
  // its commands' (one, or a group: commands.ts encodeEntry), in the entry's order.
  private readonly proposals = new Map<LogIndex, readonly PendingProposal[]>()
  /** Writes accepted this loop turn, proposed by flushWrites (grouped per client into entries). */
  private queuedWrites: QueuedWrite[] = []
  private readonly allWaiters: AllWaiter[] = []
  private readonly readWaiters = new Map<string, ReadWaiter>()
  /** Reads waiting for the next ReadIndex round (flushReads), and how many reads are in rounds. */
  private queuedReads: Deferred<LogIndex>[] = []
  private readsInRounds = 0
  private applyWaiters: ApplyWaiter[] = []
  private readCounter = 0
  private readonly decoded = new Map<LogIndex, readonly Command[]>()
  /**
   * Commands of entry data a follower's append check decoded (entryAcceptable), keyed by the data
   * bytes themselves, never by index (an index may be overwritten by another leader's entry; the
   * same bytes always decode alike). Taken out when the entry applies; weak, so an entry dropped
   * before applying leaves nothing behind.
   */
  private readonly checked = new WeakMap<Uint8Array, readonly Command[]>()

  /** Per peer: the last time any message of this group came from it, and its reported applied index. */
  private readonly peerContactMs = new Map<NodeId, number>()
  private readonly peerApplied = new Map<NodeId, LogIndex>()
  /** Follower staleness: the last leader message, the commit it carried, and when we were caught up. */
  private leaderContactMs = -Infinity
  private leaderContactCommit = 0 as LogIndex
  private freshAtMs = -Infinity
  /** The applied index last reported to peers. */
  reportedApplied = 0 as LogIndex

  constructor(init: RaftGroupInit, components: RaftGroupComponents) {
    this.nodeId = init.nodeId
    this.shardId = init.shardId
    this.hashStart = init.hashStart
    this.hashEnd = init.hashEnd
    this.dataRange = init.dataRange ?? dataRangeForHashRange(init.hashStart, init.hashEnd)
    this.ranges = init.ranges
    // A replica waiting for its first snapshot holds nothing it could serve.
    this.servingNow = init.raft.awaitingSnapshot !== true
    this.store = components.store
    this.machine = components.machine
    this.clock = components.clock
    this.limits = components.limits
    this.counters = components.counters ?? newGroupCounters()
    this.confNow = components.store.confState()
    this.descriptorNow = components.descriptor
    this.log = components.logger.child({ shard: init.shardId })
    this.electionMs = (init.raft.electionTicks ?? 10) * init.tickMs
    this.durable = this.machine.appliedIndex
    this.raw = new RawNode(
      { ...init.raft, id: init.nodeId, applied: this.machine.appliedIndex },
      {
        storage: this.store,
        random: components.random,
        logger: this.log,
        // The absolute limits, not this node's tightened ones: what any member may have accepted.
        // What the check decodes is kept for the apply (commandsOf), by the data's identity.
        entryAcceptable: (data) => {
          const commands = acceptableCommands(data, limits)
          if (commands !== null) this.checked.set(data, commands)
          return commands !== null
        },
      },
    )
    this.refreshSoftState()
  }

  // ---- read by request handlers (plain fields; never touches the RawNode) ----

  get role(): ReplicaRole {
    return this.roleNow
  }
  get leaderId(): NodeId | null {
    return this.leader
  }
  get term(): Term {
    return this.termNow
  }
  get commitIndex(): LogIndex {
    return this.commitNow
  }
  get durableApplied(): LogIndex {
    return this.durable
  }
  get stateMachine(): KvStateMachine {
    return this.machine
  }
  /** Writes proposed and not yet answered (the commands of grouped entries count one each). */
  get pendingProposals(): number {
    let n = this.queuedWrites.length
    for (const ps of this.proposals.values()) n += ps.length
    return n
  }
  /** The shard's epoch as this replica has applied it. */
  get epoch(): number {
    return this.descriptorNow.epoch
  }
  /** The applied configuration. */
  get confState(): ConfState {
    return this.confNow
  }
  /** False while the group may not serve requests (installing a snapshot, or retired). */
  get serving(): boolean {
    return this.servingNow
  }
  /** The shard's log store (the host resets it when an install is cut short). */
  get logStore(): GroupLogStore {
    return this.store
  }
  /** Changes whenever `serving` changes (see RaftReplica: reads check it before and after). */
  get generation(): number {
    return this.servingGeneration
  }
  /** True once an applied configuration no longer has this node: its removal is committed. */
  get removed(): boolean {
    return this.removedNow
  }

  /** Voters (this node aside) not heard from within an election timeout (read by the metrics). */
  unreachableVoterCount(): number {
    return this.unreachableVoters().length
  }

  configView(): ShardConfigView {
    return {
      epoch: this.descriptorNow.epoch,
      confIndex: this.descriptorNow.confIndex,
      conf: this.confNow,
      leaderId: this.leader,
      term: this.termNow,
    }
  }

  /** An upper bound on how far behind the newest committed state an answer from here may be. */
  stalenessMs(): number {
    const now = this.clock.nowMs()
    if (this.roleNow === 'leader') return clampStaleness(now - this.quorumContactMs(now))
    if (this.durable >= this.leaderContactCommit) return clampStaleness(now - this.leaderContactMs)
    return clampStaleness(now - this.freshAtMs)
  }

  /** The latest time by which a quorum (this node included) had been heard from. */
  private quorumContactMs(now: number): number {
    const contacts = [now]
    for (const id of this.voters())
      if (id !== this.nodeId) contacts.push(this.peerContactMs.get(id) ?? -Infinity)
    contacts.sort((a, b) => b - a)
    return contacts[Math.floor(contacts.length / 2)] ?? -Infinity
  }

  receipt(level: ReadLevel | WriteLevel, appliedIndex: LogIndex = this.durable, stalenessMs = 0): Receipt {
    return {
      nodeId: this.nodeId,
      shardId: this.shardId,
      appliedIndex,
      level,
      stalenessMs,
      term: this.termNow,
    }
  }

  notLeader(): KvError {
    return new KvError(
      ErrorCode.NotLeader,
      `node ${this.nodeId} is not the leader of shard ${this.shardId}`,
      {
        details: { shardId: this.shardId, ...(this.leader === null ? {} : { leaderHint: this.leader }) },
      },
    )
  }

  /** NOT_LEADER for a write refused here, counted (GroupCounters.proposalsNotLeader). */
  writeNotLeader(): KvError {
    this.counters.proposalsNotLeader++
    return this.notLeader()
  }

  // ---- loop side: requests ----

  /** Proposes a validated command. Settles `deferred` when the level's condition holds. */
  proposeWrite(
    command: Command,
    level: WriteLevel,
    deferred: Deferred<WriteAnswer>,
    predicted?: (index: LogIndex) => ApplyResult,
  ): void {
    if (deferred.isSettled) return
    if (this.roleNow !== 'leader') return deferred.reject(this.writeNotLeader())
    if (level === 'all') {
      const unreachable = this.unreachableVoters()
      if (unreachable.length > 0) {
        this.counters.proposalsRefused++
        return deferred.reject(
          new KvError(
            ErrorCode.Unavailable,
            `write level all: voter(s) ${unreachable.join(', ')} of shard ${this.shardId} unreachable`,
            { details: { shardId: this.shardId } },
          ),
        )
      }
    }
    this.queuedWrites.push({ level, command, deferred, predicted })
  }

  /**
   * Proposes the writes queued since the last call (once per loop iteration, before ready()), in
   * their order, as few entries as the rules allow: consecutive tagged writes of one client go in
   * one entry (commands.ts encodeEntry), up to limits.entryCommandsMax commands and
   * limits.entryGroupBytesMax bytes, and never two writes of one key in one entry (each write keeps
   * a version of its own). Anything else is an entry of its own, as before groups.
   */
  flushWrites(): void {
    if (this.queuedWrites.length === 0) return
    const queued = this.queuedWrites
    this.queuedWrites = []
    let group: QueuedWrite[] = []
    let groupBytes = 0
    let groupKeys = new Set<string>()
    const propose = (): void => {
      if (group.length > 0) this.proposeEntry(group)
      group = []
      groupBytes = 0
      groupKeys = new Set()
    }
    for (const w of queued) {
      if (w.deferred.isSettled) continue
      const command = w.command
      if (!groupable(command)) {
        propose()
        group.push(w)
        propose()
        continue
      }
      const keys = (command.kind === 'batch' ? command.ops : [command]).map((op) => bytesKey(op.key))
      const bytes = approxCommandBytes(command)
      const first = group[0]?.command
      const fits =
        first !== undefined &&
        first.tag?.clientId === command.tag.clientId &&
        group.length < limits.entryCommandsMax &&
        groupBytes + bytes <= limits.entryGroupBytesMax &&
        keys.every((k) => !groupKeys.has(k))
      if (!fits) propose()
      group.push(w)
      groupBytes += bytes
      for (const k of keys) groupKeys.add(k)
    }
    propose()
  }

  private proposeEntry(writes: readonly QueuedWrite[]): void {
    const fail = (err: KvError): void => {
      for (const w of writes) w.deferred.reject(err)
    }
    const r = this.raw.propose(encodeEntry(writes.map((w) => w.command)))
    if (!r.ok) {
      if (r.reason === 'not-leader' || r.reason === 'transferring')
        this.counters.proposalsNotLeader += writes.length
      else this.counters.proposalsRefused += writes.length
      switch (r.reason) {
        case 'not-leader':
        case 'transferring':
          return fail(this.notLeader())
        case 'overloaded':
          return fail(
            new KvError(ErrorCode.Overloaded, `shard ${this.shardId}: too many uncommitted writes`, {
              details: { shardId: this.shardId },
            }),
          )
        case 'too-large':
          return fail(
            new KvError(ErrorCode.InvalidArgument, 'write too large for one Raft entry', {
              details: { shardId: this.shardId, limit: this.limits.proposalBytesMax },
            }),
          )
        default:
          return fail(new KvError(ErrorCode.Internal, `propose refused: ${r.reason}`))
      }
    }
    this.proposals.set(
      r.index,
      writes.map((w) => ({ ...w, term: r.term })),
    )
  }

  /**
   * Queues a linearizable read for the next ReadIndex round (§6.4); settles with the index the read
   * must wait for. Every read queued before a round starts shares it (flushReads, once per loop
   * iteration), so a burst of reads costs one heartbeat round, not one each.
   */
  startReadIndex(deferred: Deferred<LogIndex>): void {
    if (deferred.isSettled) return
    if (this.roleNow !== 'leader') return deferred.reject(this.notLeader())
    if (this.queuedReads.length + this.readsInRounds >= this.limits.readIndexPendingMax)
      return deferred.reject(
        new KvError(ErrorCode.Overloaded, 'too many linearizable reads waiting', {
          details: { shardId: this.shardId, limit: this.limits.readIndexPendingMax },
        }),
      )
    this.queuedReads.push(deferred)
  }

  /** Starts one ReadIndex round for every queued read. Called by the loop after its inbox. */
  flushReads(): void {
    if (this.queuedReads.length === 0) return
    const deferreds = this.queuedReads.filter((d) => !d.isSettled)
    this.queuedReads = []
    if (deferreds.length === 0) return
    const ctx = new Uint8Array(8)
    new DataView(ctx.buffer).setBigUint64(0, BigInt(++this.readCounter))
    const r = this.raw.readIndex(ctx)
    if (!r.ok) {
      const err =
        r.reason === 'no-leader'
          ? this.notLeader()
          : new KvError(ErrorCode.Overloaded, 'too many linearizable reads waiting', {
              details: { shardId: this.shardId },
            })
      for (const d of deferreds) d.reject(err)
      return
    }
    this.readWaiters.set(bytesKey(ctx), { deferreds, startedMs: this.clock.nowMs() })
    this.readsInRounds += deferreds.length
  }

  private endRound(key: string, w: ReadWaiter): void {
    this.readWaiters.delete(key)
    this.readsInRounds -= w.deferreds.length
  }

  /** Settles once `index` is applied and durable here (at once if it already is). */
  waitApplied(index: LogIndex, deferred: Deferred<LogIndex>): void {
    if (this.durable >= index) return deferred.resolve(this.durable)
    if (this.applyWaiters.length >= this.limits.readIndexPendingMax)
      return deferred.reject(
        new KvError(ErrorCode.Overloaded, 'too many reads waiting for the applied index', {
          details: { shardId: this.shardId },
        }),
      )
    this.applyWaiters.push({ index, deferred })
  }

  /** A peer's applied index (sent after every apply), for `all` writes. */
  onAppliedReport(from: NodeId, index: LogIndex): void {
    if (index > (this.peerApplied.get(from) ?? 0)) this.peerApplied.set(from, index)
    this.settleAllWaiters()
  }

  // ---- loop side: Raft ----

  step(m: Message): void {
    const now = this.clock.nowMs()
    this.peerContactMs.set(m.from, now)
    const r = this.raw.step(m)
    if (!r.ok) return
    // Only a leader sends appends and heartbeats, and step() refuses those of a stale term. A
    // heartbeat's `commit` is capped at what the leader knows this node holds, so a lagging node
    // (paused, cut off, slow) would take it for "caught up": its `leaderCommit` says how far the
    // leader really is (a heartbeat of an older node without it counts as an append would).
    if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat') {
      const commit = m.type === 'MsgHeartbeat' ? Math.max(m.commit, m.leaderCommit ?? 0) : m.commit
      this.leaderContactMs = now
      this.leaderContactCommit = commit as LogIndex
      if (this.durable >= commit) this.freshAtMs = now
    }
  }

  tick(): void {
    this.raw.tick()
    const now = this.clock.nowMs()
    if (this.roleNow === 'leader') {
      // A leader is as fresh as its last quorum contact; kept as "leader contact" so a leader that
      // steps down (cut off) goes on reporting a staleness that grows from there.
      this.leaderContactMs = this.quorumContactMs(now)
      this.leaderContactCommit = this.durable
      this.freshAtMs = this.leaderContactMs
    }
    const timeoutMs = this.electionMs * readIndexTimeoutElections
    for (const [key, w] of this.readWaiters) {
      if (now - w.startedMs < timeoutMs) continue
      this.endRound(key, w)
      const err = new KvError(
        ErrorCode.NoQuorum,
        `shard ${this.shardId}: no quorum confirmed leadership for a read`,
        { details: { shardId: this.shardId } },
      )
      for (const d of w.deferreds) d.reject(err)
    }
    this.refreshSoftState()
  }

  hasReady(): boolean {
    return this.raw.hasReady()
  }

  ready(): Ready {
    return this.raw.ready()
  }

  /**
   * The storage keys applying `rd` will read; the host prefetches them for every group at once.
   * Keys whose versions the machine remembers are left out, unless `rd` restores a snapshot: its
   * entries then apply on the machine loaded from it, which remembers nothing.
   */
  readKeys(rd: Ready): Uint8Array[] {
    const keys: Uint8Array[] = []
    for (const e of rd.committedEntries) {
      if (e.index <= this.machine.appliedIndex && rd.snapshot === null) continue
      for (const command of this.commandsOf(e) ?? [])
        keys.push(
          ...(rd.snapshot === null ? this.machine.readKeys(command) : this.machine.storageKeysOf(command)),
        )
    }
    return keys
  }

  /**
   * An early read for the entries `rd` appends: the storage keys their commands will touch that
   * the machine does not know, with the token to hand back to `learnAppended` with what was read.
   * Read while the entries replicate, their versions are known by the time they apply, so the apply
   * reads nothing first. Commands come from this leader's proposals or a follower's append check
   * (never decoded and cached by index: an appended entry may still be replaced). Call after
   * `stage`; null when there is nothing to read.
   */
  appendedKeys(rd: Ready): { readonly keys: Uint8Array[]; readonly token: number } | null {
    if (rd.snapshot !== null || rd.entries.length === 0) return null
    const keys: Uint8Array[] = []
    for (const e of rd.entries) {
      if (e.type !== EntryType.Normal || e.data.length === 0) continue
      const ours = this.proposals.get(e.index)
      const commands =
        ours !== undefined && ours[0]?.term === e.term ? ours.map((p) => p.command) : this.checked.get(e.data)
      for (const command of commands ?? []) keys.push(...this.machine.storageKeysOf(command))
    }
    const unknown = this.machine.unknownKeys(keys)
    return unknown.length === 0 ? null : { keys: unknown, token: this.machine.learnToken() }
  }

  /** What the read of `appendedKeys` found (the machine learns it only if still sound). */
  learnAppended(
    token: number,
    keys: readonly Uint8Array[],
    values: readonly (Uint8Array | null)[],
    machine: KvStateMachine,
  ): void {
    if (machine === this.machine) machine.learn(token, keys, values)
  }

  /**
   * Writes `rd` into the node's batch: the snapshot (with `snapshot` data), entries, hard state, the
   * applied effects of the committed entries, and a log compaction when due. Returns the outcomes,
   * answered in commit().
   */
  stage(rd: Ready, batch: WriteBatch, io: ApplyIo): StagedReady {
    let installed: SnapshotMeta | null = null
    let conf = this.confNow
    let descriptor = this.descriptorNow
    let confChanged = false
    if (rd.snapshot !== null) {
      const install = this.pendingInstall
      assert(
        install !== undefined && install.meta.index === rd.snapshot.meta.index,
        `shard ${this.shardId}: a snapshot restored without its data in place`,
      )
      installed = install.meta
      // The data, the dedup table and the descriptor are in place already; the applied index that
      // makes them the state goes in this batch, with the log and configuration of the snapshot.
      this.machine = install.machine
      batch.put(raftAppliedIndexKey(this.shardId), encodeAppliedIndex(installed.index))
      conf = installed.confState
      descriptor = install.descriptor
      confChanged = true
      this.decoded.clear()
    }
    this.store.stage(batch, { hardState: rd.hardState, entries: rd.entries, snapshot: installed })
    const outcomes: { readonly entry: Entry; readonly outcomes: readonly ApplyOutcome[] | null }[] = []
    for (const e of rd.committedEntries) {
      if (e.index <= this.machine.appliedIndex) {
        this.decoded.delete(e.index)
        continue
      }
      const commands = this.commandsOf(e)
      if (commands === undefined) {
        this.machine.skip(e.index, io)
        outcomes.push({ entry: e, outcomes: null })
        if (e.type === EntryType.ConfChange) {
          // The configuration the core adopts when it advances past this entry (it skips invalid
          // ones alike); persisted with the applied index, with the epoch one higher.
          const next = confStateAfter(conf, e.data)
          if (next !== null) {
            conf = next
            descriptor = { epoch: descriptor.epoch + 1, confIndex: e.index }
            this.store.stageConfState(batch, conf)
            batch.put(shardDescriptorKey(this.shardId), encodeDescriptor(descriptor))
            confChanged = true
          }
        }
      } else {
        outcomes.push({ entry: e, outcomes: this.machine.applyEntry(e.index, commands, io, io) })
      }
      this.decoded.delete(e.index)
    }
    // Compaction is computed from the store's committed state; never beside a snapshot install.
    const compaction = installed === null ? this.stageCompaction(batch) : null
    return { installed, outcomes, compaction, conf: confChanged ? { conf, descriptor } : null }
  }

  /** After the batch is durable: update the store, answer, advance the core. */
  commit(rd: Ready, staged: StagedReady): void {
    this.store.commit({ hardState: rd.hardState, entries: rd.entries, snapshot: staged.installed })
    if (staged.compaction?.kind === 'point') this.store.commitSnapshotMeta(staged.compaction.meta)
    if (staged.compaction?.kind === 'compact') this.store.commitCompact(staged.compaction.compactTo)
    if (staged.installed !== null) this.onSnapshotInstalled(staged.installed)
    if (staged.conf !== null) {
      this.store.commitConfState(staged.conf.conf)
      this.confNow = staged.conf.conf
      this.descriptorNow = staged.conf.descriptor
      this.removedNow = !membersOf(this.confNow).has(this.nodeId)
    }
    this.durable = this.machine.appliedIndex
    if (this.durable >= this.leaderContactCommit) this.freshAtMs = this.leaderContactMs
    // `leader` writes: durable here is enough.
    for (const e of rd.entries) {
      for (const p of this.proposals.get(e.index) ?? []) {
        if (p.level !== 'leader' || p.term !== e.term) continue
        assert(p.predicted !== undefined, 'leader write without a predicted result')
        const result = p.predicted(e.index)
        const outcome: ApplyOutcome = { kind: 'applied', index: e.index, result }
        p.deferred.resolve({ result, outcome, receipt: this.receipt('leader', e.index) })
      }
    }
    for (const { entry, outcomes } of staged.outcomes) this.answerApplied(entry, outcomes)
    for (const rs of rd.readStates) {
      const key = bytesKey(rs.context)
      const w = this.readWaiters.get(key)
      if (w === undefined) continue
      this.endRound(key, w)
      for (const d of w.deferreds) if (!d.isSettled) this.waitApplied(rs.index, d)
    }
    this.settleApplyWaiters()
    this.settleAllWaiters()
    this.raw.advance(rd)
    this.refreshSoftState()
  }

  /** Settles the membership changes whose end state is applied, and transfers that landed. */
  private settleChangeWaiters(): void {
    for (let i = this.changeWaiters.length - 1; i >= 0; i--) {
      const w = this.changeWaiters[i]!
      if (w.deferred.isSettled) this.changeWaiters.splice(i, 1)
      else if (changeDone(this.confNow, w.change)) {
        w.deferred.resolve(this.configView())
        this.changeWaiters.splice(i, 1)
      } else if (this.roleNow !== 'leader') {
        // The change may still complete under the next leader: the caller re-reads and goes on.
        w.deferred.reject(this.notLeader())
        this.changeWaiters.splice(i, 1)
      }
    }
    for (let i = this.transferWaiters.length - 1; i >= 0; i--) {
      const w = this.transferWaiters[i]!
      if (w.deferred.isSettled) this.transferWaiters.splice(i, 1)
      else if (this.leader === w.to) {
        w.deferred.resolve(this.configView())
        this.transferWaiters.splice(i, 1)
      }
    }
  }

  /** Everything waiting fails: the node is stopping. Writes in flight end as outcome unknown. */
  failAll(err: KvError): void {
    for (const ps of this.proposals.values()) for (const p of ps) p.deferred.reject(err)
    this.proposals.clear()
    for (const w of this.queuedWrites) w.deferred.reject(err)
    this.queuedWrites = []
    for (const w of this.allWaiters) w.deferred.reject(err)
    this.allWaiters.length = 0
    for (const w of this.readWaiters.values()) for (const d of w.deferreds) d.reject(err)
    this.readWaiters.clear()
    for (const d of this.queuedReads) d.reject(err)
    this.queuedReads = []
    this.readsInRounds = 0
    for (const w of this.applyWaiters) w.deferred.reject(err)
    this.applyWaiters = []
    for (const w of this.changeWaiters) w.deferred.reject(err)
    this.changeWaiters.length = 0
    for (const w of this.transferWaiters) w.deferred.reject(err)
    this.transferWaiters.length = 0
  }

  /**
   * Leader balancing: when this node leads but `preferred` (a caught-up voter heard from within an
   * election timeout) should, hand leadership over (§3.10). Returns true when a transfer started.
   * Nothing happens while a transfer is in flight or the preferred node lags by more than `lagMax`
   * entries. Activity is judged by when this group last heard from the node, not by Raft's
   * `recentActive`: check-quorum clears that every election timeout, and the host balances right
   * after a tick, so a group whose clearing fell on the balancing tick never handed over.
   */
  balanceLeadership(preferred: NodeId, lagMax: number): boolean {
    if (this.roleNow !== 'leader' || preferred === this.nodeId) return false
    const st = this.raw.status()
    if (st.leadTransferee !== null) return false
    const p = st.progress?.get(preferred)
    const heard = this.heardWithinElection(preferred, this.clock.nowMs())
    if (p === undefined || p.isLearner || !heard || p.match + lagMax < st.lastIndex) return false
    const r = this.raw.transferLeader(preferred)
    if (r.ok)
      this.log.info({ to: preferred, term: st.term }, 'transferring leadership to the preferred leader')
    return r.ok
  }

  /**
   * Carries out a membership change as this shard's leader (replica-change.ts has the rules):
   * settles with the configuration once the change's end state is applied here, at once when it
   * already holds (every step is idempotent). `epoch` is the epoch the change was planned against.
   */
  proposeChange(change: ReplicaChange, epoch: number, deferred: Deferred<ShardConfigView>): void {
    if (deferred.isSettled) return
    if (this.roleNow !== 'leader') return deferred.reject(this.notLeader())
    if (changeDone(this.confNow, change)) return deferred.resolve(this.configView())
    if (epoch !== this.descriptorNow.epoch)
      return deferred.reject(
        new KvError(
          ErrorCode.StaleEpoch,
          `shard ${this.shardId} is at epoch ${this.descriptorNow.epoch}, the change was planned at epoch ${epoch}`,
          { details: { shardId: this.shardId, shardMapEpoch: this.descriptorNow.epoch } },
        ),
      )
    if (this.changeWaiters.length > 0)
      return deferred.reject(
        new KvError(ErrorCode.ShardBusy, `shard ${this.shardId}: another replica change is in flight`, {
          details: { shardId: this.shardId },
        }),
      )
    const st = this.raw.status()
    let cc
    try {
      cc = planConfChange(
        {
          self: this.nodeId,
          conf: this.confNow,
          lastIndex: st.lastIndex,
          progress: st.progress ?? new Map(),
        },
        change,
      )
    } catch (err) {
      return deferred.reject(err)
    }
    const r = this.raw.proposeConfChange(cc)
    if (!r.ok) {
      switch (r.reason) {
        case 'not-leader':
        case 'transferring':
          return deferred.reject(this.notLeader())
        case 'conf-change-pending':
        case 'conf-change-early':
          return deferred.reject(
            new KvError(
              ErrorCode.ShardBusy,
              `shard ${this.shardId}: a configuration change is still being applied (${r.reason})`,
              { details: { shardId: this.shardId } },
            ),
          )
        default:
          return deferred.reject(
            new KvError(ErrorCode.MoveRefused, `shard ${this.shardId}: change refused (${r.reason})`, {
              details: { shardId: this.shardId },
            }),
          )
      }
    }
    this.log.info({ change, epoch, index: r.index }, 'replica change proposed')
    this.changeWaiters.push({ change, deferred })
  }

  /** Moves leadership to `to` (§3.10); settles once `to` leads. */
  startTransfer(to: NodeId, deferred: Deferred<ShardConfigView>): void {
    if (deferred.isSettled) return
    if (this.roleNow !== 'leader') {
      if (this.leader === to) return deferred.resolve(this.configView())
      return deferred.reject(this.notLeader())
    }
    if (to === this.nodeId) return deferred.resolve(this.configView())
    if (!this.confNow.voters.includes(to) || isJointConf(this.confNow))
      return deferred.reject(
        new KvError(ErrorCode.MoveRefused, `node ${to} is not a voter of shard ${this.shardId}`, {
          details: { shardId: this.shardId, field: 'to' },
        }),
      )
    const r = this.raw.transferLeader(to)
    if (!r.ok)
      return deferred.reject(
        new KvError(ErrorCode.ShardBusy, `shard ${this.shardId}: leadership transfer refused (${r.reason})`, {
          details: { shardId: this.shardId },
        }),
      )
    this.log.info({ to, term: this.termNow }, 'transferring leadership on request')
    this.transferWaiters.push({ to, deferred })
  }

  /** Stops serving while a snapshot is written into the shard's ranges; everything waiting fails. */
  freeze(): void {
    this.servingNow = false
    this.servingGeneration++
    this.failAll(
      new KvError(ErrorCode.ShardMoving, `shard ${this.shardId}: this replica is installing a snapshot`, {
        details: { shardId: this.shardId },
      }),
    )
  }

  /** The install is done (or the group is being retired): serve again. */
  thaw(): void {
    this.servingNow = true
    this.servingGeneration++
  }

  /** The group is replaced or removed: it never serves again; everything waiting fails with `err`. */
  retire(err: KvError): void {
    this.servingNow = false
    this.servingGeneration++
    this.failAll(err)
  }

  /** Hands the group a snapshot written in place; step its MsgSnap next, in the same iteration. */
  setPendingInstall(install: InstalledSnapshot): void {
    assert(this.pendingInstall === undefined, 'an install is already pending')
    this.pendingInstall = install
  }

  /**
   * Whether stepping a MsgSnap with `meta` would make the core restore it: it is newer than the
   * commit index and the log does not hold its last entry (raft.ts restore). Only then may a
   * snapshot be written in place.
   */
  wouldRestore(meta: SnapshotMeta): boolean {
    if (meta.index <= this.raw.status().commit) return false
    const t = this.store.term(meta.index)
    return !(t.ok && t.value === meta.term)
  }

  /** The voters of the applied configuration. */
  voters(): readonly NodeId[] {
    return this.voterIds
  }

  /** The point and configuration a snapshot sent now describes: the durable applied state. */
  snapshotPoint(): { readonly meta: SnapshotMeta; readonly ranges: readonly KeyRange[] } | null {
    const t = this.store.term(this.durable)
    if (!t.ok) return null
    return {
      meta: { index: this.durable, term: t.value, confState: this.raw.status().config },
      ranges: this.ranges,
    }
  }

  // ---- internals ----

  private commandsOf(e: Entry): readonly Command[] | undefined {
    if (e.type !== EntryType.Normal || e.data.length === 0) return undefined
    let commands = this.decoded.get(e.index)
    if (commands === undefined) {
      commands = this.checked.get(e.data) ?? decodeEntry(e.data)
      this.checked.delete(e.data)
      this.decoded.set(e.index, commands)
    }
    return commands
  }

  private answerApplied(entry: Entry, outcomes: readonly ApplyOutcome[] | null): void {
    const ps = this.proposals.get(entry.index)
    if (ps === undefined) return
    this.proposals.delete(entry.index)
    // Our proposals at this index are this entry's commands only if the terms agree (else another
    // leader's entry took the index, and every one of them lost its place).
    const ours = outcomes !== null && ps[0]?.term === entry.term
    assert(!ours || outcomes.length === ps.length, 'an entry applied with another count of commands')
    for (const [i, p] of ps.entries()) this.answerOne(p, entry, ours ? outcomes[i]! : null)
  }

  private answerOne(p: PendingProposal, entry: Entry, outcome: ApplyOutcome | null): void {
    const kept = p.term === entry.term && outcome !== null
    if (kept) this.counters.proposalsCommitted++
    else this.counters.proposalsLost++
    if (p.level === 'leader') return
    if (!kept) {
      p.deferred.reject(
        new KvError(
          ErrorCode.ProposalDropped,
          `shard ${this.shardId}: the write lost its place in the log to a new leader`,
          {
            details: { shardId: this.shardId },
          },
        ),
      )
      return
    }
    let result: ApplyResult
    try {
      result = resultOfOutcome(outcome, p.command, this.shardId)
    } catch (err) {
      p.deferred.reject(err)
      return
    }
    const answer: WriteAnswer = { result, outcome, receipt: this.receipt(p.level, entry.index) }
    if (p.level === 'all') this.allWaiters.push({ index: entry.index, deferred: p.deferred, answer })
    else p.deferred.resolve(answer)
  }

  private settleApplyWaiters(): void {
    if (this.applyWaiters.length === 0) return
    const keep: ApplyWaiter[] = []
    for (const w of this.applyWaiters) {
      if (w.deferred.isSettled) continue
      if (this.durable >= w.index) w.deferred.resolve(this.durable)
      else keep.push(w)
    }
    this.applyWaiters = keep
  }

  private settleAllWaiters(): void {
    if (this.allWaiters.length === 0) return
    const others = this.voters().filter((id) => id !== this.nodeId)
    for (let i = this.allWaiters.length - 1; i >= 0; i--) {
      const w = this.allWaiters[i]!
      if (w.deferred.isSettled || others.every((id) => (this.peerApplied.get(id) ?? 0) >= w.index)) {
        w.deferred.resolve(w.answer)
        this.allWaiters.splice(i, 1)
      }
    }
  }

  private unreachableVoters(): NodeId[] {
    const now = this.clock.nowMs()
    return this.voters().filter((id) => id !== this.nodeId && !this.heardWithinElection(id, now))
  }

  /** True when this group heard from `id` within an election timeout before `now`. */
  private heardWithinElection(id: NodeId, now: number): boolean {
    return now - (this.peerContactMs.get(id) ?? -Infinity) <= this.electionMs
  }

  private refreshSoftState(): void {
    const st = this.raw.status()
    const role: ReplicaRole =
      st.role === 'leader' ? 'leader' : st.config.learners.includes(this.nodeId) ? 'learner' : 'follower'
    if (this.roleNow === 'leader' && role !== 'leader') this.onLostLeadership()
    if ((st.leaderId ?? 0) > 0 && st.leaderId !== this.leader) this.counters.leaderChanges++
    if (role !== this.roleNow || st.leaderId !== this.leader)
      this.log.info({ role: st.role, term: st.term, leader: st.leaderId }, 'role changed')
    this.roleNow = role
    this.voterIds = [...new Set([...st.config.voters, ...st.config.votersOutgoing])]
    this.leader = st.leaderId
    this.termNow = st.term
    this.commitNow = st.commit
    if (this.changeWaiters.length > 0 || this.transferWaiters.length > 0) this.settleChangeWaiters()
  }

  private onLostLeadership(): void {
    // Reads waiting for a quorum check can no longer be confirmed here. Writes stay pending: they
    // may still commit under the new leader, or are found overwritten when their index applies.
    const err = this.notLeader()
    for (const w of this.readWaiters.values()) for (const d of w.deferreds) d.reject(err)
    this.readWaiters.clear()
    for (const d of this.queuedReads) d.reject(err)
    this.queuedReads = []
    this.readsInRounds = 0
  }

  private onSnapshotInstalled(meta: SnapshotMeta): void {
    this.store.commitConfState(meta.confState)
    this.pendingInstall = undefined
    this.log.info({ index: meta.index, term: meta.term }, 'snapshot installed')
    // Proposals at or below the snapshot were decided elsewhere; their outcome here is unknown.
    for (const [index, ps] of this.proposals) {
      if (index > meta.index) continue
      this.proposals.delete(index)
      this.counters.proposalsLost += ps.length
      for (const p of ps)
        p.deferred.reject(
          new KvError(
            ErrorCode.ProposalDropped,
            'a snapshot replaced the log before the write applied here',
            {
              details: { shardId: this.shardId },
            },
          ),
        )
    }
  }

  /**
   * Log compaction in two steps, each computed from the store's committed state: once
   * raftLogCompactEntries entries were applied past the snapshot point, record a new snapshot point
   * at the durable applied index; in a later iteration, drop the entries older than that point less
   * raftLogRetainEntries (kept for followers just behind).
   */
  private stageCompaction(batch: WriteBatch): Compaction | null {
    const snapIndex = this.store.snapshotMeta().index
    const point = Math.min(this.durable, this.store.lastIndex()) as LogIndex
    // By count, or by bytes: the log lives in memory, and entries may be up to a proposal each.
    const due =
      point - snapIndex >= this.limits.raftLogCompactEntries ||
      (point > snapIndex && this.store.entryBytes() >= this.limits.raftLogCompactBytes)
    if (due) {
      const t = this.store.term(point)
      if (!t.ok) return null
      const meta: SnapshotMeta = { index: point, term: t.value, confState: this.raw.status().config }
      this.store.stageSnapshotMeta(batch, meta)
      return { kind: 'point', meta }
    }
    const compactTo = this.store.retainFrom(
      snapIndex,
      this.limits.raftLogRetainEntries,
      this.limits.raftLogRetainBytes,
    )
    if (compactTo < this.store.firstIndex()) return null
    this.store.stageCompact(batch, compactTo)
    return { kind: 'compact', compactTo }
  }
}

type Compaction =
  | { readonly kind: 'point'; readonly meta: SnapshotMeta }
  | { readonly kind: 'compact'; readonly compactTo: LogIndex }

export interface StagedReady {
  readonly installed: SnapshotMeta | null
  /** Per committed entry applied: each command's outcome, or null for an entry without one. */
  readonly outcomes: readonly { readonly entry: Entry; readonly outcomes: readonly ApplyOutcome[] | null }[]
  readonly compaction: Compaction | null
  /** The configuration and descriptor after this Ready, when it changed them. */
  readonly conf: { readonly conf: ConfState; readonly descriptor: ShardDescriptorRecord } | null
}

/** A linearizable read waits at most this many election timeouts for its quorum check. */
const readIndexTimeoutElections = 2

/** Staleness reported when nothing was ever heard: large but finite, and a safe integer. */
const stalenessUnknownMs = 24 * 60 * 60 * 1000

function clampStaleness(ms: number): number {
  if (!Number.isFinite(ms)) return stalenessUnknownMs
  return Math.max(0, Math.min(stalenessUnknownMs, Math.round(ms)))
}
