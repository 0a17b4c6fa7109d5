/**
 * The synchronous log storage the core reads (etcd-io/raft `Storage`), and an in-memory
 * implementation for tests and the simulator.
 *
 * The core never writes storage. The shell writes what a `Ready` tells it to (entries, hard
 * state, snapshot) and compacts at its own pace; the core reads through this interface.
 */
import { assert } from '../common/index.ts'
import type { LogIndex, Term } from '../common/index.ts'
import { emptyConfState, entryBytes } from './messages.ts'
import type { ConfState, Entry, HardState, Snapshot } from './messages.ts'

/** Why a read of storage failed: the range was compacted away, or is not readable right now. */
export type StorageError = 'compacted' | 'unavailable'

export type StorageResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: StorageError }

export interface InitialState {
  readonly hardState: HardState
  readonly confState: ConfState
}

/**
 * LogStorage is what the core reads of the durable log. All methods are synchronous and must
 * be cheap; a shell backed by an asynchronous engine keeps a tail cache and answers
 * `unavailable` on a miss (the core then retries later). Returned arrays are not mutated by the
 * core and must not be mutated by storage afterwards.
 */
export interface LogStorage {
  /** The hard state and the configuration as of the last snapshot plus applied conf changes. */
  initialState(): InitialState
  /**
   * Entries in [lo, hi). Returns at least one entry when lo < hi even if it alone exceeds
   * `maxBytes`; otherwise stops before the total would exceed `maxBytes`. `compacted` when
   * lo < firstIndex(). Precondition: hi <= lastIndex() + 1.
   */
  entries(lo: LogIndex, hi: LogIndex, maxBytes: number): StorageResult<readonly Entry[]>
  /** The term of the entry at `index`, for firstIndex() - 1 <= index <= lastIndex(). */
  term(index: LogIndex): StorageResult<Term>
  /** The first index still available as an entry (snapshot index + 1). */
  firstIndex(): LogIndex
  /** The last index in storage; equals firstIndex() - 1 when there are no entries. */
  lastIndex(): LogIndex
  /** The most recent snapshot; `unavailable` while one is being produced. */
  snapshot(): StorageResult<Snapshot>
}

/**
 * MemoryLogStorage keeps everything in arrays. Used by the unit tests and the simulator; the
 * simulator's "disk" decides when a Ready's writes reach it.
 */
export class MemoryLogStorage implements LogStorage {
  private hard: HardState = { term: 0 as Term, vote: null, commit: 0 as LogIndex }
  private snap: Snapshot = {
    meta: { index: 0 as LogIndex, term: 0 as Term, confState: emptyConfState },
    data: new Uint8Array(0),
  }
  /** The last compacted position (a "dummy" entry). Invariant: offsetIndex <= snap.meta.index. */
  private offsetIndex = 0 as LogIndex
  private offsetTerm = 0 as Term
  /** Entries after the compaction point. Invariant: ents[i].index === offsetIndex + 1 + i. */
  private ents: Entry[] = []

