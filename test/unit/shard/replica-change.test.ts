import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, NodeId, type LogIndex } from '../../../src/common/index.ts'
import { confStateAfter, encodeConfChange, emptyConfState, type ConfState } from '../../../src/raft/index.ts'
import {
  changeDone,
  isUpToDate,
  membersOf,
  planConfChange,
  type LeaderView,
  type MemberProgress,
  type ReplicaChange,
} from '../../../src/shard/index.ts'

const n = (i: number): NodeId => NodeId(i)
const conf = (voters: number[], learners: number[] = []): ConfState => ({
  ...emptyConfState,
  voters: voters.map(n),
  learners: learners.map(n),
})
const upToDate: MemberProgress = { match: 100 as LogIndex, recentActive: true }
const behind: MemberProgress = { match: 10 as LogIndex, recentActive: true }
const silent: MemberProgress = { match: 100 as LogIndex, recentActive: false }
const nothing: MemberProgress = { match: 0 as LogIndex, recentActive: true }

function view(cs: ConfState, progress: Record<number, MemberProgress>, self = 1): LeaderView {
  return {
    self: n(self),
    conf: cs,
    lastIndex: 100 as LogIndex,
    progress: new Map(Object.entries(progress).map(([id, p]) => [n(Number(id)), p])),
  }
}

function code(f: () => unknown): string {
  try {
    f()
    return 'ok'
  } catch (err) {
    return (err as { code: string }).code
  }
}

describe('shard/replica-change: the rules of moving replicas', () => {
  it('counts a member up to date only when it acknowledged state, is close behind and was heard from', () => {
    const v = view(conf([1, 2, 3], [4]), { 2: upToDate, 3: behind, 4: nothing })
    expect(isUpToDate(v, n(1))).toBe(true) // the leader itself
    expect(isUpToDate(v, n(2))).toBe(true)
    expect(isUpToDate(v, n(3))).toBe(false) // 90 entries behind
    expect(isUpToDate(v, n(4))).toBe(false) // a new learner before its first snapshot
    expect(isUpToDate(view(conf([1, 2]), { 2: silent }), n(2))).toBe(false)
  })

  it('refuses what would break a shard, with stable codes', () => {
    const cs = conf([1, 2, 3], [4])
    const all = { 2: upToDate, 3: upToDate, 4: upToDate }
    // the leader is never removed or replaced while it leads
    expect(code(() => planConfChange(view(cs, all), { kind: 'remove', node: n(1) }))).toBe(
      ErrorCode.MoveRefused,
    )
    expect(code(() => planConfChange(view(cs, all), { kind: 'replace', add: n(4), remove: n(1) }))).toBe(
      ErrorCode.MoveRefused,
    )
    // a learner that has not caught up is never promoted or swapped in
    const lagging = { 2: upToDate, 3: upToDate, 4: behind }
    expect(code(() => planConfChange(view(cs, lagging), { kind: 'promote', node: n(4) }))).toBe(
      ErrorCode.MoveRefused,
    )
    expect(code(() => planConfChange(view(cs, lagging), { kind: 'replace', add: n(4), remove: n(2) }))).toBe(
      ErrorCode.MoveRefused,
    )
    // a replace needs the added node to be a learner first (never add a voter straight in)
    expect(
      code(() => planConfChange(view(conf([1, 2, 3]), all), { kind: 'replace', add: n(4), remove: n(2) })),
    ).toBe(ErrorCode.MoveRefused)
    // removing a voter must leave an up-to-date quorum
    const oneDown = { 2: upToDate, 3: silent }
    expect(code(() => planConfChange(view(conf([1, 2, 3]), oneDown), { kind: 'remove', node: n(2) }))).toBe(
      ErrorCode.MoveRefused,
    )
    expect(code(() => planConfChange(view(conf([1, 2, 3]), oneDown), { kind: 'remove', node: n(3) }))).toBe(
      'ok',
    )
    // one change at a time
    const joint: ConfState = { ...conf([1, 2, 4]), votersOutgoing: [n(1), n(2), n(3)], autoLeave: true }
    expect(code(() => planConfChange(view(joint, all), { kind: 'remove', node: n(3) }))).toBe(
      ErrorCode.ShardBusy,
    )
    // the happy paths
    expect(planConfChange(view(cs, all), { kind: 'replace', add: n(4), remove: n(2) }).transition).toBe(
      'implicit',
    )
    expect(planConfChange(view(cs, all), { kind: 'promote', node: n(4) }).changes).toEqual([
      { type: 'addNode', nodeId: 4 },
    ])
  })

  it('a planned change applied by the core reaches exactly the end state changeDone looks for (property)', () => {
    const change: fc.Arbitrary<ReplicaChange> = fc.oneof(
      fc.record({ kind: fc.constant('addLearner' as const), node: fc.integer({ min: 1, max: 6 }).map(n) }),
      fc.record({ kind: fc.constant('promote' as const), node: fc.integer({ min: 1, max: 6 }).map(n) }),
      fc.record({
        kind: fc.constant('replace' as const),
        add: fc.integer({ min: 1, max: 6 }).map(n),
        remove: fc.integer({ min: 1, max: 6 }).map(n),
      }),
      fc.record({ kind: fc.constant('remove' as const), node: fc.integer({ min: 1, max: 6 }).map(n) }),
    )
    const start = fc
      .tuple(
        fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 6 }),
      )
      .map(([ids, split]) =>
        conf(ids.slice(0, Math.max(1, Math.min(split, ids.length))), ids.slice(Math.max(1, split))),
      )
    fc.assert(
      fc.property(start, change, (cs, ch) => {
        const self = cs.voters[0]!
        const progress: Record<number, MemberProgress> = {}
        for (const id of membersOf(cs)) progress[id] = upToDate
        let cc
        try {
          cc = planConfChange(view(cs, progress, self), ch)
        } catch {
          return // refused: nothing to check
        }
        let after = confStateAfter(cs, encodeConfChange(cc))
        expect(after).not.toBeNull()
        // An implicit joint change is left by the core's automatic empty change.
        if (after!.votersOutgoing.length > 0)
          after = confStateAfter(after!, encodeConfChange({ changes: [], transition: 'auto' }))
        expect(changeDone(after!, ch)).toBe(true)
        // The leader stays a voter; voters never reach zero.
        expect(after!.voters).toContain(self)
      }),
    )
  })
})
