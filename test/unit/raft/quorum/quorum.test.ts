import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { LogIndex, NodeId } from '../../../../src/common/index.ts'
import { jointCommitted, jointVoteResult } from '../../../../src/raft/quorum/joint.ts'
import { VoteResult, majorityCommitted, majorityVoteResult } from '../../../../src/raft/quorum/majority.ts'

/** The naive oracle: the largest index that at least a majority of voters have reached. */
function naiveCommitted(voters: readonly NodeId[], acked: ReadonlyMap<NodeId, number>): number {
  if (voters.length === 0) return Number.POSITIVE_INFINITY
  const q = Math.floor(voters.length / 2) + 1
  let best = 0
  const candidates = new Set([0, ...voters.map((v) => acked.get(v) ?? 0)])
  for (const c of candidates) {
    const have = voters.filter((v) => (acked.get(v) ?? 0) >= c).length
    if (have >= q && c > best) best = c
  }
  return best
}

const idsArb = fc.uniqueArray(fc.integer({ min: 1, max: 9 }), { maxLength: 7 }).map((a) => a as NodeId[])
const ackArb = fc.dictionary(fc.integer({ min: 1, max: 9 }).map(String), fc.integer({ min: 0, max: 20 }))
const toMap = (d: Record<string, number>): Map<NodeId, number> =>
  new Map(Object.entries(d).map(([k, v]) => [Number(k) as NodeId, v]))

describe('raft/quorum', () => {
  it('commits the largest index a majority has reached (oracle)', () => {
    fc.assert(
      fc.property(idsArb, ackArb, (voters, acks) => {
        const m = toMap(acks)
        const got = majorityCommitted(new Set(voters), (id) => m.get(id) as LogIndex | undefined)
        expect(got).toBe(naiveCommitted(voters, m))
      }),
    )
  })

  it('commits under a joint config only what both halves commit (§4.3)', () => {
    fc.assert(
      fc.property(idsArb, idsArb, ackArb, (incoming, outgoing, acks) => {
        const m = toMap(acks)
        const got = jointCommitted(
          { incoming: new Set(incoming), outgoing: new Set(outgoing) },
          (id) => m.get(id) as LogIndex | undefined,
        )
        expect(got).toBe(Math.min(naiveCommitted(incoming, m), naiveCommitted(outgoing, m)))
      }),
    )
  })

  it('wins an election with a majority, loses once a majority is impossible', () => {
    const voters = new Set([1, 2, 3, 4, 5] as NodeId[])
    const votes = new Map<NodeId, boolean>([
      [1 as NodeId, true],
      [2 as NodeId, true],
    ])
    expect(majorityVoteResult(voters, votes)).toBe(VoteResult.Pending)
    votes.set(3 as NodeId, true)
    expect(majorityVoteResult(voters, votes)).toBe(VoteResult.Won)
    const lost = new Map<NodeId, boolean>([
      [1 as NodeId, false],
      [2 as NodeId, false],
      [3 as NodeId, false],
    ])
    expect(majorityVoteResult(voters, lost)).toBe(VoteResult.Lost)
  })

  it('decides joint votes by both halves: won only if both win, lost if either loses', () => {
    fc.assert(
      fc.property(
        idsArb,
        idsArb,
        fc.dictionary(fc.integer({ min: 1, max: 9 }).map(String), fc.boolean()),
        (a, b, v) => {
          const votes = new Map(Object.entries(v).map(([k, x]) => [Number(k) as NodeId, x]))
          const ra = majorityVoteResult(new Set(a), votes)
          const rb = majorityVoteResult(new Set(b), votes)
          const r = jointVoteResult({ incoming: new Set(a), outgoing: new Set(b) }, votes)
          if (ra === VoteResult.Won && rb === VoteResult.Won) expect(r).toBe(VoteResult.Won)
          else if (ra === VoteResult.Lost || rb === VoteResult.Lost) expect(r).toBe(VoteResult.Lost)
          else expect(r).toBe(VoteResult.Pending)
        },
      ),
    )
  })
})
