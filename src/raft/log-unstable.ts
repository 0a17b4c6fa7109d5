/**
 * The unstable part of the log: entries (and possibly a snapshot) that the core has accepted
 * but the shell has not yet persisted (etcd-io/raft log_unstable.go).
 *
 * Entries below `offsetInProgress` were handed out in a Ready that was not yet advanced; they
 * are not handed out again, and become stable when that Ready is advanced.
 */
import { assert } from '../common/index.ts'
import type { LogIndex, Term } from '../common/index.ts'
import type { Entry, Snapshot } from './messages.ts'

export class Unstable {
  /** A snapshot being installed. Invariant: snapshot === null || offset === snapshot.meta.index + 1. */
  snapshot: Snapshot | null = null
  snapshotInProgress = false
  /** Invariant: entries[i].index === offset + i. */
  entries: Entry[] = []
  offset: LogIndex
  /** Invariant: offset <= offsetInProgress <= offset + entries.length. */
  offsetInProgress: LogIndex

  constructor(offset: LogIndex) {
    this.offset = offset
    this.offsetInProgress = offset
  }

  checkInvariants(): void {
    if (this.snapshot !== null)
      assert(this.offset === this.snapshot.meta.index + 1, 'unstable: snapshot offset')
    assert(this.offset <= this.offsetInProgress, 'unstable: in-progress below offset')
    assert(this.offsetInProgress <= this.offset + this.entries.length, 'unstable: in-progress beyond entries')
    if (!this.snapshotInProgress) return
    assert(this.snapshot !== null)
  }

  /** The first index, if there is a snapshot. */
  maybeFirstIndex(): LogIndex | null {
    return this.snapshot === null ? null : ((this.snapshot.meta.index + 1) as LogIndex)
  }

  maybeLastIndex(): LogIndex | null {
    if (this.entries.length > 0) return (this.offset + this.entries.length - 1) as LogIndex
    if (this.snapshot !== null) return this.snapshot.meta.index
    return null
  }

  maybeTerm(index: LogIndex): Term | null {
    if (index < this.offset) {
      if (this.snapshot !== null && this.snapshot.meta.index === index) return this.snapshot.meta.term
      return null
    }
    const e = this.entries[index - this.offset]
    return e === undefined ? null : e.term
  }

  /** Entries not yet handed out in a Ready. */
  nextEntries(): readonly Entry[] {
    const start = this.offsetInProgress - this.offset
    return start >= this.entries.length ? [] : this.entries.slice(start)
  }

  nextSnapshot(): Snapshot | null {
    return this.snapshotInProgress ? null : this.snapshot
  }

  /** Marks everything currently unstable as handed out. */
  acceptInProgress(): void {
    this.offsetInProgress = (this.offset + this.entries.length) as LogIndex
    if (this.snapshot !== null) this.snapshotInProgress = true
  }

  /** Entries up to (index, term) are durable. A term mismatch means they were replaced since. */
  stableTo(index: LogIndex, term: Term): void {
    const t = this.maybeTerm(index)
    if (t === null || t !== term) return
    // Only entries (not the snapshot position) become stable here.
    if (index < this.offset) return
    const n = index + 1 - this.offset
    this.entries = this.entries.slice(n)
    this.offset = (index + 1) as LogIndex
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset) as LogIndex
  }

  stableSnapTo(index: LogIndex): void {
    if (this.snapshot !== null && this.snapshot.meta.index === index) {
      this.snapshot = null
      this.snapshotInProgress = false
    }
  }

  restore(s: Snapshot): void {
    this.offset = (s.meta.index + 1) as LogIndex
    this.offsetInProgress = this.offset
    this.entries = []
    this.snapshot = s
    this.snapshotInProgress = false
  }

  /** Appends `ents`, replacing any suffix from ents[0].index on. */
  truncateAndAppend(ents: readonly Entry[]): void {
    const first = ents[0]
    if (first === undefined) return
    const from = first.index
    if (from === this.offset + this.entries.length) {
      this.entries.push(...ents)
    } else if (from <= this.offset) {
      // The whole unstable tail is replaced; entries before `from` come from storage.
      this.offset = from
      this.offsetInProgress = from
      this.entries = [...ents]
    } else {
      this.entries = this.entries.slice(0, from - this.offset).concat(ents)
      this.offsetInProgress = Math.min(this.offsetInProgress, from) as LogIndex
    }
    this.checkInvariants()
  }

  /** Entries in [lo, hi); precondition: offset <= lo <= hi <= offset + entries.length. */
  slice(lo: LogIndex, hi: LogIndex): Entry[] {
    assert(
      this.offset <= lo && lo <= hi && hi <= this.offset + this.entries.length,
      `unstable.slice(${lo}, ${hi})`,
    )
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}
