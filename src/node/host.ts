/**
 * NodeHost: the host of every Raft group (shard replica) on this node (ARCHITECTURE.md section 3,
 * node/). One tick timer, one Ready loop, one bounded inbox:
 *
 *   - Peer envelopes (transport), client requests (RaftReplica.submit) and snapshot arrivals all
 *     enter through the inbox; nothing else calls into a RawNode. Full inbox: requests get
 *     OVERLOADED (RESOURCE_EXHAUSTED), peer envelopes are dropped (Raft tolerates loss).
 *   - One loop iteration: run the inbox and due ticks; take the Ready of every group with work;
 *     send their `messages` at once (the leader's appends travel while its own fsync runs);
 *     prefetch the keys every group's committed entries read (ONE multiGet); stage every group's
 *     snapshot, entries, hard state and applied effects into ONE WriteBatch; write it with ONE
 *     fsync (group commit across shards); then per group: update the log store, answer, advance,
 *     and send `messagesAfterPersist`.
 *   - Snapshots are made on demand: when a leader's core asks to send one, the host takes a view
 *     of the shard's hash range and dedup records at the durable applied index (engine iterators
 *     take their view when created, and no write is in flight between iterations) and streams it.
 *     A receiver buffers the stream (bounded by limits.snapshotBytesMax), steps the MsgSnap, and
 *     the group installs data and Raft state in the same single batch: atomic.
 *
 * A failed engine write is fail-stop (STYLE.md 7.4): everything waiting fails and `onFatal` runs.
 */
import {
  ErrorCode,
  KvError,
  NodeId,
  ShardId,
  type Clock,
  type Limits,
  type LogIndex,
  type Logger,
  type Random,
  type TimerHandle,
} from '../common/index.ts'
import { AssertionError } from '../common/assert.ts'
import { equalHashRanges, type HashRange, type Hasher } from '../hashing/index.ts'
import { ReadOnlyOption, type ConfState, type Message, type MsgSnap, type Ready } from '../raft/index.ts'
import {
  ApplyOverlay,
  KvStateMachine,
  RaftGroup,
  RaftReplica,
  decodeAppliedIndex,
  type SnapshotData,
  type StagedReady,
} from '../shard/index.ts'
import {
  ByteReader,
  ByteWriter,
  dedupRange,
  metaKey,
  shardDataKey,
  shardDataRange,
  raftAppliedIndexKey,
  bytesKey,
  type Engine,
  type Entry as KvEntry,
} from '../storage/index.ts'
import { ShardLogStore } from './log-store.ts'
import {
  decodePeerPayload,
  decodeSnapshotEntries,
  decodeSnapshotPrelude,
  encodeAppliedPayload,
  encodeRaftPayload,
  encodeSnapshotEntries,
  encodeSnapshotPrelude,
  frame,
  SnapshotFrameReader,
} from './peer-payload.ts'
import type { PeerEnvelope, PeerTransport, SnapshotHeader, TransportHandler } from './transport.ts'

