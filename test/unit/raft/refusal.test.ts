import { describe, expect, it } from 'vitest'
import { LogIndex, NodeId, silentLogger, type Random, type Term } from '../../../src/common/index.ts'
import { MemoryLogStorage, RawNode, emptyConfState, type Message } from '../../../src/raft/index.ts'

const zero: Random = { int: () => 0, chance: () => false, fork: () => zero }

function node(): RawNode {
  const storage = MemoryLogStorage.bootstrap(
    { ...emptyConfState, voters: [NodeId(1), NodeId(2), NodeId(3)] },
    LogIndex(2),
    1 as never,
  )
  return new RawNode(
    { id: NodeId(1), termMax: 1000, termJumpMax: 100 },
    { storage, random: zero, logger: silentLogger },
  )
}

const snap = (from: number, term: number): Message => ({
  type: 'MsgSnap',
  from: NodeId(from),
  to: NodeId(1),
  term: term as Term,
  snapshot: {
    meta: {
      index: LogIndex(9),
      term: term as Term,
      confState: { ...emptyConfState, voters: [NodeId(1), NodeId(2), NodeId(3)] },
    },
    data: new Uint8Array(0),
  },
})

describe('raft/RawNode.refusal', () => {
  it('says what step would refuse outright, without changing anything', () => {
    const n = node()
    const before = n.status()
    expect(n.refusal(snap(2, 1))).toBeNull()
    expect(n.refusal(snap(2, 5))).toBeNull()
    expect(n.refusal(snap(2, 1 + 101))).toBe('term-absurd')
    expect(n.refusal(snap(2, 1001))).toBe('term-absurd')
    expect(n.refusal(snap(1, 1))).toBe('malformed')
    expect(n.refusal({ ...snap(2, 1), to: NodeId(3) })).toBe('not-addressed')
    expect(n.status()).toEqual(before)
    // Once the term's leader is known, another node's snapshot in that term is refused.
    expect(
      n.step({
        type: 'MsgHeartbeat',
        from: NodeId(2),
        to: NodeId(1),
        term: 3 as Term,
        commit: LogIndex(2),
        round: 1,
      }).ok,
    ).toBe(true)
    expect(n.refusal(snap(3, 3))).toBe('not-leader')
    expect(n.refusal(snap(2, 3))).toBeNull()
    expect(n.refusal(snap(2, 2))).toBe('stale-term')
  })
})
