/**
 * The simulated disk under a NodeHost: a MemoryEngine (src/storage/engine-memory.ts) behind a
 * wrapper whose `write` and `multiGet` complete after a seeded simulated latency. A synced write
 * waits for an fsync (the slow part, stretched by `slowFactor` in a slow-disk fault), an unsynced
 * one for a page-cache copy; the Ready loop writes one batch at a time, so while an fsync is in
 * flight the next proposals of every shard pile up and go into one group commit.
 *
 * The batch reaches the MemoryEngine only when its latency has passed, so a crash in between
 * loses it whole (it was never acknowledged). What survives a crash is MemoryEngine.crash(): the
 * state after the last synced write, or, when the OS happened to flush, everything written
 * (`loseUnsynced: false`). Either way each batch is all or nothing.
 *
 * `get`, iteration and export go straight to the MemoryEngine (the read path's point reads and
 * snapshot views are memtable-fast; the host's prefetch is what multiGet delays).
 */
import { ErrorCode, KvError, type Random, type TimerHandle } from '../../../src/common/index.ts'
import {
  deleteRangeChunkVia,
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
  type MemoryEngine,
  type WriteBatch,
} from '../../../src/storage/index.ts'
import type { Simulator } from '../simulator.ts'

export interface DiskLatency {
  /** Mean latency of a synced write; actual values are uniform in [mean/2, 3*mean/2]. */
  readonly fsyncMsMean: number
  /** Mean latency of an unsynced write. */
  readonly writeMsMean: number
  /** Mean latency of a multiGet. */
  readonly readMsMean: number
}

/** What the disk saw, for the run's group-commit report. */
export interface DiskStats {
  writes: number
  syncs: number
  multiGets: number
  /** Writes lost to a crash while in flight. */
  lostInFlight: number
}

interface Pending {
  readonly timer: TimerHandle
  readonly reject: (err: unknown) => void
}

export class DelayedEngine implements Engine {
  /** Multiplies every latency (a slow-disk fault sets it above 1). */
  slowFactor = 1
  private crashed = false
  private readonly pending = new Set<Pending>()

  constructor(
    readonly inner: MemoryEngine,
    private readonly sim: Simulator,
    private readonly random: Random,
    private readonly latency: DiskLatency,
    readonly stats: DiskStats,
    /** Called with every batch as it lands (after its latency), for the group-commit report. */
    private readonly onWrite: (batch: WriteBatch, sync: boolean) => void,
    /** The planted fault: a synced write is acknowledged but not made durable. */
    private readonly fsyncLies = false,
  ) {}

  get(key: Uint8Array): Promise<Uint8Array | null> {
    if (this.crashed) return Promise.reject(powerCut())
    return this.inner.get(key)
  }

  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]> {
    this.stats.multiGets++
    return this.after(this.latencyMs(this.latency.readMsMean), () => this.inner.multiGet(keys))
  }

  iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    return this.inner.iterate(options)
  }

  batch(): WriteBatch {
    return this.inner.batch()
  }

  write(batch: WriteBatch, options: EngineWriteOptions): Promise<void> {
    const mean = options.sync ? this.latency.fsyncMsMean : this.latency.writeMsMean
    return this.after(this.latencyMs(mean), () => {
      this.stats.writes++
      if (options.sync) this.stats.syncs++
      this.onWrite(batch, options.sync)
      return this.inner.write(batch, this.fsyncLies ? { sync: false } : options)
    })
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

  /** Through this engine's own (delayed, crashable) writes. */
  deleteRangeChunk(range: KeyRange, options: DeleteRangeChunkOptions): Promise<DeleteRangeChunkResult> {
    return deleteRangeChunkVia(this, range, options)
  }

  close(): Promise<void> {
    return this.inner.close()
  }

  /** The power goes out: operations in flight fail (their batches never land), later ones too. */
  crash(): void {
    this.crashed = true
    for (const p of [...this.pending]) {
      p.timer.cancel()
      this.stats.lostInFlight++
      p.reject(powerCut())
    }
    this.pending.clear()
  }

  private after<T>(delayMs: number, run: () => Promise<T>): Promise<T> {
    if (this.crashed) return Promise.reject(powerCut())
    return new Promise<T>((resolve, reject) => {
      const p: Pending = {
        timer: this.sim.schedule(delayMs, () => {
          this.pending.delete(p)
          run().then(resolve, reject)
        }),
        reject,
      }
      this.pending.add(p)
    })
  }

  private latencyMs(mean: number): number {
    if (mean <= 0) return 0
    return (mean / 2 + (this.random.int(1000) / 1000) * mean) * this.slowFactor
  }
}

function powerCut(): KvError {
  return new KvError(ErrorCode.Unavailable, 'simulated power cut')
}