/** A replica this node holds: a data shard (a range of the ring) or the meta shard. */
export interface HostedShard {
  readonly shardId: ShardId
  readonly kind: 'data' | 'meta'
  /** [hashStart, hashEnd) of the ring (the meta shard: the whole ring; it holds no user keys). */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** The voters it is created with (this node among them); later the Raft log owns the voters. */
  readonly voters: readonly NodeId[]
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
   * directory holds its list of replicas this is ignored.
   */
  readonly bootstrap: readonly HostedShard[]
  /** The cluster's data shard count; a data directory made with another count is refused. */
  readonly shardCount: number
  readonly tickMs: number
  readonly leaseReads: boolean
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
 * Leader balancing: every this many ticks, a leader hands each shard to its preferred leader
 * (voters sorted, shard i -> voter i mod n) when that voter is active and at most
 * leaderBalanceLagMax entries behind. Spreads the leaders, and with them the write load.
 */
const leaderBalanceTicks = 30
const leaderBalanceLagMax = 256
/** Inbox items taken per iteration, so a flood cannot starve the Ready half of the loop. */
const inboxItemsPerIterationMax = 16_384

type InboxItem =
  | { readonly kind: 'envelopes'; readonly envelopes: readonly PeerEnvelope[] }
  | { readonly kind: 'run'; readonly shardId: ShardId; readonly run: (group: RaftGroup) => void }
  | {
      readonly kind: 'snapshot'
      readonly shardId: ShardId
      readonly message: MsgSnap
      readonly data: SnapshotData
      readonly done: () => void
    }
  | {
      readonly kind: 'snapshotStatus'
      readonly shardId: ShardId
      readonly peer: NodeId
      readonly ok: boolean
    }
  | { readonly kind: 'unreachable'; readonly peer: NodeId }

/** What `status()` shows per shard (for the admin API and kvctl). */
export interface ShardView {
  readonly shardId: ShardId
  readonly range: HashRange
  readonly role: string
  readonly leaderId: NodeId | null
  readonly term: number
  readonly appliedIndex: LogIndex
  readonly commitIndex: LogIndex
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
}

const shardCountKey = metaKey('shard-count')
const hostedKey = metaKey('hosted-shards')
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

/** The list of hosted replicas as the node stores it (JSON; ranges as decimal strings). */
function encodeHosted(shards: readonly HostedShard[]): Uint8Array {
  return textEncoder.encode(
    JSON.stringify(
      shards.map((h) => ({
        shardId: h.shardId,
        kind: h.kind,
        hashStart: h.hashStart.toString(),
        hashEnd: h.hashEnd.toString(),
        voters: h.voters,
      })),
    ),
  )
}

function decodeHosted(bytes: Uint8Array): HostedShard[] {
  let raw: unknown
  try {
    raw = JSON.parse(textDecoder.decode(bytes))
  } catch {
    throw new AssertionError('corrupt hosted-shards record')
  }
  if (!Array.isArray(raw)) throw new AssertionError('corrupt hosted-shards record')
  return raw.map(
    (o: { shardId: number; kind: string; hashStart: string; hashEnd: string; voters: number[] }) => {
      if (
        typeof o !== 'object' ||
        (o.kind !== 'data' && o.kind !== 'meta') ||
        !/^\d+$/.test(o.hashStart) ||
        !/^\d+$/.test(o.hashEnd) ||
        !Array.isArray(o.voters)
      )
        throw new AssertionError('corrupt hosted-shards record')
      return {
        shardId: ShardId(o.shardId),
        kind: o.kind,
        hashStart: BigInt(o.hashStart),
        hashEnd: BigInt(o.hashEnd),
        voters: o.voters.map((v) => NodeId(v)),
      }
    },
  )
}

export class NodeHost {
  readonly nodeId: NodeId
  private readonly hosted: ReadonlyMap<ShardId, HostedShard>
  private readonly groups: RaftGroup[]
  private readonly groupById: ReadonlyMap<ShardId, RaftGroup>
  private readonly replicaById: ReadonlyMap<ShardId, RaftReplica>
  private readonly engine: Engine
  private readonly clock: Clock
  private readonly log: Logger
  private readonly limits: Readonly<Limits>
  private readonly transport: PeerTransport
  private readonly onFatal: (err: unknown) => void
  private readonly tickMs: number

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
  /** Received snapshots waiting for their group's Ready, by shard. */
  private readonly pendingSnapshots = new Map<ShardId, SnapshotData>()
  /** Snapshot sends in flight, by `${shard}:${peer}`. */
  private readonly snapshotSends = new Map<string, AbortController>()
  private readonly stats = { iterations: 0, readies: 0, writes: 0, envelopesDropped: 0 }

  private constructor(
    init: NodeHostInit,
    components: NodeHostComponents,
    hosted: readonly HostedShard[],
    groups: RaftGroup[],
  ) {
    this.nodeId = init.nodeId
    this.hosted = new Map(hosted.map((h) => [h.shardId, h]))
    this.groups = groups
    this.groupById = new Map(groups.map((g) => [g.shardId, g]))
    this.engine = components.engine
    this.clock = components.clock
    this.limits = components.limits
    this.transport = components.transport
    this.onFatal = components.onFatal
    this.tickMs = init.tickMs
    this.log = components.logger.child({ component: 'host' })
    const submit = (shardId: ShardId, run: (group: RaftGroup) => void): void =>
      this.enqueueRequest({ kind: 'run', shardId, run })
    this.replicaById = new Map(
      groups.map((g) => [
        g.shardId,
        new RaftReplica(g, { engine: this.engine, clock: this.clock, limits: this.limits, submit }),
      ]),
    )
  }

