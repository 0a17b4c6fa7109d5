/**
 * The Raft protocol state machine (one group member). Behaviour is swapped by role through
 * `stepRole`/`tickRole` (etcd-io/raft raft.go). Pure: no I/O, no clock, randomness only from
 * the injected `Random`. `RawNode` wraps this with the Ready/advance cycle; nothing else
 * should call it.
 */
import { assert, unreachable } from '../common/index.ts'
import type { LogIndex, Logger, NodeId, Random, Term } from '../common/index.ts'
import { ReadOnlyOption } from './config.ts'
import type { RaftComponents, ResolvedConfig } from './config.ts'
import { applyConfChange, changeKind } from './confchange/changer.ts'
import { restoreConfig } from './confchange/restore.ts'
import { RaftLog } from './log.ts'
import {
  ConfChangeTransition,
  EntryType,
  decodeConfChange,
  encodeConfChange,
  entryBytes,
} from './messages.ts'
import type {
  ConfChange,
  Entry,
  HardState,
  Message,
  MsgApp,
  MsgAppResp,
  MsgHeartbeat,
  MsgHeartbeatResp,
  MsgPreVote,
  MsgSnap,
  MsgVote,
  Snapshot,
} from './messages.ts'
import { VoteResult } from './quorum/majority.ts'
import { ReadOnly } from './read-only.ts'
import type { ReadRequest } from './read-only.ts'
import { Progress, ProgressState } from './tracker/progress.ts'
import { ProgressTracker, confStateOf } from './tracker/tracker.ts'
import { Role } from './types.ts'
import type {
  CampaignResult,
  ProposeResult,
  ReadIndexResult,
  ReadState,
  StepRejection,
  StepResult,
  TransferResult,
} from './types.ts'

type StepFn = (m: Message) => StepResult

const OK: StepResult = { ok: true }

/** Messages that acknowledge persisted state, so they wait for the Ready's write (§3.8). */
function needsPersist(m: Message): boolean {
  return m.type === 'MsgAppResp' || m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp'
}

export class Raft {
  readonly id: NodeId
  readonly cfg: ResolvedConfig
  readonly log: RaftLog
  readonly tracker = new ProgressTracker()
  private readonly random: Random
  private readonly logger: Logger
  private readonly entryAcceptable: (data: Uint8Array) => boolean

  /** Invariant: never decreases. */
  term = 0 as Term
  vote: NodeId | null = null
  role: Role = Role.Follower
  leaderId: NodeId | null = null

  /** Messages that may be sent at once. */
  msgs: Message[] = []
  /** Messages that may be sent only after the next Ready is persisted. */
  msgsAfterPersist: Message[] = []
  readStates: ReadState[] = []

  /** Ticks since the last election timeout reset (followers, candidates) or check-quorum (leaders). */
  electionElapsed = 0
  /** Proposals appended since the last Ready whose appends have not been sent yet. */
  appendsPending = false
  /**
   * Lease-read safety across restarts (§6.4.1): a node that restarts has forgotten whether it
   * heard from a leader in the last election timeout, so with lease reads on it refuses votes
   * (like a follower in a leader's lease) until it has waited one election timeout itself. A
   * live leader's lease, granted partly by this node before it crashed, therefore expires before
   * this node can help elect another leader. Cleared after electionTicks ticks.
   */
  private restartFenceTicks: number
  /** RaftConfig.awaitingSnapshot: no votes, no campaigns until a snapshot is restored. */
  private awaitingSnapshot: boolean
  private heartbeatElapsed = 0
  /** Invariant: electionTicks <= randomizedElectionTimeout < 2 * electionTicks. */
  private randomizedElectionTimeout = 0

  /** The node a leader transfer is going to. Invariant: non-null only on a leader. */
  leadTransferee: NodeId | null = null
  /** The index of the last conf change the leader appended; none may follow before it is applied. */
  private pendingConfIndex = 0 as LogIndex
  /** Payload bytes proposed in this term and not yet committed (handed out for applying). */
  uncommittedBytes = 0
  /** A candidate counts its own vote only once the hard state carrying it is durable (§3.8). */
  private selfVotePending = false

  private readonly readOnly: ReadOnly
  /** The last heartbeat round broadcast in this term (the ReadIndex/lease context). */
  private heartbeatRound = 0
  /** Leader ticks in this term; the lease is measured in these. */
  private leaderTicks = 0
  /** The leader tick at which each not yet quorum-confirmed round was broadcast. */
  private roundTicks = new Map<number, number>()
  /** The highest round a quorum has echoed, and the tick it was sent at (-Infinity: none). */
  private quorumRound = 0
  private leaseStartTick = Number.NEGATIVE_INFINITY
  /**
   * Elections this node started since it last knew a leader. Only the first one's role changes
   * are logged at info; the repeats of a node cut off from a quorum (one per election timeout per
   * group, thousands a minute on a busy node) go to debug with their count.
   */
  private campaignsWithoutLeader = 0

  private stepRole: StepFn = (m) => this.stepFollower(m)
  private tickRole: () => void = () => this.tickElection()

  constructor(cfg: ResolvedConfig, components: RaftComponents) {
    this.id = cfg.id
    this.cfg = cfg
    this.random = components.random
    this.logger = components.logger
    this.entryAcceptable = components.entryAcceptable ?? (() => true)
    this.log = new RaftLog(components.storage, this.logger)
    this.readOnly = new ReadOnly(cfg.readIndexPendingMax)

    const { hardState, confState } = components.storage.initialState()
    // A node with no history never granted anyone a lease; one that restarts may have.
    this.restartFenceTicks = cfg.restartVoteFence && hardState.term > 0 ? cfg.electionTicks : 0
    this.awaitingSnapshot = cfg.awaitingSnapshot
    const { config, progress } = restoreConfig(confState, this.log.lastIndex(), cfg.inflightAppendsMax)
    this.tracker.reset(config, progress)
    if (hardState.term > 0 || hardState.commit > 0) {
      assert(
        hardState.commit >= this.log.committed && hardState.commit <= this.log.lastIndex(),
        `raft: hard state commit ${hardState.commit} outside [${this.log.committed}, ${this.log.lastIndex()}]`,
      )
      this.log.committed = hardState.commit
      this.term = hardState.term
      this.vote = hardState.vote
      if (this.term > cfg.termMax) this.recoverAbsurdTerm()
    }
    if (cfg.applied !== null) {
      assert(cfg.applied <= this.log.committed, 'raft: applied beyond commit')
      if (cfg.applied > this.log.applied) {
        this.log.applying = cfg.applied
        this.log.applied = cfg.applied
      }
    }
    this.becomeFollower(this.term, null)
    this.logger.info(
      {
        term: this.term,
        commit: this.log.committed,
        applied: this.log.applied,
        lastIndex: this.log.lastIndex(),
        voters: this.tracker.voterIds(),
      },
      'raft node started',
    )
  }

