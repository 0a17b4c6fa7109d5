/**
 * The simulated disk of one node (TigerBeetle `storage.zig` in simulation; STYLE.md 7.6
 * "SimEngine"). It holds the node's Raft log in a MemoryLogStorage, which the RawNode reads.
 *
 * A Ready's write (snapshot, entries, hard state) is one atomic write batch, as a RocksDB
 * WriteBatch is. It completes after the fsync latency when `mustSync`, almost at once otherwise.
 * On a crash:
 * - a write still in flight is lost entirely (it was never acknowledged, so nothing was sent
 *   that depends on it: messagesAfterPersist go out only after completion);
 * - a completed write that was not fsynced (`mustSync` false: only the commit index may change)
 *   is lost too: the hard state goes back to the last fsynced one.
 * Snapshots the shell takes for compaction are written durably at once (NB(sim): a real engine
 * would write them in the background; the Raft core does not care when).
 */
import { assert, type Random, type TimerHandle } from '../../src/common/index.ts'
import type { MemoryLogStorage } from '../../src/raft/index.ts'
import { type Entry, type HardState, type Snapshot } from '../../src/raft/index.ts'
import type { Simulator } from './simulator.ts'

export interface DiskWrite {
  readonly snapshot: Snapshot | null
  readonly entries: readonly Entry[]
  readonly hardState: HardState | null
  readonly mustSync: boolean
}

export class SimDisk {
  private syncedHardState: HardState
  private inFlight: TimerHandle | null = null
  /** Multiplies the fsync latency (a "slow disk" nemesis sets it above 1). */
  slowFactor = 1
  writes = 0
  fsyncs = 0

  constructor(
    private readonly sim: Simulator,
    private readonly random: Random,
    readonly storage: MemoryLogStorage,
    private readonly fsyncMsMean: number,
  ) {
    this.syncedHardState = storage.hardState()
  }

  /** Starts a write; `onDurable` runs when it is on disk (never, if the node crashes first). */
  write(w: DiskWrite, onDurable: () => void): void {
    assert(this.inFlight === null, 'one write at a time: the ready loop is sequential')
    if (w.entries.length > 0 || w.snapshot !== null)
      assert(w.mustSync, 'entries and snapshots must be fsynced')
    const latency = w.mustSync ? this.fsyncLatencyMs() : 0.01
    this.inFlight = this.sim.schedule(latency, () => {
      this.inFlight = null
      this.writes++
      if (w.snapshot !== null) this.storage.applySnapshot(w.snapshot)
      if (w.entries.length > 0) this.storage.append(w.entries)
      if (w.hardState !== null) this.storage.setHardState(w.hardState)
      if (w.mustSync) {
        this.fsyncs++
        this.syncedHardState = this.storage.hardState()
      }
      onDurable()
    })
  }

  private fsyncLatencyMs(): number {
    if (this.fsyncMsMean <= 0) return 0.01
    const base = this.fsyncMsMean / 2 + (this.random.int(1000) / 1000) * this.fsyncMsMean
    return base * this.slowFactor
  }

  get busy(): boolean {
    return this.inFlight !== null
  }

  /** The power goes out: the write in flight and the unsynced hard state are lost. */
  crash(): void {
    this.inFlight?.cancel()
    this.inFlight = null
    this.storage.setHardState(this.syncedHardState)
  }
}
