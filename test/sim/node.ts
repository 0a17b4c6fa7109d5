/**
 * The node harness: one simulated ringkv node hosting one Raft group, driven exactly as the
 * production shell drives the pure core (STYLE.md 7.1 "one loop that runs at its own pace"):
 *
 *   step the queued inbox (peer messages, client requests, admin calls), tick as the clock says,
 *   then for one Ready: send `messages` at once, write snapshot + entries + hard state as one
 *   batch (fsync when `mustSync`), and only once that is durable send `messagesAfterPersist`,
 *   apply the snapshot and `committedEntries`, answer `readStates`, and `advance`.
 *
 * Nothing calls into the RawNode between `ready()` and `advance()`: input that arrives while the
 * write is in flight waits in the inbox, as it does behind the production ready loop.
 *
 * The node also plays the shard's request paths: writes are proposals answered when applied,
 * linearizable reads go through ReadIndex (§6.4; lease-based when the run configures it),
 * eventual reads answer from local state at once.
 */
import {
  assert,
  type LogIndex,
  type Logger,
  type NodeId,
  type Random,
  type TimerHandle,
} from '../../src/common/index.ts'
import {
  RawNode,
  decodeConfChange,
  type ConfState,
  type Entry,
  type Message,
  type RaftConfig,
  type Ready,
  type Role,
  type TestingFaults,
} from '../../src/raft/index.ts'
import type { RaftSafetyChecker } from './checkers/raft-safety.ts'
import { SimDisk } from './disk.ts'
import type { SimNetwork } from './network.ts'
import { SimClock, type Simulator } from './simulator.ts'
import { KvStateMachine, encodeCommand, type Command, type CommandResult } from './state-machine.ts'
import type { MemoryLogStorage } from '../../src/raft/index.ts'

export type WriteReply =
  | { readonly ok: true; readonly result: CommandResult; readonly servedBy: NodeId }
  | {
      readonly ok: false
      readonly code: 'not-leader' | 'overloaded' | 'dropped' | 'refused'
      /** True when this attempt certainly did not and will not apply the command. */
      readonly notApplied: boolean
      readonly leaderHint: NodeId | null
    }

export type ReadReply =
  | {
      readonly ok: true
      readonly value: string | null
      readonly version: number
      readonly servedBy: NodeId
      readonly appliedIndex: number
    }
  | { readonly ok: false; readonly code: 'no-leader' | 'overloaded'; readonly leaderHint: NodeId | null }

export type ClientRequest =
  | { readonly kind: 'write'; readonly command: Command; readonly reply: (r: WriteReply) => void }
  | {
      readonly kind: 'read'
      readonly key: string
      readonly mode: 'linearizable' | 'eventual'
      readonly reply: (r: ReadReply) => void
    }

type InboxItem =
  | { readonly kind: 'message'; readonly message: Message }
  | { readonly kind: 'request'; readonly request: ClientRequest }
  | { readonly kind: 'admin'; readonly run: (raw: RawNode) => void }

export interface SimNodeInit {
  readonly id: NodeId
  readonly tickMs: number
  readonly electionTicks: number
  readonly heartbeatTicks: number
  readonly readOnly: 'safe' | 'lease-based'
  readonly preVote: boolean
  readonly checkQuorum: boolean
  readonly testingFaults: TestingFaults
  /** Take a snapshot and compact after this many applied entries; 0 = never. */
  readonly snapshotEntries: number
  /** Entries per append message; 0 = the core's default. */
  readonly appendEntriesMax: number
  readonly fsyncMsMean: number
  readonly clockDriftPpm: number
  readonly clockOffsetMs: number
  readonly inboxItemsMax: number
}

