/**
 * Retries (STYLE.md 7.10; nats.js `backoff(policy)`): bounded attempts, jittered exponential
 * backoff with delays from the injected Random and timers from the injected Clock, all inside the
 * call's deadline. What is retried follows `errorCodeTable`:
 *
 * - reads retry on every code whose policy is not `never` (Backoff, RefreshRoute, OtherReplica),
 *   which includes transport failures (UNAVAILABLE), trying another endpoint where that helps;
 * - writes retry only when a retry cannot apply them twice: the error says the write certainly
 *   did not happen (`writeNotApplied`), or the write carries a client id and sequence number, so
 *   the shard's dedup table answers a duplicate with the first outcome (Raft thesis 6.3).
 *
 * DEADLINE_EXCEEDED and CANCELLED are never retried: the budget is spent or the caller left.
 */
import { AssertionError } from '../common/assert.ts'
import { deadlineSignal, type Clock } from '../common/clock.ts'
import { ErrorCode, KvError, RetryPolicy, errorCodeTable } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import type { Random } from '../common/random.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'

/** User-tunable retry settings. */
export interface RetryInit {
  /** Attempts per call, the first included (1 = no retries). At most limits.retryAttemptsMax. */
  readonly attemptsMax?: number
  /** The first backoff's upper bound; each further retry doubles it. */
  readonly backoffBaseMs?: number
  /** The largest backoff upper bound. */
  readonly backoffMaxMs?: number
}

export interface RetryConfig {
  readonly attemptsMax: number
  readonly backoffBaseMs: number
  readonly backoffMaxMs: number
}

/**
 * Defaults sized to ride out a leader's death inside the default deadline: an election takes one
 * to two seconds (10-20 ticks of 100 ms), and 12 attempts of full-jitter backoff from 50 ms capped
 * at 1 s sleep about 3.8 s in total on average (at most 7.6 s), so a write retried against the
 * survivors lands once they have a new leader. The deadline bounds it all the same.
 */
export const retryDefaults: RetryConfig = {
  attemptsMax: 12,
  backoffBaseMs: 50,
  backoffMaxMs: 1_000,
}

