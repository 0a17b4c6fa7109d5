import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../src/common/ids.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import {
  applyMoves,
  drainCheck,
  nodeStates,
  planMoves,
  type MoveInProgress,
  type PlanInput,
  type PlannerNode,
} from '../../../src/planner/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { brokenRules } from './oracle.ts'

/** A node id no registry entry has: a replica there counts as dead. */
const unknownId = 999

/**
 * Any small cluster: 1..10 nodes in any state (mostly active), zones from a few or none, weights
 * 0.5..2; 1..40 shards whose replicas are any distinct nodes (known or not, from none to one too
 * many); replication factor 1..4; moves in progress of some shards.
 */
const clusterArb: fc.Arbitrary<PlanInput> = fc
  .record({
    ids: fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
    replicaCount: fc.integer({ min: 1, max: 4 }),
    zoned: fc.boolean(),
  })
  .chain(({ ids, replicaCount, zoned }) =>
    fc.record({
      nodes: fc.tuple(
        ...ids.map((id) =>
          fc
            .record({
              state: fc.constantFrom(...nodeStates, 'active', 'active', 'active', 'active'),
              zone: zoned ? fc.constantFrom('a', 'b', 'c', 'd', '') : fc.constant(''),
              weight: fc.constantFrom(1, 1, 2, 0.5),
            })
            .map((n): PlannerNode => ({ id: NodeId(id), ...n })),
        ),
      ),
      shards: fc.array(
        fc.shuffledSubarray([...ids, unknownId], {
          minLength: 0,
          maxLength: Math.min(ids.length + 1, replicaCount + 1),
        }),
        { minLength: 1, maxLength: 40 },
      ),
      moving: fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { maxLength: 5 }),
      replicaCount: fc.constant(replicaCount),
    }),
  )
  .map(({ nodes, shards, moving, replicaCount }) => {
    const inProgress: MoveInProgress[] = []
    for (const [a, b, c] of moving) {
      const s = a % shards.length
      const list = shards[s]!
      const to = nodes[c % nodes.length]!.id
      if (list.length === 0 || list.includes(to) || inProgress.some((m) => m.shardId === s)) continue
      inProgress.push({ shardId: ShardId(s), from: NodeId(list[b % list.length]!), to })
    }
    return {
      nodes,
      shards: shards.map((replicas, i) => ({
        shardId: ShardId(i),
        replicas: replicas.map(NodeId),
        epoch: i + 1,
      })),
      replicaCount,
      vnodesPerNode: 8,
      inProgress,
    }
  })

/** The same input, every list in another order. */
function reordered(input: PlanInput, rotate: number): PlanInput {
  const turn = <T>(xs: readonly T[]): T[] => {
    const k = rotate % Math.max(1, xs.length)
    return [...xs.slice(k), ...xs.slice(0, k)].reverse()
  }
  return {
    ...input,
    nodes: turn(input.nodes),
    shards: turn(input.shards),
    inProgress: turn(input.inProgress),
  }
}

/**
 * Shards whose replicas on active nodes share a zone while the active nodes span replicaCount
 * zones or more (only shards the planner could fix: a live quorum, at most replicaCount replicas).
 */
function zoneSharedShards(input: PlanInput): number[] {
  const node = new Map(input.nodes.map((n) => [n.id as number, n]))
  const active = input.nodes.filter((n) => n.state === 'active')
  if (new Set(active.map((n) => n.zone).filter((z) => z !== '')).size < input.replicaCount) return []
  const live = (id: number): boolean => node.has(id) && node.get(id)!.state !== 'dead'
  return input.shards.flatMap((s) => {
    if (s.replicas.length > input.replicaCount) return []
    if (s.replicas.filter(live).length < Math.floor(s.replicas.length / 2) + 1) return []
    const zones = s.replicas
      .map((id) => node.get(id))
      .filter((n) => n?.state === 'active' && n.zone !== '')
      .map((n) => n!.zone)
    return new Set(zones).size === zones.length ? [] : [s.shardId as number]
  })
}

