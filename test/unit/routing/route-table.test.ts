import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AssertionError } from '../../../src/common/index.ts'
import { equalHashRanges, hashSpaceEnd } from '../../../src/hashing/index.ts'
import { RouteTable, type NodeRoute, type ShardRoute } from '../../../src/routing/index.ts'

const shard = (
  shardId: number,
  hashStart: bigint,
  hashEnd: bigint,
  replicas = [1, 2, 3],
  epoch = 1,
): ShardRoute => ({
  shardId,
  hashStart,
  hashEnd,
  replicas,
  leaderHint: 0,
  leaderTerm: 0,
  epoch,
})
const node = (id: number, state: NodeRoute['state'] = 'active'): NodeRoute => ({
  id,
  address: `n${id}:1`,
  zone: '',
  state,
})

/** Non-overlapping shards with random cuts and random gaps, in a random order. */
const shardsArb = fc
  .uniqueArray(fc.bigInt({ min: 0n, max: hashSpaceEnd }), { minLength: 2, maxLength: 24 })
  .chain((cuts) => {
    const sorted = [...cuts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const pairs = sorted.slice(0, -1).map((start, i) => [start, sorted[i + 1]!] as const)
    return fc.tuple(
      fc.constant(pairs),
      fc.array(fc.boolean(), { minLength: pairs.length, maxLength: pairs.length }),
    )
  })
  .chain(([pairs, keep]) =>
    fc.shuffledSubarray(
      pairs.filter((_, i) => keep[i]).map(([s, e], i) => shard(100 + i, s, e)),
      { minLength: 0 },
    ),
  )

/** The shard holding `hash` by a linear scan (the oracle). */
const naive = (shards: readonly ShardRoute[], hash: bigint): ShardRoute | undefined =>
  shards.find((s) => s.hashStart <= hash && hash < s.hashEnd)

describe('routing/RouteTable', () => {
  it('shardOfHash agrees with a linear scan, for any cut with gaps and any hash', () => {
    fc.assert(
      fc.property(
        shardsArb,
        fc.array(fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }), { maxLength: 20 }),
        (shards, hashes) => {
          const table = new RouteTable(shards, [])
          for (const s of shards) {
            expect(table.shardOfHash(s.hashStart)).toBe(s)
            expect(table.shardOfHash(s.hashEnd - 1n)).toBe(s)
            expect(table.shard(s.shardId)).toBe(s)
          }
          for (const h of hashes) expect(table.shardOfHash(h)).toBe(naive(shards, h))
          // In hash order.
          for (let i = 1; i < table.shards.length; i++)
            expect(table.shards[i]!.hashStart >= table.shards[i - 1]!.hashEnd).toBe(true)
        },
      ),
      { numRuns: 200 },
    )
  })

  it('next is the adjacent shard only; first holds hash 0; coversRing only without gaps', () => {
    const ranges = equalHashRanges(4)
    const whole = new RouteTable(
      ranges.map((r, i) => shard(i, r.start, r.end)),
      [node(1)],
    )
    expect(whole.coversRing).toBe(true)
    expect(whole.first()?.shardId).toBe(0)
    expect([0, 1, 2, 3].map((id) => whole.next(id)?.shardId)).toEqual([1, 2, 3, undefined])
    const gap = new RouteTable(
      [shard(0, ranges[0]!.start, ranges[0]!.end), shard(2, ranges[2]!.start, ranges[2]!.end)],
      [],
    )
    expect(gap.coversRing).toBe(false)
    expect(gap.next(0)).toBeUndefined()
    expect(gap.shardOfHash(ranges[1]!.start)).toBeUndefined()
    expect(new RouteTable([shard(1, 5n, 10n)], []).first()).toBeUndefined()
    expect(RouteTable.empty().shardOfHash(0n)).toBeUndefined()
    expect(RouteTable.empty().coversRing).toBe(false)
  })

  it('off-ring shards (the meta shard) are found by id only', () => {
    const meta = shard(0xfffffff0, 0n, hashSpaceEnd)
    const table = new RouteTable([shard(0, 0n, hashSpaceEnd)], [], [meta])
    expect(table.shard(0xfffffff0)).toBe(meta)
    expect(table.shardOfHash(5n)?.shardId).toBe(0)
    expect(table.next(0xfffffff0)).toBeUndefined()
    expect(table.withShard({ ...meta, epoch: 2 }).shard(0xfffffff0)?.epoch).toBe(2)
  })

  it('withShard replaces its id and drops exactly the entries its range overlaps', () => {
    fc.assert(
      fc.property(
        shardsArb,
        fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }),
        fc.bigInt({ min: 1n, max: hashSpaceEnd }),
        fc.nat(3),
        (shards, a, b, pick) => {
          const [start, end] = a < b ? [a, b] : [b - 1n < 0n ? 0n : b - 1n, a + 1n]
          const id = shards[pick % Math.max(1, shards.length)]?.shardId ?? 7
          const d = shard(id, start, end, [4], 9)
          const before = new RouteTable(shards, [node(4)])
          const after = before.withShard(d)
          expect(after.shard(id)).toBe(d)
          for (const s of shards) {
            if (s.shardId === id) continue
            const overlaps = s.hashStart < end && start < s.hashEnd
            expect(after.shard(s.shardId) === undefined).toBe(overlaps)
          }
          expect(after.node(4)).toEqual(node(4))
        },
      ),
      { numRuns: 200 },
    )
  })

  it.each([
    ['an overlap', [shard(0, 0n, 10n), shard(1, 5n, 20n)]],
    ['an empty range', [shard(0, 10n, 10n)]],
    ['a range past 2^64', [shard(0, 0n, hashSpaceEnd + 1n)]],
    ['a repeated id', [shard(0, 0n, 10n), shard(0, 10n, 20n)]],
  ])('asserts its invariants: %s', (_what, shards) => {
    expect(() => new RouteTable(shards, [])).toThrow(AssertionError)
  })

  it('asserts distinct node ids, and off-ring ids distinct from ring ids', () => {
    expect(() => new RouteTable([], [node(1), node(1)])).toThrow(AssertionError)
    expect(() => new RouteTable([shard(3, 0n, 5n)], [], [shard(3, 0n, hashSpaceEnd)])).toThrow(AssertionError)
  })
})
