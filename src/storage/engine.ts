/**
 * The Engine: an ordered byte-key store with atomic batches and point-in-time iteration. One
 * Engine holds everything a node stores (ARCHITECTURE.md section 5); keys.ts says which key
 * means what. Two implementations pass one compliance suite
 * (test/unit/storage/engine-compliance.ts, in the style of Level/abstract-level's test suite):
 * RocksEngine (engine-rocksdb.ts) for production and MemoryEngine (engine-memory.ts) for unit
 * tests and the simulator.
 *
 * Contract shared by every implementation:
 * - Keys are compared bytewise (unsigned, shorter prefix first). A key is never empty: an empty key
 *   is a programmer error (assert). Values may be empty.
 * - Returned keys and values are owned by the caller (fresh copies, or buffers nobody else holds).
 *   Keys and values handed in may be reused by the caller once the call returns.
 * - `write()` is atomic: after a crash either the whole batch is there or none of it. With
 *   `sync: true` it is durable (fsynced) before the promise resolves; a later sync write also
 *   makes every earlier write durable. An empty batch is a no-op (it syncs nothing). Concurrent writes are each atomic; their relative order is
 *   unspecified unless the caller awaits one before issuing the next.
 * - `iterate()` and `exportRange()` take their point-in-time view when they are CALLED (not at the
 *   first `next()`); writes after the call are not seen. Consume them to the end or stop early
 *   (`break` in for-await calls `return()`), which releases the snapshot.
 * - After `close()` every operation rejects with KvError UNAVAILABLE; open iterators end the same
 *   way. `close()` waits for writes in flight and is idempotent.
 * - A failed write (I/O error, disk full) rejects with KvError INTERNAL carrying the cause. The
 *   caller decides (STYLE.md 7.4: for a replica a storage failure is fail-stop).
 */
import { assert } from '../common/assert.ts'

/** A key range [gte, lt). `lt` must be greater than `gte` for the range to hold anything. */
export interface KeyRange {
  readonly gte: Uint8Array
  readonly lt: Uint8Array
}

export interface IterateOptions extends KeyRange {
  /** At most this many entries (default: all). */
  readonly limit?: number
  /** Aborting makes the next `next()` reject with KvError CANCELLED or DEADLINE_EXCEEDED. */
  readonly signal?: AbortSignal
}

export type Entry = readonly [key: Uint8Array, value: Uint8Array]

export interface WriteOptions {
  /** Fsync before resolving. Every acknowledged replicated write uses `sync: true`. */
  readonly sync: boolean
}

export interface ExportOptions {
  /** Approximate bytes of keys and values per chunk (default `limits.exportChunkBytes`). */
  readonly chunkBytes?: number
  readonly signal?: AbortSignal
}

export interface ImportOptions {
  readonly sync: boolean
  readonly signal?: AbortSignal
}

export interface ImportStats {
  readonly entries: number
  readonly bytes: number
}

export interface DeleteRangeChunkOptions {
  /** At most this many keys are deleted by one call (an engine with a native range delete may drop all). */
  readonly keysMax: number
  /** Fsync the deletion (default false: a dropped range that reappears after a crash is dropped again). */
  readonly sync?: boolean
}

export interface DeleteRangeChunkResult {
  /** Keys deleted by this call. */
  readonly keys: number
  /** True when the range held nothing more after this call. */
  readonly done: boolean
}

/** One operation of a WriteBatch, in the order it was added. */
export type BatchOperation =
  | { readonly kind: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly kind: 'del'; readonly key: Uint8Array }
  | { readonly kind: 'deleteRange'; readonly gte: Uint8Array; readonly lt: Uint8Array }

/**
 * A list of writes applied atomically and in order by `Engine.write` (a later operation wins over
 * an earlier one on the same key). Keys and values are copied when added, so the caller may reuse
 * its buffers. A batch is written at most once.
 */
