import { describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../src/common/ids.ts'
import {
  readiness,
  shardsListedMax,
  type ReadinessInput,
  type ReadinessReplica,
} from '../../../src/server/readiness.ts'

const me = NodeId(2)

function replica(shard: number, over: Partial<ReadinessReplica> = {}): ReadinessReplica {
  return {
    shardId: ShardId(shard),
    state: 'active',
    leaderId: NodeId(1),
    voters: [NodeId(1), me, NodeId(3)],
    votersOutgoing: [],
    appliedIndex: 100,
    commitIndex: 100,
    serving: true,
    ...over,
  }
}

function input(over: Partial<ReadinessInput> = {}): ReadinessInput {
  return {
    nodeId: me,
    lifecycle: 'serving',
    member: true,
    nowMs: 10_000,
    metaHeardMs: 9_500,
    metaStaleMs: 5_000,
    replicas: [replica(0), replica(1, { leaderId: me })],
    applyLagMax: 10,
    ...over,
  }
}

const reasonOf = (i: ReadinessInput): string => {
  const r = readiness(i)
  return r.ready ? 'ready' : r.reason
}

describe('server/readiness', () => {
  it('is ready when serving, listed, heard by the meta shard and every voting shard has a caught-up leader', () => {
    expect(readiness(input())).toEqual({ ready: true })
  })

  it.each([
    ['new', 'starting'],
    ['starting', 'starting'],
    ['stopping', 'stopping'],
    ['stopped', 'stopping'],
  ] as const)('lifecycle %s: %s', (lifecycle, reason) => {
    expect(reasonOf(input({ lifecycle }))).toBe(reason)
  })

  it('a node the map no longer lists (removed) is not ready', () => {
    expect(reasonOf(input({ member: false }))).toBe('not_member')
  })

  it('no heartbeat yet since start (not bootstrapped or joined) is meta_unreachable', () => {
    const r = readiness(input({ metaHeardMs: undefined }))
    expect(r).toMatchObject({ ready: false, reason: 'meta_unreachable' })
  })

  it('a heartbeat older than the staleness bound is meta_unreachable; at the bound it is still fine', () => {
    expect(reasonOf(input({ nowMs: 20_000, metaHeardMs: 15_000 }))).toBe('ready')
    const r = readiness(input({ nowMs: 20_001, metaHeardMs: 15_000 }))
    expect(r).toMatchObject({ ready: false, reason: 'meta_unreachable' })
    expect(r.ready ? '' : r.detail).toContain('5001 ms')
  })

  it('a voting shard without a known leader is no_leader, naming the shards in order', () => {
    const r = readiness(
      input({ replicas: [replica(7, { leaderId: null }), replica(1), replica(3, { leaderId: null })] }),
    )
    expect(r).toMatchObject({ ready: false, reason: 'no_leader', shards: [3, 7] })
  })

  it('a voter of the outgoing half of a joint configuration counts', () => {
    const r = replica(4, { leaderId: null, voters: [NodeId(1), NodeId(3), NodeId(4)], votersOutgoing: [me] })
    expect(reasonOf(input({ replicas: [r] }))).toBe('no_leader')
  })

  it('replicas this node does not vote in, or that are leaving it, do not count', () => {
    const learner = replica(5, { leaderId: null, voters: [NodeId(1), NodeId(3)], state: 'installing' })
    const removing = replica(6, { leaderId: null, state: 'removing', serving: false })
    const tombstone = replica(8, { leaderId: null, state: 'tombstone', serving: false })
    expect(readiness(input({ replicas: [learner, removing, tombstone] }))).toEqual({ ready: true })
  })

  it.each(['empty', 'installing'])('a voting replica that is %s is catching_up, leader or not', (state) => {
    expect(reasonOf(input({ replicas: [replica(3, { state, leaderId: null, serving: false })] }))).toBe(
      'catching_up',
    )
  })

  it('a node holding no replicas is ready (it routes every request to the shards elsewhere)', () => {
    expect(readiness(input({ replicas: [] }))).toEqual({ ready: true })
  })

  it('a voter waiting for or installing a snapshot is catching_up', () => {
    expect(reasonOf(input({ replicas: [replica(2, { serving: false })] }))).toBe('catching_up')
  })

  it('a voter more than applyLagMax entries behind its commit index is catching_up; at the bound it is ready', () => {
    expect(reasonOf(input({ replicas: [replica(2, { appliedIndex: 90, commitIndex: 100 })] }))).toBe('ready')
    expect(reasonOf(input({ replicas: [replica(2, { appliedIndex: 89, commitIndex: 100 })] }))).toBe(
      'catching_up',
    )
  })

  it('reasons come in order: membership, meta, leaders, catching up', () => {
    const leaderless = replica(1, { leaderId: null })
    const behind = replica(2, { serving: false })
    expect(reasonOf(input({ member: false, metaHeardMs: undefined }))).toBe('not_member')
    expect(reasonOf(input({ metaHeardMs: undefined, replicas: [leaderless] }))).toBe('meta_unreachable')
    expect(reasonOf(input({ replicas: [behind, leaderless] }))).toBe('no_leader')
  })

  it('lists at most shardsListedMax shards and says how many more', () => {
    const many = Array.from({ length: shardsListedMax + 3 }, (_, i) => replica(i, { leaderId: null }))
    const r = readiness(input({ replicas: many }))
    expect(r.ready).toBe(false)
    if (r.ready) return
    expect(r.shards).toHaveLength(shardsListedMax)
    expect(r.detail).toContain('and 3 more')
  })
})
