import { describe, expect, it } from 'vitest'
import type { LogIndex } from '../../../../src/common/index.ts'
import { Inflights } from '../../../../src/raft/tracker/inflights.ts'

const i = (n: number): LogIndex => n as LogIndex

describe('raft/tracker/inflights', () => {
  it('is full at capacity and frees appends acknowledged up to an index', () => {
    const f = new Inflights(3)
    f.add(i(1), 10)
    f.add(i(2), 10)
    f.add(i(5), 10)
    expect(f.full()).toBe(true)
    f.freeLE(i(2))
    expect(f.size()).toBe(1)
    expect(f.bytes()).toBe(10)
    expect(f.full()).toBe(false)
  })

  it('wraps around the ring', () => {
    const f = new Inflights(2)
    for (let n = 1; n <= 10; n++) {
      f.add(i(n), 1)
      f.freeLE(i(n - 1))
      expect(f.size()).toBeLessThanOrEqual(2)
    }
    f.freeLE(i(10))
    expect(f.size()).toBe(0)
  })

  it('is full once the byte bound is reached', () => {
    const f = new Inflights(10, 100)
    f.add(i(1), 60)
    expect(f.full()).toBe(false)
    f.add(i(2), 40)
    expect(f.full()).toBe(true)
  })

  it('refuses an index that does not increase (a bug)', () => {
    const f = new Inflights(4)
    f.add(i(5), 1)
    expect(() => f.add(i(5), 1)).toThrow(/not above/)
  })

  it('ignores acknowledgements below every in-flight append', () => {
    const f = new Inflights(4)
    f.add(i(5), 1)
    f.freeLE(i(4))
    expect(f.size()).toBe(1)
  })

  it('frees the oldest append alone, so a full window can let one append through', () => {
    const f = new Inflights(3)
    f.add(i(5), 10)
    f.add(i(6), 20)
    f.add(i(7), 30)
    expect(f.full()).toBe(true)
    f.freeFirstOne()
    expect(f.full()).toBe(false)
    expect(f.size()).toBe(2)
    expect(f.bytes()).toBe(50)
    f.add(i(8), 1)
    expect(() => f.add(i(9), 1)).toThrow(/add when full/)
    const empty = new Inflights(2)
    empty.freeFirstOne()
    expect(empty.size()).toBe(0)
  })
})
