import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../src/common/index.ts'
import { SystemRandom } from '../../../src/common/random-system.ts'

function draw(r: SeededRandom, n: number): number[] {
  return Array.from({ length: n }, () => r.int(1000))
}

describe('common/random', () => {
  it('replays the same stream for the same seed, and another for another seed', () => {
    expect(draw(new SeededRandom(42), 50)).toEqual(draw(new SeededRandom(42), 50))
    expect(draw(new SeededRandom(42), 50)).not.toEqual(draw(new SeededRandom(43), 50))
  })

  it('distinguishes seeds that differ only above 32 bits', () => {
    expect(draw(new SeededRandom(1), 20)).not.toEqual(draw(new SeededRandom(1 + 2 ** 32), 20))
  })

  it('forks independent, reproducible streams by label', () => {
    const a = new SeededRandom(7)
    const b = new SeededRandom(7)
    expect(draw(a.fork('net'), 20)).toEqual(draw(b.fork('net'), 20))
    const c = new SeededRandom(7)
    expect(draw(c.fork('net'), 20)).not.toEqual(draw(new SeededRandom(7).fork('disk'), 20))
  })

  it('draws integers within bounds', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 2 ** 40 }), (seed, max) => {
        const r = new SeededRandom(seed)
        for (let i = 0; i < 20; i++) {
          const v = r.int(max)
          if (!(Number.isInteger(v) && v >= 0 && v < max)) return false
        }
        return true
      }),
    )
    const s = new SystemRandom()
    for (let i = 0; i < 100; i++) expect(s.int(3)).toBeLessThan(3)
  })

  it('is roughly uniform', () => {
    const r = new SeededRandom(1)
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 100_000; i++) buckets[r.int(10)]!++
    for (const b of buckets) expect(Math.abs(b - 10_000)).toBeLessThan(600)
  })

  it('rejects a non-positive bound', () => {
    expect(() => new SeededRandom(1).int(0)).toThrow(RangeError)
  })
})
