/**
 * The meta shard's move (planner/meta.ts): a replica on a dead or draining node is replaced, onto
 * the least loaded active node that does not hold it, in a zone of its own while zones are a hard
 * rule; none while it moves already, without a quorum, or without a destination (blocked); in a
 * plan, a repair goes first and a drain after the data repairs, and a drain waits out safe mode.
 */
import { describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../src/common/index.ts'
import {
  planMetaMove,
  placementLoad,
  withMetaMove,
  type NodeState,
  type Plan,
  type PlannedMove,
  type PlannerNode,
} from '../../../src/planner/index.ts'

const metaId = ShardId(0xffff_fff0)
const node = (id: number, state: NodeState = 'active', zone = ''): PlannerNode => ({
  id: NodeId(id),
  zone,
  weight: 1,
  state,
})
const meta = (...ids: number[]): { shardId: ShardId; replicas: NodeId[]; epoch: number } => ({
  shardId: metaId,
  replicas: ids.map(NodeId),
  epoch: 9,
})
const flat = (): number => 0

describe('planner/meta: the meta shard moves off dead and draining nodes', () => {
  it('nothing to do while every replica is on an active (or unreachable) node', () => {
    const nodes = [node(1), node(2, 'unreachable'), node(3), node(4)]
    expect(planMetaMove({ nodes, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat)).toEqual({})
  })

  it('a draining replica is drained onto the least loaded active node that does not hold it', () => {
    const nodes = [node(1, 'draining'), node(2), node(3), node(4), node(5), node(6, 'joining')]
    const load = (id: NodeId): number => (id === 4 ? 10 : 7)
    const out = planMetaMove({ nodes, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, load)
    expect(out.move).toEqual({ shardId: metaId, from: 1, to: 5, reason: 'drain', epoch: 9 })
  })

  it('a dead replica (or one on a node the registry lost) is repaired first, even before a drain', () => {
    const nodes = [node(1, 'draining'), node(2, 'dead'), node(3), node(4)]
    expect(
      planMetaMove({ nodes, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat).move,
    ).toMatchObject({ from: 2, to: 4, reason: 'repair' })
    const lost = [node(1), node(3), node(4)]
    expect(
      planMetaMove({ nodes: lost, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat).move,
    ).toMatchObject({ from: 2, to: 4, reason: 'repair' })
  })

  it('one move at a time; none without a live quorum; blocked without a destination', () => {
    const nodes = [node(1, 'draining'), node(2), node(3), node(4)]
    expect(planMetaMove({ nodes, meta: meta(1, 2, 3), replicaCount: 3, moving: true }, flat)).toEqual({})
    const twoDead = [node(1, 'dead'), node(2, 'dead'), node(3), node(4)]
    expect(
      planMetaMove({ nodes: twoDead, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat),
    ).toEqual({
      blocked: { shardId: metaId, reason: 'no-quorum' },
    })
    const three = [node(1, 'draining'), node(2), node(3)]
    expect(planMetaMove({ nodes: three, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat)).toEqual(
      {
        blocked: { shardId: metaId, reason: 'no-destination' },
      },
    )
  })

  it('zones: a zone of its own while the active nodes span enough zones, else any', () => {
    const nodes = [
      node(1, 'draining', 'a'),
      node(2, 'active', 'b'),
      node(3, 'active', 'c'),
      node(4, 'active', 'b'),
      node(5, 'active', 'a'),
    ]
    const out = planMetaMove({ nodes, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat)
    expect(out.move).toMatchObject({ from: 1, to: 5 })
    // Two zones only among the active nodes: the zone rule is not hard, node 4 takes it.
    const fewZones = [
      node(1, 'draining', 'a'),
      node(2, 'active', 'b'),
      node(3, 'active', 'b'),
      node(4, 'active', 'b'),
    ]
    expect(
      planMetaMove({ nodes: fewZones, meta: meta(1, 2, 3), replicaCount: 3, moving: false }, flat).move,
    ).toMatchObject({ to: 4 })
  })

  it('in a plan: a repair first, a drain after the data repairs; no drain in safe mode; blocked listed', () => {
    const mv = (shard: number, reason: PlannedMove['reason']): PlannedMove => ({
      shardId: ShardId(shard),
      from: NodeId(1),
      to: NodeId(2),
      reason,
      epoch: 1,
    })
    const plan: Plan = {
      moves: [mv(0, 'repair'), mv(1, 'drain'), mv(2, 'balance')],
      placement: [[NodeId(1), NodeId(2)], [NodeId(2)]],
      blocked: [],
      pending: 0,
      ring: { key: '', placement: [] },
    }
    const drain: PlannedMove = { shardId: metaId, from: NodeId(3), to: NodeId(4), reason: 'drain', epoch: 9 }
    const repair: PlannedMove = { ...drain, reason: 'repair' }
    expect(withMetaMove(plan, { move: drain }).moves.map((m) => m.shardId)).toEqual([0, metaId, 1, 2])
    expect(withMetaMove(plan, { move: repair }).moves.map((m) => m.shardId)).toEqual([metaId, 0, 1, 2])
    const safe = { ...plan, safeMode: { reason: 'nodes' as const, message: 'x' } }
    expect(withMetaMove(safe, { move: drain })).toBe(safe)
    expect(withMetaMove(safe, { move: repair }).moves[0]).toBe(repair)
    expect(withMetaMove(plan, { blocked: { shardId: metaId, reason: 'no-quorum' } }).blocked).toEqual([
      { shardId: metaId, reason: 'no-quorum' },
    ])
    expect(withMetaMove(plan, {})).toBe(plan)
    const load = placementLoad(plan)
    expect([load(NodeId(1)), load(NodeId(2)), load(NodeId(3))]).toEqual([1, 2, 0])
  })
})
