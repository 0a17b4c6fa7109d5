import { describe, expect, it } from 'vitest'
import { checkLinearizability, type Operation } from '../../../src/verify/index.ts'
import { bruteForce } from './brute-force.ts'
import { cas, del, get, put } from './ops.ts'

function verdict(history: Operation[]): string {
  const r = checkLinearizability(history)
  // Every hand-made history is small enough for the oracle too; they must agree.
  expect(bruteForce(history)).toBe(r.result === 'ok')
  return r.result
}

describe('verify/linearizability: rejects', () => {
  it('rejects a stale read after a newer write completed', () => {
    expect(verdict([put('k', 'x', 0, 10), put('k', 'y', 20, 30), get('k', 'x', 40, 50)])).toBe('violation')
  })

  it('rejects a read of a value nobody wrote', () => {
    expect(verdict([put('k', 'x', 0, 10), get('k', 'q', 20, 30)])).toBe('violation')
  })

  it('rejects a lost acknowledged write', () => {
    expect(verdict([put('k', 'x', 0, 10), get('k', null, 20, 30)])).toBe('violation')
  })

  it('rejects reads that go back in time across clients', () => {
    const h = [
      put('k', 'x', 0, 10),
      put('k', 'y', 15, 100),
      get('k', 'y', 20, 30, { client: 7 }),
      get('k', 'x', 40, 50, { client: 8 }),
    ]
    expect(verdict(h)).toBe('violation')
  })

  it('rejects two conflicting CAS by value that both succeed (split brain)', () => {
    const h = [
      cas('k', { value: null }, 'a', true, 0, 10, { client: 1 }),
      cas('k', { value: null }, 'b', true, 0, 10, { client: 2 }),
    ]
    expect(verdict(h)).toBe('violation')
  })

  it('rejects two conflicting CAS by version that both succeed', () => {
    const h = [
      put('k', 'x', 0, 5, { version: 3 }),
      cas('k', { version: 3 }, 'a', true, 10, 20, { client: 1, version: 8 }),
      cas('k', { version: 3 }, 'b', true, 10, 20, { client: 2, version: 9 }),
    ]
    expect(verdict(h)).toBe('violation')
  })

  it('rejects two writes that report the same version (split-brain double write)', () => {
    const h = [
      put('k', 'a', 0, 10, { client: 1, version: 5 }),
      put('k', 'b', 0, 10, { client: 2, version: 5 }),
    ]
    expect(verdict(h)).toBe('violation')
  })

  it('rejects a read whose version contradicts the write it saw', () => {
    expect(verdict([put('k', 'x', 0, 10, { version: 4 }), get('k', 'x', 20, 30, { version: 6 })])).toBe(
      'violation',
    )
  })

  it('rejects a read of a failed write', () => {
    expect(verdict([put('k', 'x', 0, 10, { outcome: 'fail' }), get('k', 'x', 20, 30)])).toBe('violation')
  })

  it('rejects a CAS mismatch when the expected value was certainly there', () => {
    expect(verdict([put('k', 'x', 0, 10), cas('k', { value: 'x' }, 'y', false, 20, 30)])).toBe('violation')
  })

  it('rejects a read of a deleted key that still sees the old value', () => {
    expect(verdict([put('k', 'x', 0, 10), del('k', 20, 30), get('k', 'x', 40, 50)])).toBe('violation')
  })

  it('explains a violation with the key, the failing op and a small window', () => {
    const h = [
      put('other', 'o', 0, 1),
      put('k', 'x', 0, 10),
      put('k', 'y', 20, 30),
      get('k', 'y', 35, 38),
      get('k', 'x', 40, 50, { client: 9 }),
    ]
    const r = checkLinearizability(h)
    expect(r.result).toBe('violation')
    if (r.result !== 'violation') return
    expect(r.key).toBe('k')
    expect(r.window.failing).toBe(h[4])
    expect(r.window.stateBefore).toEqual({ value: 'y', version: -2 })
    expect(r.window.pending).toEqual([h[4]])
    expect(r.window.text).toContain('c9 [40, 50] get() -> "x"')
  })
})

