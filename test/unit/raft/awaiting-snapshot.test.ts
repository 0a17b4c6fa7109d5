import { describe, expect, it } from 'vitest'
import { NodeId, SeededRandom, silentLogger, type LogIndex, type Term } from '../../../src/common/index.ts'
import {
  MemoryLogStorage,
  RawNode,
  emptyConfState,
  type Message,
  type MsgVote,
} from '../../../src/raft/index.ts'

const n = (i: number): NodeId => NodeId(i)
const voters = { ...emptyConfState, voters: [n(1), n(2), n(3)] }

const storages = new WeakMap<RawNode, MemoryLogStorage>()

function node(awaitingSnapshot: boolean): RawNode {
  const storage = MemoryLogStorage.bootstrap(awaitingSnapshot ? emptyConfState : voters)
  const r = new RawNode(
    { id: n(2), awaitingSnapshot, electionTicks: 10, heartbeatTicks: 1 },
    { storage, random: new SeededRandom(7), logger: silentLogger },
  )
  storages.set(r, storage)
  return r
}

/** Persists a Ready as a shell would, and returns the messages it sends. */
function sent(r: RawNode): Message[] {
  if (!r.hasReady()) return []
  const rd = r.ready()
  const storage = storages.get(r)!
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot)
  storage.append(rd.entries)
  if (rd.hardState !== null) storage.setHardState(rd.hardState)
  r.advance(rd)
  return [...rd.messages, ...rd.messagesAfterPersist]
}

const vote = (term: number): MsgVote => ({
  type: 'MsgVote',
  from: n(3),
  to: n(2),
  term: term as Term,
  index: 0 as LogIndex,
  logTerm: 0 as Term,
  leaderTransfer: false,
})

describe('raft: a member awaiting its first snapshot', () => {
  it('refuses votes and never campaigns until a snapshot is restored, then votes as usual', () => {
    const r = node(true)
    for (let i = 0; i < 50; i++) r.tick()
    expect(r.status().role).toBe('follower')
    expect(sent(r).filter((m) => m.type === 'MsgPreVote' || m.type === 'MsgVote')).toEqual([])
    r.step(vote(3))
    expect(sent(r).find((m) => m.type === 'MsgVoteResp')).toMatchObject({ reject: true })
    // A leader's snapshot arrives (with the configuration that has this node as a voter).
    r.step({
      type: 'MsgSnap',
      from: n(1),
      to: n(2),
      term: 4 as Term,
      snapshot: {
        meta: { index: 10 as LogIndex, term: 4 as Term, confState: voters },
        data: new Uint8Array(),
      },
    })
    expect(r.status().commit).toBe(10)
    sent(r)
    // The fence is lifted: a vote of a leader transfer (which skips leader stickiness) is granted,
    // and left alone the node campaigns once its leader falls silent.
    r.step({ ...vote(6), index: 10 as LogIndex, logTerm: 4 as Term, leaderTransfer: true })
    expect(sent(r).find((m) => m.type === 'MsgVoteResp')).toMatchObject({ reject: false })
    const out: Message[] = []
    for (let i = 0; i < 40; i++) {
      r.tick()
      out.push(...sent(r))
    }
    expect(out.some((m) => m.type === 'MsgPreVote')).toBe(true)
  })

  it('an ordinary member grants the same vote', () => {
    const r = node(false)
    r.step(vote(3))
    expect(sent(r).find((m) => m.type === 'MsgVoteResp')).toMatchObject({ reject: false })
  })
})
