/**
 * RocksEngine: the Engine on RocksDB, through the `rocksdb` npm package (leveldown-style callback
 * API, abstract-leveldown 7). One RocksEngine per data directory, across every process: a lock
 * that no file deletion defeats (dir-lock.ts) and RocksDB's LOCK file keep a second opener out, and
 * that failure is a StorageLockedError naming the directory. Before opening, the write-ahead logs
 * are checked (wal-check.ts): a damaged log is a StorageCorruptError, since RocksDB would drop the
 * acknowledged writes after the damage without a word; a torn tail is logged and let through.
 *
 * Mapping of the contract (engine.ts):
 * - `get` (and `multiGet` of one key) uses the native get: one RocksDB Get on a worker thread,
 *   nothing on the main thread. `multiGet` of several keys uses the native getMany, which reads
 *   them all from one snapshot. The binding's getMany takes that snapshot on the main thread
 *   (DB mutex), which under load cost ~70 us of main-thread time per single-key read, more than
 *   the rest of a served get.
 * - `iterate` creates the native iterator at call time; the binding takes a RocksDB snapshot in
 *   the iterator's constructor, so the view is fixed when `iterate` returns.
 * - `write` is one native WriteBatch with `sync` as asked.
 * - The binding has no DeleteRange, so a batch's `deleteRange` is expanded into point deletes of
 *   the keys in the range at write time. That expansion reads the database, so such a write runs
 *   exclusively (no other write in flight, none admitted until it is done) and the read plus the
 *   write are atomic with respect to every other write of this engine, which is the only writer
 *   of the directory.
 *   NB(storage): the expansion costs O(keys in range) memory; dropping a very large moved shard
 *   should move to a native DeleteRange (needs a newer binding) or a chunked, resumable clear.
 */
import { mkdir } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { closedError, throwIfAborted } from './abort.ts'
import { compareBytes } from './bytes.ts'
import { DirLockedError, lockDirectory, type DirLock } from './dir-lock.ts'
import { checkWalFiles } from './wal-check.ts'
import { assertRange, deleteRangeChunkVia, exportRangeVia, importRangeVia, inRange } from './engine-common.ts'
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

// The slice of the leveldown API we use (the package ships no types).
type Callback<T = void> = (err: Error | null | undefined, result?: T) => void
interface NativeIterator {
  next(callback: (err: Error | null | undefined, key?: Buffer, value?: Buffer) => void): void
  end(callback: (err?: Error | null) => void): void
}
interface NativeOp {
  readonly type: 'put' | 'del'
  readonly key: Buffer
  readonly value?: Buffer
}
interface NativeDb {
  open(options: Record<string, unknown>, callback: (err?: Error | null) => void): void
  close(callback: (err?: Error | null) => void): void
  get(key: Buffer, options: Record<string, unknown>, callback: Callback<Buffer>): void
  getMany(keys: Buffer[], options: Record<string, unknown>, callback: Callback<(Buffer | undefined)[]>): void
  batch(ops: NativeOp[], options: Record<string, unknown>, callback: (err?: Error | null) => void): void
  iterator(options: Record<string, unknown>): NativeIterator
  getProperty(name: string): string
  approximateSize(start: Buffer, end: Buffer, callback: Callback<number>): void
}
type NativeFactory = (location: string) => NativeDb

let nativeFactory: NativeFactory | undefined
/** Loads the native binding on first use, so importing storage/ does not load RocksDB (the sim never does). */
function loadNative(): NativeFactory {
  nativeFactory ??= createRequire(import.meta.url)('rocksdb') as NativeFactory
  return nativeFactory
}

/** Opening failed because another process (or another handle in this one) holds the directory's LOCK. */
export class StorageLockedError extends KvError {
  readonly dataDir: string
  constructor(dataDir: string, cause: unknown) {
    super(
      ErrorCode.Unavailable,
      `data directory ${dataDir} is locked: another kvd process (or another handle in this process) has it open`,
      { cause, details: { field: 'dataDir' } },
    )
    this.dataDir = dataDir
  }
}

/**
 * A write-ahead log is damaged: a record fails its check and valid records follow it (or a whole
 * record with data after it ends the log). Opening would drop those acknowledged writes silently,
 * so the node refuses to start. Recovery: remove this node's data directory and let the node be
 * rebuilt from its peers (a new replica catches up from the shard's leader).
 */
export class StorageCorruptError extends KvError {
  readonly file: string
  readonly offset: number
  constructor(file: string, offset: number, reason: string, validAfter: number) {
    super(
      ErrorCode.Internal,
      `write-ahead log ${file} is damaged at byte ${offset} (${reason}) with ${validAfter} valid record(s) after it: ` +
        'opening would drop acknowledged writes, so this node refuses to start; remove its data directory and let it be rebuilt from its peers',
    )
    this.file = file
    this.offset = offset
  }
}