  /**
   * Opens every replica of this node: loads the Raft state and applied state of each, or creates
   * the replicas of `init.bootstrap` (a new cluster, or a joined node with none) on first start.
   */
  static async open(init: NodeHostInit, components: NodeHostComponents): Promise<NodeHost> {
    const { engine, limits } = components
    const log = components.logger.child({ component: 'host' })
    const stored = await engine.get(shardCountKey)
    if (stored !== null) {
      const count = new ByteReader(stored, 0, 'shard count').uvarint()
      if (count !== init.shardCount)
        throw new KvError(
          ErrorCode.InvalidArgument,
          `the data directory holds a cluster of ${count} shards; --shards ${init.shardCount} cannot change it`,
          { details: { field: 'shardCount' } },
        )
    }
    const hostedRaw = await engine.get(hostedKey)
    let hosted: HostedShard[]
    if (hostedRaw !== null) {
      hosted = decodeHosted(hostedRaw)
    } else {
      hosted = [...init.bootstrap]
      const batch = engine.batch()
      for (const h of hosted) {
        const confState: ConfState = {
          voters: [...h.voters].sort((a, b) => a - b),
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        }
        const store = await ShardLogStore.open(engine, h.shardId)
        if (store.isEmpty()) ShardLogStore.stageBootstrap(batch, h.shardId, confState)
      }
      batch.put(shardCountKey, new ByteWriter(10).uvarint(init.shardCount).finish())
      batch.put(hostedKey, encodeHosted(hosted))
      await engine.write(batch, { sync: true })
      log.info({ replicas: hosted.length }, 'replicas created')
    }
    const groups: RaftGroup[] = []
    for (const h of hosted) {
      const store = await ShardLogStore.open(engine, h.shardId)
      const machine = await loadMachine(engine, h, components)
      groups.push(
        new RaftGroup(
          {
            nodeId: init.nodeId,
            shardId: h.shardId,
            hashStart: h.hashStart,
            hashEnd: h.hashEnd,
            ...(h.kind === 'meta' ? { dataRange: shardDataRange(h.shardId) } : {}),
            tickMs: init.tickMs,
            raft: {
              electionTicks,
              heartbeatTicks,
              preVote: true,
              checkQuorum: true,
              readOnly: init.leaseReads ? ReadOnlyOption.LeaseBased : ReadOnlyOption.Safe,
            },
          },
          {
            store,
            machine,
            clock: components.clock,
            random: components.random,
            logger: components.logger,
            limits,
            machineAt: (appliedIndex, dedupRecords) => newMachine(h, appliedIndex, dedupRecords, components),
          },
        ),
      )
    }
    return new NodeHost(init, components, hosted, groups)
  }

  /** Starts the tick timer, the transport and the Ready loop. */
  start(): void {
    const handler: TransportHandler = {
      onEnvelopes: (envelopes) => this.enqueuePeer({ kind: 'envelopes', envelopes }, envelopes.length),
      onSnapshot: (header, chunks, signal) => this.receiveSnapshot(header, chunks, signal),
      onUnreachable: (peer) => this.enqueuePeer({ kind: 'unreachable', peer }, 1),
    }
    this.transport.start(handler)
    // A group whose only voter is this node need not wait out an election timeout.
    for (const g of this.groups) {
      const voters = g.voters()
      if (voters.length === 1 && voters[0] === this.nodeId) g.raw.campaign()
    }
    this.scheduleTick()
    this.loopDone = this.run().catch((err: unknown) => this.fail(err))
  }

  /** This node's replica of the data shard holding `hash`; WRONG_SHARD when it holds none. */
  replicaForHash(hash: bigint): RaftReplica {
    for (const h of this.hosted.values())
      if (h.kind === 'data' && h.hashStart <= hash && hash < h.hashEnd)
        return this.replicaById.get(h.shardId)!
    throw new KvError(ErrorCode.WrongShard, 'this node holds no replica of the shard of this key')
  }

  /** This node's replica of `shardId`, if it holds one. */
  replica(shardId: ShardId): RaftReplica | undefined {
    return this.replicaById.get(shardId)
  }

  get replicas(): readonly RaftReplica[] {
    return [...this.replicaById.values()]
  }

  /** The replicas this node holds, as stored. */
  get hostedShards(): readonly HostedShard[] {
    return [...this.hosted.values()]
  }

  /** The shards this node leads now, with their terms (for the heartbeat to the meta shard). */
  leaderships(): { shardId: ShardId; term: number }[] {
    return this.groups.filter((g) => g.role === 'leader').map((g) => ({ shardId: g.shardId, term: g.term }))
  }

  /** An estimate of the bytes each data replica's user data takes on disk. */
  async approximateBytes(): Promise<Map<ShardId, number>> {
    const out = new Map<ShardId, number>()
    for (const g of this.groups) out.set(g.shardId, await this.engine.approximateBytes(g.dataRange))
    return out
  }

  status(): ShardView[] {
    return this.groups.map((g) => {
      const cs = g.raw.status().config
      return {
        shardId: g.shardId,
        range: { start: g.hashStart, end: g.hashEnd },
        role: g.role,
        leaderId: g.leaderId,
        term: g.term,
        appliedIndex: g.durableApplied,
        commitIndex: g.commitIndex,
        voters: [...cs.voters],
        learners: [...cs.learners],
      }
    })
  }

