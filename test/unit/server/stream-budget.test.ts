import { describe, expect, it } from 'vitest'
import { isKvErrorWithCode } from '../../../src/common/errors.ts'
import { ByteBudget, StreamBudgets, type MessageSink } from '../../../src/server/stream-budget.ts'

/** A connection that takes nothing until told: its write callbacks are held. */
class HeldSink implements MessageSink<string> {
  readonly held: (() => void)[] = []
  readonly written: string[] = []
  write(message: string, callback: () => void): boolean {
    this.written.push(message)
    this.held.push(callback)
    return true
  }
  takeOne(): void {
    this.held.shift()?.()
  }
}

const limits = {
  streamUnsentBytesMax: 100,
  principalUnsentBytesMax: 250,
  nodeUnsentBytesMax: 400,
  streamsPerConnectionMax: 3,
  streamsPerPrincipalMax: 5,
}
const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 0))

describe('server/stream-budget', () => {
  it('a budget grants in order, lets one oversized request through alone, and rejects on abort', async () => {
    const b = new ByteBudget(10)
    const never = new AbortController().signal
    await b.acquire(25, never) // nothing in use: granted
    let second = false
    const p = b.acquire(5, never).then(() => (second = true))
    await tick()
    expect(second).toBe(false)
    b.release(25)
    await p
    expect(b.inUse).toBe(5)
    const abort = new AbortController()
    const third = b.acquire(8, abort.signal)
    abort.abort(new Error('gone'))
    await expect(third).rejects.toThrow('gone')
    expect(b.inUse).toBe(5)
  })

  it('a stream whose reader does not read waits instead of buffering beyond its budget', async () => {
    const budgets = new StreamBudgets(limits)
    const sink = new HeldSink()
    const w = budgets.openStream('alice', 'conn1', sink)
    const signal = new AbortController().signal
    await w.write('a', 60, signal)
    let wrote = false
    const next = w.write('b', 60, signal).then(() => (wrote = true))
    await tick()
    expect(wrote).toBe(false)
    expect(sink.written).toEqual(['a'])
    sink.takeOne()
    await next
    expect(sink.written).toEqual(['a', 'b'])
    expect(w.unsentBytes).toBe(60)
    expect(budgets.unsentBytes).toBe(60)
    w.close()
    expect(budgets.unsentBytes).toBe(0)
  })

  it('a cancelled stream gives its share back at once, even though its messages never left', async () => {
    const budgets = new StreamBudgets(limits)
    const sinks = [new HeldSink(), new HeldSink(), new HeldSink()]
    const writers = sinks.map((s, i) => budgets.openStream('alice', `conn${i}`, s))
    const signal = new AbortController().signal
    await writers[0]!.write('x', 100, signal)
    await writers[1]!.write('x', 100, signal)
    // Alice's share (250) is nearly used: her third stream waits, Bob's is served at once.
    const abort = new AbortController()
    let third = false
    const waiting = writers[2]!.write('x', 100, abort.signal).then(() => (third = true))
    await tick()
    expect(third).toBe(false)
    const bob = budgets.openStream('bob', 'conn9', new HeldSink())
    await bob.write('y', 100, signal)
    writers[0]!.close()
    await waiting
    expect(third).toBe(true)
    for (const w of [...writers, bob]) w.close()
    expect(budgets.unsentBytes).toBe(0)
    // Late callbacks of closed streams change nothing.
    for (const s of sinks) while (s.held.length > 0) s.takeOne()
    expect(budgets.unsentBytes).toBe(0)
  })

  it('refuses streams beyond the per-connection and per-client counts with OVERLOADED', () => {
    const budgets = new StreamBudgets(limits)
    const open = (p: string, c: string): unknown => budgets.openStream(p, c, new HeldSink())
    for (let i = 0; i < 3; i++) open('alice', 'c1')
    const refused = (f: () => unknown): unknown => {
      try {
        f()
      } catch (err) {
        return err
      }
      return undefined
    }
    const perConnection = refused(() => open('alice', 'c1'))
    expect(isKvErrorWithCode(perConnection, 'OVERLOADED')).toBe(true)
    expect((perConnection as { details: unknown }).details).toEqual({ limit: 3 })
    open('alice', 'c2')
    open('alice', 'c2')
    const perClient = refused(() => open('alice', 'c3'))
    expect((perClient as { details: unknown }).details).toEqual({ limit: 5 })
    expect(budgets.streams).toBe(5)
    open('bob', 'c3')
    expect(budgets.streams).toBe(6)
  })
})
