/**
 * MemoryEngine: a sorted in-memory Engine with the same semantics as RocksEngine, for unit tests
 * and the simulator. Deterministic: no timers, no I/O; every promise settles from the calls made.
 *
 * Snapshots are copy-on-write: `iterate`/`exportRange` keep a reference to the current sorted
 * array and mark it shared; the next write copies it before changing anything. The same mechanism
 * remembers the durable state (the state after the last synced write), so `crash()` can model the
 * loss of unsynced writes the way a power cut loses an un-fsynced RocksDB WAL tail.
 */
import { assert } from '../common/assert.ts'
import { throwIfAborted, closedError } from './abort.ts'
import { compareBytes } from './bytes.ts'
import { assertRange, deleteRangeChunkVia, exportRangeVia, importRangeVia } from './engine-common.ts'
import {
  WriteBatch,
  type Engine,
  type Entry,
  type ExportOptions,
  type ImportOptions,
  type ImportStats,
  type DeleteRangeChunkOptions,
  type DeleteRangeChunkResult,
  type IterateOptions,
  type KeyRange,
  type WriteOptions,
} from './engine.ts'

/** Fault and latency hooks for the simulator. All optional; absent hooks cost nothing. */
export interface MemoryEngineHooks {
  /**
   * Runs before a batch is applied. May await (simulated disk latency from the simulator's event
   * queue) or throw (a simulated I/O error: the batch is then not applied and `write` rejects).
   */
  beforeWrite?(batch: WriteBatch, options: WriteOptions): Promise<void> | void
}

export interface MemoryEngineInit {
  /** Initial contents (any order; later duplicates win). They count as durable. */
  readonly entries?: Iterable<Entry>
  readonly hooks?: MemoryEngineHooks
}

export interface MemoryEngineStats {
  /** `write` calls that applied a batch. */
  readonly writes: number
  /** Of those, the ones with `sync: true`. */
  readonly syncs: number
}

export class MemoryEngine implements Engine {
  // Invariant: `entries` is sorted by key, strictly increasing (no duplicates).
  private entries: Entry[] = []
  // True when a snapshot (iterator or the durable image) references `entries`: copy before writing.
  private shared = false
  private durable: Entry[] = []
  private closed = false
  private readonly inflight = new Set<Promise<void>>()
  private readonly hooks: MemoryEngineHooks
  private writeCount = 0
  private syncCount = 0

  constructor(init: MemoryEngineInit = {}) {
    this.hooks = init.hooks ?? {}
    if (init.entries !== undefined) {
      const batch = new WriteBatch()
      for (const [key, value] of init.entries) batch.put(key, value)
      this.apply(batch)
    }
    this.markDurable()
  }

  get stats(): MemoryEngineStats {
    return { writes: this.writeCount, syncs: this.syncCount }
  }

  /** Number of keys stored now. */
  get size(): number {
    return this.entries.length
  }

