/**
 * ProgressTracker: the configuration (who votes, who learns) plus the leader's progress for
 * every member, and the votes of the current election (etcd-io/raft tracker/tracker.go).
 */
import { assert } from '../../common/index.ts'
import type { LogIndex, NodeId } from '../../common/index.ts'
import type { ConfState } from '../messages.ts'
import { VoteResult, isJoint, jointCommitted, jointVoteResult, jointVoters } from '../quorum/joint.ts'
import type { JointConfig } from '../quorum/joint.ts'
import type { Progress } from './progress.ts'

/** A membership configuration (§4.3). */
export interface TrackerConfig {
  readonly voters: JointConfig
  /** Invariant: disjoint from both voter halves. */
  readonly learners: ReadonlySet<NodeId>
  /** Voters of the outgoing half that become learners when the joint state is left.
   *  Invariant: a subset of voters.outgoing, disjoint from learners. */
  readonly learnersNext: ReadonlySet<NodeId>
  readonly autoLeave: boolean
}

export const emptyTrackerConfig: TrackerConfig = {
  voters: { incoming: new Set(), outgoing: new Set() },
  learners: new Set(),
  learnersNext: new Set(),
  autoLeave: false,
}

const byId = (a: NodeId, b: NodeId): number => a - b

export function sortedIds(ids: Iterable<NodeId>): NodeId[] {
  return [...ids].sort(byId)
}

/** The ConfState that describes a configuration; lists are sorted for determinism. */
export function confStateOf(c: TrackerConfig): ConfState {
  return {
    voters: sortedIds(c.voters.incoming),
    learners: sortedIds(c.learners),
    votersOutgoing: sortedIds(c.voters.outgoing),
    learnersNext: sortedIds(c.learnersNext),
    autoLeave: c.autoLeave,
  }
}

/** Asserts the invariants of a configuration and its progress map. */
export function checkConfigInvariants(c: TrackerConfig, progress: ReadonlyMap<NodeId, Progress>): void {
  for (const id of jointVoters(c.voters)) {
    const p = progress.get(id)
    assert(p !== undefined, `config: voter ${id} has no progress`)
    assert(!p.isLearner, `config: voter ${id} marked learner`)
  }
  for (const id of c.learners) {
    const p = progress.get(id)
    assert(p !== undefined, `config: learner ${id} has no progress`)
    assert(p.isLearner, `config: learner ${id} not marked learner`)
    assert(!c.voters.incoming.has(id) && !c.voters.outgoing.has(id), `config: ${id} is voter and learner`)
  }
  for (const id of c.learnersNext) {
    assert(c.voters.outgoing.has(id), `config: next learner ${id} not an outgoing voter`)
    assert(!c.learners.has(id), `config: ${id} is learner and next learner`)
    assert(progress.get(id) !== undefined, `config: next learner ${id} has no progress`)
  }
  if (!isJoint(c.voters)) {
    assert(c.learnersNext.size === 0, 'config: next learners outside a joint state')
    assert(!c.autoLeave, 'config: autoLeave outside a joint state')
  }
  for (const id of progress.keys()) {
    assert(
      c.voters.incoming.has(id) || c.voters.outgoing.has(id) || c.learners.has(id) || c.learnersNext.has(id),
      `config: progress for non-member ${id}`,
    )
  }
}

export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig
  progress = new Map<NodeId, Progress>()
  /** Votes of the current (pre-)election: true = granted. */
  readonly votes = new Map<NodeId, boolean>()

  /** Replaces configuration and progress (after a conf change or a snapshot restore). */
  reset(config: TrackerConfig, progress: Map<NodeId, Progress>): void {
    checkConfigInvariants(config, progress)
    this.config = config
    this.progress = progress
  }

  isJoint(): boolean {
    return isJoint(this.config.voters)
  }

  /** True when `id` votes in either half. */
  isVoter(id: NodeId): boolean {
    return this.config.voters.incoming.has(id) || this.config.voters.outgoing.has(id)
  }

  voterIds(): NodeId[] {
    return sortedIds(jointVoters(this.config.voters))
  }

  /** Every member with progress, in id order (deterministic iteration). */
  ids(): NodeId[] {
    return sortedIds(this.progress.keys())
  }

  get(id: NodeId): Progress | undefined {
    return this.progress.get(id)
  }

  /** The largest index a quorum of voters has (§3.6), from the progress matches. */
  committed(): LogIndex {
    return jointCommitted(this.config.voters, (id) => this.progress.get(id)?.match)
  }

  /** The largest heartbeat round a quorum of voters echoed; `selfId` counts as `selfRound`. */
  quorumAckedRound(selfId: NodeId, selfRound: number): number {
    return jointCommitted(this.config.voters, (id) =>
      id === selfId ? (selfRound as LogIndex) : (this.progress.get(id)?.ackedRound as LogIndex | undefined),
    )
  }

  /** True when a quorum was active since the last check; `selfId` always counts (§6.2). */
  quorumActive(selfId: NodeId): boolean {
    const votes = new Map<NodeId, boolean>()
    for (const [id, p] of this.progress) {
      if (!p.isLearner) votes.set(id, id === selfId || p.recentActive)
    }
    return jointVoteResult(this.config.voters, votes) === VoteResult.Won
  }

  resetVotes(): void {
    this.votes.clear()
  }

  /** Records the first answer of `id`; later answers from the same voter are ignored. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted)
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0
    let rejected = 0
    for (const id of this.progress.keys()) {
      if (!this.isVoter(id)) continue
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    return { granted, rejected, result: jointVoteResult(this.config.voters, this.votes) }
  }
}
