import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isKvErrorWithCode } from '../../../src/common/errors.ts'
import {
  Ring,
  equalHashRanges,
  fairShares,
  hashSpaceEnd,
  loadRatio,
  movedFraction,
  nodeCapacities,
  placeShards,
  placeShardsOnRing,
  placeShardsPlain,
  replicaCountMax,
  replicaCounts,
  shardCountMax,
  vnodesPerNodeMax,
  type Hasher,
  type RingNode,
} from '../../../src/hashing/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'

const plainNodes = (count: number, firstId = 1): RingNode[] =>
  Array.from({ length: count }, (_, i) => ({ id: firstId + i }))

/** Node sets with distinct ids; weights and zones drawn from the given lists when given. */
const nodesArb = (opts: {
  minLength: number
  maxLength: number
  zones?: string[]
  weights?: number[]
}): fc.Arbitrary<RingNode[]> =>
  fc
    .uniqueArray(fc.integer({ min: 1, max: 100_000 }), {
      minLength: opts.minLength,
      maxLength: opts.maxLength,
    })
    .chain((ids) =>
      fc.tuple(
        ...ids.map((id) =>
          fc
            .tuple(fc.constantFrom(...(opts.weights ?? [1])), fc.constantFrom(...(opts.zones ?? ['-'])))
            .map(([weight, zone]): RingNode => ({
              id,
              ...(opts.weights === undefined ? {} : { weight }),
              ...(opts.zones === undefined ? {} : { zone }),
            })),
        ),
      ),
    )

/**
 * The oracle: shards and nodes rank each other by the ring distance from the shard's range start to
 * the node's first vnode at or after it, so the stable matching is the greedy one. Take (shard,
 * node) pairs nearest first (ties by shard) while the shard needs replicas, the node is below its
 * capacity, and the zone rule allows it. Exact bigint distances, no walk, no heaps.
 */
function greedyOracle(
  ring: Ring,
  shardCount: number,
  replicas: number,
  capacity: readonly number[],
): number[][] {
  const zoneOk = zoneSpreadCheck(ring.nodes, replicas)
  const pairs: { shard: number; node: number; distance: bigint }[] = []
  for (const [shard, range] of equalHashRanges(shardCount).entries()) {
    const nearest = new Map<number, bigint>()
    for (const token of ring.tokens) {
      const d = (token.position - range.start + hashSpaceEnd) % hashSpaceEnd
      const n = ring.nodes.findIndex((x) => x.id === token.nodeId)
      if (!nearest.has(n) || d < nearest.get(n)!) nearest.set(n, d)
    }
    for (const [node, distance] of nearest) pairs.push({ shard, node, distance })
  }
  pairs.sort((a, b) => (a.distance < b.distance ? -1 : a.distance > b.distance ? 1 : a.shard - b.shard))
  const holders: number[][] = Array.from({ length: shardCount }, () => [])
  const load = ring.nodes.map(() => 0)
  for (const { shard, node } of pairs) {
    const h = holders[shard]!
    if (h.length >= replicas || load[node]! >= capacity[node]!) continue
    if (!zoneOk([...h, node].map((n) => ring.nodes[n]!))) continue
    h.push(node)
    load[node]!++
  }
  return holders.map((h) => h.map((n) => ring.nodes[n]!.id).sort((a, b) => a - b))
}

/**
 * "As evenly as the nodes allow", stated directly: a set of nodes may grow only while no zone holds
 * two more than another zone that still has unused nodes. Used for partial sets by the oracle.
 */
function zoneSpreadCheck(all: readonly RingNode[], replicas: number): (set: readonly RingNode[]) => boolean {
  const zoneOf = (n: RingNode): string => n.zone ?? `\0${n.id}`
  const sizes = new Map<string, number>()
  for (const n of all) sizes.set(zoneOf(n), (sizes.get(zoneOf(n)) ?? 0) + 1)
  return (set) => {
    const counts = new Map<string, number>([...sizes.keys()].map((z) => [z, 0]))
    for (const n of set) counts.set(zoneOf(n), counts.get(zoneOf(n))! + 1)
    // A partial set is fine when some completion to `replicas` is evenly spread: fill the emptiest
    // zones (with nodes left) first and check the result.
    const filled = new Map(counts)
    for (let k = set.length; k < replicas; k++) {
      let best: string | undefined
      for (const [z, c] of filled)
        if (c < sizes.get(z)! && (best === undefined || c < filled.get(best)!)) best = z
      if (best === undefined) return false
      filled.set(best, filled.get(best)! + 1)
    }
    return isEvenlySpread(filled, sizes)
  }
}

/** No zone holds two or more above another zone that has nodes to spare. */
function isEvenlySpread(counts: ReadonlyMap<string, number>, sizes: ReadonlyMap<string, number>): boolean {
  for (const ca of counts.values())
    for (const [b, cb] of counts) if (ca >= cb + 2 && cb < sizes.get(b)!) return false
  return true
}

