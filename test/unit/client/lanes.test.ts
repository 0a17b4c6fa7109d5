import { describe, expect, it } from 'vitest'
import { WriteLanes } from '../../../src/client/lanes.ts'

describe('client/lanes', () => {
  it('reuses the last released lane and keeps its seq rising', async () => {
    const lanes = new WriteLanes({ clientId: 'c', seqStart: 100 })
    const a = await lanes.acquire(new AbortController().signal)
    expect(a.clientId).toBe('c.0')
    expect(a.nextSeq()).toBe(101)
    const b = await lanes.acquire(new AbortController().signal)
    expect(b.clientId).toBe('c.1')
    lanes.release(a)
    const again = await lanes.acquire(new AbortController().signal)
    expect(again).toBe(a)
    expect(again.nextSeq()).toBe(102)
    expect(lanes.size).toBe(2)
  })

  it('makes writes wait for a lane when all are busy, in order', async () => {
    const lanes = new WriteLanes({ clientId: 'c', seqStart: 0, lanesMax: 1 })
    const held = await lanes.acquire(new AbortController().signal)
    const order: number[] = []
    const w1 = lanes.acquire(new AbortController().signal).then((l) => (order.push(1), l))
    const w2 = lanes.acquire(new AbortController().signal).then((l) => (order.push(2), l))
    lanes.release(held)
    lanes.release(await w1)
    await w2
    expect(order).toEqual([1, 2])
  })

  it('stops waiting with CANCELLED when the signal aborts', async () => {
    const lanes = new WriteLanes({ clientId: 'c', seqStart: 0, lanesMax: 1 })
    const held = await lanes.acquire(new AbortController().signal)
    const controller = new AbortController()
    const waiting = lanes.acquire(controller.signal)
    controller.abort()
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' })
    // The aborted waiter does not swallow the lane.
    lanes.release(held)
    await expect(lanes.acquire(new AbortController().signal)).resolves.toBe(held)
  })
})
