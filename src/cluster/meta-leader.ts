/**
 * What the meta leader's workers (the mover, the rebalancing executor) share: the meta shard's
 * store when this node leads it (else NOT_LEADER with the leader it knows), a call under a
 * deadline of the injected clock, and how a time and an error go into a record.
 */
import { deadlineSignal, type Clock } from '../common/clock.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { LocalMeta } from './agent.ts'
import { MetaStore } from './meta-store.ts'

/** The meta shard's store on this node, which must lead it. */
export function leaderMetaStore(local: LocalMeta | undefined, signal: AbortSignal): MetaStore {
  if (local?.isLeader !== true)
    throw new KvError(ErrorCode.NotLeader, 'this node does not lead the meta shard', {
      details: local?.leaderId === null || local === undefined ? {} : { leaderHint: local.leaderId },
    })
  return new MetaStore(local.replica, signal)
}

/** `run` with a signal that aborts after `ms` of `clock`'s time. */
export async function withDeadline<T>(
  clock: Clock,
  ms: number,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const { signal, dispose } = deadlineSignal(clock, ms)
  try {
    return await run(signal)
  } finally {
    dispose()
  }
}

/**
 * A wall-clock reading as a record stores it: whole milliseconds (records.ts decodes unsigned
 * integers; a Clock may read fractions, as MetaStore.heartbeat also allows for).
 */
export function wholeMs(ms: number): number {
  return Math.max(0, Math.floor(ms))
}

/** An error in one line for a record or a log field: `CODE: message` for a KvError. */
export function describeError(err: unknown): string {
  return isKvError(err) ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err)
}