function expectInvalid(fn: () => unknown, field: string): void {
  try {
    fn()
  } catch (err) {
    expect(isKvErrorWithCode(err, ErrorCode.InvalidArgument)).toBe(true)
    expect((err as { details?: { field?: string } }).details?.field).toBe(field)
    return
  }
  expect.fail(`expected INVALID_ARGUMENT for ${field}`)
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!

describe('hashing/placement', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  it('is a function of the node set: the same output for any input order', () => {
    fc.assert(
      fc.property(
        nodesArb({ minLength: 1, maxLength: 12, zones: ['a', 'b', 'c'], weights: [0.5, 1, 2] }).chain(
          (nodes) => fc.tuple(fc.constant(nodes), fc.shuffledSubarray(nodes, { minLength: nodes.length })),
        ),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 5 }),
        ([nodes, shuffled], shardCount, replicaCount) => {
          const input = { nodes, shardCount, replicaCount, vnodesPerNode: 16 }
          const a = placeShards(input, hasher)
          expect(placeShards({ ...input, nodes: shuffled }, hasher)).toEqual(a)
          expect(placeShards(input, hasher)).toEqual(a)
        },
      ),
      { numRuns: 60, seed: 11 },
    )
  })

  it('places min(replicaCount, nodes) distinct known nodes per shard, the nearest first', () => {
    fc.assert(
      fc.property(
        nodesArb({ minLength: 1, maxLength: 15, weights: [0.3, 1, 4] }),
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 7 }),
        (nodes, shardCount, replicaCount) => {
          const input = { nodes, shardCount, replicaCount, vnodesPerNode: 8 }
          const placement = placeShards(input, hasher)
          const ring = new Ring(nodes, hasher, 8)
          const ids = new Set(nodes.map((n) => n.id))
          expect(placement).toHaveLength(shardCount)
          for (const [shard, replicas] of placement.entries()) {
            expect(replicas).toHaveLength(Math.min(replicaCount, nodes.length))
            expect(new Set(replicas).size).toBe(replicas.length)
            for (const id of replicas) expect(ids.has(id)).toBe(true)
            // Preference order is ring order from the shard's range start.
            const start = equalHashRanges(shardCount)[shard]!.start
            const first = (id: number): bigint =>
              ring.tokens
                .filter((t) => t.nodeId === id)
                .map((t) => (t.position - start + hashSpaceEnd) % hashSpaceEnd)
                .reduce((a, b) => (a < b ? a : b))
            for (let i = 1; i < replicas.length; i++)
              expect(first(replicas[i - 1]!) < first(replicas[i]!)).toBe(true)
          }
        },
      ),
      { numRuns: 60, seed: 12 },
    )
  })

  it('equals the greedy nearest-pair matching (the unique stable matching), with and without zones', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          nodesArb({ minLength: 1, maxLength: 9, weights: [0.5, 1, 2] }),
          nodesArb({ minLength: 1, maxLength: 9, zones: ['a', 'b', 'c', 'd'] }),
        ),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 4 }),
        fc.constantFrom(1.01, 1.1, 1.5),
        (nodes, shardCount, replicaCount, loadRatioMax) => {
          const ring = new Ring(nodes, hasher, 6)
          const replicas = Math.min(replicaCount, nodes.length)
          const tuning = { loadRatioMax, loadSlackMin: 0 }
          const capacity = nodeCapacities(ring, shardCount, replicas, tuning)
          const oracle = greedyOracle(ring, shardCount, replicas, capacity)
          // The oracle stops where deferred acceptance would overfill; compare only then-complete runs.
          fc.pre(oracle.every((r) => r.length === replicas))
          const placed = placeShardsOnRing(ring, shardCount, replicaCount, tuning)
          expect(placed.map((r) => [...r].sort((a, b) => a - b))).toEqual(oracle)
        },
      ),
      { numRuns: 150, seed: 13 },
    )
  })

  it('puts replicas in distinct zones when there are enough zones, else spreads them evenly', () => {
    fc.assert(
      fc.property(
        nodesArb({ minLength: 1, maxLength: 14, zones: ['a', 'b', 'c', 'd', 'e'], weights: [1, 2] }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 6 }),
        (nodes, shardCount, replicaCount) => {
          const placement = placeShards({ nodes, shardCount, replicaCount, vnodesPerNode: 8 }, hasher)
          const byId = new Map(nodes.map((n) => [n.id, n]))
          const sizes = new Map<string, number>()
          for (const n of nodes) sizes.set(n.zone!, (sizes.get(n.zone!) ?? 0) + 1)
          for (const replicas of placement) {
            const counts = new Map<string, number>([...sizes.keys()].map((z) => [z, 0]))
            for (const id of replicas) counts.set(byId.get(id)!.zone!, counts.get(byId.get(id)!.zone!)! + 1)
            if (sizes.size >= replicas.length) expect(Math.max(...counts.values())).toBe(1)
            expect(isEvenlySpread(counts, sizes)).toBe(true)
          }
        },
      ),
      { numRuns: 100, seed: 14 },
    )
  })

  it('spreads over zones of very different sizes and keeps balance inside each zone', () => {
    // Zone a has 2 nodes, b has 10. Every shard uses both zones (1 + 2 or 2 + 1 replicas), so a's
    // nodes take about 1/6 of the replicas each, far more than a plain weight share; the zone-aware
    // fair shares say so, and placement keeps every node within its capacity of that share.
    const nodes = [
      ...plainNodes(2, 1).map((n) => ({ ...n, zone: 'a' })),
      ...plainNodes(10, 101).map((n) => ({ ...n, zone: 'b' })),
    ]
    const shardCount = 1024
    const placement = placeShards({ nodes, shardCount, replicaCount: 3 }, hasher)
    for (const replicas of placement) {
      const inA = replicas.filter((id) => id < 100).length
      expect(inA === 1 || inA === 2).toBe(true)
    }
    const shares = fairShares(nodes, shardCount, 3)
    expect(shares[0]).toBeCloseTo(512)
    expect(shares[2]).toBeCloseTo(204.8)
    const counts = replicaCounts(placement)
    for (const [i, node] of [...nodes].sort((a, b) => a.id - b.id).entries())
      expect(counts.get(node.id)! / shares[i]!).toBeLessThanOrEqual(1.1)
  })

  it('gives a node of weight 2 about twice the replicas of a node of weight 1', () => {
    const nodes = Array.from({ length: 40 }, (_, i) => ({ id: i + 1, weight: i % 2 === 0 ? 1 : 2 }))
    const placement = placeShards({ nodes, shardCount: 4096, replicaCount: 3 }, hasher)
    const counts = replicaCounts(placement)
    const mean = (w: number): number =>
      nodes.filter((n) => n.weight === w).reduce((a, n) => a + counts.get(n.id)!, 0) / 20
    expect(mean(2) / mean(1)).toBeGreaterThan(1.9)
    expect(mean(2) / mean(1)).toBeLessThan(2.1)
    expect(loadRatio(placement, nodes)).toBeLessThanOrEqual(1.1)
  })

  it('keeps the busiest node within 1.10x the mean at 10, 100 and 1,000 nodes (128 vnodes, 4,096 shards)', () => {
    for (const count of [10, 100, 1000]) {
      const nodes = plainNodes(count)
      const placement = placeShards({ nodes, shardCount: 4096, replicaCount: 3 }, hasher)
      expect(loadRatio(placement, nodes), `${count} nodes`).toBeLessThanOrEqual(1.1)
      // The baseline is far off at 1,000 nodes (about Poisson with mean 12): the bound is real.
      if (count === 1000)
        expect(
          loadRatio(placeShardsPlain({ nodes, shardCount: 4096, replicaCount: 3 }, hasher), nodes),
        ).toBeGreaterThan(1.5)
    }
  })

  it('never loads a node past its capacity, and capacities stay within the documented bound', () => {
    fc.assert(
      fc.property(
        nodesArb({ minLength: 2, maxLength: 60, weights: [0.5, 1, 1, 2] }),
        fc.integer({ min: 64, max: 2048 }),
        fc.integer({ min: 1, max: 5 }),
        (nodes, shardCount, replicaCount) => {
          const ring = new Ring(nodes, hasher, 32)
          const replicas = Math.min(replicaCount, nodes.length)
          const capacity = nodeCapacities(ring, shardCount, replicas)
          const shares = fairShares(nodes, shardCount, replicas)
          const total = shares.reduce((a, b) => a + b, 0)
          expect(Math.abs(total - shardCount * replicas)).toBeLessThan(1e-6 * total)
          for (const [n, share] of shares.entries()) {
            expect(share).toBeLessThanOrEqual(shardCount + 1e-9)
            const c = Math.max(1.1 * share - 1, 1.05 * share, share + 0.5)
            expect(capacity[n]).toBeLessThanOrEqual(Math.min(shardCount, Math.ceil(c)))
            expect(capacity[n]).toBeGreaterThanOrEqual(Math.min(shardCount, Math.floor(c)))
          }
          fc.pre(capacity.reduce((a, b) => a + b, 0) >= shardCount * replicas)
          const counts = replicaCounts(placeShardsOnRing(ring, shardCount, replicaCount))
          for (const [n, node] of ring.nodes.entries())
            expect(counts.get(node.id) ?? 0).toBeLessThanOrEqual(capacity[n]!)
        },
      ),
      { numRuns: 60, seed: 15 },
    )
  })

  it('moves few replicas when one node joins or leaves at 10 and 100 nodes (within 1.5x of 1/N)', () => {
    for (const count of [10, 100]) {
      const nodes = plainNodes(count)
      const input = { nodes, shardCount: 4096, replicaCount: 3 }
      const before = placeShards(input, hasher)
      const joins: number[] = []
      const leaves: number[] = []
      for (const k of [0, 1, 2, 3, 4]) {
        const joined = placeShards({ ...input, nodes: [...nodes, { id: 5000 + 977 * k }] }, hasher)
        joins.push(movedFraction(before, joined) * (count + 1))
        const left = placeShards({ ...input, nodes: nodes.filter((n) => n.id !== 1 + 2 * k) }, hasher)
        leaves.push(movedFraction(before, left) * count)
      }
      // Measured: medians 1.02-1.04x at both sizes; the worst single join 1.13x.
      expect(median(joins), `${count} nodes join`).toBeLessThanOrEqual(1.2)
      expect(Math.max(...joins), `${count} nodes join`).toBeLessThanOrEqual(1.5)
      expect(median(leaves), `${count} nodes leave`).toBeLessThanOrEqual(1.2)
      expect(Math.max(...leaves), `${count} nodes leave`).toBeLessThanOrEqual(1.5)
    }
  })

  it('has no cliff near 1,000 nodes: every join moves a few times 1/N', () => {
    // 1,039 -> 1,040 is where floor(1.1 * share) drops from 13 to 12 for every node: the 'step'
    // rounding moves 66x the optimum there. The default rounding moves 1.5-3.5x at every N.
    const input = { shardCount: 4096, replicaCount: 3 }
    let before = placeShards({ ...input, nodes: plainNodes(1038) }, hasher)
    for (const count of [1039, 1040, 1041]) {
      const after = placeShards({ ...input, nodes: plainNodes(count) }, hasher)
      expect(movedFraction(before, after) * count, `${count - 1} -> ${count}`).toBeLessThanOrEqual(4.5)
      before = after
    }
    const step = { capacityRounding: 'step' } as const
    const cliff = movedFraction(
      placeShards({ ...input, nodes: plainNodes(1039) }, hasher, step),
      placeShards({ ...input, nodes: plainNodes(1040) }, hasher, step),
    )
    expect(cliff * 1040).toBeGreaterThan(20)
  })

  it('counts replicas per node and the moved fraction as documented', () => {
    const before = [
      [1, 2, 3],
      [2, 3, 4],
    ]
    const after = [
      [3, 1, 5],
      [2, 3, 4],
    ]
    expect(replicaCounts(after)).toEqual(
      new Map([
        [3, 2],
        [1, 1],
        [5, 1],
        [2, 1],
        [4, 1],
      ]),
    )
    expect(movedFraction(before, after)).toBeCloseTo(1 / 6)
    expect(movedFraction(before, before)).toBe(0)
    expect(loadRatio(after, [{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }, { id: 6 }])).toBeCloseTo(
      2,
    )
  })

  it('rejects bad input with INVALID_ARGUMENT naming the field', () => {
    const nodes = plainNodes(3)
    expectInvalid(() => placeShards({ nodes, shardCount: 8, replicaCount: 0 }, hasher), 'replicaCount')
    expectInvalid(
      () => placeShards({ nodes, shardCount: 8, replicaCount: replicaCountMax + 1 }, hasher),
      'replicaCount',
    )
    expectInvalid(() => placeShards({ nodes, shardCount: 8, replicaCount: 1.5 }, hasher), 'replicaCount')
    expectInvalid(() => placeShards({ nodes, shardCount: 0, replicaCount: 3 }, hasher), 'shardCount')
    expectInvalid(
      () => placeShards({ nodes, shardCount: shardCountMax + 1, replicaCount: 3 }, hasher),
      'shardCount',
    )
    expectInvalid(() => placeShards({ nodes: [], shardCount: 8, replicaCount: 3 }, hasher), 'nodes')
    expectInvalid(
      () => placeShards({ nodes: [{ id: 1 }, { id: 1 }], shardCount: 8, replicaCount: 3 }, hasher),
      'id',
    )
    expectInvalid(
      () => placeShards({ nodes: [{ id: 1, weight: 0 }], shardCount: 8, replicaCount: 3 }, hasher),
      'weight',
    )
    expectInvalid(
      () =>
        placeShards({ nodes, shardCount: 8, replicaCount: 3, vnodesPerNode: vnodesPerNodeMax + 1 }, hasher),
      'vnodesPerNode',
    )
    expectInvalid(
      () => placeShards({ nodes, shardCount: 8, replicaCount: 3, vnodesPerNode: 0 }, hasher),
      'vnodesPerNode',
    )
  })
})
