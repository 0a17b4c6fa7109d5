/**
 * The sending side of a snapshot stream: the prelude (the MsgSnap, whose meta says what the data
 * is at) and then the shard's ranges, chunk by chunk, from views taken when this is called (the
 * host calls it between loop iterations, when nothing is in flight, so the views hold exactly the
 * durable applied state the meta describes). Every frame first takes its bytes from the node's
 * rate limiter (`--snapshot-rate`); the transport adds flow control (chunks in flight).
 */
import type { MsgSnap } from '../raft/index.ts'
import type { Engine, Entry, KeyRange } from '../storage/index.ts'
import { encodeSnapshotEntries, encodeSnapshotPrelude, frame } from './peer-payload.ts'
import type { RateLimiter } from './rate-limiter.ts'

export interface SnapshotFramesOptions {
  readonly throttle: RateLimiter
  readonly signal: AbortSignal
  /** Called with the size of every data frame handed on (progress). */
  readonly onBytes: (bytes: number) => void
}

export interface SnapshotFrames extends AsyncIterable<Uint8Array> {
  /** Releases the views (idempotent); call when the send ends, whether it started or not. */
  release(): Promise<void>
}

export function snapshotFrames(
  engine: Engine,
  message: MsgSnap,
  ranges: readonly KeyRange[],
  options: SnapshotFramesOptions,
): SnapshotFrames {
  const exports: AsyncIterableIterator<readonly Entry[]>[] = ranges.map((range) => engine.exportRange(range))
  async function* frames(): AsyncGenerator<Uint8Array> {
    yield frame(encodeSnapshotPrelude(message))
    for (const chunks of exports)
      for await (const chunk of chunks) {
        const f = frame(encodeSnapshotEntries(chunk))
        await options.throttle.take(f.length, options.signal)
        options.onBytes(f.length)
        yield f
      }
  }
  const iterable = frames()
  return {
    [Symbol.asyncIterator]: () => iterable,
    async release(): Promise<void> {
      await iterable.return(undefined)
      await Promise.allSettled(exports.map((it) => it.return?.()))
    },
  }
}