  get(key: Uint8Array): Promise<Uint8Array | null> {
    assert(key.length > 0, 'empty key')
    if (this.closed) return Promise.reject(closedError('storage engine'))
    const i = lowerBound(this.entries, key)
    const entry = this.entries[i]
    return Promise.resolve(entry !== undefined && compareBytes(entry[0], key) === 0 ? entry[1].slice() : null)
  }

  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]> {
    for (const key of keys) assert(key.length > 0, 'empty key')
    if (this.closed) return Promise.reject(closedError('storage engine'))
    return Promise.resolve(
      keys.map((key) => {
        const entry = this.entries[lowerBound(this.entries, key)]
        return entry !== undefined && compareBytes(entry[0], key) === 0 ? entry[1].slice() : null
      }),
    )
  }

  iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    assertRange(options)
    const limit = options.limit ?? Number.POSITIVE_INFINITY
    assert(limit >= 0, 'negative limit')
    const view = this.entries
    this.shared = true
    let at = lowerBound(view, options.gte)
    let count = 0
    let done = this.closed
    const failClosed = this.closed
    const isClosed = (): boolean => this.closed
    const lt = options.lt.slice()
    const signal = options.signal
    const iterator: AsyncIterableIterator<Entry> = {
      [Symbol.asyncIterator]: () => iterator,
      next: (): Promise<IteratorResult<Entry>> => {
        if (failClosed || (!done && isClosed())) {
          done = true
          return Promise.reject(closedError('storage engine'))
        }
        if (done) return Promise.resolve({ done: true, value: undefined })
        try {
          throwIfAborted(signal)
        } catch (err) {
          done = true
          return Promise.reject(err)
        }
        const entry = view[at]
        if (entry === undefined || count >= limit || compareBytes(entry[0], lt) >= 0) {
          done = true
          return Promise.resolve({ done: true, value: undefined })
        }
        at++
        count++
        return Promise.resolve({ done: false, value: [entry[0].slice(), entry[1].slice()] as const })
      },
      return: (): Promise<IteratorResult<Entry>> => {
        done = true
        return Promise.resolve({ done: true, value: undefined })
      },
    }
    return iterator
  }

  batch(): WriteBatch {
    return new WriteBatch()
  }

  write(batch: WriteBatch, options: WriteOptions): Promise<void> {
    batch.markWritten()
    if (this.closed) return Promise.reject(closedError('storage engine'))
    const hook = this.hooks.beforeWrite
    if (hook === undefined) {
      this.commit(batch, options)
      return Promise.resolve()
    }
    const done = (async (): Promise<void> => {
      await hook(batch, options)
      this.commit(batch, options)
    })()
    this.inflight.add(done)
    const forget = (): void => {
      this.inflight.delete(done)
    }
    done.then(forget, forget)
    return done
  }

  approximateBytes(range: KeyRange): Promise<number> {
    assertRange(range)
    if (this.closed) return Promise.reject(closedError('storage engine'))
    let bytes = 0
    for (let i = lowerBound(this.entries, range.gte); i < this.entries.length; i++) {
      const [key, value] = this.entries[i]!
      if (compareBytes(key, range.lt) >= 0) break
      bytes += key.length + value.length
    }
    return Promise.resolve(bytes)
  }

  exportRange(range: KeyRange, options?: ExportOptions): AsyncIterableIterator<readonly Entry[]> {
    return exportRangeVia(this, range, options)
  }

  importRange(
    range: KeyRange,
    chunks: AsyncIterable<readonly Entry[]>,
    options: ImportOptions,
  ): Promise<ImportStats> {
    return importRangeVia(this, range, chunks, options)
  }
  deleteRangeChunk(range: KeyRange, options: DeleteRangeChunkOptions): Promise<DeleteRangeChunkResult> {
    return deleteRangeChunkVia(this, range, options)
  }

  async close(): Promise<void> {
    this.closed = true
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
  }

  /**
   * Simulates a crash: closes this engine and returns a new one holding what was durable. With
   * `loseUnsynced` (default true) writes since the last synced write are gone; without it they
   * survive (the OS happened to flush them). Either way, each batch is all or nothing.
   */
  crash(options: { readonly loseUnsynced?: boolean; readonly hooks?: MemoryEngineHooks } = {}): MemoryEngine {
    this.closed = true
    const image = options.loseUnsynced === false ? this.entries : this.durable
    const next = new MemoryEngine(options.hooks === undefined ? {} : { hooks: options.hooks })
    next.entries = image
    next.shared = true
    next.markDurable()
    return next
  }

  private commit(batch: WriteBatch, options: WriteOptions): void {
    // A write racing close(): close waits for it, so it still lands (like RocksDB's close).
    if (batch.length === 0) return // an empty batch is a no-op, as in RocksEngine
    this.apply(batch)
    this.writeCount++
    if (options.sync) {
      this.syncCount++
      this.markDurable()
    }
  }

  private markDurable(): void {
    this.durable = this.entries
    this.shared = true
  }

  private apply(batch: WriteBatch): void {
    if (batch.length === 0) return
    if (this.shared) {
      this.entries = this.entries.slice()
      this.shared = false
    }
    const entries = this.entries
    for (const op of batch.ops()) {
      switch (op.kind) {
        case 'put': {
          const i = lowerBound(entries, op.key)
          const found = entries[i]
          if (found !== undefined && compareBytes(found[0], op.key) === 0) entries[i] = [op.key, op.value]
          else entries.splice(i, 0, [op.key, op.value])
          break
        }
        case 'del': {
          const i = lowerBound(entries, op.key)
          const found = entries[i]
          if (found !== undefined && compareBytes(found[0], op.key) === 0) entries.splice(i, 1)
          break
        }
        case 'deleteRange': {
          if (compareBytes(op.gte, op.lt) >= 0) break
          const from = lowerBound(entries, op.gte)
          const to = lowerBound(entries, op.lt)
          if (to > from) entries.splice(from, to - from)
          break
        }
        default:
          assert(false, 'unknown batch operation')
      }
    }
  }
}

/** The first position whose key is >= `key`. */
function lowerBound(entries: readonly Entry[], key: Uint8Array): number {
  let lo = 0
  let hi = entries.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (compareBytes((entries[mid] as Entry)[0], key) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}
