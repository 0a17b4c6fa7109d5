/** AbortSignal -> KvError, shared by the storage and shard rooms. */
import { ErrorCode, KvError } from '../common/errors.ts'

/**
 * The KvError for an aborted signal: DEADLINE_EXCEEDED when the reason is a deadline
 * (common/clock.ts DeadlineError, a DOMException TimeoutError, or a KvError already carrying
 * that code), CANCELLED otherwise.
 */
export function abortError(signal: AbortSignal): KvError {
  const reason: unknown = signal.reason
  if (
    reason instanceof KvError &&
    (reason.code === ErrorCode.DeadlineExceeded || reason.code === ErrorCode.Cancelled)
  )
    return reason
  const name = reason instanceof Error ? reason.name : ''
  if (name === 'DeadlineError' || name === 'TimeoutError')
    return new KvError(ErrorCode.DeadlineExceeded, 'deadline exceeded', { cause: reason })
  return new KvError(ErrorCode.Cancelled, 'cancelled', { cause: reason })
}

/** Throws `abortError(signal)` when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortError(signal)
}

export function closedError(what: string): KvError {
  return new KvError(ErrorCode.Unavailable, `${what} is closed`)
}