  counters(): Readonly<typeof this.stats> {
    return this.stats
  }

  /** Stops the loop (waiters fail UNAVAILABLE; writes in flight end with an unknown outcome). */
  async close(): Promise<void> {
    if (this.stopping) return await this.loopDone
    this.stopping = true
    this.tickTimer?.cancel()
    for (const c of this.snapshotSends.values()) c.abort(new KvError(ErrorCode.Unavailable, 'node stopping'))
    this.wake?.()
    await this.loopDone
    const err = new KvError(ErrorCode.Unavailable, 'node is stopping')
    for (const g of this.groups) g.failAll(err)
    for (const r of this.replicaById.values()) await r.close()
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
      if (this.inbox.length === 0 && this.ticksDue === 0 && !this.groups.some((g) => g.hasReady())) {
        await new Promise<void>((resolve) => {
          this.wake = resolve
        })
        this.wake = undefined
        continue
      }
      this.runInbox()
      for (const g of this.groups) g.flushReads()
      const ticks = Math.min(this.ticksDue, ticksPerIterationMax)
      this.ticksDue = 0
      for (let t = 0; t < ticks; t++) for (const g of this.groups) g.tick()
      this.ticksSinceBalance += ticks
      if (this.ticksSinceBalance >= leaderBalanceTicks) {
        this.ticksSinceBalance = 0
        this.balanceLeaders()
      }
      await this.handleReadies()
    }
  }

  private balanceLeaders(): void {
    for (const g of this.groups) {
      const voters = [...g.voters()].sort((a, b) => a - b)
      const preferred = voters[g.shardId % voters.length]
      if (preferred !== undefined) g.balanceLeadership(preferred, leaderBalanceLagMax)
    }
  }

  private runInbox(): void {
    const items = this.inbox.splice(0, inboxItemsPerIterationMax)
    for (const item of items) {
      switch (item.kind) {
        case 'envelopes':
          this.inboxCount -= item.envelopes.length
          for (const env of item.envelopes) this.deliver(env)
          break
        case 'run': {
          this.inboxCount--
          const g = this.groupById.get(item.shardId)
          if (g !== undefined) item.run(g)
          break
        }
        case 'snapshot': {
          this.inboxCount--
          const g = this.groupById.get(item.shardId)
          if (g !== undefined) {
            // Staged for this iteration's Ready: the group installs it in this iteration's batch.
            this.pendingSnapshots.set(item.shardId, item.data)
            g.step(item.message)
          }
          item.done()
          break
        }
        case 'snapshotStatus': {
          this.inboxCount--
          this.groupById.get(item.shardId)?.raw.reportSnapshot(item.peer, item.ok)
          break
        }
        case 'unreachable':
          this.inboxCount--
          for (const g of this.groups) g.raw.reportUnreachable(item.peer)
          break
      }
    }
  }

  private deliver(env: PeerEnvelope): void {
    const g = this.groupById.get(env.shardId)
    if (g === undefined || env.to !== this.nodeId) return
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
    else if (payload.message.from === env.from && payload.message.to === this.nodeId) g.step(payload.message)
  }

  private async handleReadies(): Promise<void> {
    const work: { readonly group: RaftGroup; readonly rd: Ready }[] = []
    for (const group of this.groups) if (group.hasReady()) work.push({ group, rd: group.ready() })
    this.stats.iterations++
    if (work.length === 0) return
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
    const staged: StagedReady[] = work.map(({ group, rd }) =>
      group.stage(rd, batch, overlay, this.pendingSnapshots.get(group.shardId)),
    )
    if (batch.length > 0) {
      const sync = work.some(({ rd }) => rd.mustSync || rd.snapshot !== null)
      await this.engine.write(batch, { sync })
      this.stats.writes++
    }
    for (const [i, { group, rd }] of work.entries()) {
      group.commit(rd, staged[i]!)
      this.send(group, rd.messagesAfterPersist)
    }
    this.pendingSnapshots.clear()
    this.reportApplied()
  }