describe('planner properties', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  it('never plans a move that breaks a rule, and orders repairs, drains, balance', () => {
    fc.assert(
      fc.property(clusterArb, (input) => {
        expect(brokenRules(input, planMoves(input, hasher))).toEqual([])
      }),
      { numRuns: 300 },
    )
  })

  it('is deterministic: the same plan for the same input in any order, and the input is not changed', () => {
    fc.assert(
      fc.property(clusterArb, fc.nat(), (input, rotate) => {
        const before = JSON.stringify(input)
        expect(planMoves(reordered(input, rotate), hasher)).toEqual(planMoves(input, hasher))
        expect(JSON.stringify(input)).toBe(before) // the input is left as it was
      }),
      { numRuns: 150 },
    )
  })

  it('a ring placement passed back is used only for the nodes it was made for, and changes nothing', () => {
    fc.assert(
      fc.property(clusterArb, (input) => {
        const first = planMoves(input, hasher)
        const next = {
          ...input,
          shards: first.placement.map((replicas, i) => ({
            ...input.shards.find((s) => s.shardId === i)!,
            replicas,
          })),
          inProgress: [],
        }
        expect(planMoves(next, hasher, first.ring)).toEqual(planMoves(next, hasher))
        const stale = { key: 'other nodes', placement: input.shards.map(() => []) }
        expect(planMoves(input, hasher, stale)).toEqual(first)
      }),
      { numRuns: 100 },
    )
  })

  it('converges: applying each plan and planning again ends with no move, every step within the rules, zones spread', () => {
    fc.assert(
      fc.property(clusterArb, (generated) => {
        // The moves in progress end first; then the executor runs each plan to its end.
        let input: PlanInput = {
          ...generated,
          shards: applyMoves(
            generated.shards,
            generated.inProgress.map((m) => ({ ...m, reason: 'balance' as const, epoch: 0 })),
          ),
          inProgress: [],
        }
        // Each shard needs at most replicas + 1 repairs or drains, one per plan, and balance ends
        // within a couple of plans.
        const roundsMax = generated.replicaCount + 2 + 4
        for (let round = 0; ; round++) {
          expect(round).toBeLessThanOrEqual(roundsMax)
          const plan = planMoves(input, hasher)
          expect(brokenRules(input, plan)).toEqual([])
          if (plan.moves.length === 0) {
            expect(plan.pending).toBe(0)
            expect(zoneSharedShards(input)).toEqual([])
            break
          }
          input = { ...input, shards: applyMoves(input.shards, plan.moves) }
        }
      }),
      { numRuns: 150 },
    )
  })

  it('the drain pre-flight holds its word: a drain it allows empties the node, one blocked by a quorum never does', () => {
    fc.assert(
      fc.property(clusterArb, fc.nat(), (generated, pick) => {
        const settled: PlanInput = {
          ...generated,
          shards: applyMoves(
            generated.shards,
            generated.inProgress.map((m) => ({ ...m, reason: 'balance' as const, epoch: 0 })),
          ),
          inProgress: [],
        }
        const target = settled.nodes[pick % settled.nodes.length]!
        const check = drainCheck(settled, target.id)
        let input: PlanInput = {
          ...settled,
          nodes: settled.nodes.map((n) =>
            n.id === target.id && n.state !== 'dead' ? { ...n, state: 'draining' as const } : n,
          ),
        }
        for (let round = 0; round <= settled.replicaCount + 6; round++) {
          const plan = planMoves(input, hasher)
          if (plan.moves.length === 0) break
          input = { ...input, shards: applyMoves(input.shards, plan.moves) }
        }
        const kept = input.shards
          .filter((s) => s.replicas.includes(target.id))
          .map((s) => s.shardId as number)
        if (check.possible) expect(kept).toEqual([])
        for (const b of check.blocking) if (b.reason === 'no-quorum') expect(kept).toContain(b.shardId)
      }),
      { numRuns: 200 },
    )
  })
})
