/** Test doubles for the shard tests: a counting (and optionally gated) Engine, a still clock. */
import { NodeId, ShardId, silentLogger, type Clock, type Limits } from '../../../src/common/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import { openLocalReplica, type Replica } from '../../../src/shard/index.ts'
import {
  loadHasher,
  MemoryEngine,
  type DeleteRangeChunkOptions,
  type DeleteRangeChunkResult,
  type Engine,
  type EngineWriteOptions,
  type Entry,
  type ExportOptions,
  type ImportOptions,
  type ImportStats,
  type IterateOptions,
  type KeyRange,
  type WriteBatch,
} from '../../../src/storage/index.ts'

/** Wraps an Engine, counting writes and fsyncs; `hold()` parks writes until `release()`. */
export class CountingEngine implements Engine {
  writes = 0
  syncs = 0
  batchSizes: number[] = []
  failNextWrite: Error | undefined
  private gate: Promise<void> | undefined
  private open: (() => void) | undefined

  constructor(readonly inner: Engine) {}

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve))
  }

  release(): void {
    this.open?.()
    this.gate = undefined
  }

  get(key: Uint8Array): Promise<Uint8Array | null> {
    return this.inner.get(key)
  }
  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]> {
    return this.inner.multiGet(keys)
  }
  iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    return this.inner.iterate(options)
  }
  batch(): WriteBatch {
    return this.inner.batch()
  }
  async write(batch: WriteBatch, options: EngineWriteOptions): Promise<void> {
    if (this.gate !== undefined) await this.gate
    if (this.failNextWrite !== undefined) {
      const err = this.failNextWrite
      this.failNextWrite = undefined
      throw err
    }
    this.writes++
    if (options.sync) this.syncs++
    this.batchSizes.push(batch.length)
    return this.inner.write(batch, options)
  }
  approximateBytes(range: KeyRange): Promise<number> {
    return this.inner.approximateBytes(range)
  }

  exportRange(range: KeyRange, options?: ExportOptions): AsyncIterableIterator<readonly Entry[]> {
    return this.inner.exportRange(range, options)
  }
  importRange(
    range: KeyRange,
    chunks: AsyncIterable<readonly Entry[]>,
    options: ImportOptions,
  ): Promise<ImportStats> {
    return this.inner.importRange(range, chunks, options)
  }
  deleteRangeChunk(range: KeyRange, options: DeleteRangeChunkOptions): Promise<DeleteRangeChunkResult> {
    return this.inner.deleteRangeChunk(range, options)
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

export const stillClock: Clock = {
  nowMs: () => 1000,
  wallMs: () => 1_700_000_000_000,
  setTimer: () => ({ cancel: () => {} }),
}

let hasherPromise: Promise<Hasher> | undefined
export const testHasher = (): Promise<Hasher> => (hasherPromise ??= loadHasher())

export const nodeId = NodeId(1)
export const shardId = ShardId(3)

export async function openTestReplica(
  engine: Engine = new MemoryEngine(),
  extra: {
    readonly limits?: Readonly<Limits>
    readonly onFatal?: (err: unknown) => void
    readonly hashRange?: { start: bigint; end: bigint }
  } = {},
): Promise<Replica> {
  return openLocalReplica(
    { nodeId, shardId, ...(extra.hashRange === undefined ? {} : { hashRange: extra.hashRange }) },
    {
      engine,
      hasher: await testHasher(),
      clock: stillClock,
      logger: silentLogger,
      ...(extra.limits === undefined ? {} : { limits: extra.limits }),
      ...(extra.onFatal === undefined ? {} : { onFatal: extra.onFatal }),
    },
  )
}

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
export const text = (b: Uint8Array): string => new TextDecoder().decode(b)