export interface RocksEngineInit {
  /** The data directory; created if missing. */
  readonly dir: string
  /** RocksDB block cache bytes (default: the binding's 8 MiB). */
  readonly cacheBytes?: number
  /** RocksDB memtable bytes before a flush (default: the binding's 4 MiB). */
  readonly writeBufferBytes?: number
}

export interface RocksEngineComponents {
  readonly logger: Logger
}

const readOptions = { asBuffer: true, fillCache: true } as const
/** RocksDB's Status::NotFound().ToString(), which the binding's get reports as an error. */
const notFound = /^NotFound\b/

const toBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

function isLockError(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err)
  return /\bLOCK\b|lock hold by current process|While lock file/i.test(message)
}

/** Opens (creating if needed) the RocksDB in `init.dir`. Rejects with StorageLockedError if it is in use. */
export async function openRocksEngine(
  init: RocksEngineInit,
  components: RocksEngineComponents,
): Promise<RocksEngine> {
  const log = components.logger.child({ component: 'rocksdb' })
  await mkdir(init.dir, { recursive: true })
  let lock: DirLock
  try {
    lock = await lockDirectory(init.dir)
  } catch (err) {
    if (err instanceof DirLockedError) throw new StorageLockedError(init.dir, err)
    throw err
  }
  try {
    for (const { file, verdict } of await checkWalFiles(init.dir)) {
      if (verdict.kind === 'damaged') {
        log.fatal(
          { file, offset: verdict.offset, reason: verdict.reason, validAfter: verdict.validAfter },
          'write-ahead log damaged: refusing to start',
        )
        throw new StorageCorruptError(file, verdict.offset, verdict.reason, verdict.validAfter)
      }
      if (verdict.kind === 'torn-tail')
        log.warn(
          { file, offset: verdict.offset, records: verdict.records },
          'write-ahead log has a torn tail',
        )
    }
    const db = loadNative()(init.dir)
    const options: Record<string, unknown> = { createIfMissing: true, errorIfExists: false }
    if (init.cacheBytes !== undefined) options['cacheSize'] = init.cacheBytes
    if (init.writeBufferBytes !== undefined) options['writeBufferSize'] = init.writeBufferBytes
    await new Promise<void>((resolve, reject) => {
      db.open(options, (err) => {
        if (err === null || err === undefined) return resolve()
        if (isLockError(err)) return reject(new StorageLockedError(init.dir, err))
        reject(
          new KvError(ErrorCode.Internal, `cannot open RocksDB in ${init.dir}: ${err.message}`, {
            cause: err,
          }),
        )
      })
    })
    log.info({ dir: init.dir }, 'storage opened')
    return new RocksEngine(init.dir, db, log, lock)
  } catch (err) {
    await lock.release()
    throw err
  }
}

/** Lets plain writes run concurrently and a range-deleting write run alone, first come first served. */
class WriteGate {
  private shared = 0
  private exclusive = false
  private readonly waiting: { readonly exclusive: boolean; readonly grant: () => void }[] = []

  acquire(exclusive: boolean): Promise<void> {
    if (this.waiting.length === 0 && this.canEnter(exclusive)) {
      this.enter(exclusive)
      return Promise.resolve()
    }
    return new Promise((resolve) => this.waiting.push({ exclusive, grant: resolve }))
  }

  release(exclusive: boolean): void {
    if (exclusive) this.exclusive = false
    else this.shared--
    assert(this.shared >= 0, 'write gate released more than acquired')
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as (typeof this.waiting)[number]
      if (!this.canEnter(next.exclusive)) break
      this.waiting.shift()
      this.enter(next.exclusive)
      next.grant()
    }
  }

  get idle(): boolean {
    return this.shared === 0 && !this.exclusive && this.waiting.length === 0
  }

  private canEnter(exclusive: boolean): boolean {
    return exclusive ? this.shared === 0 && !this.exclusive : !this.exclusive
  }

  private enter(exclusive: boolean): void {
    if (exclusive) this.exclusive = true
    else this.shared++
  }
}

/** RocksDB's sizes and compaction work at one moment (RocksEngine.sizes). */
export interface RocksSizes {
  /** rocksdb.estimate-live-data-size: an estimate of the live data in SST files. */
  readonly liveDataBytes: number
  /** rocksdb.total-sst-files-size: every SST file, obsolete versions included. */
  readonly sstFilesBytes: number
  /** rocksdb.cur-size-all-mem-tables: the memtables not yet flushed. */
  readonly memtableBytes: number
  /** rocksdb.estimate-pending-compaction-bytes: what compaction must still rewrite. */
  readonly pendingCompactionBytes: number
  /** rocksdb.num-running-compactions. */
  readonly runningCompactions: number
}

