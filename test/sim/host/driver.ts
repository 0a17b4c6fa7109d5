/**
 * The host simulator's run loop: the existing event queue (../simulator.ts) driven from async
 * code. One step = drain every microtask (drain.ts), then fire the next timer, so simulated time
 * moves only when every promise chain that can run has run. Timers at one instant fire in the
 * order they were set; with no real I/O and no real timers in the process, the order of every
 * promise callback follows from the seed.
 *
 * LifeClock is one process lifetime's view of a node's SimClock: a crash cancels every timer the
 * dead process had set (its tick timer, its transport's redial and delay timers, its deadlines),
 * as a power cut would.
 */
import type { Clock, TimerHandle } from '../../../src/common/index.ts'
import type { SimClock, Simulator } from '../simulator.ts'
import type { MicrotaskDrain } from './drain.ts'

export class AsyncDriver {
  private stepped = false
  private readonly checks: { readonly everyMs: number; nextMs: number; readonly run: () => Promise<void> }[] =
    []

  constructor(
    readonly sim: Simulator,
    readonly drain: MicrotaskDrain,
  ) {
    sim.afterEachStep(() => {
      this.stepped = true
    })
  }

  get nowMs(): number {
    return this.sim.nowMs
  }

  /**
   * Runs until simulated time reaches `untilMs` or `stop()` holds (checked whenever the
   * microtasks have settled). Returns whether `stop()` held.
   */
  async runUntil(untilMs: number, stop: () => boolean = () => false): Promise<boolean> {
    for (;;) {
      await this.drain.settle()
      await this.runChecks()
      if (stop()) return true
      if (!this.stepDue(untilMs)) {
        await this.drain.settle()
        return stop()
      }
    }
  }

  async runFor(ms: number, stop?: () => boolean): Promise<boolean> {
    return await this.runUntil(this.sim.nowMs + ms, stop)
  }

  /**
   * Runs the simulation until `promise` settles (at most `maxMs` of simulated time) and returns its
   * outcome. Harness code must await the system through this: a bare `await` on something that
   * waits for a timer would stop the clock and never return.
   */
  async until<T>(promise: Promise<T>, maxMs: number, what: string): Promise<T> {
    let settled = false
    const mark = (): void => {
      settled = true
    }
    promise.then(mark, mark)
    await this.runFor(maxMs, () => settled)
    if (!settled) throw new Error(`${what}: not settled after ${maxMs} ms of simulated time`)
    return await promise
  }

  /**
   * Runs `check` about every `everyMs` of simulated time, at a point where every microtask has
   * settled (the system is idle, so the check sees a consistent state and perturbs nothing).
   */
  every(everyMs: number, check: () => Promise<void>): void {
    this.checks.push({ everyMs, nextMs: this.sim.nowMs + everyMs, run: check })
  }

  private async runChecks(): Promise<void> {
    for (const c of this.checks) {
      if (this.sim.nowMs < c.nextMs) continue
      c.nextMs = this.sim.nowMs + c.everyMs
      await c.run()
      await this.drain.settle()
    }
  }

  /** A promise that resolves after `ms` of simulated time. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sim.schedule(ms, resolve)
    })
  }

  /** Fires the next timer due by `untilMs`; false (and time set to `untilMs`) when there is none. */
  private stepDue(untilMs: number): boolean {
    this.stepped = false
    // Simulator.runUntil checks `stop` before every event: stop right after the first one.
    this.sim.runUntil(untilMs, () => this.stepped)
    return this.stepped
  }
}

/** One lifetime of a node's clock: `kill()` cancels every timer set through it. */
export class LifeClock implements Clock {
  private readonly timers = new Set<TimerHandle>()
  private dead = false

  constructor(private readonly clock: SimClock) {}

  nowMs(): number {
    return this.clock.nowMs()
  }

  wallMs(): number {
    return this.clock.wallMs()
  }

  setTimer(delayMs: number, onFire: () => void): TimerHandle {
    if (this.dead) return { cancel: () => {} }
    const inner: { handle?: TimerHandle } = {}
    const handle: TimerHandle = {
      cancel: () => {
        this.timers.delete(handle)
        inner.handle?.cancel()
      },
    }
    inner.handle = this.clock.setTimer(delayMs, () => {
      this.timers.delete(handle)
      onFire()
    })
    this.timers.add(handle)
    return handle
  }

  /** The process is gone: none of its timers fire, and new ones are never set. */
  kill(): void {
    this.dead = true
    for (const t of [...this.timers]) t.cancel()
    this.timers.clear()
  }

  get pendingTimers(): number {
    return this.timers.size
  }
}