export interface SimNodeComponents {
  readonly sim: Simulator
  readonly network: SimNetwork<Message>
  readonly random: Random
  readonly logger: Logger
  readonly checker: RaftSafetyChecker
  /** Called with every applied write (the workload learns which writes happened). */
  readonly onApply?: (node: NodeId, index: LogIndex, result: CommandResult, command: Command) => void
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class SimNode {
  readonly id: NodeId
  readonly clock: SimClock
  readonly disk: SimDisk
  private raw: RawNode | null = null
  sm = new KvStateMachine()
  up = false
  incarnation = 0
  /** The last soft state and term seen in a Ready. */
  role: Role = 'follower'
  term = 0
  leaderId: NodeId | null = null
  private inbox: InboxItem[] = []
  private ticksDue = 0
  private scheduled = false
  private tickTimer: TimerHandle | null = null
  private readonly proposals = new Map<number, { term: number; reply: (r: WriteReply) => void }>()
  private readonly reads = new Map<string, { key: string; reply: (r: ReadReply) => void }>()
  private readsAwaitingApply: { index: number; key: string; reply: (r: ReadReply) => void }[] = []
  private readSeq = 0
  private readonly log: Logger
  readies = 0
  inboxDrops = 0

  constructor(
    private readonly init: SimNodeInit,
    private readonly components: SimNodeComponents,
    storage: MemoryLogStorage,
  ) {
    this.id = init.id
    this.clock = new SimClock(components.sim, init.clockDriftPpm, init.clockOffsetMs)
    this.disk = new SimDisk(components.sim, components.random.fork('disk'), storage, init.fsyncMsMean)
    this.log = components.logger
  }

  /** Boots (or reboots) from what the disk holds. */
  start(): void {
    assert(!this.up)
    this.up = true
    this.incarnation++
    const storage = this.disk.storage
    const snap = storage.snapshot()
    assert(snap.ok)
    this.sm = new KvStateMachine()
    this.sm.restore(snap.value.data, snap.value.meta.index)
    const config: RaftConfig = {
      id: this.id,
      electionTicks: this.init.electionTicks,
      heartbeatTicks: this.init.heartbeatTicks,
      preVote: this.init.preVote,
      checkQuorum: this.init.checkQuorum,
      readOnly: this.init.readOnly,
      testingFaults: this.init.testingFaults,
      ...(this.init.appendEntriesMax > 0 ? { appendEntriesMax: this.init.appendEntriesMax } : {}),
    }
    this.raw = new RawNode(config, {
      storage,
      random: this.components.random.fork(`raft-${this.incarnation}`),
      logger: this.log,
    })
    const entries = storage.entries(
      storage.firstIndex(),
      (storage.lastIndex() + 1) as LogIndex,
      Number.MAX_SAFE_INTEGER,
    )
    assert(entries.ok)
    this.components.checker.onStart(this.id, storage.hardState(), snap.value, entries.value)
    this.term = storage.hardState().term
    this.role = 'follower'
    this.leaderId = null
    this.log.info(
      { incarnation: this.incarnation, lastIndex: storage.lastIndex(), term: this.term },
      'node started',
    )
    this.scheduleTick()
  }

  /** The process dies: volatile state and the disk's unsynced writes are gone. */
  crash(): void {
    if (!this.up) return
    this.up = false
    this.raw = null
    this.tickTimer?.cancel()
    this.tickTimer = null
    this.disk.crash()
    this.inbox = []
    this.ticksDue = 0
    this.proposals.clear()
    this.reads.clear()
    this.readsAwaitingApply = []
    this.role = 'follower'
    this.leaderId = null
    this.components.checker.onCrash(this.id)
    this.log.info({}, 'node crashed')
  }

  receive(message: Message): void {
    this.enqueue({ kind: 'message', message })
  }

  request(request: ClientRequest): void {
    this.enqueue({ kind: 'request', request })
  }

  /** Runs `run` against the RawNode from inside the loop (membership, transfers, reports). */
  admin(run: (raw: RawNode) => void): void {
    this.enqueue({ kind: 'admin', run })
  }

  private enqueue(item: InboxItem): void {
    if (!this.up) return
    if (this.inbox.length >= this.init.inboxItemsMax) {
      // A full inbox drops (limits.inboxMessagesMax): peers retry, clients time out.
      this.inboxDrops++
      return
    }
    this.inbox.push(item)
    this.kick()
  }

  private scheduleTick(): void {
    this.tickTimer = this.clock.setTimer(this.init.tickMs, () => {
      this.ticksDue = Math.min(this.ticksDue + 1, 3)
      this.kick()
      this.scheduleTick()
    })
  }

  private kick(): void {
    if (!this.up || this.scheduled || this.disk.busy) return
    this.scheduled = true
    const incarnation = this.incarnation
    this.components.sim.schedule(0, () => {
      this.scheduled = false
      if (this.incarnation === incarnation) this.loopOnce()
    })
  }

  /** One iteration of the ready loop. */
  private loopOnce(): void {
    const raw = this.raw
    if (!this.up || raw === null || this.disk.busy) return
    const items = this.inbox
    this.inbox = []
    for (const item of items) this.handle(raw, item)
    for (; this.ticksDue > 0; this.ticksDue--) raw.tick()
    if (raw.hasReady()) this.handleReady(raw, raw.ready())
    else if (this.inbox.length > 0) this.kick()
  }

  private handle(raw: RawNode, item: InboxItem): void {
    switch (item.kind) {
      case 'message': {
        const r = raw.step(item.message)
        if (!r.ok)
          this.log.trace(
            { reason: r.reason, type: item.message.type, from: item.message.from },
            'step rejected',
          )
        return
      }
      case 'admin':
        item.run(raw)
        return
      case 'request':
        this.serve(raw, item.request)
        return
    }
  }

  private serve(raw: RawNode, req: ClientRequest): void {
    if (req.kind === 'write') {
      const r = raw.propose(encodeCommand(req.command))
      if (r.ok) {
        this.proposals.set(r.index, { term: r.term, reply: req.reply })
        return
      }
      const leaderHint = r.reason === 'not-leader' || r.reason === 'transferring' ? r.leaderHint : null
      const code =
        r.reason === 'not-leader' || r.reason === 'transferring'
          ? 'not-leader'
          : r.reason === 'overloaded'
            ? 'overloaded'
            : 'refused'
      req.reply({ ok: false, code, notApplied: true, leaderHint })
      return
    }
    if (req.mode === 'eventual') {
      req.reply(this.readLocal(req.key))
      return
    }
    const context = `${this.id}:${this.incarnation}:${++this.readSeq}`
    const r = raw.readIndex(encoder.encode(context))
    if (!r.ok) {
      req.reply({
        ok: false,
        code: r.reason === 'overloaded' ? 'overloaded' : 'no-leader',
        leaderHint: this.leaderId,
      })
      return
    }
    this.reads.set(context, { key: req.key, reply: req.reply })
  }

  private readLocal(key: string): ReadReply {
    const v = this.sm.get(key)
    return {
      ok: true,
      value: v?.value ?? null,
      version: v?.version ?? 0,
      servedBy: this.id,
      appliedIndex: this.sm.applied,
    }
  }

  private handleReady(raw: RawNode, rd: Ready): void {
    this.readies++
    if (rd.hardState !== null) this.term = rd.hardState.term
    if (rd.softState.role !== this.role || rd.softState.leaderId !== this.leaderId) {
      this.log.debug(
        { role: rd.softState.role, leader: rd.softState.leaderId, term: this.term },
        'soft state',
      )
    }
    this.role = rd.softState.role
    this.leaderId = rd.softState.leaderId
    for (const m of rd.messages) this.send(m)
    const incarnation = this.incarnation
    this.disk.write(rd, () => {
      assert(this.incarnation === incarnation && this.up, 'a crash cancels the write')
      this.components.checker.onPersisted(this.id, rd.softState, rd.hardState, rd.snapshot, rd.entries)
      for (const m of rd.messagesAfterPersist) this.send(m)
      if (rd.snapshot !== null) this.restore(rd.snapshot.meta.index, rd.snapshot.data)
      for (const e of rd.committedEntries) this.apply(e)
      for (const rs of rd.readStates) {
        const key = decoder.decode(rs.context)
        const waiting = this.reads.get(key)
        if (waiting === undefined) continue
        this.reads.delete(key)
        this.readsAwaitingApply.push({ index: rs.index, key: waiting.key, reply: waiting.reply })
      }
      this.serveReadsUpTo(this.sm.applied)
      raw.advance(rd)
      this.maybeCompact(raw)
      this.kick()
    })
  }

  private send(m: Message): void {
    if (m.to === this.id) {
      this.receive(m)
      return
    }
    this.components.network.send(this.id, m.to, m)
  }

  private restore(index: LogIndex, data: Uint8Array): void {
    this.sm.restore(data, index)
    this.components.checker.onRestored(this.id, index, this.sm.stateHash())
    // Proposals at or below the snapshot were overtaken by the leader's log: their fate is unknown here.
    for (const i of [...this.proposals.keys()]) if (i <= index) this.proposals.delete(i)
  }

  private apply(e: Entry): void {
    if (e.index <= this.sm.applied) return // covered by a snapshot restored in this Ready
    if (e.type === 'confChange') {
      this.sm.skip(e.index)
      const cc = decodeConfChange(e.data)
      this.log.info(
        { index: e.index, changes: cc?.changes ?? null, transition: cc?.transition ?? null },
        'conf change applied',
      )
    } else {
      const out = this.sm.apply(e.index, e.data)
      if (out !== null) this.components.onApply?.(this.id, e.index, out.result, out.command)
      const p = this.proposals.get(e.index)
      if (p !== undefined) {
        this.proposals.delete(e.index)
        if (p.term === e.term && out !== null) p.reply({ ok: true, result: out.result, servedBy: this.id })
        // Another entry took this index: the proposal can never commit (log matching, §5.3).
        else p.reply({ ok: false, code: 'dropped', notApplied: true, leaderHint: this.leaderId })
      }
    }
    this.components.checker.onApplied(this.id, e, this.sm.stateHash())
  }

  private serveReadsUpTo(applied: number): void {
    if (this.readsAwaitingApply.length === 0) return
    const still: typeof this.readsAwaitingApply = []
    for (const r of this.readsAwaitingApply) {
      if (r.index <= applied) r.reply(this.readLocal(r.key))
      else still.push(r)
    }
    this.readsAwaitingApply = still
  }

  private maybeCompact(raw: RawNode): void {
    const every = this.init.snapshotEntries
    if (every <= 0) return
    const storage = this.disk.storage
    const snap = storage.snapshot()
    assert(snap.ok)
    const applied = this.sm.applied
    if (applied - snap.value.meta.index < every) return
    const config: ConfState = raw.status().config
    storage.createSnapshot(applied, config, this.sm.serialize())
    // Keep half a snapshot interval of entries so some laggards catch up from the log, others by snapshot.
    storage.compact(Math.max(snap.value.meta.index, applied - Math.floor(every / 2)) as LogIndex)
    this.log.debug({ index: applied }, 'snapshot taken')
  }

  /** Read-only views for checkers, nemeses and tests. */
  get appliedIndex(): number {
    return this.sm.applied
  }

  get isLeader(): boolean {
    return this.up && this.role === 'leader'
  }

  status(): ReturnType<RawNode['status']> | null {
    return this.raw === null ? null : this.raw.status()
  }

  pendingWork(): number {
    return this.inbox.length + this.proposals.size + this.reads.size + this.readsAwaitingApply.length
  }
}