export class RocksEngine implements Engine {
  private closed = false
  private closing: Promise<void> | undefined
  private readonly gate = new WriteGate()
  private readonly inflight = new Set<Promise<unknown>>()
  private readonly iterators = new Set<NativeIterator>()

  constructor(
    readonly dir: string,
    private readonly db: NativeDb,
    private readonly log: Logger,
    private readonly lock: DirLock,
  ) {}

  get(key: Uint8Array): Promise<Uint8Array | null> {
    assert(key.length > 0, 'empty key')
    if (this.closed) return Promise.reject(closedError('storage engine'))
    return this.track(
      new Promise((resolve, reject) => {
        this.db.get(toBuffer(key), readOptions, (err, value) => {
          if (err !== null && err !== undefined) {
            // The binding reports a missing key as an error whose message is RocksDB's status.
            if (notFound.test(err.message)) return resolve(null)
            return reject(this.ioError('read', err))
          }
          assert(value !== undefined, 'get returned no value')
          resolve(value)
        })
      }),
    )
  }

  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]> {
    for (const key of keys) assert(key.length > 0, 'empty key')
    if (this.closed) return Promise.reject(closedError('storage engine'))
    if (keys.length === 0) return Promise.resolve([])
    if (keys.length === 1) return this.get(keys[0] as Uint8Array).then((value) => [value])
    return this.track(
      new Promise((resolve, reject) => {
        this.db.getMany(keys.map(toBuffer), readOptions, (err, values) => {
          if (err !== null && err !== undefined) return reject(this.ioError('read', err))
          assert(values !== undefined && values.length === keys.length, 'getMany returned a wrong count')
          resolve(values.map((v) => v ?? null))
        })
      }),
    )
  }

  iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    assertRange(options)
    const limit = options.limit ?? -1
    assert(limit === -1 || (Number.isSafeInteger(limit) && limit >= 0), 'bad limit')
    const signal = options.signal
    if (this.closed || limit === 0 || compareBytes(options.gte, options.lt) >= 0) {
      const failClosed = this.closed
      return emptyIterator(failClosed)
    }
    const native = this.db.iterator({
      gte: toBuffer(options.gte),
      lt: toBuffer(options.lt),
      limit: limit > 0x7fff_ffff ? -1 : limit,
      keys: true,
      values: true,
      keyAsBuffer: true,
      valueAsBuffer: true,
      fillCache: false,
    })
    this.iterators.add(native)
    let finished = false
    const finish = (): Promise<void> => {
      if (finished) return Promise.resolve()
      finished = true
      if (!this.iterators.delete(native)) return Promise.resolve() // close() already ended it
      return new Promise((resolve) => native.end(() => resolve()))
    }
    const iterator: AsyncIterableIterator<Entry> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async (): Promise<IteratorResult<Entry>> => {
        if (finished) {
          if (this.closed) throw closedError('storage engine')
          return { done: true, value: undefined }
        }
        if (this.closed) {
          finished = true
          throw closedError('storage engine')
        }
        try {
          throwIfAborted(signal)
        } catch (err) {
          await finish()
          throw err
        }
        const entry = await new Promise<Entry | undefined>((resolve, reject) => {
          native.next((err, key, value) => {
            if (err !== null && err !== undefined) return reject(err)
            if (key === undefined) return resolve(undefined)
            assert(value !== undefined, 'iterator returned a key without a value')
            resolve([key, value])
          })
        }).catch(async (err: unknown) => {
          await finish()
          throw this.closed ? closedError('storage engine') : this.ioError('iterate', err)
        })
        if (entry === undefined) {
          await finish()
          return { done: true, value: undefined }
        }
        return { done: false, value: entry }
      },
      return: async (): Promise<IteratorResult<Entry>> => {
        await finish()
        return { done: true, value: undefined }
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
    const hasRange = batch.ops().some((op) => op.kind === 'deleteRange')
    return this.track(this.writeGated(batch, options, hasRange))
  }

  approximateBytes(range: KeyRange): Promise<number> {
    assertRange(range)
    if (this.closed) return Promise.reject(closedError('storage engine'))
    return this.track(
      new Promise((resolve, reject) => {
        this.db.approximateSize(toBuffer(range.gte), toBuffer(range.lt), (err, size) => {
          if (err !== null && err !== undefined) return reject(this.ioError('read', err))
          resolve(Number(size ?? 0))
        })
      }),
    )
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

  /**
   * RocksDB's own view of its size and compaction work (for the metrics), read from its
   * properties at call time; a property the library does not answer with a number reads as 0.
   * Undefined once closed.
   */
  sizes(): RocksSizes | undefined {
    if (this.closed) return undefined
    const read = (name: string): number => {
      const n = Number(this.db.getProperty(name))
      return Number.isFinite(n) && n >= 0 ? n : 0
    }
    return {
      liveDataBytes: read('rocksdb.estimate-live-data-size'),
      sstFilesBytes: read('rocksdb.total-sst-files-size'),
      memtableBytes: read('rocksdb.cur-size-all-mem-tables'),
      pendingCompactionBytes: read('rocksdb.estimate-pending-compaction-bytes'),
      runningCompactions: read('rocksdb.num-running-compactions'),
    }
  }

  /** A RocksDB property (e.g. 'rocksdb.estimate-num-keys'), for status and metrics. */
  property(name: string): string {
    if (this.closed) throw closedError('storage engine')
    return this.db.getProperty(name)
  }

  close(): Promise<void> {
    this.closing ??= this.closeOnce()
    return this.closing
  }

  private async closeOnce(): Promise<void> {
    this.closed = true
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
    const open = [...this.iterators]
    this.iterators.clear()
    await Promise.all(open.map((it) => new Promise<void>((resolve) => it.end(() => resolve()))))
    await new Promise<void>((resolve, reject) =>
      this.db.close((err) =>
        err === null || err === undefined ? resolve() : reject(this.ioError('close', err)),
      ),
    )
    await this.lock.release()
    this.log.info({ dir: this.dir }, 'storage closed')
  }

  private async writeGated(batch: WriteBatch, options: WriteOptions, exclusive: boolean): Promise<void> {
    await this.gate.acquire(exclusive)
    try {
      const ops = exclusive ? await this.expandRanges(batch) : nativeOps(batch)
      // abstract-leveldown skips an empty array without calling RocksDB: an empty batch is a no-op.
      if (ops.length === 0) return
      await new Promise<void>((resolve, reject) => {
        this.db.batch(ops, { sync: options.sync }, (err) =>
          err === null || err === undefined ? resolve() : reject(this.ioError('write', err)),
        )
      })
    } finally {
      this.gate.release(exclusive)
    }
  }

  /** Native ops for `batch` with each deleteRange replaced by deletes of the keys it covers now. */
  private async expandRanges(batch: WriteBatch): Promise<NativeOp[]> {
    const out: NativeOp[] = []
    // Keys put earlier in this batch: a later deleteRange must delete them too.
    const putSoFar: Uint8Array[] = []
    for (const op of batch.ops()) {
      switch (op.kind) {
        case 'put':
          out.push({ type: 'put', key: toBuffer(op.key), value: toBuffer(op.value) })
          putSoFar.push(op.key)
          break
        case 'del':
          out.push({ type: 'del', key: toBuffer(op.key) })
          break
        case 'deleteRange': {
          if (compareBytes(op.gte, op.lt) >= 0) break
          const range = { gte: op.gte, lt: op.lt }
          for (const key of putSoFar) if (inRange(key, range)) out.push({ type: 'del', key: toBuffer(key) })
          for await (const [key] of this.iterate(range)) out.push({ type: 'del', key: toBuffer(key) })
          break
        }
        default:
          assert(false, 'unknown batch operation')
      }
    }
    return out
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inflight.add(promise)
    const forget = (): void => {
      this.inflight.delete(promise)
    }
    promise.then(forget, forget)
    return promise
  }

  private ioError(what: string, err: unknown): KvError {
    const message = err instanceof Error ? err.message : String(err)
    this.log.error({ err, dir: this.dir, op: what }, 'storage operation failed')
    return new KvError(ErrorCode.Internal, `storage ${what} failed in ${this.dir}: ${message}`, {
      cause: err,
    })
  }
}

function nativeOps(batch: WriteBatch): NativeOp[] {
  return batch.ops().map((op): NativeOp => {
    switch (op.kind) {
      case 'put':
        return { type: 'put', key: toBuffer(op.key), value: toBuffer(op.value) }
      case 'del':
        return { type: 'del', key: toBuffer(op.key) }
      case 'deleteRange':
        assert(false, 'deleteRange must be expanded')
    }
  })
}

/** An iterator with nothing in it, or (closed) one whose first next() rejects with UNAVAILABLE. */
function emptyIterator(closed: boolean): AsyncIterableIterator<Entry> {
  const iterator: AsyncIterableIterator<Entry> = {
    [Symbol.asyncIterator]: () => iterator,
    next: () =>
      closed
        ? Promise.reject(closedError('storage engine'))
        : Promise.resolve({ done: true, value: undefined }),
    return: () => Promise.resolve({ done: true, value: undefined }),
  }
  return iterator
}
