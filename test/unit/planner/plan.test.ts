import { beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isKvErrorWithCode } from '../../../src/common/errors.ts'
import { NodeId, ShardId } from '../../../src/common/ids.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import {
  applyMoves,
  planMoves,
  type NodeState,
  type PlanInput,
  type PlannerNode,
  type PlannerShard,
} from '../../../src/planner/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { converge, inputOf, loads, newCluster, withNode } from '../../sim/rebalance.ts'
import { brokenRules } from './oracle.ts'

const node = (id: number, state: NodeState = 'active', zone = '', weight = 1): PlannerNode => ({
  id: NodeId(id),
  state,
  zone,
  weight,
})
const shard = (id: number, replicas: number[], epoch = 5): PlannerShard => ({
  shardId: ShardId(id),
  replicas: replicas.map(NodeId),
  epoch,
})
const input = (
  nodes: PlannerNode[],
  shards: PlannerShard[],
  replicaCount = 3,
  inProgress: PlanInput['inProgress'] = [],
): PlanInput => ({ nodes, shards, replicaCount, vnodesPerNode: 16, inProgress })

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  return undefined
}

describe('planner/planMoves', () => {
  let hasher: Hasher
  const plan = (i: PlanInput): ReturnType<typeof planMoves> => {
    const p = planMoves(i, hasher)
    expect(brokenRules(i, p)).toEqual([])
    return p
  }
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  it('plans nothing for a balanced cluster', () => {
    const c = converge(newCluster(hasher, 5, 64), (i) => plan(i)).cluster
    const p = plan(inputOf(c))
    expect(p.moves).toEqual([])
    expect(p.blocked).toEqual([])
    expect(p.safeMode).toBeUndefined()
  })

  it('gives a joined node its share from the busiest nodes and nothing else moves (5 -> 6 nodes, 64 shards)', () => {
    const before = converge(newCluster(hasher, 5, 64), (i) => plan(i)).cluster
    const joined = withNode(before, 6)
    const p = plan(inputOf(joined))
    expect(p.moves.every((m) => m.reason === 'balance' && m.to === 6)).toBe(true)
    // The newcomer's fair share is 64 * 3 / 6 = 32: exactly that many moves.
    expect(p.moves.length).toBe(32)
    const after = loads({ ...joined, shards: applyMoves(joined.shards, p.moves) })
    // Every node within one replica of its fair share, as the end-to-end test expects.
    for (const count of after.values()) expect(Math.abs(count - 32)).toBeLessThanOrEqual(1)
  })

  it('replaces a dead node’s replicas (repair, from the dead node) and spreads them', () => {
    const c = converge(newCluster(hasher, 6, 48), (i) => plan(i)).cluster
    const dead = withNode(c, 2, 'dead')
    const held = loads(c).get(2)!
    const p = plan(inputOf(dead))
    expect(p.moves.length).toBe(held)
    expect(p.moves.every((m) => m.reason === 'repair' && m.from === 2)).toBe(true)
    const receivers = new Set(p.moves.map((m) => m.to))
    expect(receivers.size).toBe(5)
    expect(converge(dead, (i) => plan(i)).rounds).toBe(1)
  })

  it('drains every replica of a draining node, and only those', () => {
    const c = converge(newCluster(hasher, 6, 48), (i) => plan(i)).cluster
    const p = plan(inputOf(withNode(c, 4, 'draining')))
    expect(p.moves.length).toBe(loads(c).get(4))
    expect(p.moves.every((m) => m.reason === 'drain' && m.from === 4 && m.to !== 4)).toBe(true)
  })

  it('orders repairs, then drains, then balance when all are due, fewest live replicas first', () => {
    const nodes = [1, 2, 3, 4, 5, 6].map((id) => node(id))
    nodes[0] = node(1, 'dead')
    nodes[1] = node(2, 'draining')
    nodes.push(node(7)) // empty newcomer
    const shards = [
      shard(0, [3, 4, 5]),
      shard(1, [1, 3, 4]), // one dead replica
      shard(2, [2, 5, 6]), // on the draining node
      shard(3, [4, 5]), // short of a replica
      shard(4, [3, 5, 6]),
      shard(5, [1, 6, 99]), // a dead and an unknown node: no quorum
      shard(6, [1, 2, 4]),
    ]
    const p = plan(input(nodes, shards))
    const reasons = p.moves.map((m) => m.reason)
    expect(reasons).toEqual([...reasons].sort((a, b) => 'rdb'.indexOf(a[0]!) - 'rdb'.indexOf(b[0]!)))
    expect(p.moves.filter((m) => m.reason === 'repair').map((m) => m.shardId)).toEqual([1, 3, 6])
    expect(p.moves.find((m) => m.shardId === 3)).toMatchObject({ reason: 'repair', to: expect.any(Number) })
    expect(p.moves.find((m) => m.shardId === 3)?.from).toBeUndefined()
    expect(p.moves.filter((m) => m.reason === 'drain').map((m) => m.shardId)).toEqual([2])
    expect(p.blocked).toEqual([{ shardId: 5, reason: 'no-quorum' }])
    // Shard 6 needs a repair and a drain: one move per plan, the other pending.
    expect(p.pending).toBe(1)
    // The empty node is the least loaded: the repairs go there.
    expect(p.moves.filter((m) => m.reason === 'repair').every((m) => m.to === 7)).toBe(true)
  })

  it('leaves a shard with a move in progress alone and counts the move as done', () => {
    const nodes = [1, 2, 3, 4].map((id) => node(id))
    const shards = [shard(0, [1, 2, 3]), shard(1, [1, 2, 3]), shard(2, [1, 2, 3]), shard(3, [1, 2, 3])]
    const p = plan(input(nodes, shards, 3, [{ shardId: ShardId(0), from: NodeId(1), to: NodeId(4) }]))
    expect(p.moves.some((m) => m.shardId === 0)).toBe(false)
    expect(p.placement[0]).toEqual([4, 2, 3])
    // Node 4's share is 3: the move in progress is one, so two more come.
    expect(p.moves.filter((m) => m.to === 4)).toHaveLength(2)
  })

  it('never places a replica on a joining, draining or dead node', () => {
    const nodes = [
      node(1),
      node(2),
      node(3),
      node(4, 'joining'),
      node(5, 'draining'),
      node(6, 'dead'),
      node(7),
    ]
    const shards = Array.from({ length: 12 }, (_, i) => shard(i, i % 2 === 0 ? [1, 2, 6] : [1, 2, 5]))
    const p = plan(input(nodes, shards))
    for (const m of p.moves) expect([1, 2, 3, 7]).toContain(m.to)
    expect(p.moves.length).toBeGreaterThan(0)
  })

  it('keeps a shard’s replicas in distinct zones while there are zones enough', () => {
    const zones = ['a', 'a', 'b', 'b', 'c', 'c']
    const nodes = zones.map((z, i) => node(i + 1, i === 0 ? 'dead' : 'active', z))
    const shards = Array.from({ length: 8 }, (_, i) => shard(i, [1, 3 + (i % 2), 5 + (i % 2)]))
    const p = plan(input(nodes, shards))
    const repairs = p.moves.filter((m) => m.reason === 'repair')
    expect(repairs).toHaveLength(8)
    // Zone a is the only one without a replica of these shards: node 2 takes them all.
    expect(repairs.every((m) => m.to === 2)).toBe(true)
  })

  it('spreads shards over a zone that has just come (2 zones -> 3): one replica each, from the busiest', () => {
    const zones = ['a', 'b', 'a', 'b', 'c']
    const nodes = zones.map((z, i) => node(i + 1, 'active', z))
    // Placed while there were 2 zones: a, b, and a again.
    const shards = Array.from({ length: 6 }, (_, i) => shard(i, i % 2 === 0 ? [1, 2, 3] : [3, 4, 1]))
    const p = plan(input(nodes, shards))
    const spread = p.moves.filter((m) => m.to === 5)
    expect(spread.length).toBeGreaterThanOrEqual(6)
    for (const m of spread) expect([1, 3]).toContain(m.from)
    for (const replicas of p.placement) expect(new Set(replicas.map((id) => zones[id - 1])).size).toBe(3)
  })

  it('safe mode (nodes): 3 nodes, replication factor 3, one dead: says so and plans no move', () => {
    const nodes = [node(1, 'dead'), node(2), node(3)]
    const p = plan(input(nodes, [shard(0, [1, 2, 3]), shard(1, [2, 3, 1])]))
    expect(p.safeMode?.reason).toBe('nodes')
    expect(p.safeMode?.message).toMatch(/^2 active nodes cannot hold 3 replicas/)
    expect(p.moves).toEqual([])
    const lone = plan(input([node(1, 'dead'), node(2), node(3, 'dead')], [shard(0, [1, 2, 3])]))
    expect(lone.safeMode?.message).toMatch(/^1 active node cannot hold 3 replicas/)
    expect(p.blocked).toEqual([
      { shardId: 0, reason: 'no-destination' },
      { shardId: 1, reason: 'no-destination' },
    ])
  })

  it('safe mode plans repairs that raise redundancy, and no drain or balance', () => {
    const nodes = [node(1, 'dead'), node(2), node(3), node(4, 'draining')]
    // 2 active nodes, replication factor 3: shard 1 gains a replica on node 3; shard 2 drains
    // nothing (its draining replica stays), shard 0 has no quorum, shard 3 no room.
    const shards = [shard(0, [1, 2]), shard(1, [2, 4]), shard(2, [2, 3, 4]), shard(3, [2, 3])]
    const p = plan(input(nodes, shards))
    expect(p.safeMode?.reason).toBe('nodes')
    expect(p.moves).toEqual([{ shardId: 1, to: 3, reason: 'repair', epoch: 5 }])
    expect(p.blocked).toEqual([
      { shardId: 0, reason: 'no-quorum' },
      { shardId: 3, reason: 'no-destination' },
    ])
  })

  it('safe mode (zones): a zone lost while zones were enough; repairs may then share a zone', () => {
    const zones = ['a', 'b', 'c', 'a', 'b']
    const nodes = zones.map((z, i) => node(i + 1, i === 2 ? 'dead' : 'active', z))
    const shards = [shard(0, [1, 2, 3]), shard(1, [4, 5, 1])]
    const p = plan(input(nodes, shards))
    expect(p.safeMode?.reason).toBe('zones')
    expect(p.moves).toHaveLength(1)
    expect(p.moves[0]).toMatchObject({ shardId: 0, from: 3, reason: 'repair' })
    expect([4, 5]).toContain(p.moves[0]!.to)
  })

  it('is the same plan whatever the input order', () => {
    const c = withNode(withNode(newCluster(hasher, 7, 40), 3, 'dead'), 9)
    const a = planMoves(inputOf(c), hasher)
    const shuffled = {
      ...inputOf(c),
      nodes: [...c.nodes].reverse(),
      shards: [...c.shards.slice(17), ...c.shards.slice(0, 17)].reverse(),
    }
    expect(planMoves(shuffled, hasher)).toEqual(a)
    expect(a.moves.length).toBeGreaterThan(0)
  })

  it('refuses bad input with INVALID_ARGUMENT naming the field', () => {
    const nodes = [node(1), node(2), node(3)]
    const cases: [PlanInput, string][] = [
      [input([...nodes, node(2)], [shard(0, [1, 2, 3])]), 'nodes'],
      [input(nodes, [shard(1, [1, 2, 3])]), 'shards'],
      [input(nodes, [shard(0, [1, 1, 3])]), 'shards'],
      [input(nodes, []), 'shards'],
      [input(nodes, [shard(0, [1, 2, 3])], 0), 'replicaCount'],
      [input(nodes, [shard(0, [1, 2, 3])], 17), 'replicaCount'],
      [
        input(nodes, [shard(0, [1, 2])], 3, [
          { shardId: ShardId(0), from: NodeId(1), to: NodeId(3) },
          { shardId: ShardId(0), from: NodeId(2), to: NodeId(3) },
        ]),
        'inProgress',
      ],
      [
        input(nodes, [shard(0, [1, 2])], 3, [{ shardId: ShardId(4), from: NodeId(1), to: NodeId(3) }]),
        'inProgress',
      ],
    ]
    for (const [bad, field] of cases) {
      const err = thrown(() => planMoves(bad, hasher))
      expect(isKvErrorWithCode(err, ErrorCode.InvalidArgument), field).toBe(true)
      expect((err as { details?: { field?: string } }).details?.field).toBe(field)
    }
  })
})
