/**
 * Pending ReadIndex requests on the leader (§6.4). A request records the commit index when it
 * arrived and the heartbeat round broadcast after it; it is answered once a quorum has echoed
 * that round (or a later one), which proves that no other leader existed when the request
 * arrived. Requests that arrive before the leader has committed an entry of its own term wait
 * in `beforeCommit`, because until then the leader's commit index may be stale (§6.4 step 1).
 */
import { assert } from '../common/index.ts'
import type { LogIndex, NodeId } from '../common/index.ts'

export interface ReadRequest {
  readonly context: Uint8Array
  /** Who asked: this node, or a follower that forwarded MsgReadIndex. */
  readonly from: NodeId
}

export interface PendingRead extends ReadRequest {
  /** The commit index when the request was accepted. */
  readonly index: LogIndex
  /** The heartbeat round that confirms it. */
  readonly round: number
}

export class ReadOnly {
  /** Waiting for a quorum round. Invariant: rounds are non-decreasing along the queue. */
  private pending: PendingRead[] = []
  /** Waiting for the leader's first commit in its term. */
  private beforeCommit: ReadRequest[] = []

  constructor(private readonly capacity: number) {}

  size(): number {
    return this.pending.length + this.beforeCommit.length
  }

  full(): boolean {
    return this.size() >= this.capacity
  }

  addBeforeCommit(r: ReadRequest): void {
    this.beforeCommit.push(r)
  }

  takeBeforeCommit(): ReadRequest[] {
    const out = this.beforeCommit
    this.beforeCommit = []
    return out
  }

  add(r: PendingRead): void {
    const last = this.pending[this.pending.length - 1]
    if (last !== undefined) assert(last.round <= r.round, 'read-only: rounds out of order')
    this.pending.push(r)
  }

  /** Removes and returns every request confirmed by a quorum echo of `round`. */
  confirm(round: number): PendingRead[] {
    let n = 0
    while (n < this.pending.length && this.pending[n]!.round <= round) n++
    if (n === 0) return []
    const out = this.pending.slice(0, n)
    this.pending = this.pending.slice(n)
    return out
  }

  reset(): void {
    this.pending = []
    this.beforeCommit = []
  }
}
