import { describe, expect, it } from 'vitest'
import { ErrorCode, KvError, NodeId, ShardId } from '../../../src/common/index.ts'
import { descriptorOf, type ClusterMap } from '../../../src/cluster/index.ts'
import { Router, forwardAvoidMs, type LocalReplica, type Target } from '../../../src/router/index.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { ManualClock, handMap, kvError, node } from '../cluster/fixtures.ts'

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
  clock = new ManualClock(),
): Router {
  const replicas = new Map(
    Object.entries(locals).map(([id, view]) => [Number(id), { replica: fakeReplica(Number(id)), ...view }]),
  )
  return new Router({ nodeId: NodeId(self), map: current, local: (id) => replicas.get(id), clock })
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

  it('ignores unknown shards; takes a node the map does not list among the replicas (the map may lag a move)', () => {
    const r = routerOf(6, {})
    r.learnLeader(ShardId(99), NodeId(1))
    expect(r.leaderOf(shard(0))).toBe(2)
    r.learnLeader(ShardId(0), NodeId(4))
    expect(r.leaderOf(shard(0))).toBe(4)
    expect(r.target(shard(0), 'leader', false)).toEqual(remote(4))
  })

  it('a receipt from an older term than the map hint does not override it', () => {
    const hinted = map.withLeaderHint(ShardId(1), NodeId(3), 7)
    const r = routerOf(6, {}, () => hinted)
    r.learnLeader(ShardId(1), NodeId(2), 6)
    expect(r.leaderOf(hinted.shard(ShardId(1))!)).toBe(3)
    r.learnLeader(ShardId(1), NodeId(4), 8)
    expect(r.leaderOf(hinted.shard(ShardId(1))!)).toBe(4)
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

describe('router/Router serve: here, or forwarded once', () => {
  type Res = { readonly by: string; readonly receipt?: { readonly nodeId: number; readonly term: number } }
  const ok = (by: string, nodeId = 0, term = 0): Res => ({ by, receipt: { nodeId, term } })
  const notLeader = (leaderHint?: number): KvError =>
    new KvError(ErrorCode.NotLeader, 'not me', {
      details: leaderHint === undefined ? { shardId: 0 } : { shardId: 0, leaderHint },
    })

  /** A `remote` that answers per address from `answers` (an error is thrown), recording the calls. */
  function remoteOf(answers: Record<string, Res | KvError>): {
    calls: string[]
    remote: (address: string) => Promise<Res>
  } {
    const calls: string[] = []
    return {
      calls,
      remote: (address) => {
        calls.push(address)
        const a = answers[address]
        if (a === undefined) return Promise.reject(new Error(`unexpected call to ${address}`))
        return a instanceof KvError ? Promise.reject(a) : Promise.resolve(a)
      },
    }
  }

  it('a local leader serves; nothing is forwarded', async () => {
    const { calls, remote } = remoteOf({})
    const r = routerOf(1, { 0: leader(1) })
    expect(await r.serve(shard(0), 'leader', false, async () => ok('local'), remote)).toEqual(ok('local'))
    expect(calls).toEqual([])
  })

  it('a local follower that refuses with a hint: passed on once to that leader, which is learned', async () => {
    const { calls, remote } = remoteOf({ 'n3:7100': ok('n3', 3, 4) })
    const r = routerOf(2, { 1: follower(null) })
    const res = await r.serve(shard(1), 'leader', false, () => Promise.reject(notLeader(3)), remote)
    expect(res.by).toBe('n3')
    expect(calls).toEqual(['n3:7100'])
    expect(r.leaderOf(shard(1))).toBe(3)
  })

  it('a forwarded request is never passed on: the local refusal goes back', async () => {
    const { calls, remote } = remoteOf({ 'n3:7100': ok('n3') })
    const r = routerOf(2, { 1: follower(null) })
    const err = await kvError(() =>
      r.serve(shard(1), 'leader', true, () => Promise.reject(notLeader(3)), remote),
    )
    expect(err.details?.leaderHint).toBe(3)
    expect(calls).toEqual([])
  })

  it('a forward answered NOT_LEADER goes once more to the leader named then, and no further', async () => {
    const { calls, remote } = remoteOf({ 'n2:7100': notLeader(3), 'n3:7100': notLeader(4) })
    const r = routerOf(6, {})
    const err = await kvError(() =>
      r.serve(shard(0), 'leader', false, () => Promise.reject(new Error('no')), remote),
    )
    expect(err.details?.leaderHint).toBe(4)
    expect(calls).toEqual(['n2:7100', 'n3:7100'])
  })

  it('a forward that names its own node as leader (leadership moving) is not passed on', async () => {
    const { calls, remote } = remoteOf({ 'n2:7100': notLeader(2) })
    const r = routerOf(6, {})
    await kvError(() => r.serve(shard(0), 'leader', false, () => Promise.reject(new Error('no')), remote))
    expect(calls).toEqual(['n2:7100'])
  })

  it('a leader that does not answer is passed over for forwardAvoidMs, then tried again', async () => {
    const clock = new ManualClock()
    const { calls, remote } = remoteOf({
      'n2:7100': new KvError(ErrorCode.Unavailable, 'connection refused'),
      'n1:7100': ok('n1', 1, 9),
    })
    const r = routerOf(6, {}, () => map, clock)
    await kvError(() => r.serve(shard(0), 'leader', false, () => Promise.reject(new Error('no')), remote))
    // Node 2 failed: forgotten as the leader and passed over; shard 0's first replica (1) is next.
    expect(r.target(shard(0), 'leader', false)).toEqual(peerTarget(1))
    expect((await r.serve(shard(0), 'leader', false, () => Promise.reject(new Error('no')), remote)).by).toBe(
      'n1',
    )
    // The receipt named node 1 the leader (term 9): it stays so after the avoidance ends.
    clock.now += forwardAvoidMs
    expect(r.leaderOf(shard(0))).toBe(1)
    expect(calls).toEqual(['n2:7100', 'n1:7100'])
    // Shard 1 (no hint): node 2 is its preferred replica again once the avoidance ended.
    expect(r.target(shard(1), 'leader', false)).toEqual(peerTarget(2))
  })

  it('a forward answered NOT_LEADER without a hint: that node is asked last for the shard', async () => {
    const { remote } = remoteOf({ 'n2:7100': notLeader() })
    const r = routerOf(6, {})
    await kvError(() => r.serve(shard(1), 'leader', false, () => Promise.reject(new Error('no')), remote))
    expect(r.target(shard(1), 'leader', false)).toEqual(peerTarget(3))
    // Another shard led by node 2 is not affected.
    expect(r.target(shard(0), 'leader', false)).toEqual(peerTarget(2))
  })

  it("the caller's own deadline teaches nothing about the peer", async () => {
    const { remote } = remoteOf({ 'n2:7100': new KvError(ErrorCode.DeadlineExceeded, 'deadline exceeded') })
    const r = routerOf(6, {})
    await kvError(() => r.serve(shard(0), 'leader', false, () => Promise.reject(new Error('no')), remote))
    expect(r.target(shard(0), 'leader', false)).toEqual(peerTarget(2))
  })
})

const peerTarget = (id: number): Target => ({ kind: 'remote', nodeId: NodeId(id), address: `n${id}:7100` })
