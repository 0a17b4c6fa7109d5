/**
 * Majority quorums (§3.6, §4.3). A majority configuration is a set of voters; an index is
 * committed once a majority has it, and an election is won once a majority grants it.
 */
import type { LogIndex, NodeId } from '../../common/index.ts'

/** The outcome of counting votes. `pending` means more answers could still change it. */
export const VoteResult = { Won: 'won', Lost: 'lost', Pending: 'pending' } as const
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult]

/** Looks up how far a voter has acknowledged; undefined when it has not answered at all. */
export type AckedIndexer = (id: NodeId) => LogIndex | undefined

/**
 * The largest index acknowledged by a majority of `voters`. An empty configuration commits
 * everything (Infinity) so that it never holds back a joint configuration's other half.
 */
export function majorityCommitted(voters: ReadonlySet<NodeId>, acked: AckedIndexer): LogIndex {
  const n = voters.size
  if (n === 0) return Number.POSITIVE_INFINITY as LogIndex
  const indexes: number[] = []
  for (const id of voters) indexes.push(acked(id) ?? 0)
  // Sorted descending, the (n/2)-th element (0-based, floor) is held by a majority:
  // positions 0..floor(n/2) are floor(n/2)+1 voters, a majority of n.
  indexes.sort((a, b) => b - a)
  return indexes[Math.floor(n / 2)] as LogIndex
}

/** Counts `votes` (true = granted) among `voters`; voters missing from `votes` have not answered. */
export function majorityVoteResult(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const n = voters.size
  // An empty configuration wins by definition, as in committed() above.
  if (n === 0) return VoteResult.Won
  let granted = 0
  let missing = 0
  for (const id of voters) {
    const v = votes.get(id)
    if (v === undefined) missing++
    else if (v) granted++
  }
  const q = Math.floor(n / 2) + 1
  if (granted >= q) return VoteResult.Won
  if (granted + missing >= q) return VoteResult.Pending
  return VoteResult.Lost
}