describe('verify/linearizability: accepts', () => {
  it('accepts an empty history', () => {
    expect(verdict([])).toBe('ok')
  })

  it('accepts a sequential history', () => {
    const h = [
      get('k', null, 0, 1, { version: 0 }),
      put('k', 'x', 2, 3, { version: 4 }),
      get('k', 'x', 4, 5, { version: 4 }),
      cas('k', { version: 4 }, 'y', true, 6, 7, { version: 9 }),
      cas('k', { version: 4 }, 'z', false, 8, 9),
      cas('k', { value: 'y' }, 'w', true, 10, 11, { version: 12 }),
      del('k', 12, 13),
      get('k', null, 14, 15),
      cas('k', { value: null }, 'n', true, 16, 17),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('accepts concurrent overlapping reads that see a write at different points', () => {
    const h = [put('k', 'x', 0, 100), get('k', 'x', 10, 20), get('k', null, 15, 25, { client: 5 })]
    expect(verdict(h)).toBe('ok')
  })

  it('accepts operations that touch at one instant as concurrent', () => {
    expect(verdict([put('k', 'x', 0, 10), get('k', null, 10, 20)])).toBe('ok')
  })

  it('accepts an indeterminate write that did happen, late', () => {
    const h = [
      put('k', 'x', 0, 0, { outcome: 'indeterminate' }),
      get('k', null, 50, 60),
      get('k', 'x', 70, 80),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('accepts an indeterminate write that never happened', () => {
    const h = [
      put('k', 'x', 0, 0, { outcome: 'indeterminate' }),
      get('k', null, 50, 60),
      get('k', null, 70, 80),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('still rejects an indeterminate write seen before it was called', () => {
    expect(verdict([get('k', 'x', 0, 10), put('k', 'x', 20, 0, { outcome: 'indeterminate' })])).toBe(
      'violation',
    )
  })

  it('accepts an indeterminate CAS whose effect is seen, and one whose effect is not', () => {
    const h = [
      put('k', 'x', 0, 10),
      cas('k', { value: 'x' }, 'y', true, 20, 0, { outcome: 'indeterminate' }),
      get('k', 'x', 30, 40),
      get('k', 'y', 50, 60),
      cas('k', { value: 'y' }, 'z', true, 70, 0, { outcome: 'indeterminate' }),
      get('k', 'y', 80, 90),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('accepts a CAS on a version written by an indeterminate write', () => {
    const h = [
      put('k', 'x', 0, 10, { version: 2 }),
      put('k', 'y', 20, 0, { outcome: 'indeterminate' }),
      get('k', 'y', 30, 40, { version: 5 }),
      cas('k', { version: 5 }, 'z', true, 50, 60, { version: 7 }),
      get('k', 'z', 70, 80, { version: 7 }),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('drops failed operations and indeterminate reads', () => {
    const h = [
      put('k', 'x', 0, 10, { outcome: 'fail' }),
      get('k', 'q', 0, 0, { outcome: 'indeterminate' }),
      get('k', null, 20, 30),
    ]
    expect(verdict(h)).toBe('ok')
  })

  it('checks keys independently', () => {
    const h = [put('a', 'x', 0, 10), put('b', 'y', 0, 10), get('a', 'x', 20, 30), get('b', 'y', 20, 30)]
    const r = checkLinearizability(h)
    expect(r.result).toBe('ok')
    expect(r.keys.map((k) => k.key)).toEqual(['a', 'b'])
  })
})

describe('verify/linearizability: budget', () => {
  it('answers unknown rather than searching forever', () => {
    // Many fully concurrent writes and a read that no order explains: exponential without a budget.
    const h: Operation[] = []
    for (let i = 0; i < 40; i++) h.push(put('k', `v${i}`, 0, 1000, { client: i }))
    h.push(get('k', 'nobody', 0, 1000, { client: 99 }))
    const r = checkLinearizability(h, { stepsMaxPerKey: 10_000 })
    expect(r.result).toBe('unknown')
    if (r.result === 'unknown') expect(r.unknownKeys).toEqual(['k'])
  })

  it('gives the same answer and step count every time', () => {
    const h = [put('k', 'x', 0, 10), put('k', 'y', 5, 30), get('k', 'x', 12, 50), get('k', 'y', 40, 60)]
    expect(checkLinearizability(h)).toEqual(checkLinearizability(h))
  })
})
