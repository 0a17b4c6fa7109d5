import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  DeadlineError,
  deadlineSignal,
  type Clock,
  type TimerHandle,
  type TimerOptions,
} from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'

/** A manual clock: time moves only when the test says so. */
class ManualClock implements Clock {
  now = 0
  private timers: { at: number; fire: () => void; live: boolean }[] = []
  nowMs(): number {
    return this.now
  }
  wallMs(): number {
    return 1_700_000_000_000 + this.now
  }
  setTimer(delayMs: number, onFire: () => void, _options?: TimerOptions): TimerHandle {
    const t = { at: this.now + delayMs, fire: onFire, live: true }
    this.timers.push(t)
    return { cancel: () => void (t.live = false) }
  }
  advance(ms: number): void {
    this.now += ms
    for (const t of this.timers.filter((t) => t.live && t.at <= this.now)) {
      t.live = false
      t.fire()
    }
  }
}

describe('common/clock', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('aborts a deadline signal when the injected clock passes the deadline, not before', () => {
    const clock = new ManualClock()
    const { signal } = deadlineSignal(clock, 100)
    clock.advance(99)
    expect(signal.aborted).toBe(false)
    clock.advance(1)
    expect(signal.aborted).toBe(true)
    expect(signal.reason).toBeInstanceOf(DeadlineError)
  })

  it('follows the parent signal and stops its timer when disposed', () => {
    const clock = new ManualClock()
    const parent = new AbortController()
    const d = deadlineSignal(clock, 100, parent.signal)
    parent.abort(new Error('caller gave up'))
    expect(d.signal.aborted).toBe(true)
    const d2 = deadlineSignal(clock, 100)
    d2.dispose()
    clock.advance(1000)
    expect(d2.signal.aborted).toBe(false)
  })

  it('keeps the system clock monotonic', () => {
    const c = new SystemClock()
    let last = c.nowMs()
    for (let i = 0; i < 1000; i++) {
      const now = c.nowMs()
      expect(now).toBeGreaterThanOrEqual(last)
      last = now
    }
    expect(Math.abs(c.wallMs() - Date.now())).toBeLessThan(5_000)
  })

  it('unrefs system timers unless keepAlive is asked for, and cancels both', () => {
    const spy = vi.spyOn(globalThis, 'setTimeout')
    const clock = new SystemClock()
    const fired: string[] = []
    const plain = clock.setTimer(60_000, () => fired.push('plain'))
    const kept = clock.setTimer(60_000, () => fired.push('kept'), { keepAlive: true })
    const explicit = clock.setTimer(60_000, () => fired.push('explicit'), { keepAlive: false })
    const handles = spy.mock.results.map((r) => r.value as NodeJS.Timeout)
    expect(handles.map((h) => h.hasRef())).toEqual([false, true, false])
    for (const t of [plain, kept, explicit]) t.cancel()
    expect(fired).toEqual([])
  })
})
