import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { equalHashRanges, hashSpaceEnd, rangeIndexOf } from '../../../src/hashing/index.ts'

describe('equalHashRanges', () => {
  it('cuts the whole hash space into contiguous slices that differ in size by at most one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5000 }), (count) => {
        const ranges = equalHashRanges(count)
        expect(ranges).toHaveLength(count)
        expect(ranges[0]!.start).toBe(0n)
        expect(ranges.at(-1)!.end).toBe(hashSpaceEnd)
        const sizes = new Set<bigint>()
        for (const [i, r] of ranges.entries()) {
          if (i > 0) expect(r.start).toBe(ranges[i - 1]!.end)
          sizes.add(r.end - r.start)
        }
        const [min, max] = [...sizes].reduce(
          ([lo, hi], s) => [s < lo ? s : lo, s > hi ? s : hi],
          [hashSpaceEnd, 0n],
        )
        expect(max - min <= 1n).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('rangeIndexOf finds the slice holding a hash, edges included', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }),
        (count, hash) => {
          const ranges = equalHashRanges(count)
          const i = rangeIndexOf(ranges, hash)
          expect(ranges[i]!.start <= hash && hash < ranges[i]!.end).toBe(true)
          for (const r of ranges) {
            expect(ranges[rangeIndexOf(ranges, r.start)]).toBe(r)
            expect(ranges[rangeIndexOf(ranges, r.end - 1n)]).toBe(r)
          }
        },
      ),
      { numRuns: 200 },
    )
  })
})
