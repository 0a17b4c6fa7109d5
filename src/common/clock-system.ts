/** The real clock. One of the two files outside bin/ allowed to touch ambient time (STYLE.md 7.6). */
import type { Clock, TimerHandle } from './clock.ts'

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

  setTimer(delayMs: number, onFire: () => void): TimerHandle {
    const handle = setTimeout(onFire, Math.max(0, delayMs))
    handle.unref?.()
    return { cancel: () => clearTimeout(handle) }
  }
}