/** Validates user settings. Misuse is a TypeError/RangeError of the caller, not an operating error. */
export function resolveRetryConfig(init: RetryInit | undefined): RetryConfig {
  const config = { ...retryDefaults, ...stripUndefined(init ?? {}) }
  if (!Number.isSafeInteger(config.attemptsMax) || config.attemptsMax < 1) {
    throw new RangeError(`retry.attemptsMax must be a positive integer, got ${config.attemptsMax}`)
  }
  if (config.attemptsMax > limits.retryAttemptsMax) {
    throw new RangeError(
      `retry.attemptsMax may be at most ${limits.retryAttemptsMax}, got ${config.attemptsMax}`,
    )
  }
  for (const name of ['backoffBaseMs', 'backoffMaxMs'] as const) {
    if (!Number.isSafeInteger(config[name]) || config[name] < 0) {
      throw new RangeError(`retry.${name} must be a non-negative integer, got ${config[name]}`)
    }
  }
  return config
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** What kind of call failed, as far as retrying goes. */
export interface RetryOp {
  readonly kind: 'read' | 'write'
  /** True when a write carries a client id and seq, so the server deduplicates a retry. */
  readonly deduplicated: boolean
}

/**
 * Where the next attempt goes: the same endpoint (the server forwards; the condition is
 * transient), the next endpoint (this one is unreachable, cut off, or behind), or the leader the
 * error hinted at (the caller falls back to the next endpoint when it cannot resolve the hint).
 */
export type RetryRoute = 'same' | 'next-endpoint' | 'leader'

export type RetryDecision =
  { readonly retry: false; readonly reason: string } | { readonly retry: true; readonly route: RetryRoute }

/** The retry decision for one failed attempt. Pure: a function of the error and the op. */
export function decideRetry(err: KvError, op: RetryOp): RetryDecision {
  const entry = errorCodeTable[err.code]
  if (entry.retry === RetryPolicy.Never) return { retry: false, reason: `${err.code} is not retryable` }
  if (op.kind === 'write' && !op.deduplicated && !entry.writeNotApplied) {
    return { retry: false, reason: `${err.code}: the write may have applied and carries no client id` }
  }
  switch (entry.retry) {
    case RetryPolicy.RefreshRoute:
      return { retry: true, route: err.details?.leaderHint !== undefined ? 'leader' : 'next-endpoint' }
    case RetryPolicy.OtherReplica:
      return { retry: true, route: 'next-endpoint' }
    case RetryPolicy.Backoff:
      // An unreachable node, or one that cannot reach a quorum (cut off in a minority), is
      // worth leaving; an overloaded or busy one is worth waiting for.
      return {
        retry: true,
        route:
          err.code === ErrorCode.Unavailable || err.code === ErrorCode.NoQuorum ? 'next-endpoint' : 'same',
      }
  }
}

/**
 * The delay before retry number `retryIndex` (0 for the first retry): "full jitter", uniform in
 * [0, min(backoffMaxMs, backoffBaseMs * 2^retryIndex)] (AWS architecture blog, "Exponential
 * Backoff And Jitter"), so that clients failing together do not retry together.
 */
export function backoffDelayMs(retryIndex: number, config: RetryConfig, random: Random): number {
  const capMs = Math.min(config.backoffMaxMs, config.backoffBaseMs * 2 ** Math.min(retryIndex, 30))
  return random.int(Math.floor(capMs) + 1)
}

/** One attempt's view of the call. */
export interface Attempt {
  /** 0 for the first attempt. */
  readonly index: number
  /** Aborted at the call's deadline or by the caller; cancel the RPC when it fires. */
  readonly signal: AbortSignal
  /** The call's deadline on the injected clock (`clock.nowMs()` scale). */
  readonly deadlineAtMs: number
  /** Milliseconds left until the deadline (> 0). */
  readonly remainingMs: number
}

export interface RetryLoopInit {
  readonly op: RetryOp
  readonly config: RetryConfig
  readonly clock: Clock
  readonly random: Random
  /** Budget of the whole call, retries and backoff included. */
  readonly deadlineMs: number
  readonly signal?: AbortSignal | undefined
  /**
   * Called when an attempt failed and will be retried, before the backoff: the caller updates its
   * routes (follows a hint, refreshes its table, leaves an endpoint) and says how soon the next
   * attempt may go. 'now' skips the backoff (a leader hint that names a known address: the next
   * attempt goes somewhere else, so waiting helps nobody); it still counts as an attempt.
   */
  readonly beforeRetry?: (err: KvError, route: RetryRoute) => RetryPace
  /** Called before each retry, after the backoff, so the caller can switch endpoint or follow a hint. */
  readonly onRetry?: (err: KvError, route: RetryRoute) => void
}

/** How soon a retry goes: after the jittered backoff, or at once. */
export type RetryPace = 'backoff' | 'now'

/**
 * Runs `run` until it succeeds, fails with an error that must not be retried, runs out of
 * attempts, or runs out of time. Throws the last attempt's KvError, DEADLINE_EXCEEDED when the
 * deadline fired, or CANCELLED when the caller's signal did. A backoff that would end after the
 * deadline is not slept: the last error is thrown at once, since it says more than a timeout.
 *
 * Writes never end with an error that claims more than is known. Once an attempt of a write has
 * failed in a way that may have applied it (`writeNotApplied` false: the answer was lost, the
 * proposal dropped...), a later attempt's NOT_LEADER or OVERLOADED says nothing about that earlier
 * one, so giving up then reports the outcome as unknown: DEADLINE_EXCEEDED when the time ran out,
 * else the earlier error's code (see `outcomeUnknown`).
 */
export async function withRetries<T>(init: RetryLoopInit, run: (attempt: Attempt) => Promise<T>): Promise<T> {
  const { clock, config } = init
  const deadlineAtMs = clock.nowMs() + init.deadlineMs
  const deadline = deadlineSignal(clock, init.deadlineMs, init.signal)
  const signal = deadline.signal
  const isWrite = init.op.kind === 'write'
  // The latest failure of a write attempt that may have applied it.
  let maybeApplied: KvError | undefined
  try {
    for (let index = 0; ; index++) {
      if (signal.aborted) throw abortError(signal)
      let err: KvError
      try {
        return await run({
          index,
          signal,
          deadlineAtMs,
          remainingMs: Math.max(1, deadlineAtMs - clock.nowMs()),
        })
      } catch (e) {
        if (e instanceof AssertionError) throw e
        err = kvErrorFromGrpc(e, signal)
      }
      if (isWrite && !errorCodeTable[err.code].writeNotApplied) maybeApplied = err
      const decision = decideRetry(err, init.op)
      if (!decision.retry) throw err
      if (index + 1 >= config.attemptsMax) throw outcomeUnknown(err, maybeApplied, 'attempts')
      const pace = init.beforeRetry?.(err, decision.route) ?? 'backoff'
      const delayMs = pace === 'now' ? 0 : backoffDelayMs(index, config, init.random)
      if (clock.nowMs() + delayMs >= deadlineAtMs) throw outcomeUnknown(err, maybeApplied, 'deadline')
      if (delayMs > 0) await sleep(clock, delayMs, signal)
      else if (signal.aborted) throw abortError(signal)
      init.onRetry?.(err, decision.route)
    }
  } finally {
    deadline.dispose()
  }
}

/**
 * The error a write gives up with (reads: `last` as is). `maybeApplied` is the latest attempt that
 * may have applied the write: when there is one, the outcome is unknown, and the answer must not
 * be an error that says the write certainly did not happen. Out of time: DEADLINE_EXCEEDED (the
 * contract for "a write ran out of time"; kvctl exits 4). Out of attempts: `last` when it does
 * not claim the write was not applied itself, else the code of `maybeApplied`.
 */
export function outcomeUnknown(
  last: KvError,
  maybeApplied: KvError | undefined,
  reason: 'deadline' | 'attempts',
): KvError {
  if (maybeApplied === undefined) return last
  if (reason === 'deadline') {
    return new KvError(
      ErrorCode.DeadlineExceeded,
      `deadline exceeded; the write may or may not have applied (an attempt failed with ${maybeApplied.code}, the last with ${last.code})`,
      { cause: last },
    )
  }
  if (!errorCodeTable[last.code].writeNotApplied) return last
  return new KvError(
    maybeApplied.code,
    `${maybeApplied.message}; the write may or may not have applied (the last attempt failed with ${last.code})`,
    { cause: last },
  )
}

/**
 * Waits `delayMs` on `clock`; rejects with the abort's KvError if `signal` fires first. The timer
 * keeps the process alive (`keepAlive`): the caller is blocked on this wait, so a script whose only
 * pending work is a backoff must not exit mid-call.
 */
export function sleep(clock: Clock, delayMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal))
      return
    }
    const onAbort = (): void => {
      timer.cancel()
      reject(abortError(signal))
    }
    const timer = clock.setTimer(
      delayMs,
      () => {
        signal.removeEventListener('abort', onAbort)
        resolve()
      },
      { keepAlive: true },
    )
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