  /** Tells the other voters of each group how far this node has applied (for `all` writes). */
  private reportApplied(): void {
    for (const g of this.groups) {
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
      this.transport.send({
        shardId: group.shardId,
        from: this.nodeId,
        to: m.to,
        payload: encodeRaftPayload(m),
      })
    }
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
    // The views are taken now: no write is in flight between iterations, so they hold exactly the
    // durable applied state that point.meta describes.
    const exports = point.ranges.map((range) => this.engine.exportRange(range))
    const message: MsgSnap = { ...m, snapshot: { meta: point.meta, data: new Uint8Array(0) } }
    async function* chunks(): AsyncGenerator<Uint8Array> {
      yield frame(encodeSnapshotPrelude(message))
      for (const it of exports) for await (const chunk of it) yield frame(encodeSnapshotEntries(chunk))
    }
    const controller = new AbortController()
    const timer = this.clock.setTimer(this.limits.snapshotSendMsMax, () =>
      controller.abort(new KvError(ErrorCode.DeadlineExceeded, 'snapshot send took too long')),
    )
    this.snapshotSends.set(key, controller)
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
      else this.log.info({ shard: group.shardId, to: m.to, index: point.meta.index }, 'snapshot sent')
      this.enqueuePeer({ kind: 'snapshotStatus', shardId: group.shardId, peer: m.to, ok }, 1)
      if (!ok) for (const it of exports) void it.return?.()
    }
    this.transport.sendSnapshot(header, chunks(), controller.signal).then(
      () => finish(true),
      (err: unknown) => finish(false, err),
    )
  }

  private async receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    if (!this.groupById.has(header.shardId) || header.to !== this.nodeId)
      throw new KvError(ErrorCode.InvalidArgument, `no shard ${header.shardId} here`)
    let message: MsgSnap | undefined
    const entries: KvEntry[] = []
    let bytes = 0
    const frames = new SnapshotFrameReader(this.limits.snapshotBytesMax)
    for await (const chunk of chunks) {
      signal.throwIfAborted()
      bytes += chunk.length
      if (bytes > this.limits.snapshotBytesMax)
        throw new KvError(ErrorCode.Overloaded, 'snapshot larger than limits.snapshotBytesMax', {
          details: { limit: this.limits.snapshotBytesMax, shardId: header.shardId },
        })
      for (const f of frames.push(chunk)) {
        if (message === undefined) message = decodeSnapshotPrelude(f)
        else for (const e of decodeSnapshotEntries(f)) entries.push(e)
      }
    }
    frames.end()
    if (message === undefined || message.snapshot.meta.index !== header.index || message.from !== header.from)
      throw new KvError(ErrorCode.InvalidArgument, 'snapshot stream does not match its header')
    const meta = message.snapshot.meta
    await new Promise<void>((resolve, reject) => {
      try {
        this.enqueueRequest({
          kind: 'snapshot',
          shardId: header.shardId,
          message,
          data: { meta, entries },
          done: resolve,
        })
      } catch (err) {
        reject(err)
      }
    })
  }

  private fail(err: unknown): void {
    if (this.failed !== undefined) return
    this.failed = err
    this.stopping = true
    this.tickTimer?.cancel()
    this.log.fatal({ err }, 'node loop failed: stopping')
    const error = new KvError(ErrorCode.Internal, 'node stopped after a failure', { cause: err })
    for (const g of this.groups) g.failAll(error)
    this.onFatal(err)
    if (err instanceof AssertionError)
      queueMicrotask(() => {
        throw err
      })
  }
}

/** One copy of each key (the same key may be read by several commands of the batch). */
function dedupeKeys(keys: readonly Uint8Array[]): Uint8Array[] {
  const byHex = new Map<string, Uint8Array>()
  for (const k of keys) byHex.set(bytesKey(k), k)
  return [...byHex.values()]
}

async function loadMachine(
  engine: Engine,
  hosted: HostedShard,
  components: NodeHostComponents,
): Promise<KvStateMachine> {
  const appliedRaw = await engine.get(raftAppliedIndexKey(hosted.shardId))
  const appliedIndex = appliedRaw === null ? (0 as LogIndex) : decodeAppliedIndex(appliedRaw)
  const records: KvEntry[] = []
  for await (const entry of engine.iterate(dedupRange(hosted.shardId))) records.push(entry)
  return newMachine(hosted, appliedIndex, records, components)
}

function newMachine(
  hosted: HostedShard,
  appliedIndex: LogIndex,
  dedupRecords: readonly KvEntry[],
  components: NodeHostComponents,
): KvStateMachine {
  const shardId = hosted.shardId
  return new KvStateMachine(
    {
      shardId,
      appliedIndex,
      dedupRecords,
      dedupClientsMax: components.limits.dedupClientsMax,
      dedupResultsPerClientMax: components.limits.dedupResultsPerClientMax,
      // The meta shard keeps its records under its shard id, outside the user hash space.
      ...(hosted.kind === 'meta'
        ? { storageKeyOf: (_hash: bigint, key: Uint8Array) => shardDataKey(shardId, key) }
        : {}),
    },
    { hasher: components.hasher },
  )
}
