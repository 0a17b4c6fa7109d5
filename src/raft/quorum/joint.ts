/**
 * Joint quorums (§4.3): while a configuration is joint, every decision needs a majority of the
 * incoming voters AND a majority of the outgoing voters.
 */
import type { LogIndex, NodeId } from '../../common/index.ts'
import { VoteResult, majorityCommitted, majorityVoteResult } from './majority.ts'
import type { AckedIndexer } from './majority.ts'

export interface JointConfig {
  readonly incoming: ReadonlySet<NodeId>
  /** Empty when not joint. */
  readonly outgoing: ReadonlySet<NodeId>
}

export function isJoint(c: JointConfig): boolean {
  return c.outgoing.size > 0
}

/** All voters of both halves. */
export function jointVoters(c: JointConfig): Set<NodeId> {
  const out = new Set<NodeId>(c.incoming)
  for (const id of c.outgoing) out.add(id)
  return out
}

/** The largest index committed under both halves. */
export function jointCommitted(c: JointConfig, acked: AckedIndexer): LogIndex {
  const a = majorityCommitted(c.incoming, acked)
  const b = majorityCommitted(c.outgoing, acked)
  return Math.min(a, b) as LogIndex
}

/** Won only when both halves win; lost when either loses. */
export function jointVoteResult(c: JointConfig, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVoteResult(c.incoming, votes)
  const b = majorityVoteResult(c.outgoing, votes)
  if (a === b) return a
  if (a === VoteResult.Lost || b === VoteResult.Lost) return VoteResult.Lost
  return VoteResult.Pending
}

export { VoteResult }
