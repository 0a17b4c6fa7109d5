/**
 * Microtask quiescence for the host simulator. The node layer is async (the Ready loop awaits the
 * engine, replicas await deferreds), so before simulated time may move to the next timer every
 * promise chain that can run now must have run. Node has no API that says "the microtask queue is
 * empty", and a macrotask (setImmediate) is banned in test/sim, so the drain counts promise jobs:
 *
 * V8's promise hooks (`node:v8` promiseHooks.onBefore) fire before every promise reaction job and
 * every thenable-resolution job. The drain awaits one resolved promise and looks at the counter: the
 * queue is FIFO, so when no other job ran between the await and its continuation, the queue was
 * empty when the drain yielded, and nothing can have been queued since (nothing ran). A few jobs
 * are not promise jobs and fire no hook: `queueMicrotask` callbacks (the gRPC transport logic
 * flushes and reports unreachable peers through them). Each of those in our code paths either
 * ends or resolves a promise, so it shows up in the next turn at the latest; the drain therefore
 * asks for `quietTurnsNeeded` quiet turns in a row, more than the longest chain of bare microtasks.
 *
 * The hook is process-wide while installed: install it for one run and uninstall it in `finally`.
 * Counting changes no ordering, so the run stays deterministic with or without it.
 */
import { promiseHooks } from 'node:v8'
import { assert } from '../../../src/common/index.ts'

/** Quiet turns in a row that count as "settled" (bare queueMicrotask chains are shorter than this). */
export const quietTurnsNeeded = 3
/** Turns one drain may take before the run counts as a microtask livelock (a loop that never awaits
 * time). Healthy runs settle within about a hundred turns. */
export const drainTurnsMax = 100_000

export class MicrotaskLivelock extends Error {
  override readonly name = 'MicrotaskLivelock'
}

export class MicrotaskDrain {
  private jobs = 0
  private stopHook: (() => void) | undefined
  /** Drains run, and turns taken by them (for the run's stats). */
  drains = 0
  turns = 0
  /** The most turns one drain took. */
  turnsMaxSeen = 0

  /** Starts counting promise jobs. Pair with `uninstall` (in a finally). */
  install(): void {
    assert(this.stopHook === undefined, 'drain installed twice')
    // Typed `Function` by @types/node; it is the hook's stop function.
    this.stopHook = promiseHooks.onBefore(() => {
      this.jobs++
    }) as () => void
  }

  uninstall(): void {
    this.stopHook?.()
    this.stopHook = undefined
  }

  /** Resolves once no microtask is left to run (see the file comment). */
  async settle(): Promise<void> {
    assert(this.stopHook !== undefined, 'drain not installed')
    this.drains++
    let quiet = 0
    let turns = 0
    while (quiet < quietTurnsNeeded) {
      const before = this.jobs
      await Promise.resolve()
      turns++
      // One job is our own continuation.
      if (this.jobs - before === 1) quiet++
      else quiet = 0
      if (turns > drainTurnsMax)
        throw new MicrotaskLivelock(`microtasks still running after ${drainTurnsMax} turns`)
    }
    this.turns += turns
    if (turns > this.turnsMaxSeen) this.turnsMaxSeen = turns
  }
}
