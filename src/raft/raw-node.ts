/**
 * RawNode: the public face of one Raft group member (etcd-io/raft rawnode.go, tikv/raft-rs
 * raw_node.rs). Inputs are `tick`, `step` and the request methods; output is a `Ready`, which
 * the shell persists, sends and applies, then acknowledges with `advance`.
 */
import { assert, isSafeUint as isSafeUintAny } from '../common/index.ts'
import type { LogIndex, NodeId } from '../common/index.ts'
import { resolveConfig } from './config.ts'
import type { RaftComponents, RaftConfig, ResolvedConfig } from './config.ts'
import { EntryType, messageTypes } from './messages.ts'
import type { ConfChange, HardState, Message, Snapshot } from './messages.ts'
import { Raft } from './raft.ts'
import { confStateOf } from './tracker/tracker.ts'
import type {
  CampaignResult,
  ProgressStatus,
  ProposeResult,
  ReadIndexResult,
  Ready,
  SoftState,
  Status,
  StepRejection,
  StepResult,
  TransferResult,
} from './types.ts'

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

/**
 * Checks the shape of a message from the wire; a bad one is refused, never thrown on. Every
 * index it names is at most `indexMax` (terms are bounded by `Raft.step`, which knows its own).
 */
function wellFormed(m: Message, indexMax: number): boolean {
  if (typeof m !== 'object' || m === null) return false
  const isSafeUint = (n: unknown): n is number => isSafeUintAny(n) && n <= indexMax
  if (!messageTypes.includes(m.type)) return false
  if (!isSafeUint(m.from) || m.from === 0 || !isSafeUint(m.to) || m.to === 0 || !isSafeUint(m.term))
    return false
  switch (m.type) {
    case 'MsgApp':
      if (!isSafeUint(m.index) || !isSafeUint(m.logTerm) || !isSafeUint(m.commit)) return false
      if (!Array.isArray(m.entries)) return false
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i]!
        if (
          e.index !== m.index + 1 + i ||
          !isSafeUint(e.term) ||
          e.term > m.term ||
          !(e.data instanceof Uint8Array)
        )
          return false
        if (e.type !== EntryType.Normal && e.type !== EntryType.ConfChange) return false
        if (i > 0 && e.term < m.entries[i - 1]!.term) return false
      }
      if (m.entries.length > 0 && m.entries[0]!.term < m.logTerm) return false
      return true
    case 'MsgAppResp':
      return isSafeUint(m.index) && isSafeUint(m.rejectHint) && isSafeUint(m.logTerm)
    case 'MsgVote':
    case 'MsgPreVote':
      return isSafeUint(m.index) && isSafeUint(m.logTerm)
    case 'MsgHeartbeat':
      return isSafeUint(m.commit) && isSafeUint(m.round)
    case 'MsgHeartbeatResp':
      return isSafeUint(m.round)
    case 'MsgSnap':
      return (
        isSafeUint(m.snapshot?.meta?.index) && isSafeUint(m.snapshot.meta.term) && m.snapshot.meta.index > 0
      )
    case 'MsgReadIndex':
      return m.context instanceof Uint8Array
    case 'MsgReadIndexResp':
      return m.context instanceof Uint8Array && isSafeUint(m.index)
    case 'MsgTransferLeader':
      return isSafeUint(m.transferee) && m.transferee > 0
    default:
      return true
  }
}

/**
 * RawNode is a single Raft group member. Not re-entrant: only the owning loop calls into it.
 * At most one Ready is outstanding: after `ready()`, `hasReady()` is false until `advance()`.
 * Other calls (tick, step, propose...) are allowed in between; their output goes to the next
 * Ready.
 */
export class RawNode {
  private readonly raft: Raft
  readonly config: ResolvedConfig
  /** The hard state handed out last (or loaded at start): what storage will hold. */
  private prevHardState: HardState
  private prevSoftState: SoftState
  private readyNumber = 0
  /** Invariant: at most one Ready between ready() and advance(). */
  private outstanding: Ready | null = null

  constructor(config: RaftConfig, components: RaftComponents) {
    this.config = resolveConfig(config)
    this.raft = new Raft(this.config, components)
    this.prevHardState = components.storage.initialState().hardState
    this.prevSoftState = this.softState()
  }

  /** Advances logical time by one tick (elections, heartbeats, check-quorum, lease expiry). */
  tick(): void {
    this.raft.tick()
  }

  /**
   * Handles a message from a peer. Never throws for peer input: messages for another node,
   * from a stale term, from an unknown peer, or malformed come back as `{ ok: false, reason }`.
   */
  step(m: Message): StepResult {
    if (!wellFormed(m, this.config.indexMax)) return { ok: false, reason: 'malformed' }
    if (m.from === this.raft.id) return { ok: false, reason: 'malformed' }
    return this.raft.step(m)
  }

  /** Why `step(m)` would refuse `m` outright (malformed, misaddressed, term, leader), or null. Pure. */
  refusal(m: Message): StepRejection | null {
    if (!wellFormed(m, this.config.indexMax)) return 'malformed'
    if (m.from === this.raft.id) return 'malformed'
    return this.raft.refusal(m)
  }

  /** Proposes application data. On a follower: `not-leader` with the leader hint. */
  propose(data: Uint8Array): ProposeResult {
    return this.raft.propose(data)
  }