  /**
   * A stored term above `termMax` can only have come from a buggy or hostile member (before
   * terms were bounded): no legitimate election reaches it, and at 2^53 - 1 no election is
   * possible at all. If no entry of such a term was ever accepted, every term this node took part
   * in legitimately is at most its last entry's term plus the elections it voted in since without
   * receiving an entry, which is far fewer than `termJumpMax / 2`. Lowering the term to
   * `lastTerm + termJumpMax / 2` (with no vote) therefore reuses no term in which it voted or
   * followed a leader, and keeps it within one jump of every live member, so it can rejoin. The
   * lower hard state is persisted by the next Ready. With entries of an absurd term in the log
   * there is no safe way back: the replica must be rebuilt from its peers.
   */
  private recoverAbsurdTerm(): void {
    const stored = this.term
    const lastTerm = this.log.lastTerm()
    assert(
      lastTerm <= this.cfg.termMax,
      `raft: the log holds entries of term ${lastTerm}, above the term ceiling ${this.cfg.termMax}; rebuild this replica from its peers`,
    )
    this.term = Math.min(this.cfg.termMax, lastTerm + Math.floor(this.cfg.termJumpMax / 2)) as Term
    this.vote = null
    this.logger.warn(
      { storedTerm: stored, term: this.term, lastTerm, termMax: this.cfg.termMax },
      'stored term above the term ceiling: recovered to a safe term',
    )
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed }
  }

  /** True when this node may campaign: a voter with no snapshot waiting to be installed. */
  promotable(): boolean {
    const p = this.tracker.get(this.id)
    return (
      p !== undefined &&
      !p.isLearner &&
      this.tracker.isVoter(this.id) &&
      this.log.unstable.snapshot === null &&
      !this.awaitingSnapshot
    )
  }

  private send(m: Message): void {
    assert(m.from === this.id)
    assert(m.to !== this.id, 'raft: message to self')
    if (needsPersist(m)) this.msgsAfterPersist.push(m)
    else this.msgs.push(m)
  }

  // -------------------------------------------------------------------------------------------
  // Role transitions.

  private reset(term: Term): void {
    if (this.term !== term) {
      assert(term > this.term, `raft: term going back from ${this.term} to ${term}`)
      this.term = term
      this.vote = null
    }
    this.leaderId = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.resetRandomizedElectionTimeout()
    this.leadTransferee = null
    this.tracker.resetVotes()
    this.selfVotePending = false
    const last = this.log.lastIndex()
    for (const [id, p] of this.tracker.progress) {
      this.tracker.progress.set(
        id,
        new Progress({
          match: 0 as LogIndex,
          next: (last + 1) as LogIndex,
          isLearner: p.isLearner,
          inflightAppendsMax: this.cfg.inflightAppendsMax,
        }),
      )
    }
    this.pendingConfIndex = 0 as LogIndex
    this.uncommittedBytes = 0
    this.readOnly.reset()
    this.heartbeatRound = 0
    this.leaderTicks = 0
    this.roundTicks.clear()
    this.quorumRound = 0
    this.leaseStartTick = Number.NEGATIVE_INFINITY
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.random.int(this.cfg.electionTicks)
  }

  becomeFollower(term: Term, leaderId: NodeId | null): void {
    const wasRole = this.role
    this.stepRole = (m) => this.stepFollower(m)
    this.tickRole = () => this.tickElection()
    this.reset(term)
    this.leaderId = leaderId
    this.role = Role.Follower
    if (wasRole !== Role.Follower) {
      // A lost election (no leader yet) repeats as often as the campaigns: at debug after the first.
      const lostCampaign = leaderId === null && wasRole !== Role.Leader
      const level = lostCampaign ? this.campaignLogLevel() : 'info'
      this.logger[level]({ term, leaderId }, 'became follower')
    }
  }

  private becomePreCandidate(): void {
    assert(this.role !== Role.Leader, 'raft: leader cannot become pre-candidate')
    // Pre-vote changes neither term nor vote (§9.6).
    this.stepRole = (m) => this.stepCandidate(m)
    this.tickRole = () => this.tickElection()
    this.tracker.resetVotes()
    this.leaderId = null
    this.role = Role.PreCandidate
    this.logCampaign('became pre-candidate')
  }

  private becomeCandidate(): void {
    assert(this.role !== Role.Leader, 'raft: leader cannot become candidate')
    this.stepRole = (m) => this.stepCandidate(m)
    this.tickRole = () => this.tickElection()
    this.reset((this.term + 1) as Term)
    this.vote = this.id
    this.role = Role.Candidate
    this.logCampaign('became candidate')
  }

  private becomeLeader(): void {
    assert(this.role === Role.Candidate, 'raft: only a candidate becomes leader')
    this.stepRole = (m) => this.stepLeader(m)
    this.tickRole = () => this.tickHeartbeat()
    this.reset(this.term)
    this.leaderId = this.id
    this.role = Role.Leader
    const self = this.tracker.get(this.id)
    assert(self !== undefined)
    self.recentActive = true
    // The leader's own log counts only once durable (§3.8); entries may still be unstable.
    self.maybeUpdate(this.log.persistedLastIndex())
    self.becomeReplicate()
    // No conf change may be proposed until everything before this term is applied.
    this.pendingConfIndex = this.log.lastIndex()
    // A no-op of the new term (§5.4.2, §6.4): commits everything before it and lets reads start.
    this.appendEntries([{ type: EntryType.Normal, data: new Uint8Array(0) }])
    this.logger.info({ term: this.term }, 'became leader')
  }

  /** info for the first election since a leader was known, debug for its repeats. */
  private campaignLogLevel(): 'info' | 'debug' {
    return this.campaignsWithoutLeader > 1 ? 'debug' : 'info'
  }

  /** A role change of a campaign: the first at info, the repeats at debug with their count. */
  private logCampaign(message: string): void {
    if (this.campaignsWithoutLeader > 1)
      this.logger.debug({ term: this.term, campaign: this.campaignsWithoutLeader }, message)
    else this.logger.info({ term: this.term }, message)
  }

  // -------------------------------------------------------------------------------------------
  // Ticks.

  tick(): void {
    this.tickRole()
  }

  private tickElection(): void {
    if (this.restartFenceTicks > 0) this.restartFenceTicks--
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  private tickHeartbeat(): void {
    assert(this.role === Role.Leader)
    this.heartbeatElapsed++
    this.electionElapsed++
    this.leaderTicks++
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0
      if (this.cfg.checkQuorum) {
        // §6.2: a leader that has not heard from a quorum within an election timeout steps down.
        if (!this.tracker.quorumActive(this.id)) {
          this.logger.info({ term: this.term }, 'stepped down: no quorum active')
          this.becomeFollower(this.term, null)
          return
        }
        for (const [id, p] of this.tracker.progress) if (id !== this.id) p.recentActive = false
      }
      // A transfer that did not finish within an election timeout is abandoned (§3.10).
      if (this.leadTransferee !== null) this.abortLeaderTransfer('timed out')
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0
      this.bcastHeartbeat()
    }
  }

  // -------------------------------------------------------------------------------------------
  // Elections.

  /** Are there committed but unapplied conf changes? Campaigning then could use a stale config. */
  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false
    const r = this.log.slice(
      (this.log.applied + 1) as LogIndex,
      (this.log.committed + 1) as LogIndex,
      Number.POSITIVE_INFINITY,
    )
    if (!r.ok) return true
    return r.value.some((e) => e.type === EntryType.ConfChange)
  }

  /** Starts an election (pre-vote first unless `transfer`). */
  hup(transfer: boolean): CampaignResult {
    if (this.role === Role.Leader) return { ok: false, reason: 'already-leader' }
    if (!this.promotable()) {
      this.logger.debug({ term: this.term }, 'not promotable, not campaigning')
      return { ok: false, reason: 'not-promotable' }
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.warn({ term: this.term }, 'unapplied conf changes, not campaigning')
      return { ok: false, reason: 'conf-change-unapplied' }
    }
    if (this.term >= this.cfg.termMax) {
      // Unreachable for a recovered node (it starts below termMax) and for messages (refused
      // above it); kept so that no path can ever encode a term past the ceiling.
      this.logger.error(
        { term: this.term, termMax: this.cfg.termMax },
        'term ceiling reached, not campaigning',
      )
      return { ok: false, reason: 'term-exhausted' }
    }
    // A follower still names the leader it last heard from; a failed campaign leaves none.
    this.campaignsWithoutLeader = this.leaderId === null ? this.campaignsWithoutLeader + 1 : 1
    if (this.cfg.preVote && !transfer) this.campaign('pre')
    else this.campaign(transfer ? 'transfer' : 'real')
    return { ok: true }
  }

  private campaign(kind: 'pre' | 'real' | 'transfer'): void {
    let term: Term
    if (kind === 'pre') {
      this.becomePreCandidate()
      term = (this.term + 1) as Term
      // A pre-vote changes nothing durable, so the own vote counts at once.
      this.tracker.recordVote(this.id, true)
    } else {
      this.becomeCandidate()
      term = this.term
      this.selfVotePending = true
    }
    const lastIndex = this.log.lastIndex()
    const lastTerm = this.log.lastTerm()
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) continue
      const base = {
        from: this.id,
        to: id,
        term,
        logTerm: lastTerm,
        index: lastIndex,
        leaderTransfer: kind === 'transfer',
      }
      if (kind === 'pre') this.send({ type: 'MsgPreVote', ...base })
      else this.send({ type: 'MsgVote', ...base })
    }
    // A single-voter pre-vote is already won.
    if (kind === 'pre') this.checkVotes()
  }

  /** Called once the hard state with the own vote is durable. */
  private countSelfVote(): void {
    if (!this.selfVotePending) return
    this.selfVotePending = false
    if (this.role !== Role.Candidate) return
    this.tracker.recordVote(this.id, true)
    this.checkVotes()
  }

  private checkVotes(): void {
    const { granted, rejected, result } = this.tracker.tallyVotes()
    this.logger.debug({ term: this.term, granted, rejected, role: this.role }, 'votes tallied')
    if (result === VoteResult.Won) {
      if (this.role === Role.PreCandidate) {
        this.campaign('real')
      } else {
        this.becomeLeader()
        this.bcastAppend()
      }
    } else if (result === VoteResult.Lost) {
      this.becomeFollower(this.term, null)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Step.

  /**
   * Why `step` would refuse `m` before looking at it further (addressing, term bounds, staleness,
   * a leader message not from the term's known leader), or null. Changes nothing. For a shell that
   * does work on a message's behalf before stepping it (a snapshot written in place).
   */
  refusal(m: Message): StepRejection | null {
    if (m.to !== this.id) return 'not-addressed'
    if (m.term > this.cfg.termMax || m.term - this.term > this.cfg.termJumpMax) return 'term-absurd'
    if (m.term < this.term) return 'stale-term'
    const leaderOnly =
      m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap' || m.type === 'MsgTimeoutNow'
    if (leaderOnly && m.term === this.term && this.role === Role.Follower && this.leaderId !== null)
      if (this.leaderId !== m.from) return 'not-leader'
    return null
  }

  /** Handles one message from a peer. Terms first (§3.3), then the role's handler. */
  step(m: Message): StepResult {
    if (m.to !== this.id) return { ok: false, reason: 'not-addressed' }
    if (m.term > this.cfg.termMax || m.term - this.term > this.cfg.termJumpMax) {
      // Refused before anything changes: an absurd term is never adopted, so never persisted.
      this.logger.warn(
        { from: m.from, type: m.type, msgTerm: m.term, term: this.term },
        'refused message: term beyond the ceiling or too far ahead',
      )
      return { ok: false, reason: 'term-absurd' }
    }
    // Before the term is looked at: a refused append must not make its sender our leader.
    if (m.type === 'MsgApp' && !this.appendAcceptable(m)) return { ok: false, reason: 'entry-unacceptable' }
    if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        // Leader stickiness (§4.2.3, §9.6): a node that heard from a leader within an election
        // timeout ignores votes, unless the campaign is a leader transfer.
        const inLease =
          (this.cfg.checkQuorum && this.leaderId !== null && this.electionElapsed < this.cfg.electionTicks) ||
          this.restartFenceTicks > 0
        if (inLease && !m.leaderTransfer) {
          this.logger.debug(
            { from: m.from, term: this.term, msgTerm: m.term, type: m.type },
            'ignored vote request: leader lease not expired',
          )
          return OK
        }
      }
      if (m.type === 'MsgPreVote') {
        // A pre-vote does not change our term.
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // A granted pre-vote carries the future term; the real election will raise it.
      } else if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
        this.becomeFollower(m.term, m.from)
      } else {
        this.becomeFollower(m.term, null)
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A stale leader (e.g. back from a partition whose members never raised their term
        // thanks to pre-vote) learns our term from this answer and steps down.
        this.send({
          type: 'MsgAppResp',
          from: this.id,
          to: m.from,
          term: this.term,
          index: 0 as LogIndex,
          reject: false,
          rejectHint: 0 as LogIndex,
          logTerm: 0 as Term,
        })
      } else if (m.type === 'MsgPreVote') {
        this.send({ type: 'MsgPreVoteResp', from: this.id, to: m.from, term: this.term, reject: true })
      }
      this.logger.debug(
        { from: m.from, type: m.type, msgTerm: m.term, term: this.term },
        'ignored stale message',
      )
      return { ok: false, reason: 'stale-term' }
    }

    switch (m.type) {
      case 'MsgVote':
      case 'MsgPreVote':
        this.handleVoteRequest(m)
        return OK
      default:
        return this.stepRole(m)
    }
  }

  private handleVoteRequest(m: MsgVote | MsgPreVote): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.leaderId === null) ||
      (m.type === 'MsgPreVote' && m.term > this.term)
    const upToDate = this.log.isUpToDate(m.index, m.logTerm) || this.cfg.grantVoteWithoutLogCheck
    const respType = m.type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp'
    if (canVote && upToDate && !this.awaitingSnapshot) {
      this.logger.debug({ from: m.from, term: m.term, type: m.type }, 'granted vote')
      // The answer carries the request's term: for a pre-vote our own term is lower, and the
      // candidate would otherwise ignore the answer as stale.
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false })
      if (m.type === 'MsgVote') {
        this.electionElapsed = 0
        this.vote = m.from
      }
    } else {
      this.logger.debug({ from: m.from, term: m.term, type: m.type, canVote }, 'rejected vote')
      this.send({ type: respType, from: this.id, to: m.from, term: this.term, reject: true })
    }
  }

  /**
   * Election Safety (§3.6) allows one leader per term: once this follower knows it, leader-only
   * messages of this term from anyone else are refused (a buggy or hostile member would otherwise
   * overwrite the log, commit, or force elections in the leader's name).
   */
  private fromOtherThanLeader(m: Message): boolean {
    if (this.leaderId === null || this.leaderId === m.from) return false
    this.logger.warn(
      { from: m.from, type: m.type, term: this.term, leaderId: this.leaderId },
      'refused leader message from a node that is not the leader of this term',
    )
    return true
  }

  private stepFollower(m: Message): StepResult {
    switch (m.type) {
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
      case 'MsgReadIndexResp':
        if (this.fromOtherThanLeader(m)) return { ok: false, reason: 'not-leader' }
        break
      case 'MsgTimeoutNow':
        // §3.10: only the current leader hands its leadership over.
        if (this.leaderId !== m.from) {
          this.logger.warn(
            { from: m.from, term: this.term, leaderId: this.leaderId },
            'refused timeout-now from a node that is not the leader',
          )
          return { ok: false, reason: 'not-leader' }
        }
        break
      default:
        break
    }
    switch (m.type) {
      case 'MsgApp':
        this.electionElapsed = 0
        this.leaderId = m.from
        this.handleAppend(m)
        return OK
      case 'MsgHeartbeat':
        this.electionElapsed = 0
        this.leaderId = m.from
        this.handleHeartbeat(m)
        return OK
      case 'MsgSnap':
        this.electionElapsed = 0
        this.leaderId = m.from
        this.handleSnapshot(m)
        return OK
      case 'MsgTransferLeader':
        if (this.leaderId === null) return OK
        this.send({ ...m, from: this.id, to: this.leaderId, term: this.term })
        return OK
      case 'MsgTimeoutNow':
        this.logger.info({ from: m.from, term: this.term }, 'campaigning on timeout-now (leader transfer)')
        this.hup(true)
        return OK
      case 'MsgReadIndex':
        if (this.leaderId === null) return OK
        this.send({ ...m, from: this.id, to: this.leaderId, term: this.term })
        return OK
      case 'MsgReadIndexResp':
        if (!m.reject) this.readStates.push({ index: m.index, context: m.context })
        return OK
      case 'MsgAppResp':
      case 'MsgHeartbeatResp':
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
        // Answers to a role we no longer have.
        return OK
      case 'MsgVote':
      case 'MsgPreVote':
        return OK
      default:
        return unreachable(m)
    }
  }

  private stepCandidate(m: Message): StepResult {
    switch (m.type) {
      case 'MsgApp':
        this.becomeFollower(m.term, m.from)
        this.handleAppend(m)
        return OK
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from)
        this.handleHeartbeat(m)
        return OK
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from)
        this.handleSnapshot(m)
        return OK
      case 'MsgVoteResp':
      case 'MsgPreVoteResp': {
        const expected = this.role === Role.PreCandidate ? 'MsgPreVoteResp' : 'MsgVoteResp'
        if (m.type !== expected) return OK
        if (!this.tracker.isVoter(m.from)) return OK
        this.tracker.recordVote(m.from, !m.reject)
        this.checkVotes()
        return OK
      }
      case 'MsgReadIndex':
        this.send({
          type: 'MsgReadIndexResp',
          from: this.id,
          to: m.from,
          term: this.term,
          context: m.context,
          index: 0 as LogIndex,
          reject: true,
        })
        return OK
      case 'MsgTimeoutNow':
      case 'MsgTransferLeader':
      case 'MsgReadIndexResp':
      case 'MsgAppResp':
      case 'MsgHeartbeatResp':
      case 'MsgVote':
      case 'MsgPreVote':
        return OK
      default:
        return unreachable(m)
    }
  }

  private stepLeader(m: Message): StepResult {
    switch (m.type) {
      case 'MsgAppResp':
      case 'MsgHeartbeatResp': {
        const p = this.tracker.get(m.from)
        if (p === undefined) return { ok: false, reason: 'peer-unknown' }
        p.recentActive = true
        if (m.type === 'MsgAppResp') this.handleAppendResponse(m, p)
        else this.handleHeartbeatResponse(m, p)
        return OK
      }
      case 'MsgTransferLeader':
        this.transferLeader(m.transferee)
        return OK
      case 'MsgReadIndex': {
        const p = this.tracker.get(m.from)
        if (p === undefined) return { ok: false, reason: 'peer-unknown' }
        if (this.readOnly.full()) {
          this.respondRead({ context: m.context, from: m.from }, 0 as LogIndex, true)
          return OK
        }
        this.acceptRead({ context: m.context, from: m.from })
        return OK
      }
      case 'MsgApp':
      case 'MsgHeartbeat':
      case 'MsgSnap':
        // Another leader in our term would break Election Safety (§3.6); it cannot happen
        // without a bug elsewhere. Ignore rather than trust it.
        this.logger.warn(
          { from: m.from, type: m.type, term: this.term },
          'leader message from another leader ignored',
        )
        return OK
      case 'MsgVoteResp':
      case 'MsgPreVoteResp':
      case 'MsgTimeoutNow':
      case 'MsgReadIndexResp':
      case 'MsgVote':
      case 'MsgPreVote':
        return OK
      default:
        return unreachable(m)
    }
  }

  // -------------------------------------------------------------------------------------------
  // Follower side of replication.

  /**
   * Whether every entry of an append is one this node can apply: a normal entry the state machine
   * accepts (`entryAcceptable`), a conf change that decodes. Checked before anything is appended.
   */
  private appendAcceptable(m: MsgApp): boolean {
    for (const e of m.entries) {
      const ok =
        e.type === EntryType.ConfChange
          ? decodeConfChange(e.data) !== null
          : e.data.byteLength === 0 || this.entryAcceptable(e.data)
      if (!ok) {
        this.logger.warn(
          { from: m.from, index: e.index, entryType: e.type, term: this.term },
          'refused append: an entry does not decode',
        )
        return false
      }
    }
    return true
  }

  private handleAppend(m: MsgApp): void {
    const base = { type: 'MsgAppResp', from: this.id, to: m.from, term: this.term } as const
    if (m.index < this.log.committed) {
      // Everything up to our commit index is known to match (§5.4 Log Matching).
      this.send({
        ...base,
        index: this.log.committed,
        reject: false,
        rejectHint: 0 as LogIndex,
        logTerm: 0 as Term,
      })
      return
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
    if (lastNew !== null) {
      this.send({ ...base, index: lastNew, reject: false, rejectHint: 0 as LogIndex, logTerm: 0 as Term })
      return
    }
    // §5.3: reject, with a hint that lets the leader skip a whole term per round trip.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()) as LogIndex, m.logTerm)
    this.logger.debug(
      { from: m.from, index: m.index, logTerm: m.logTerm, hintIndex: hint.index, hintTerm: hint.term },
      'rejected append',
    )
    this.send({ ...base, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term })
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()) as LogIndex)
    this.send({ type: 'MsgHeartbeatResp', from: this.id, to: m.from, term: this.term, round: m.round })
  }

  private handleSnapshot(m: MsgSnap): void {
    const base = {
      type: 'MsgAppResp',
      from: this.id,
      to: m.from,
      term: this.term,
      reject: false,
      rejectHint: 0 as LogIndex,
      logTerm: 0 as Term,
    } as const
    if (this.restore(m.snapshot)) {
      this.logger.info({ from: m.from, index: m.snapshot.meta.index }, 'restored snapshot')
      this.send({ ...base, index: this.log.lastIndex() })
    } else {
      this.send({ ...base, index: this.log.committed })
    }
  }

  /** Installs a snapshot if it is newer than our commit index. Restoring resets the configuration. */
  restore(s: Snapshot): boolean {
    if (s.meta.index <= this.log.committed) return false
    if (this.role !== Role.Follower) this.becomeFollower((this.term + 1) as Term, null)
    if (this.log.matchTerm(s.meta.index, s.meta.term)) {
      // We have the snapshot's last entry: just fast-forward the commit index.
      this.log.commitTo(s.meta.index)
      return false
    }
    this.log.restore(s)
    this.awaitingSnapshot = false
    const { config, progress } = restoreConfig(
      s.meta.confState,
      this.log.lastIndex(),
      this.cfg.inflightAppendsMax,
    )
    this.tracker.reset(config, progress)
    return true
  }

  // -------------------------------------------------------------------------------------------
  // Leader side of replication.

  /** Appends entries of the current term to the leader's log and sends them. */
  private appendEntries(entries: readonly { type: Entry['type']; data: Uint8Array }[]): LogIndex {
    let index = this.log.lastIndex()
    const out: Entry[] = []
    for (const e of entries) {
      index = (index + 1) as LogIndex
      out.push({ term: this.term, index, type: e.type, data: e.data })
      this.uncommittedBytes += e.data.byteLength
    }
    this.log.append(out)
    return index
  }

  /** Sends an append to `to` if flow control allows. Returns whether a message was sent. */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const p = this.tracker.get(to)
    assert(p !== undefined)
    if (p.isPaused()) return false
    const prevIndex = (p.next - 1) as LogIndex
    const prevTerm = this.log.term(prevIndex)
    const last = this.log.lastIndex()
    let entries: Entry[] = []
    if (prevTerm.ok && p.next <= last) {
      const r = this.log.slice(p.next, (last + 1) as LogIndex, this.cfg.appendBytesMax)
      if (!r.ok) {
        if (r.reason === 'compacted') return this.sendSnapshot(to, p)
        return false
      }
      entries =
        r.value.length > this.cfg.appendEntriesMax ? r.value.slice(0, this.cfg.appendEntriesMax) : r.value
    }
    if (!prevTerm.ok) {
      if (prevTerm.reason === 'compacted') return this.sendSnapshot(to, p)
      return false
    }
    if (entries.length === 0 && !sendIfEmpty) return false
    const lastEntry = entries[entries.length - 1]
    this.send({
      type: 'MsgApp',
      from: this.id,
      to,
      term: this.term,
      logTerm: prevTerm.value,
      index: prevIndex,
      entries,
      commit: this.log.committed,
    })
    p.sentEntries(
      lastEntry?.index ?? prevIndex,
      entries.length,
      entries.reduce((n, e) => n + entryBytes(e), 0),
    )
    return true
  }

  private sendSnapshot(to: NodeId, p: Progress): boolean {
    if (!p.recentActive) {
      this.logger.debug({ to }, 'not sending snapshot to inactive peer')
      return false
    }
    const s = this.log.snapshot()
    if (!s.ok) {
      this.logger.debug({ to, reason: s.reason }, 'snapshot not available yet')
      return false
    }
    assert(s.value.meta.index > 0, 'raft: empty snapshot needed')
    this.logger.debug({ to, index: s.value.meta.index, match: p.match }, 'sending snapshot')
    p.becomeSnapshot(s.value.meta.index)
    this.send({ type: 'MsgSnap', from: this.id, to, term: this.term, snapshot: s.value })
    return true
  }

  /** Sends appends to every follower (even empty ones, which carry the commit index). */
  private bcastAppend(): void {
    for (const id of this.tracker.ids()) if (id !== this.id) this.maybeSendAppend(id, true)
  }

  private sendAllAppends(to: NodeId): void {
    // In replicate state, fill the window; each call sends at least one entry or returns false.
    while (this.maybeSendAppend(to, false)) {
      /* keep sending */
    }
  }

  private bcastHeartbeat(): void {
    const round = ++this.heartbeatRound
    this.roundTicks.set(round, this.leaderTicks)
    for (const id of this.tracker.ids()) {
      if (id === this.id) continue
      const p = this.tracker.get(id)
      assert(p !== undefined)
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(p.match, this.log.committed) as LogIndex
      const leaderCommit = this.log.committed
      this.send({ type: 'MsgHeartbeat', from: this.id, to: id, term: this.term, commit, round, leaderCommit })
    }
    // With no other voter, the round is confirmed at once.
    this.updateQuorumRound()
  }

  private handleAppendResponse(m: MsgAppResp, p: Progress): void {
    if (m.reject) {
      let nextProbe = m.rejectHint
      if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index
      if (p.maybeDecrTo(m.index, nextProbe)) {
        this.logger.debug({ from: m.from, rejected: m.index, next: p.next }, 'append rejected, backing off')
        if (p.state === ProgressState.Replicate) p.becomeProbe()
        this.maybeSendAppend(m.from, false)
      }
      return
    }
    if (m.index > this.log.lastIndex()) {
      // A follower cannot hold what this leader never had: a buggy or hostile answer.
      this.logger.warn(
        { from: m.from, index: m.index, lastIndex: this.log.lastIndex() },
        'ignored append answer beyond the last index',
      )
      return
    }
    const wasPaused = p.isPaused()
    if (!p.maybeUpdate(m.index)) {
      // Nothing new, but a probe that was answered unpauses the peer.
      if (p.state === ProgressState.Probe && p.match === m.index) p.probeSent = false
      if (wasPaused && !p.isPaused()) this.sendAllAppends(m.from)
      return
    }
    switch (p.state) {
      case ProgressState.Probe:
        p.becomeReplicate()
        break
      case ProgressState.Snapshot:
        if (p.match >= p.pendingSnapshot || p.match + 1 >= this.log.firstIndex()) {
          p.becomeProbe()
          p.becomeReplicate()
        }
        break
      case ProgressState.Replicate:
        p.inflights.freeLE(m.index)
        break
    }
    if (this.maybeCommit()) this.bcastAppend()
    // A peer that was paused may have missed the commit index: tell it (even without entries).
    else if (wasPaused) this.maybeSendAppend(m.from, true)
    this.sendAllAppends(m.from)
    if (m.from === this.leadTransferee && p.match === this.log.lastIndex()) {
      this.logger.info({ to: m.from }, 'transferee caught up, sending timeout-now')
      this.sendTimeoutNow(m.from)
    }
  }

  private handleHeartbeatResponse(m: MsgHeartbeatResp, p: Progress): void {
    p.probeSent = false
    if (m.round > p.ackedRound && m.round <= this.heartbeatRound) p.ackedRound = m.round
    // A follower that is behind gets an append, even an empty one: its answer (or rejection)
    // moves its progress along, e.g. out of an optimistic window whose messages were lost.
    // NB: a full window pauses sending, and if every append in it was lost (the follower was
    // down) no acknowledgement will ever free it; the heartbeat response proves the follower is
    // reachable again, so free one slot to let one append through (etcd-io/raft does the same).
    // Its rejection then moves the follower back to probe. Found by the simulator (F1).
    if (p.state === ProgressState.Replicate && p.inflights.full()) p.inflights.freeFirstOne()
    if (p.match < this.log.lastIndex()) this.maybeSendAppend(m.from, true)
    this.updateQuorumRound()
  }

  /** Recomputes the round a quorum has echoed; answers reads it confirms and extends the lease. */
  private updateQuorumRound(): void {
    if (this.role !== Role.Leader) return
    const q = this.tracker.quorumAckedRound(this.id, this.heartbeatRound)
    if (q <= this.quorumRound) return
    this.quorumRound = q
    const tick = this.roundTicks.get(q)
    assert(tick !== undefined, `raft: no tick for round ${q}`)
    this.leaseStartTick = Math.max(this.leaseStartTick, tick)
    for (const r of this.roundTicks.keys()) if (r < q) this.roundTicks.delete(r)
    for (const r of this.readOnly.confirm(q)) this.respondRead(r, r.index, false)
  }

  /**
   * Advances the commit index to what a quorum holds, counting only entries of the current
   * term (§5.4.2, Figure 3.7). Returns whether it moved.
   */
  maybeCommit(): boolean {
    const before = this.log.committed
    const quorumIndex = this.tracker.committed()
    if (!this.log.maybeCommit(quorumIndex, this.term, this.cfg.commitPreviousTermByCounting)) return false
    this.logger.debug({ from: before, to: this.log.committed }, 'commit advanced')
    if (this.committedInCurrentTerm()) {
      for (const r of this.readOnly.takeBeforeCommit()) this.acceptRead(r)
    }
    return true
  }

  committedInCurrentTerm(): boolean {
    return this.log.zeroTermOnOutOfBounds(this.log.committed) === this.term
  }

  /** The leader's own log became durable up to `index`; it now counts towards commitment. */
  private onSelfPersisted(): void {
    if (this.role !== Role.Leader) return
    const self = this.tracker.get(this.id)
    if (self === undefined) return
    if (self.maybeUpdate(this.log.persistedLastIndex()) && this.maybeCommit()) this.bcastAppend()
  }

  /** Called by RawNode.advance after a Ready's writes are durable. */
  onPersisted(): void {
    this.countSelfVote()
    this.onSelfPersisted()
  }

  // -------------------------------------------------------------------------------------------
  // Proposals.

  private refuseUnlessLeader(): ProposeResult | null {
    if (this.role !== Role.Leader) return { ok: false, reason: 'not-leader', leaderHint: this.leaderId }
    if (this.leadTransferee !== null)
      return { ok: false, reason: 'transferring', leaderHint: this.leadTransferee }
    return null
  }

  propose(data: Uint8Array): ProposeResult {
    const refused = this.refuseUnlessLeader()
    if (refused !== null) return refused
    if (data.byteLength > this.cfg.proposalBytesMax) return { ok: false, reason: 'too-large' }
    // Allow one proposal when nothing is outstanding, so a budget below proposalBytesMax cannot wedge.
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + data.byteLength > this.cfg.uncommittedBytesMax) {
      this.logger.debug({ uncommittedBytes: this.uncommittedBytes }, 'proposal refused: overloaded')
      return { ok: false, reason: 'overloaded' }
    }
    const index = this.appendEntries([{ type: EntryType.Normal, data }])
    // Batching: the appends go out when the shell next asks for a Ready, so every proposal of
    // one loop iteration shares one MsgApp per follower instead of sending one each.
    this.appendsPending = true
    return { ok: true, index, term: this.term }
  }

  /** Sends the appends that proposals deferred (see propose); RawNode calls it before a Ready. */
  flushPendingAppends(): void {
    if (!this.appendsPending) return
    this.appendsPending = false
    if (this.role !== Role.Leader) return
    // As many appends as the window allows: pipelining within the per-follower bound.
    for (const id of this.tracker.ids()) if (id !== this.id) this.sendAllAppends(id)
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    const refused = this.refuseUnlessLeader()
    if (refused !== null) return refused
    if (this.pendingConfIndex > this.log.applied) return { ok: false, reason: 'conf-change-pending' }
    if (!this.committedInCurrentTerm()) return { ok: false, reason: 'conf-change-early' }
    const check = applyConfChange(this.changerInit(), cc)
    if (!check.ok) return { ok: false, reason: 'conf-change-invalid', detail: check.error }
    const data = encodeConfChange(cc)
    if (data.byteLength > this.cfg.proposalBytesMax) return { ok: false, reason: 'too-large' }
    const index = this.appendEntries([{ type: EntryType.ConfChange, data }])
    this.pendingConfIndex = index
    this.logger.info({ index, kind: changeKind(cc), changes: cc.changes.length }, 'proposed conf change')
    this.bcastAppend()
    return { ok: true, index, term: this.term }
  }

  private changerInit(): Parameters<typeof applyConfChange>[0] {
    return {
      config: this.tracker.config,
      progress: this.tracker.progress,
      lastIndex: this.log.lastIndex(),
      inflightAppendsMax: this.cfg.inflightAppendsMax,
    }
  }

  /**
   * Applies a committed conf change entry (called as the application advances past it).
   * Invalid changes (possible only from a buggy or malicious proposer) are logged and skipped.
   */
  applyConfChangeEntry(e: Entry): void {
    assert(e.type === EntryType.ConfChange)
    const cc = decodeConfChange(e.data)
    if (cc === null) {
      this.logger.warn({ index: e.index }, 'malformed conf change entry skipped')
      return
    }
    const result = applyConfChange(this.changerInit(), cc)
    if (!result.ok) {
      this.logger.warn({ index: e.index, error: result.error }, 'invalid conf change entry skipped')
      return
    }
    this.tracker.reset(result.config, result.progress)
    this.logger.info({ index: e.index, config: confStateOf(result.config) }, 'applied conf change')
    if (this.role !== Role.Leader) return
    const self = this.tracker.get(this.id)
    if (self === undefined || !this.tracker.isVoter(this.id)) {
      // Removed (or demoted): the config that removes the leader has committed, so the
      // remaining members can elect a new leader without us (§4.2.2).
      this.logger.info({ term: this.term }, 'stepping down: removed from the configuration')
      this.becomeFollower(this.term, null)
      return
    }
    if (this.leadTransferee !== null && !this.tracker.isVoter(this.leadTransferee)) {
      this.abortLeaderTransfer('transferee removed')
    }
    // The quorum changed: the commit index may move, and new members need appends.
    if (this.maybeCommit()) this.bcastAppend()
    else for (const id of this.tracker.ids()) if (id !== this.id) this.maybeSendAppend(id, false)
    this.updateQuorumRound()
  }

  /** After applying, a leader in an auto-leave joint configuration proposes leaving it (§4.3). */
  maybeAutoLeave(): void {
    if (this.role !== Role.Leader) return
    if (!this.tracker.isJoint() || !this.tracker.config.autoLeave) return
    if (this.pendingConfIndex > this.log.applied) return
    const data = encodeConfChange({ changes: [], transition: ConfChangeTransition.Auto })
    const index = this.appendEntries([{ type: EntryType.ConfChange, data }])
    this.pendingConfIndex = index
    this.logger.info({ index }, 'proposed leaving the joint configuration')
    this.bcastAppend()
  }

  /** Gives budget back once entries are committed and handed out for applying. */
  reduceUncommitted(entries: readonly Entry[]): void {
    if (this.role !== Role.Leader) return
    let bytes = 0
    for (const e of entries) bytes += entryBytes(e)
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - bytes)
  }

  // -------------------------------------------------------------------------------------------
  // Leader transfer (§3.10).

  transferLeader(to: NodeId): TransferResult {
    if (this.role !== Role.Leader) {
      if (this.leaderId === null) return { ok: false, reason: 'no-leader' }
      this.send({
        type: 'MsgTransferLeader',
        from: this.id,
        to: this.leaderId,
        term: this.term,
        transferee: to,
      })
      return { ok: true }
    }
    if (to === this.id) return { ok: false, reason: 'already-leader' }
    const p = this.tracker.get(to)
    if (p === undefined) return { ok: false, reason: 'peer-unknown' }
    if (p.isLearner || !this.tracker.isVoter(to)) return { ok: false, reason: 'learner' }
    if (this.leadTransferee === to) return { ok: true }
    if (this.leadTransferee !== null) this.abortLeaderTransfer('superseded')
    this.logger.info({ to, term: this.term }, 'leader transfer started')
    // The transfer must finish within one election timeout.
    this.electionElapsed = 0
    this.leadTransferee = to
    if (p.match === this.log.lastIndex()) this.sendTimeoutNow(to)
    else this.maybeSendAppend(to, true)
    return { ok: true }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'MsgTimeoutNow', from: this.id, to, term: this.term })
  }

  private abortLeaderTransfer(why: string): void {
    this.logger.info({ to: this.leadTransferee, why }, 'leader transfer aborted')
    this.leadTransferee = null
  }

  // -------------------------------------------------------------------------------------------
  // Reads (§6.4).

  readIndex(context: Uint8Array): ReadIndexResult {
    if (this.role !== Role.Leader) {
      if (this.leaderId === null || this.role !== Role.Follower) return { ok: false, reason: 'no-leader' }
      this.send({ type: 'MsgReadIndex', from: this.id, to: this.leaderId, term: this.term, context })
      return { ok: true }
    }
    if (this.readOnly.full()) return { ok: false, reason: 'overloaded' }
    this.acceptRead({ context, from: this.id })
    return { ok: true }
  }

  private acceptRead(r: ReadRequest): void {
    if (!this.committedInCurrentTerm()) {
      // §6.4 step 1: until its no-op commits, a new leader's commit index may be behind.
      this.logger.debug({ from: r.from }, 'read waits for the first commit of the term')
      this.readOnly.addBeforeCommit(r)
      return
    }
    const index = this.log.committed
    if (this.cfg.readOnly === ReadOnlyOption.LeaseBased) {
      if (this.leaseValid()) {
        this.respondRead(r, index, false)
        return
      }
      this.logger.debug(
        { leaseStartTick: this.leaseStartTick, now: this.leaderTicks },
        'leader lease expired, refusing lease read',
      )
    }
    this.bcastHeartbeat()
    this.readOnly.add({ ...r, index, round: this.heartbeatRound })
    this.updateQuorumRound()
  }

  /**
   * §6.4.1: the followers that echoed a round sent at `leaseStartTick` refuse votes for an
   * election timeout after receiving it (check-quorum stickiness). Allowing for clock drift, no
   * other leader can exist before leaseStartTick + leaseTicks. A transfer bypasses stickiness.
   */
  leaseValid(): boolean {
    return (
      this.cfg.readOnly === ReadOnlyOption.LeaseBased &&
      this.role === Role.Leader &&
      this.leadTransferee === null &&
      this.leaderTicks < this.leaseStartTick + this.cfg.leaseTicks
    )
  }

  private respondRead(r: ReadRequest, index: LogIndex, reject: boolean): void {
    if (r.from === this.id) {
      if (!reject) this.readStates.push({ index, context: r.context })
      return
    }
    this.send({
      type: 'MsgReadIndexResp',
      from: this.id,
      to: r.from,
      term: this.term,
      context: r.context,
      index,
      reject,
    })
  }

  // -------------------------------------------------------------------------------------------
  // Feedback from the shell.

  reportUnreachable(id: NodeId): void {
    if (this.role !== Role.Leader) return
    const p = this.tracker.get(id)
    if (p === undefined) return
    // Messages in flight were probably lost; probe again.
    if (p.state === ProgressState.Replicate) p.becomeProbe()
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.role !== Role.Leader) return
    const p = this.tracker.get(id)
    if (p === undefined || p.state !== ProgressState.Snapshot) return
    if (!ok) p.pendingSnapshot = 0 as LogIndex
    p.becomeProbe()
    // Wait for the follower's answer (or a heartbeat) before probing.
    p.probeSent = true
    this.logger.debug({ to: id, ok, next: p.next }, 'snapshot reported')
  }
}

/** For exhaustiveness checks in describe and tests. */
export const roles: readonly Role[] = Object.values(Role)
