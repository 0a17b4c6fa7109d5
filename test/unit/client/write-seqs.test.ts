import { describe, expect, it } from 'vitest'
import { limits } from '../../../src/common/limits.ts'
import { WriteSeqs } from '../../../src/client/write-seqs.ts'

const open = (): AbortSignal => new AbortController().signal

describe('client/write-seqs', () => {
  it('issues increasing seqs and reports the lowest one in flight as first incomplete', async () => {
    const seqs = new WriteSeqs({ seqStart: 100 })
    expect(seqs.firstIncomplete()).toBe(100)
    const [a, b, c] = [await seqs.acquire(open()), await seqs.acquire(open()), await seqs.acquire(open())]
    expect([a, b, c]).toEqual([100, 101, 102])
    expect(seqs.firstIncomplete()).toBe(100)
    // Out of order: the middle one settles first; the oldest still holds the mark.
    seqs.release(b)
    expect(seqs.firstIncomplete()).toBe(100)
    seqs.release(a)
    expect(seqs.firstIncomplete()).toBe(102)
    seqs.release(c)
    // Nothing in flight: the next seq to issue.
    expect(seqs.firstIncomplete()).toBe(103)
    expect(seqs.size).toBe(0)
    expect(() => seqs.release(c)).toThrow()
  })

  it('keeps every seq below first incomplete + window: a write waits while the oldest is out', async () => {
    const seqs = new WriteSeqs({ seqStart: 0, windowMax: 3 })
    const held = [await seqs.acquire(open()), await seqs.acquire(open()), await seqs.acquire(open())]
    const granted: number[] = []
    const w1 = seqs.acquire(open()).then((s) => (granted.push(s), s))
    const w2 = seqs.acquire(open()).then((s) => (granted.push(s), s))
    // Settling a newer write does not move the window: seq 0 is still out.
    seqs.release(held[2] as number)
    await Promise.resolve()
    expect(granted).toEqual([])
    // Settling the oldest moves it by one: one waiter in, in arrival order.
    seqs.release(held[0] as number)
    expect(await w1).toBe(3)
    expect(granted).toEqual([3])
    seqs.release(held[1] as number)
    expect(await w2).toBe(4)
    expect(seqs.firstIncomplete()).toBe(3)
    expect(limits.dedupResultsPerClientMax).toBeGreaterThanOrEqual(3)
  })

  it('rejects a waiting acquire when its signal aborts, and skips it afterwards', async () => {
    const seqs = new WriteSeqs({ seqStart: 0, windowMax: 1 })
    const held = await seqs.acquire(open())
    const controller = new AbortController()
    const waiting = seqs.acquire(controller.signal)
    controller.abort()
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' })
    seqs.release(held)
    await expect(seqs.acquire(open())).resolves.toBe(1)
    await expect(seqs.acquire(controller.signal)).rejects.toMatchObject({ code: 'CANCELLED' })
  })

  it('tryAcquire takes a free seq at once, but never with a full window or ahead of a waiter', async () => {
    const seqs = new WriteSeqs({ seqStart: 0, windowMax: 2 })
    expect(seqs.tryAcquire()).toBe(0)
    expect(seqs.tryAcquire()).toBe(1)
    expect(seqs.tryAcquire()).toBeUndefined()
    const waiting = seqs.acquire(open())
    seqs.release(1)
    // Seq 0 still holds the window; the waiter is first in line when it moves.
    expect(seqs.tryAcquire()).toBeUndefined()
    seqs.release(0)
    expect(await waiting).toBe(2)
    expect(seqs.tryAcquire()).toBe(3)
  })

  it('refuses a window beyond what the shard saves per client', () => {
    expect(() => new WriteSeqs({ seqStart: 0, windowMax: limits.dedupResultsPerClientMax + 1 })).toThrow()
  })
})