  /** Proposes a membership change (one at a time; only after the leader committed in its term). */
  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.raft.proposeConfChange(cc)
  }

  /**
   * Requests a linearizable read (§6.4). The answer is a ReadState with the same `context` in a
   * later Ready; read once the applied index reaches its index. Followers forward to the leader.
   */
  readIndex(context: Uint8Array): ReadIndexResult {
    return this.raft.readIndex(context)
  }

  /** Transfers leadership to `to` (§3.10). Followers forward the request to the leader. */
  transferLeader(to: NodeId): TransferResult {
    return this.raft.transferLeader(to)
  }

  /** Starts an election now (with pre-vote when enabled). */
  campaign(): CampaignResult {
    return this.raft.hup(false)
  }

  private softState(): SoftState {
    return { leaderId: this.raft.leaderId, role: this.raft.role }
  }

  /** True when there is something in a Ready and none is outstanding. */
  hasReady(): boolean {
    if (this.outstanding !== null) return false
    const r = this.raft
    const ss = this.softState()
    if (ss.leaderId !== this.prevSoftState.leaderId || ss.role !== this.prevSoftState.role) return true
    if (!sameHardState(r.hardState(), this.prevHardState)) return true
    if (r.log.unstable.nextSnapshot() !== null) return true
    if (r.log.unstable.nextEntries().length > 0) return true
    if (r.msgs.length > 0 || r.msgsAfterPersist.length > 0 || r.appendsPending) return true
    if (r.readStates.length > 0) return true
    return r.log.hasNextCommittedEntries()
  }

  /** Hands out everything pending. The caller owns the result; call `advance(ready)` when done. */
  ready(): Ready {
    assert(this.outstanding === null, 'rawnode: ready() while a Ready is outstanding')
    const r = this.raft
    r.flushPendingAppends()
    const hs = r.hardState()
    const hardState = sameHardState(hs, this.prevHardState) ? null : hs
    const entries = r.log.unstable.nextEntries()
    const snapshot = r.log.unstable.nextSnapshot()
    const committedEntries = r.log.nextCommittedEntries(this.config.committedBytesPerReadyMax)
    const mustSync =
      entries.length > 0 ||
      snapshot !== null ||
      (hardState !== null &&
        (hardState.term !== this.prevHardState.term || hardState.vote !== this.prevHardState.vote))
    const rd: Ready = {
      number: ++this.readyNumber,
      softState: this.softState(),
      hardState,
      entries,
      snapshot,
      committedEntries,
      messages: r.msgs,
      messagesAfterPersist: r.msgsAfterPersist,
      readStates: r.readStates,
      mustSync,
    }
    // Accept: nothing in rd is handed out again.
    r.msgs = []
    r.msgsAfterPersist = []
    r.readStates = []
    r.log.unstable.acceptInProgress()
    if (snapshot !== null) r.log.acceptApplying(snapshot.meta.index)
    const lastCommitted = committedEntries[committedEntries.length - 1]
    if (lastCommitted !== undefined) {
      r.log.acceptApplying(lastCommitted.index)
      r.reduceUncommitted(committedEntries)
    }
    if (hardState !== null) this.prevHardState = hardState
    this.prevSoftState = rd.softState
    this.outstanding = rd
    return rd
  }

  /**
   * Acknowledges that `ready` was persisted, its messages sent and its committed entries
   * applied. Conf change entries among them take effect here. The leader's own log counts
   * towards commitment from here on, and a candidate's own vote is counted.
   */
  advance(ready: Ready): void {
    assert(this.outstanding !== null, 'rawnode: advance() without ready()')
    assert(
      ready.number === this.outstanding.number,
      `rawnode: advance(${ready.number}) but outstanding is ${this.outstanding.number}`,
    )
    this.outstanding = null
    const r = this.raft
    if (ready.snapshot !== null) {
      r.log.unstable.stableSnapTo(ready.snapshot.meta.index)
      r.log.appliedTo(ready.snapshot.meta.index)
    }
    const lastEntry = ready.entries[ready.entries.length - 1]
    if (lastEntry !== undefined) r.log.unstable.stableTo(lastEntry.index, lastEntry.term)
    for (const e of ready.committedEntries) {
      r.log.appliedTo(e.index)
      if (e.type === EntryType.ConfChange) r.applyConfChangeEntry(e)
    }
    r.onPersisted()
    r.maybeAutoLeave()
    r.log.checkInvariants()
  }

  /** The shell could not reach `id` (a send failed); the leader probes it again. */
  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id)
  }

  /** The shell finished sending a snapshot to `id`, successfully or not. */
  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok)
  }

  /**
   * A snapshot of the application at the applied index, carrying the configuration in effect
   * there (conf changes take effect as they are applied, so that is the current one). The
   * shell stores it (with `data` it produced) and may then compact its log up to its index.
   */
  createSnapshot(data: Uint8Array): Snapshot {
    const r = this.raft
    const index = r.log.applied
    const t = r.log.term(index)
    assert(t.ok, `rawnode: no term for applied index ${index}`)
    return { meta: { index, term: t.value, confState: confStateOf(r.tracker.config) }, data }
  }

  /** The index the application has applied (as of the last advance). */
  appliedIndex(): LogIndex {
    return this.raft.log.applied
  }

  status(): Status {
    const r = this.raft
    let progress: Map<NodeId, ProgressStatus> | null = null
    if (r.role === 'leader') {
      progress = new Map()
      for (const id of r.tracker.ids()) {
        const p = r.tracker.get(id)!
        progress.set(id, {
          match: p.match,
          next: p.next,
          state: p.state,
          pendingSnapshot: p.pendingSnapshot,
          recentActive: p.recentActive,
          inflight: p.inflights.size(),
          isLearner: p.isLearner,
        })
      }
    }
    return {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      role: r.role,
      leaderId: r.leaderId,
      leadTransferee: r.leadTransferee,
      config: confStateOf(r.tracker.config),
      progress,
    }
  }

  /** True while a lease-based read would be answered at once (lease mode only). */
  leaseValid(): boolean {
    return this.raft.leaseValid() && this.raft.committedInCurrentTerm()
  }
}
