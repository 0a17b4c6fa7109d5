/** FixedHistogram: observations land in the first bucket whose bound they do not exceed. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FixedHistogram, histogramBuckets } from '../../../src/common/histogram.ts'

describe('common/histogram', () => {
  it('counts per bound cumulatively, with sum and count', () => {
    const h = new FixedHistogram([1, 2, 4])
    for (const v of [0.5, 1, 1.5, 3, 4, 9]) h.observe(v)
    h.observe(Number.NaN)
    expect(h.snapshot()).toEqual({ bounds: [1, 2, 4], cumulative: [2, 3, 5], sum: 19, count: 6 })
  })

  it('agrees with a direct count for any values, on every layout in use', () => {
    for (const bounds of Object.values(histogramBuckets)) {
      fc.assert(
        fc.property(fc.array(fc.double({ min: 0, max: 1e9, noNaN: true }), { maxLength: 50 }), (values) => {
          const h = new FixedHistogram(bounds)
          for (const v of values) h.observe(v)
          const s = h.snapshot()
          expect(s.count).toBe(values.length)
          s.bounds.forEach((le, i) => expect(s.cumulative[i]).toBe(values.filter((v) => v <= le).length))
        }),
        { numRuns: 50 },
      )
    }
  })

  it('refuses bounds that do not rise', () => {
    expect(() => new FixedHistogram([1, 1])).toThrow()
    expect(() => new FixedHistogram([])).toThrow()
  })
})
