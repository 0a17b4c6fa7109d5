/**
 * The YCSB key choosers of the ycsb bench (test/bench/zipfian.ts): a zipfian with YCSB's constant
 * has the skew YCSB's has (the hottest item about 1/zeta(n) of the draws, item i about 1/(i+1)^0.99
 * of item 0's), stays in range, and the scrambled form scatters the hot items but keeps the skew.
 */
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../src/common/random.ts'
import { ScrambledZipfian, Zipfian } from '../../bench/zipfian.ts'

const draws = 200_000

function counts(next: () => number, n: number): number[] {
  const c = new Array<number>(n).fill(0)
  let outside = 0
  for (let i = 0; i < draws; i++) {
    const k = next()
    if (k >= 0 && k < n && Number.isInteger(k)) c[k]!++
    else outside++
  }
  expect(outside).toBe(0)
  return c
}

describe('Zipfian', () => {
  it('draws rank i with probability proportional to 1/(i+1)^0.99', () => {
    const n = 1000
    const z = new Zipfian(n, new SeededRandom(1))
    const c = counts(() => z.next(), n)
    let zetan = 0
    for (let i = 1; i <= n; i++) zetan += 1 / Math.pow(i, 0.99)
    // Rank 0 is about 1/zeta(n) = 13.4% of the draws; rank 9 about a tenth of rank 0's share.
    expect(c[0]! / draws).toBeCloseTo(1 / zetan, 2)
    expect(c[9]! / c[0]!).toBeGreaterThan(0.08)
    expect(c[9]! / c[0]!).toBeLessThan(0.13)
    // The top 1% of items take about 40% of the draws (a uniform chooser: 1%).
    const top = c.slice(0, 10).reduce((a, b) => a + b, 0) / draws
    expect(top).toBeGreaterThan(0.35)
    expect(top).toBeLessThan(0.45)
  })

  it('is a function of its seed, and refuses fewer than 2 items', () => {
    const a = new Zipfian(100, new SeededRandom(7))
    const b = new Zipfian(100, new SeededRandom(7))
    expect(Array.from({ length: 50 }, () => a.next())).toEqual(Array.from({ length: 50 }, () => b.next()))
    expect(() => new Zipfian(1, new SeededRandom(1))).toThrow(RangeError)
  })
})

describe('ScrambledZipfian', () => {
  it('keeps the skew but the hottest items are not the first keys', () => {
    const n = 1000
    const z = new ScrambledZipfian(n, new SeededRandom(3))
    const c = counts(() => z.next(), n)
    const sorted = [...c].sort((a, b) => b - a)
    const top = sorted.slice(0, 10).reduce((a, b) => a + b, 0) / draws
    expect(top).toBeGreaterThan(0.35)
    const firstTen = c.slice(0, 10).reduce((a, b) => a + b, 0) / draws
    expect(firstTen).toBeLessThan(0.2)
  })
})
