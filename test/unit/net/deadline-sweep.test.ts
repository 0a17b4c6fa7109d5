import { describe, expect, it } from 'vitest'
import type { Clock, TimerHandle } from '../../../src/common/clock.ts'
import { DeadlineSweep } from '../../../src/net/deadline-sweep.ts'

/** A clock moved by hand that counts the timers armed and live. */
class ManualClock implements Clock {
  now = 1000
  armed = 0
  private timers: { at: number; fire: () => void; live: boolean }[] = []
  nowMs(): number {
    return this.now
  }
  wallMs(): number {
    return 1_700_000_000_000 + this.now
  }
  setTimer(delayMs: number, onFire: () => void): TimerHandle {
    const t = { at: this.now + delayMs, fire: onFire, live: true }
    this.timers.push(t)
    this.armed++
    return { cancel: () => void (t.live = false) }
  }
  get liveTimers(): number {
    return this.timers.filter((t) => t.live).length
  }
  advance(ms: number): void {
    const until = this.now + ms
    for (;;) {
      const next = this.timers.filter((t) => t.live && t.at <= until).sort((a, b) => a.at - b.at)[0]
      if (next === undefined) break
      this.now = Math.max(this.now, next.at)
      next.live = false
      next.fire()
    }
    this.now = until
  }
}

describe('net/deadline-sweep', () => {
  it('expires each deadline when the clock reaches it, not before, each once', () => {
    const clock = new ManualClock()
    const sweep = new DeadlineSweep(clock)
    const fired: string[] = []
    sweep.add(100, () => fired.push('a'))
    sweep.add(50, () => fired.push('b'))
    sweep.add(100, () => fired.push('c'))
    clock.advance(49)
    expect(fired).toEqual([])
    clock.advance(1)
    expect(fired).toEqual(['b'])
    clock.advance(49)
    expect(fired).toEqual(['b'])
    clock.advance(1)
    expect(fired.sort()).toEqual(['a', 'b', 'c'])
    expect(sweep.size).toBe(0)
    clock.advance(1000)
    expect(fired).toHaveLength(3)
  })

  it('never expires a removed deadline, and disarms when nothing is left', () => {
    const clock = new ManualClock()
    const sweep = new DeadlineSweep(clock)
    const fired: string[] = []
    const a = sweep.add(100, () => fired.push('a'))
    const b = sweep.add(200, () => fired.push('b'))
    sweep.remove(a)
    expect(clock.liveTimers).toBe(1)
    clock.advance(150)
    expect(fired).toEqual([])
    sweep.remove(b)
    sweep.remove(b)
    expect(sweep.size).toBe(0)
    expect(clock.liveTimers).toBe(0)
    clock.advance(1000)
    expect(fired).toEqual([])
  })

  it('keeps one timer for many calls: later deadlines do not re-arm it', () => {
    const clock = new ManualClock()
    const sweep = new DeadlineSweep(clock)
    let expired = 0
    for (let i = 0; i < 1000; i++) {
      const e = sweep.add(5000, () => expired++)
      clock.now += 1
      if (i % 2 === 1) sweep.remove(e)
    }
    expect(clock.armed).toBe(1)
    expect(clock.liveTimers).toBe(1)
    expect(sweep.size).toBe(500)
    clock.advance(10_000)
    expect(expired).toBe(500)
    expect(sweep.size).toBe(0)
    expect(clock.liveTimers).toBe(0)
  })

  it('re-arms for an earlier deadline, and lets a callback add and remove deadlines', () => {
    const clock = new ManualClock()
    const sweep = new DeadlineSweep(clock)
    const fired: string[] = []
    sweep.add(1000, () => fired.push('late'))
    const other = sweep.add(30, () => fired.push('other'))
    sweep.add(10, () => {
      fired.push('early')
      sweep.remove(other)
      sweep.add(5, () => fired.push('added'))
    })
    clock.advance(10)
    expect(fired).toEqual(['early'])
    clock.advance(5)
    expect(fired).toEqual(['early', 'added'])
    clock.advance(100)
    expect(fired).toEqual(['early', 'added'])
    clock.advance(1000)
    expect(fired).toEqual(['early', 'added', 'late'])
  })

  it('expires a deadline of 0 ms at the next sweep, never while adding it', () => {
    const clock = new ManualClock()
    const sweep = new DeadlineSweep(clock)
    let fired = false
    sweep.add(0, () => (fired = true))
    expect(fired).toBe(false)
    clock.advance(0)
    expect(fired).toBe(true)
  })
})
