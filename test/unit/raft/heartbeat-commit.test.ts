/**
 * A heartbeat's `commit` is capped at what the leader knows the follower holds, so it cannot tell
 * a lagging follower that it lags; `leaderCommit` can (shard/raft-group.ts measures a follower's
 * staleness with it; the chaos suite's paused follower served bounded reads 20 writes behind
 * while it said 6 ms stale, before it was there).
 */
import { describe, expect, it } from 'vitest'
import { LogIndex, NodeId, silentLogger, type Random, type Term } from '../../../src/common/index.ts'
import {
  MemoryLogStorage,
  RawNode,
  emptyConfState,
  type Message,
  type MsgHeartbeat,
} from '../../../src/raft/index.ts'

const zero: Random = { int: () => 0, chance: () => false, fork: () => zero }
const voters = [NodeId(1), NodeId(2), NodeId(3)]

function leaderOfThree(): { raw: RawNode; storage: MemoryLogStorage; sent: Message[] } {
  const storage = MemoryLogStorage.bootstrap({ ...emptyConfState, voters }, LogIndex(2), 1 as never)
  const raw = new RawNode(
    { id: NodeId(1), termMax: 1000, termJumpMax: 100 },
    { storage, random: zero, logger: silentLogger },
  )
  const sent: Message[] = []
  const drain = (): void => {
    while (raw.hasReady()) {
      const rd = raw.ready()
      if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot)
      storage.append(rd.entries)
      if (rd.hardState !== null) storage.setHardState(rd.hardState)
      sent.push(...rd.messages, ...rd.messagesAfterPersist)
      raw.advance(rd)
    }
  }
  raw.campaign()
  drain()
  // Node 2 grants the pre-vote and the vote.
  for (let round = 0; round < 2; round++)
    for (const m of sent.splice(0))
      if ((m.type === 'MsgPreVote' || m.type === 'MsgVote') && m.to === NodeId(2)) {
        const type = m.type === 'MsgPreVote' ? 'MsgPreVoteResp' : 'MsgVoteResp'
        raw.step({ type, from: NodeId(2), to: NodeId(1), term: m.term, reject: false })
        drain()
      }
  const term = raw.status().term as Term
  expect(raw.status().role).toBe('leader')
  // Node 2 acknowledges everything it is sent; node 3 never answers (paused, cut off).
  const ackFrom2 = (): void => {
    for (const m of sent.splice(0))
      if (m.type === 'MsgApp' && m.to === NodeId(2)) {
        const index = (m.index + m.entries.length) as LogIndex
        raw.step({
          type: 'MsgAppResp',
          from: NodeId(2),
          to: NodeId(1),
          term,
          index,
          reject: false,
          rejectHint: LogIndex(0),
          logTerm: 0 as Term,
        })
      }
    drain()
  }
  ackFrom2()
  for (let i = 0; i < 5; i++) {
    raw.propose(new Uint8Array([i]))
    drain()
    ackFrom2()
  }
  return { raw, storage, sent }
}

describe('raft/heartbeat leaderCommit', () => {
  it("tells a lagging follower the leader's commit, while its commit stays capped at the follower's match", () => {
    const { raw, sent } = leaderOfThree()
    const committed = raw.status().commit
    sent.splice(0)
    for (let i = 0; i < 3 && !sent.some((m) => m.type === 'MsgHeartbeat'); i++) {
      raw.tick()
      while (raw.hasReady()) {
        const rd = raw.ready()
        sent.push(...rd.messages, ...rd.messagesAfterPersist)
        raw.advance(rd)
      }
    }
    const beats = sent.filter((m): m is MsgHeartbeat => m.type === 'MsgHeartbeat')
    const to2 = beats.find((m) => m.to === NodeId(2))
    const to3 = beats.find((m) => m.to === NodeId(3))
    expect(committed).toBeGreaterThan(3)
    expect(to2).toMatchObject({ commit: committed, leaderCommit: committed })
    // Node 3 never acknowledged anything: its heartbeat commit says nothing of the leader's.
    expect(to3!.commit).toBeLessThan(committed)
    expect(to3!.leaderCommit).toBe(committed)
  })
})
