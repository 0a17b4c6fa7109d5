import { describe, expect, it } from 'vitest'
import { ErrorCode, NodeId, ShardId } from '../../../src/common/index.ts'
import { descriptorOf, type ClusterMap } from '../../../src/cluster/index.ts'
import { Router, type LocalReplica, type Target } from '../../../src/router/index.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { handMap, kvError, node } from '../cluster/fixtures.ts'

/** A stand-in replica: the router only hands it back, so identity is all a test needs. */
const fakeReplica = (shard: number): Replica => ({ fake: `replica of shard ${shard}` }) as unknown as Replica

const nodes = [node(1), node(2), node(3), node(4), node(5, 'dead'), node(6)]
/**
 *   shard 0: [1, 2, 3], hint 2      shard 1: [2, 3, 4], no hint
 *   shard 2: [5, 4, 3], no hint (5 dead)   shard 3: [3, 4, 6], hint 4
 */
const map = handMap(
  nodes,
  [
    [1, 2, 3],
    [2, 3, 4],
    [5, 4, 3],
    [3, 4, 6],
  ],
  { hints: [2, 0, 0, 4], epoch: 5 },
)
const shard = (id: number) => map.shard(ShardId(id))!

function routerOf(
  self: number,
  locals: Record<number, Omit<LocalReplica, 'replica'>>,
  current: () => ClusterMap = () => map,
): Router {
  const replicas = new Map(
    Object.entries(locals).map(([id, view]) => [Number(id), { replica: fakeReplica(Number(id)), ...view }]),
  )
  return new Router({ nodeId: NodeId(self), map: current, local: (id) => replicas.get(id) })
}

const follower = (leaderId: number | null): Omit<LocalReplica, 'replica'> => ({
  isLeader: false,
  leaderId: leaderId === null ? null : NodeId(leaderId),
})
const leader = (self: number): Omit<LocalReplica, 'replica'> => ({ isLeader: true, leaderId: NodeId(self) })

// Forwarding goes to a node's peer listener: its peer address (client port + 100 by default).
const remote = (id: number): Target => ({ kind: 'remote', nodeId: NodeId(id), address: `n${id}:7100` })
function expectLocal(t: Target, shardId: number): void {
  expect(t.kind).toBe('local')
  if (t.kind === 'local') expect(t.replica).toEqual(fakeReplica(shardId))
}

describe('router/Router target: need replica', () => {
  it('a local replica serves it, leader or not, known leader or not', () => {
    expectLocal(routerOf(3, { 0: follower(2) }).target(shard(0), 'replica', false), 0)
    expectLocal(routerOf(3, { 0: follower(null) }).target(shard(0), 'replica', true), 0)
    expectLocal(routerOf(2, { 0: leader(2) }).target(shard(0), 'replica', false), 0)
  })

  it('no local replica: the leader as best known', () => {
    expect(routerOf(6, {}).target(shard(0), 'replica', false)).toEqual(remote(2))
  })
})

describe('router/Router target: need leader', () => {
  it('local leader: local', () => {
    const r = routerOf(1, { 0: leader(1) })
    expectLocal(r.target(shard(0), 'leader', false), 0)
    expect(r.leaderOf(shard(0))).toBe(1)
  })

  it('local follower that knows the leader: that leader, over the map hint', () => {
    expect(routerOf(1, { 0: follower(3) }).target(shard(0), 'leader', false)).toEqual(remote(3))
  })

  it('local follower with no idea (no Raft leader, no hint): local, to refuse with its own hint', () => {
    expectLocal(routerOf(2, { 1: follower(null) }).target(shard(1), 'leader', false), 1)
  })

  it('local follower whose Raft view names this node: local', () => {
    expectLocal(routerOf(2, { 1: follower(2) }).target(shard(1), 'leader', false), 1)
  })

  it('no local replica: the map hint', () => {
    expect(routerOf(6, {}).target(shard(0), 'leader', false)).toEqual(remote(2))
    expect(routerOf(1, {}).target(shard(3), 'leader', false)).toEqual(remote(4))
  })

  it('no hint: the first live replica (dead and self skipped)', () => {
    expect(routerOf(1, {}).target(shard(1), 'leader', false)).toEqual(remote(2))
    expect(routerOf(2, {}).target(shard(1), 'leader', false)).toEqual(remote(3))
    expect(routerOf(1, {}).target(shard(2), 'leader', false)).toEqual(remote(4))
  })

  it('a dead leader hint: the first live replica instead', () => {
    const withDeadHint = map.withLeaderHint(ShardId(2), NodeId(5), 3)
    const hinted = withDeadHint.shard(ShardId(2))!
    expect(hinted.leaderHint).toBe(5)
    expect(routerOf(1, {}, () => withDeadHint).target(hinted, 'leader', false)).toEqual(remote(4))
  })

  it('no live replica anywhere: NOT_LEADER', async () => {
    const allDead = handMap([node(1), node(2, 'dead'), node(3, 'dead')], [[2, 3]])
    const r = routerOf(1, {}, () => allDead)
    const err = await kvError(() => r.target(allDead.shards[0]!, 'leader', false))
    expect(err.code).toBe(ErrorCode.NotLeader)
  })
})

