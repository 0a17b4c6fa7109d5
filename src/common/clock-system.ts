/** The real clock. One of the two files outside bin/ allowed to touch ambient time (STYLE.md 7.6). */
import type { Clock, TimerHandle, TimerOptions } from './clock.ts'

export class SystemClock implements Clock {
  private lastMs = 0

  nowMs(): number {
    // performance.now() is monotonic already; the guard keeps the promise even across odd platforms.
    const now = performance.timeOrigin + performance.now()
    if (now > this.lastMs) this.lastMs = now
    return this.lastMs
  }

  wallMs(): number {
    return Date.now()
  }

  /** Unref'd unless `options.keepAlive`: only a wait someone is blocked on holds the process open. */
  setTimer(delayMs: number, onFire: () => void, options: TimerOptions = {}): TimerHandle {
    const handle = setTimeout(onFire, Math.max(0, delayMs))
    if (options.keepAlive !== true) handle.unref?.()
    return { cancel: () => clearTimeout(handle) }
  }
}