export class WriteBatch {
  private readonly operations: BatchOperation[] = []
  private bytes = 0
  private written = false

  put(key: Uint8Array, value: Uint8Array): this {
    this.checkOpen()
    assert(key.length > 0, 'empty key')
    this.operations.push({ kind: 'put', key: key.slice(), value: value.slice() })
    this.bytes += key.length + value.length
    return this
  }

  del(key: Uint8Array): this {
    this.checkOpen()
    assert(key.length > 0, 'empty key')
    this.operations.push({ kind: 'del', key: key.slice() })
    this.bytes += key.length
    return this
  }

  /** Deletes every key in [gte, lt), including keys put earlier in this batch. */
  deleteRange(gte: Uint8Array, lt: Uint8Array): this {
    this.checkOpen()
    assert(gte.length > 0, 'empty key')
    this.operations.push({ kind: 'deleteRange', gte: gte.slice(), lt: lt.slice() })
    this.bytes += gte.length + lt.length
    return this
  }

  /** Operations added so far. */
  get length(): number {
    return this.operations.length
  }

  /** Bytes of keys and values added so far. */
  get byteLength(): number {
    return this.bytes
  }

  /** The operations in order. For engines and wrappers; callers add through put/del/deleteRange. */
  ops(): readonly BatchOperation[] {
    return this.operations
  }

  /** Called by the engine that writes the batch; a batch is written once. */
  markWritten(): void {
    this.checkOpen()
    this.written = true
  }

  private checkOpen(): void {
    assert(!this.written, 'write batch already written')
  }
}

export interface Engine {
  /** The value at `key`, or null. */
  get(key: Uint8Array): Promise<Uint8Array | null>
  /** The values at `keys` (same order), read from one point-in-time view. */
  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]>
  /** Forward iteration over [gte, lt) in bytewise key order, from the view at call time. */
  iterate(options: IterateOptions): AsyncIterableIterator<Entry>
  /** A new, empty batch for `write`. */
  batch(): WriteBatch
  /** Applies `batch` atomically (see the file comment for durability). */
  write(batch: WriteBatch, options: WriteOptions): Promise<void>
  /**
   * A consistent snapshot of `range` (taken at call time) as chunks of entries in key order, for
   * Raft snapshots and shard moves. Chunks are bounded by `chunkBytes` (one entry may exceed it).
   */
  exportRange(range: KeyRange, options?: ExportOptions): AsyncIterableIterator<readonly Entry[]>
  /**
   * Replaces the contents of `range` with the streamed entries: the range is cleared first, then
   * each chunk is written as one batch; the last write honours `sync`. Not atomic as a whole: on
   * failure the range holds a prefix of the stream, and the caller re-imports (which clears it
   * again). Every key must lie in `range` (else KvError INVALID_ARGUMENT, and that chunk is not
   * written).
   */
  importRange(
    range: KeyRange,
    chunks: AsyncIterable<readonly Entry[]>,
    options: ImportOptions,
  ): Promise<ImportStats>
  /**
   * An estimate of the bytes `range` takes on disk (RocksDB's approximate size of the files; data
   * still in memtables is not counted). For operators (shard sizes), never for decisions.
   */
  approximateBytes(range: KeyRange): Promise<number>
  /**
   * Deletes the first keys of `range` (up to `keysMax`; all of them where the engine can drop a
   * range natively) in one atomic write, and says whether the range is now empty. Drops a large
   * range in bounded steps that a caller can pace and resume after a crash (a moved replica's
   * data). The caller makes sure nothing else writes the range meanwhile. Bounded memory: one
   * chunk of keys. Unlike a batch's `deleteRange`, it never reads the range under the write lock.
   */
  deleteRangeChunk(range: KeyRange, options: DeleteRangeChunkOptions): Promise<DeleteRangeChunkResult>
  /** Waits for writes in flight, ends open iterators, releases the data directory. Idempotent. */
  close(): Promise<void>
}
