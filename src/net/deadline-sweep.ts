/**
 * DeadlineSweep: the deadlines of every call in flight on one pipeline behind ONE timer, instead
 * of a timer per call (a timer per request is one of the costs every request paid).
 *
 * Contract:
 * - `add(ms, onExpired)` registers a deadline `ms` from now (by the injected clock) and returns a
 *   handle; `onExpired` runs once when the clock reaches it, unless `remove(handle)` came first.
 *   A deadline of 0 ms expires at the next sweep (the timer's next turn), never synchronously.
 * - At most one timer is armed, for the earliest live deadline. Removing an entry is O(1) and
 *   leaves the timer as it is; when the timer fires, one pass over the live entries expires the
 *   due ones and re-arms for the earliest left. Calls end long before their deadline as a rule,
 *   and new deadlines come later than the ones in flight, so the timer rarely moves: it fires
 *   about once per deadline length, not once per call.
 * - The live entries are the calls in flight, bounded by the gates in front of the pipeline
 *   (connection quotas and the node-wide request gate); nothing stays after it expires or is
 *   removed. With no entry, no timer is armed (an idle node pays nothing).
 * - Timers are not kept alive: a deadline guards work that holds the process by itself.
 */
import type { Clock, TimerHandle } from '../common/clock.ts'

/** A registered deadline; pass it back to `remove` once the call has ended. */
export interface DeadlineEntry {
  readonly atMs: number
  readonly onExpired: () => void
}

export class DeadlineSweep {
  private readonly clock: Clock
  private readonly live = new Set<DeadlineEntry>()
  private timer: TimerHandle | undefined
  /** When the armed timer fires (Infinity: none armed). */
  private armedAtMs = Infinity

  constructor(clock: Clock) {
    this.clock = clock
  }

  /** Deadlines in flight (for tests and metrics). */
  get size(): number {
    return this.live.size
  }

  add(ms: number, onExpired: () => void): DeadlineEntry {
    const entry: DeadlineEntry = { atMs: this.clock.nowMs() + Math.max(0, ms), onExpired }
    this.live.add(entry)
    if (entry.atMs < this.armedAtMs) this.arm(entry.atMs)
    return entry
  }

  /** Forgets `entry` (the call ended); a no-op when it expired or was removed already. */
  remove(entry: DeadlineEntry): void {
    this.live.delete(entry)
    if (this.live.size === 0) this.disarm()
  }

  private arm(atMs: number): void {
    this.timer?.cancel()
    this.armedAtMs = atMs
    this.timer = this.clock.setTimer(Math.max(0, atMs - this.clock.nowMs()), () => this.sweep())
  }

  private disarm(): void {
    this.timer?.cancel()
    this.timer = undefined
    this.armedAtMs = Infinity
  }

  private sweep(): void {
    this.timer = undefined
    this.armedAtMs = Infinity
    const now = this.clock.nowMs()
    const due: DeadlineEntry[] = []
    let next = Infinity
    for (const entry of this.live) {
      if (entry.atMs <= now) due.push(entry)
      else if (entry.atMs < next) next = entry.atMs
    }
    for (const entry of due) this.live.delete(entry)
    // Arm before running the callbacks: one of them may add or remove entries.
    if (next !== Infinity) this.arm(next)
    for (const entry of due) entry.onExpired()
  }
}
