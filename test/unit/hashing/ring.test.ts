import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isKvErrorWithCode } from '../../../src/common/errors.ts'
import {
  Ring,
  hashSpaceEnd,
  ringTokensMax,
  vnodeKey,
  vnodesPerNodeMax,
  type Hasher,
  type RingNode,
} from '../../../src/hashing/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'

/** Node sets: distinct ids, optional weights and zones. */
const nodesArb = (maxLength: number): fc.Arbitrary<RingNode[]> =>
  fc.uniqueArray(fc.integer({ min: 1, max: 1_000_000 }), { minLength: 1, maxLength }).chain((ids) =>
    fc.tuple(
      ...ids.map((id) =>
        fc.record(
          {
            id: fc.constant(id),
            weight: fc.constantFrom(0.5, 1, 2, 3),
            zone: fc.constantFrom('a', 'b', 'c'),
          },
          { requiredKeys: ['id'] },
        ),
      ),
    ),
  )

/** The owner-of-position oracle: a linear scan for the first token at or after `position`. */
function successorByScan(ring: Ring, position: bigint): number {
  const i = ring.tokens.findIndex((t) => t.position >= position)
  return i < 0 ? 0 : i
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

describe('hashing/ring', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  it('puts round(vnodesPerNode * weight) tokens per node (at least one), sorted by position', () => {
    fc.assert(
      fc.property(nodesArb(12), fc.integer({ min: 1, max: 40 }), (nodes, vnodes) => {
        const ring = new Ring(nodes, hasher, vnodes)
        expect(ring.nodes.map((n) => n.id)).toEqual(nodes.map((n) => n.id).sort((a, b) => a - b))
        for (const node of nodes)
          expect(ring.vnodeCount(node.id)).toBe(Math.max(1, Math.round(vnodes * (node.weight ?? 1))))
        expect(ring.tokens).toHaveLength(nodes.reduce((a, n) => a + ring.vnodeCount(n.id), 0))
        for (let i = 1; i < ring.tokens.length; i++)
          expect(ring.tokens[i - 1]!.position <= ring.tokens[i]!.position).toBe(true)
        expect(ring.vnodeCount(0)).toBe(0)
      }),
      { numRuns: 100, seed: 1 },
    )
  })

  it('places vnode i of node n at xxh64 of (n as u64 BE, i as u32 BE), whatever the input order', () => {
    fc.assert(
      fc.property(
        nodesArb(8).chain((nodes) =>
          fc.tuple(fc.constant(nodes), fc.shuffledSubarray(nodes, { minLength: nodes.length })),
        ),
        ([nodes, shuffled]) => {
          const a = new Ring(nodes, hasher, 16)
          const b = new Ring(shuffled, hasher, 16)
          expect(b.tokens).toEqual(a.tokens)
          const expected = new Set(
            nodes.flatMap((n) =>
              Array.from(
                { length: a.vnodeCount(n.id) },
                (_, i) => `${hasher.hash64(vnodeKey(n.id, i))}/${n.id}`,
              ),
            ),
          )
          expect(new Set(a.tokens.map((t) => `${t.position}/${t.nodeId}`))).toEqual(expected)
        },
      ),
      { numRuns: 50, seed: 2 },
    )
    expect([...vnodeKey(0x1_0000_0002, 3)]).toEqual([0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3])
  })

  it('finds the successor token of any position, wrapping past the last token to index 0', () => {
    fc.assert(
      fc.property(
        nodesArb(6),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }), { minLength: 1, maxLength: 20 }),
        (nodes, vnodes, positions) => {
          const ring = new Ring(nodes, hasher, vnodes)
          const last = ring.tokens.at(-1)!.position
          const edges = ring.tokens.flatMap((t) => [t.position, t.position + 1n, t.position - 1n])
          for (const p of [...positions, ...edges, 0n, hashSpaceEnd - 1n, last + 1n]) {
            if (p < 0n || p >= hashSpaceEnd) continue
            expect(ring.successorIndex(p)).toBe(successorByScan(ring, p))
          }
          if (last < hashSpaceEnd - 1n) expect(ring.successorIndex(last + 1n)).toBe(0)
          expect(ring.successorIndex(ring.tokens[0]!.position)).toBe(0)
        },
      ),
      { numRuns: 100, seed: 3 },
    )
  })

  it('measures clockwise distance to a token like bigint arithmetic does, to double precision', () => {
    fc.assert(
      fc.property(nodesArb(4), fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }), (nodes, p) => {
        const ring = new Ring(nodes, hasher, 8)
        const high = Number(p >> 32n)
        const low = Number(p & 0xffff_ffffn)
        for (const [i, t] of ring.tokens.entries()) {
          const exact = Number((t.position - p + hashSpaceEnd) % hashSpaceEnd)
          expect(Math.abs(ring.distanceTo(high, low, i) - exact)).toBeLessThanOrEqual(exact * 2 ** -52)
        }
      }),
      { numRuns: 50, seed: 4 },
    )
  })

  it('divides the whole hash space among the nodes: ownership sums to 1, arcs match successors', () => {
    fc.assert(
      fc.property(nodesArb(10), fc.integer({ min: 1, max: 64 }), (nodes, vnodes) => {
        const ring = new Ring(nodes, hasher, vnodes)
        const own = ring.ownership()
        expect([...own.keys()].sort((a, b) => a - b)).toEqual(ring.nodes.map((n) => n.id))
        const sum = [...own.values()].reduce((a, b) => a + b, 0)
        expect(Math.abs(sum - 1)).toBeLessThan(1e-9)
        for (const share of own.values()) expect(share).toBeGreaterThan(0)
        if (nodes.length === 1) expect(own.get(nodes[0]!.id)).toBe(1)
      }),
      { numRuns: 100, seed: 5 },
    )
  })

  it('gives each node a share of the space close to its share of vnodes when vnodes are many', () => {
    const nodes = Array.from({ length: 8 }, (_, i) => ({ id: i + 1, weight: i < 4 ? 1 : 2 }))
    const ring = new Ring(nodes, hasher, 1024)
    const own = ring.ownership()
    for (const node of nodes) {
      const expected = (node.weight ?? 1) / 12
      // 1,024 vnodes: relative standard deviation of a share about 1/sqrt(1024) = 3%.
      expect(Math.abs(own.get(node.id)! / expected - 1)).toBeLessThan(0.15)
    }
  })

  it('rejects bad input with INVALID_ARGUMENT naming the field', () => {
    expectInvalid(() => new Ring([], hasher), 'nodes')
    expectInvalid(() => new Ring([{ id: 0 }], hasher), 'id')
    expectInvalid(() => new Ring([{ id: -3 }], hasher), 'id')
    expectInvalid(() => new Ring([{ id: 1.5 }], hasher), 'id')
    expectInvalid(() => new Ring([{ id: 2 ** 53 }], hasher), 'id')
    expectInvalid(() => new Ring([{ id: 1 }, { id: 2 }, { id: 1 }], hasher), 'id')
    expectInvalid(() => new Ring([{ id: 1, weight: 0 }], hasher), 'weight')
    expectInvalid(() => new Ring([{ id: 1, weight: -1 }], hasher), 'weight')
    expectInvalid(() => new Ring([{ id: 1, weight: Number.NaN }], hasher), 'weight')
    expectInvalid(() => new Ring([{ id: 1, weight: Number.POSITIVE_INFINITY }], hasher), 'weight')
    expectInvalid(() => new Ring([{ id: 1, zone: '' }], hasher), 'zone')
    expectInvalid(() => new Ring([{ id: 1 }], hasher, 0), 'vnodesPerNode')
    expectInvalid(() => new Ring([{ id: 1 }], hasher, vnodesPerNodeMax + 1), 'vnodesPerNode')
    expectInvalid(() => new Ring([{ id: 1 }], hasher, 2.5), 'vnodesPerNode')
    const many = Array.from({ length: Math.ceil(ringTokensMax / vnodesPerNodeMax) + 1 }, (_, i) => ({
      id: i + 1,
    }))
    expectInvalid(() => new Ring(many, hasher, vnodesPerNodeMax), 'vnodesPerNode')
  })
})
