/**
 * Progress: the leader's view of one follower (etcd-io/raft tracker/progress.go). See
 * DESIGN.md for the state diagram:
 * - probe: send one append at a time until the follower's match point is found;
 * - replicate: stream appends optimistically, up to the in-flight window;
 * - snapshot: wait until a snapshot is installed (or reported failed).
 */
import { assert } from '../../common/index.ts'
import type { LogIndex } from '../../common/index.ts'
import { Inflights } from './inflights.ts'

export const ProgressState = { Probe: 'probe', Replicate: 'replicate', Snapshot: 'snapshot' } as const
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState]

export class Progress {
  /** The highest index known to be replicated on the follower. Invariant: match < next. */
  match: LogIndex
  /** The next index to send. */
  next: LogIndex
  state: ProgressState = ProgressState.Probe
  /** While in `snapshot`, the index of the snapshot being sent; else 0. */
  pendingSnapshot = 0 as LogIndex
  /** True when the follower was heard from since the last check-quorum (§6.2). */
  recentActive = false
  /** In `probe`, true once an append was sent and not answered yet. */
  probeSent = false
  /** The highest heartbeat round this follower echoed in the current term (ReadIndex, lease). */
  ackedRound = 0
  isLearner: boolean
  readonly inflights: Inflights

  constructor(init: {
    match: LogIndex
    next: LogIndex
    isLearner: boolean
    inflightAppendsMax: number
    recentActive?: boolean
  }) {
    this.match = init.match
    this.next = init.next
    this.isLearner = init.isLearner
    this.recentActive = init.recentActive ?? false
    this.inflights = new Inflights(init.inflightAppendsMax)
    this.checkInvariants()
  }

  checkInvariants(): void {
    assert(this.match < this.next, `progress: match ${this.match} >= next ${this.next}`)
    if (this.state !== ProgressState.Snapshot) assert(this.pendingSnapshot === 0)
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false
    this.pendingSnapshot = 0 as LogIndex
    this.state = state
    this.inflights.reset()
  }

  /** Back to probing. After a snapshot, resume above the snapshot when it is known installed. */
  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot
      this.resetState(ProgressState.Probe)
      this.next = Math.max(this.match + 1, pending + 1) as LogIndex
    } else {
      this.resetState(ProgressState.Probe)
      this.next = (this.match + 1) as LogIndex
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate)
    this.next = (this.match + 1) as LogIndex
  }

  becomeSnapshot(snapshotIndex: LogIndex): void {
    this.resetState(ProgressState.Snapshot)
    this.pendingSnapshot = snapshotIndex
    this.next = Math.max(this.next, snapshotIndex + 1) as LogIndex
  }

  /**
   * Records that an append carrying entries up to `lastIndex` (and `bytes` of payload) was sent.
   * `entryCount` 0 is an empty probe or a commit-only append.
   */
  sentEntries(lastIndex: LogIndex, entryCount: number, bytes: number): void {
    switch (this.state) {
      case ProgressState.Replicate:
        if (entryCount > 0) {
          this.next = (lastIndex + 1) as LogIndex
          this.inflights.add(lastIndex, bytes)
        }
        break
      case ProgressState.Probe:
        this.probeSent = true
        break
      case ProgressState.Snapshot:
        assert(false, 'progress: append sent in snapshot state')
    }
  }

  /** An acknowledgement up to `index`. Returns false when it tells nothing new (stale/duplicate). */
  maybeUpdate(index: LogIndex): boolean {
    let updated = false
    if (this.match < index) {
      this.match = index
      updated = true
      this.probeSent = false
    }
    if (this.next < index + 1) this.next = (index + 1) as LogIndex
    return updated
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint that it matches at most up
   * to `matchHint`. Returns false when the rejection is stale (§5.3, fast backtracking).
   */
  maybeDecrTo(rejected: LogIndex, matchHint: LogIndex): boolean {
    if (this.state === ProgressState.Replicate) {
      // Appends at or below match can only be duplicates; their rejection is stale.
      if (rejected <= this.match) return false
      // The window was wrong; go back to one past the match and let probing find the point.
      this.next = (this.match + 1) as LogIndex
      return true
    }
    // In probe (or snapshot) only the rejection of the last probe counts.
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1) as LogIndex
    this.probeSent = false
    return true
  }

  /** True when no append should be sent now (flow control). */
  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent
      case ProgressState.Replicate:
        return this.inflights.full()
      case ProgressState.Snapshot:
        return true
    }
  }
}