describe('router/Router target: forwarded requests are never forwarded again', () => {
  it('no local replica: NOT_LEADER with the best hint', async () => {
    const err = await kvError(() => routerOf(6, {}).target(shard(0), 'leader', true))
    expect(err.code).toBe(ErrorCode.NotLeader)
    expect(err.details).toEqual({ shardId: 0, shardMapEpoch: 5, leaderHint: 2 })
  })

  it('no local replica and no hint: NOT_LEADER without a leader hint', async () => {
    const err = await kvError(() => routerOf(1, {}).target(shard(1), 'replica', true))
    expect(err.code).toBe(ErrorCode.NotLeader)
    expect(err.details).toEqual({ shardId: 1, shardMapEpoch: 5 })
  })

  it('a local follower: local (the replica refuses itself, with its Raft hint)', () => {
    expectLocal(routerOf(1, { 0: follower(3) }).target(shard(0), 'leader', true), 0)
  })
})

describe('router/Router learnLeader', () => {
  it('overrides the map hint', () => {
    const r = routerOf(6, {})
    r.learnLeader(ShardId(0), NodeId(3))
    expect(r.leaderOf(shard(0))).toBe(3)
    expect(r.target(shard(0), 'leader', false)).toEqual(remote(3))
    expect(r.target(shard(0), 'replica', false)).toEqual(remote(3))
  })

  it('does not override the local Raft view', () => {
    const r = routerOf(1, { 0: follower(2) })
    r.learnLeader(ShardId(0), NodeId(3))
    expect(r.leaderOf(shard(0))).toBe(2)
    expect(r.target(shard(0), 'leader', false)).toEqual(remote(2))
  })

  it('ignores nodes that are not replicas of the shard, and unknown shards', () => {
    const r = routerOf(6, {})
    r.learnLeader(ShardId(0), NodeId(4))
    r.learnLeader(ShardId(99), NodeId(1))
    expect(r.leaderOf(shard(0))).toBe(2)
  })

  it('the latest lesson wins', async () => {
    const r = routerOf(6, {})
    r.learnLeader(ShardId(0), NodeId(3))
    r.learnLeader(ShardId(0), NodeId(1))
    expect(r.leaderOf(shard(0))).toBe(1)
    const err = await kvError(() => r.target(shard(0), 'leader', true))
    expect(err.details?.leaderHint).toBe(1)
  })
})

describe('router/Router checkHint', () => {
  const r = routerOf(1, {})

  it('no hint, the right shard at its epoch, or a newer epoch: accepted', () => {
    expect(() => r.checkHint(shard(1), undefined)).not.toThrow()
    expect(() => r.checkHint(shard(1), { shardId: 1, epoch: 5 })).not.toThrow()
    expect(() => r.checkHint(shard(1), { shardId: 1, epoch: 6 })).not.toThrow()
  })

  it.each([
    ['another shard', { shardId: 2, epoch: 5 }],
    ['an older epoch', { shardId: 1, epoch: 4 }],
  ])('%s: WRONG_SHARD with the current descriptor', async (_what, hint) => {
    const err = await kvError(() => r.checkHint(shard(1), hint))
    expect(err.code).toBe(ErrorCode.WrongShard)
    expect(err.details).toEqual({ shardId: 1, shardMapEpoch: 5, descriptor: descriptorOf(shard(1)) })
  })
})

describe('router/Router map access', () => {
  it('shardOfHash and next follow the current map', () => {
    let current = map
    const r = routerOf(1, {}, () => current)
    expect(r.shardOfHash(0n).shardId).toBe(0)
    expect(r.next(shard(0))?.shardId).toBe(1)
    expect(r.next(shard(3))).toBeUndefined()
    current = handMap(nodes, [[1], [2]])
    expect(r.map).toBe(current)
    expect(r.shardOfHash((1n << 64n) - 1n).shardId).toBe(1)
    expect(r.nodeId).toBe(1)
  })
})