  /** A storage holding only a snapshot at (index, term) with `confState`: how a group is bootstrapped. */
  static bootstrap(confState: ConfState, index = 0 as LogIndex, term = 0 as Term): MemoryLogStorage {
    const s = new MemoryLogStorage()
    s.applySnapshot({ meta: { index, term, confState }, data: new Uint8Array(0) })
    s.hard = { term, vote: null, commit: index }
    return s
  }

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.snap.meta.confState }
  }

  entries(lo: LogIndex, hi: LogIndex, maxBytes: number): StorageResult<readonly Entry[]> {
    return tailEntries(this.ents, this.offsetIndex, lo, hi, maxBytes)
  }

  term(index: LogIndex): StorageResult<Term> {
    return tailTerm(this.ents, this.offsetIndex, this.offsetTerm, index)
  }

  firstIndex(): LogIndex {
    return (this.offsetIndex + 1) as LogIndex
  }

  lastIndex(): LogIndex {
    return (this.offsetIndex + this.ents.length) as LogIndex
  }

  snapshot(): StorageResult<Snapshot> {
    return { ok: true, value: this.snap }
  }

  /** The last persisted hard state. */
  hardState(): HardState {
    return this.hard
  }

  setHardState(hs: HardState): void {
    this.hard = hs
  }

  /**
   * Appends entries from a Ready. Entries that overlap the stored tail replace it (a follower
   * truncating a conflicting suffix, §5.3). Precondition: entries are contiguous and start at
   * most one past the last index.
   */
  append(entries: readonly Entry[]): void {
    const first = entries[0]
    if (first === undefined) return
    for (let i = 1; i < entries.length; i++) assert(entries[i]!.index === first.index + i, 'append: gap')
    const offset = this.offsetIndex + 1
    // Entries already compacted are dropped (they are covered by the snapshot).
    const skip = Math.max(0, offset - first.index)
    if (skip >= entries.length) return
    const start = first.index + skip
    assert(start <= this.lastIndex() + 1, `append: gap at ${start}, last ${this.lastIndex()}`)
    this.ents.length = start - offset
    for (let i = skip; i < entries.length; i++) this.ents.push(entries[i]!)
  }

  /** Replaces the whole log with a snapshot (a follower installing one). Older snapshots are ignored. */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.meta.index < this.snap.meta.index) return
    this.snap = snapshot
    this.offsetIndex = snapshot.meta.index
    this.offsetTerm = snapshot.meta.term
    this.ents = []
  }

  /**
   * Records a snapshot of the application at `index` (which the application has applied) with
   * the configuration in effect there. Entries are kept until `compact`.
   */
  createSnapshot(index: LogIndex, confState: ConfState, data: Uint8Array): Snapshot {
    assert(index >= this.snap.meta.index, 'createSnapshot: older than the current snapshot')
    assert(index <= this.lastIndex(), 'createSnapshot: beyond the log')
    const t = this.term(index)
    assert(t.ok, 'createSnapshot: index compacted')
    this.snap = { meta: { index, term: t.value, confState }, data }
    return this.snap
  }

  /**
   * Drops entries up to and including `index`. Precondition: index <= the snapshot index, so
   * the entries dropped are covered by a snapshot (a lagging follower then gets that snapshot).
   */
  compact(index: LogIndex): void {
    assert(index <= this.snap.meta.index, `compact ${index} beyond the snapshot ${this.snap.meta.index}`)
    if (index <= this.offsetIndex) return
    const t = this.term(index)
    assert(t.ok)
    this.ents = this.ents.slice(index - this.offsetIndex)
    this.offsetIndex = index
    this.offsetTerm = t.value
  }
}

/**
 * `LogStorage.entries` over an in-memory tail: `ents` holds the entries after the compaction point
 * `offsetIndex` (ents[i].index === offsetIndex + 1 + i). Shared by every storage that mirrors its
 * log in memory (this file's MemoryLogStorage, node/log-store.ts).
 */
export function tailEntries(
  ents: readonly Entry[],
  offsetIndex: LogIndex,
  lo: LogIndex,
  hi: LogIndex,
  maxBytes: number,
): StorageResult<readonly Entry[]> {
  assert(lo <= hi, `entries(${lo}, ${hi})`)
  const offset = offsetIndex + 1
  if (lo < offset) return { ok: false, reason: 'compacted' }
  const last = offsetIndex + ents.length
  assert(hi <= last + 1, `entries hi ${hi} beyond last ${last}`)
  const out: Entry[] = []
  let bytes = 0
  for (let i = lo; i < hi; i++) {
    const e = ents[i - offset]
    assert(e !== undefined)
    bytes += entryBytes(e)
    if (out.length > 0 && bytes > maxBytes) break
    out.push(e)
  }
  return { ok: true, value: out }
}

/** `LogStorage.term` over an in-memory tail (see tailEntries); `offsetTerm` is the term at offsetIndex. */
export function tailTerm(
  ents: readonly Entry[],
  offsetIndex: LogIndex,
  offsetTerm: Term,
  index: LogIndex,
): StorageResult<Term> {
  if (index < offsetIndex) return { ok: false, reason: 'compacted' }
  if (index === offsetIndex) return { ok: true, value: offsetTerm }
  const e = ents[index - offsetIndex - 1]
  if (e === undefined) return { ok: false, reason: 'unavailable' }
  return { ok: true, value: e.term }
}
