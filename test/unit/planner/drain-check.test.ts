import { beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isKvErrorWithCode } from '../../../src/common/errors.ts'
import { NodeId, ShardId } from '../../../src/common/ids.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import {
  drainBlockersListedMax,
  drainCheck,
  planMoves,
  type NodeState,
  type PlanInput,
  type PlannerNode,
} from '../../../src/planner/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { converge, inputOf, loads, newCluster, withNode } from '../../sim/rebalance.ts'

const node = (id: number, state: NodeState = 'active', zone = ''): PlannerNode => ({
  id: NodeId(id),
  state,
  zone,
  weight: 1,
})
const input = (
  nodes: PlannerNode[],
  replicas: number[][],
  inProgress: PlanInput['inProgress'] = [],
): PlanInput => ({
  nodes,
  shards: replicas.map((r, i) => ({ shardId: ShardId(i), replicas: r.map(NodeId), epoch: 1 })),
  replicaCount: 3,
  vnodesPerNode: 16,
  inProgress,
})

describe('planner/drainCheck (decommission pre-flight)', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  it('refuses to drain a node of a 3-node cluster with replication factor 3, naming every shard', () => {
    const check = drainCheck(
      input(
        [node(1), node(2), node(3)],
        [
          [1, 2, 3],
          [2, 3, 1],
        ],
      ),
      NodeId(2),
    )
    expect(check.possible).toBe(false)
    expect(check.safeMode?.reason).toBe('nodes')
    expect(check.replicas).toBe(2)
    expect(check.blockingCount).toBe(2)
    expect(check.blocking).toEqual([
      { shardId: 0, reason: 'no-destination' },
      { shardId: 1, reason: 'no-destination' },
    ])
  })

  it('allows the drain when the rest can hold the replicas, and the plan then empties the node', () => {
    const c = converge(newCluster(hasher, 4, 32), (i) => planMoves(i, hasher)).cluster
    const check = drainCheck(inputOf(c), NodeId(3))
    expect(check).toMatchObject({ possible: true, blocking: [], blockingCount: 0, replicas: loads(c).get(3) })
    expect(check.safeMode).toBeUndefined()
    const plan = planMoves(inputOf(withNode(c, 3, 'draining')), hasher)
    expect(plan.moves.filter((m) => m.from === 3)).toHaveLength(check.replicas)
  })

  it('refuses when the node is its zone’s last and zones are a hard rule', () => {
    const nodes = [
      node(1, 'active', 'a'),
      node(2, 'active', 'b'),
      node(3, 'active', 'c'),
      node(4, 'active', 'a'),
    ]
    const check = drainCheck(
      input(nodes, [
        [1, 2, 3],
        [4, 2, 3],
        [1, 4, 2],
      ]),
      NodeId(3),
    )
    expect(check.possible).toBe(false)
    expect(check.safeMode?.reason).toBe('zones')
    expect(check.blocking.map((b) => b.shardId)).toEqual([0, 1])
    // Node 4 (zone a, beside node 1) can go: zone a keeps node 1.
    expect(
      drainCheck(
        input(nodes, [
          [1, 2, 3],
          [4, 2, 3],
          [1, 4, 2],
        ]),
        NodeId(4),
      ).possible,
    ).toBe(true)
  })

  it('names shards without a live quorum, and skips shards already moving', () => {
    const nodes = [node(1), node(2), node(3), node(4, 'dead'), node(5, 'dead'), node(6)]
    const check = drainCheck(
      input(
        nodes,
        [
          [1, 4, 5], // no quorum
          [1, 2, 3],
          [1, 2, 4], // moving now
        ],
        [{ shardId: ShardId(2), from: NodeId(4), to: NodeId(6) }],
      ),
      NodeId(1),
    )
    expect(check.possible).toBe(false)
    expect(check.blocking).toEqual([{ shardId: 0, reason: 'no-quorum' }])
  })

  it('counts every replica the shard must place anew, not only this node’s', () => {
    // Node 4 is the only free place, and shard 0 must replace both node 1 and the dead node 9.
    const nodes = [node(1), node(2), node(3), node(4), node(9, 'dead')]
    const check = drainCheck(
      input(nodes, [
        [1, 9, 2, 3],
        [1, 2, 3],
      ]),
      NodeId(1),
    )
    expect(check.blocking).toEqual([{ shardId: 0, reason: 'no-destination' }])
  })

  it('lists at most drainBlockersListedMax blocking shards and counts them all', () => {
    const shards = Array.from({ length: drainBlockersListedMax + 5 }, () => [1, 2, 3])
    const check = drainCheck(input([node(1), node(2), node(3)], shards), NodeId(1))
    expect(check.blockingCount).toBe(drainBlockersListedMax + 5)
    expect(check.blocking).toHaveLength(drainBlockersListedMax)
  })

  it('says NOT_FOUND for an unknown node', () => {
    let err: unknown
    try {
      drainCheck(input([node(1), node(2), node(3)], [[1, 2, 3]]), NodeId(9))
    } catch (e) {
      err = e
    }
    expect(isKvErrorWithCode(err, ErrorCode.NotFound)).toBe(true)
  })
})
