/**
 * The parts of the Engine contract that every implementation shares, written once on top of
 * `iterate` and `write`: range export (chunked snapshot) and import (clear, then stream in).
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import { throwIfAborted } from './abort.ts'
import { compareBytes } from './bytes.ts'
import type {
  DeleteRangeChunkOptions,
  DeleteRangeChunkResult,
  Engine,
  Entry,
  ExportOptions,
  ImportOptions,
  ImportStats,
  KeyRange,
} from './engine.ts'

export function inRange(key: Uint8Array, range: KeyRange): boolean {
  return compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0
}

export function assertRange(range: KeyRange): void {
  assert(range.gte.length > 0, 'range lower bound is an empty key')
}

/** Engine.exportRange on top of Engine.iterate: the snapshot is the iterator's, taken now. */
export function exportRangeVia(
  engine: Pick<Engine, 'iterate'>,
  range: KeyRange,
  options: ExportOptions = {},
): AsyncIterableIterator<readonly Entry[]> {
  const chunkBytes = options.chunkBytes ?? limits.exportChunkBytes
  assert(Number.isSafeInteger(chunkBytes) && chunkBytes > 0, 'bad chunkBytes')
  const entries = engine.iterate(
    options.signal === undefined
      ? { gte: range.gte, lt: range.lt }
      : { gte: range.gte, lt: range.lt, signal: options.signal },
  )
  async function* chunks(): AsyncGenerator<readonly Entry[]> {
    try {
      let chunk: Entry[] = []
      let bytes = 0
      for await (const entry of entries) {
        chunk.push(entry)
        bytes += entry[0].length + entry[1].length
        if (bytes >= chunkBytes) {
          yield chunk
          chunk = []
          bytes = 0
        }
      }
      if (chunk.length > 0) yield chunk
    } finally {
      await entries.return?.()
    }
  }
  const generator = chunks()
  // A generator's `return()` before its first `next()` skips its body (and the `finally` above):
  // the view would stay open until the engine closes. Release it here in that case too.
  const iterator: AsyncIterableIterator<readonly Entry[]> = {
    [Symbol.asyncIterator]: () => iterator,
    next: () => generator.next(),
    return: async (value?: unknown) => {
      await entries.return?.()
      return await generator.return(value as undefined)
    },
  }
  return iterator
}

/** Engine.importRange on top of Engine.write (see the contract in engine.ts). */
export async function importRangeVia(
  engine: Pick<Engine, 'batch' | 'write'>,
  range: KeyRange,
  chunks: AsyncIterable<readonly Entry[]>,
  options: ImportOptions,
): Promise<ImportStats> {
  assertRange(range)
  throwIfAborted(options.signal)
  let entries = 0
  let bytes = 0
  // The batch being filled; written (unsynced) when the next chunk arrives, so that the last write
  // of the import is the synced one.
  let pending = engine.batch().deleteRange(range.gte, range.lt)
  let pendingHasChunk = false
  for await (const chunk of chunks) {
    throwIfAborted(options.signal)
    for (const [key] of chunk) {
      if (!inRange(key, range))
        throw new KvError(ErrorCode.InvalidArgument, 'imported key outside the range being imported')
    }
    if (chunk.length === 0) continue
    if (pendingHasChunk) {
      await engine.write(pending, { sync: false })
      pending = engine.batch()
    }
    pendingHasChunk = true
    for (const [key, value] of chunk) {
      pending.put(key, value)
      entries++
      bytes += key.length + value.length
    }
  }
  await engine.write(pending, { sync: options.sync })
  return { entries, bytes }
}

/** Engine.deleteRangeChunk on top of Engine.iterate and Engine.write: point deletes of one chunk. */
export async function deleteRangeChunkVia(
  engine: Pick<Engine, 'iterate' | 'batch' | 'write'>,
  range: KeyRange,
  options: DeleteRangeChunkOptions,
): Promise<DeleteRangeChunkResult> {
  assertRange(range)
  assert(Number.isSafeInteger(options.keysMax) && options.keysMax > 0, 'bad keysMax')
  const batch = engine.batch()
  let keys = 0
  // One more than asked: seeing it says the range is not done yet, without a second call.
  for await (const [key] of engine.iterate({ gte: range.gte, lt: range.lt, limit: options.keysMax + 1 })) {
    if (keys === options.keysMax) return await write(false)
    batch.del(key)
    keys++
  }
  return await write(true)

  async function write(done: boolean): Promise<DeleteRangeChunkResult> {
    if (keys > 0) await engine.write(batch, { sync: options.sync ?? false })
    return { keys, done }
  }
}
