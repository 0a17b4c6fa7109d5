/**
 * A simulated clock for retry tests: timers sit in a queue ordered by due time, and `pump` (run
 * automatically on setImmediate while timers are pending) jumps time to the earliest one and
 * fires it. Only for code that waits on nothing but this clock and promises.
 */
import type { Clock, TimerHandle, TimerOptions } from '../../../src/common/clock.ts'

interface Timer {
  readonly dueMs: number
  readonly seq: number
  readonly onFire: () => void
  cancelled: boolean
}

export class SimClock implements Clock {
  private now = 0
  private seq = 0
  private readonly timers: Timer[] = []
  private pumping = false
  /** Every delay passed to setTimer, in order. */
  readonly delays: number[] = []
  /** The keepAlive option of every setTimer call, in order (false when not given). */
  readonly keepAlives: boolean[] = []

  nowMs(): number {
    return this.now
  }

  wallMs(): number {
    return 1_700_000_000_000 + this.now
  }

  /** Moves time forward by `ms` at once; timers now due fire on the next pump, in order. */
  advance(ms: number): void {
    this.now += ms
  }

  setTimer(delayMs: number, onFire: () => void, options: TimerOptions = {}): TimerHandle {
    this.delays.push(delayMs)
    this.keepAlives.push(options.keepAlive === true)
    const timer: Timer = { dueMs: this.now + Math.max(0, delayMs), seq: this.seq++, onFire, cancelled: false }
    this.timers.push(timer)
    this.schedulePump()
    return { cancel: () => (timer.cancelled = true) }
  }

  private schedulePump(): void {
    if (this.pumping) return
    this.pumping = true
    setImmediate(() => {
      this.pumping = false
      this.fireEarliest()
    })
  }

  private fireEarliest(): void {
    const live = this.timers.filter((t) => !t.cancelled)
    this.timers.length = 0
    this.timers.push(...live)
    if (live.length === 0) return
    live.sort((a, b) => a.dueMs - b.dueMs || a.seq - b.seq)
    const next = live[0] as Timer
    this.timers.splice(this.timers.indexOf(next), 1)
    this.now = Math.max(this.now, next.dueMs)
    next.onFire()
    if (this.timers.some((t) => !t.cancelled)) this.schedulePump()
  }
}
