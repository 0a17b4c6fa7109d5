/**
 * Time as an injected dependency (STYLE.md 7.6; TigerBeetle's Time vtable). Production uses
 * SystemClock (clock-system.ts); the simulator uses a SimClock driven by its event queue.
 */
export interface TimerHandle {
  cancel(): void
}

export interface TimerOptions {
  /**
   * True: the pending timer keeps the process alive (a wait the caller is blocked on, such as the
   * SDK's backoff between retries: a script whose only pending work is that wait must not exit
   * mid-call). False (the default): the timer does not hold the process open, which is right for
   * deadlines, drains and other timers that only guard work that holds the process by itself.
   * Clocks without a process to keep alive (simulated ones) ignore it.
   */
  readonly keepAlive?: boolean
}

export interface Clock {
  /** Monotonic milliseconds; never goes backwards. */
  nowMs(): number
  /** Wall-clock milliseconds since the epoch; may jump. Only for display and drift-bounded leases. */
  wallMs(): number
  /** Calls `onFire` once after `delayMs` unless cancelled first. */
  setTimer(delayMs: number, onFire: () => void, options?: TimerOptions): TimerHandle
}

/**
 * An AbortSignal aborted by `clock` after `deadlineMs` (instead of AbortSignal.timeout, which
 * uses real time). `parent`, when given, aborts it too. Call `dispose` when done so the timer
 * does not outlive the work.
 */
export function deadlineSignal(
  clock: Clock,
  deadlineMs: number,
  parent?: AbortSignal,
): { readonly signal: AbortSignal; dispose(): void } {
  const controller = new AbortController()
  const timer = clock.setTimer(deadlineMs, () => controller.abort(new DeadlineError()))
  const onParentAbort = (): void => controller.abort(parent?.reason)
  if (parent !== undefined) {
    if (parent.aborted) controller.abort(parent.reason)
    else parent.addEventListener('abort', onParentAbort, { once: true })
  }
  return {
    signal: controller.signal,
    dispose() {
      timer.cancel()
      parent?.removeEventListener('abort', onParentAbort)
    },
  }
}

/** The abort reason of a deadline signal. */
export class DeadlineError extends Error {
  override readonly name = 'DeadlineError'
  constructor() {
    super('deadline exceeded')
  }
}
