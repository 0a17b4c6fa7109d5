/**
 * RaftLog: the log as the core sees it, stable (LogStorage) and unstable (not yet persisted)
 * stitched together, plus the commit and apply positions (etcd-io/raft log.go).
 */
import { assert } from '../common/index.ts'
import type { LogIndex, Logger, Term } from '../common/index.ts'
import { Unstable } from './log-unstable.ts'
import { entryBytes } from './messages.ts'
import type { Entry, Snapshot } from './messages.ts'
import type { LogStorage, StorageResult } from './storage.ts'

export class RaftLog {
  readonly storage: LogStorage
  readonly unstable: Unstable
  /** The highest index known committed. Invariant: applied <= applying <= committed <= lastIndex(). */
  committed: LogIndex
  /** The highest index handed out for applying in a Ready not yet advanced. */
  applying: LogIndex
  /** The highest index the application has applied (advanced). */
  applied: LogIndex
  private readonly logger: Logger

  constructor(storage: LogStorage, logger: Logger) {
    this.storage = storage
    this.logger = logger
    const first = storage.firstIndex()
    const last = storage.lastIndex()
    this.unstable = new Unstable((last + 1) as LogIndex)
    // The first index - 1 is the compaction point, which is always committed and applied.
    this.committed = (first - 1) as LogIndex
    this.applying = this.committed
    this.applied = this.committed
  }

  checkInvariants(): void {
    assert(this.applied <= this.applying, `log: applied ${this.applied} > applying ${this.applying}`)
    assert(this.applying <= this.committed, `log: applying ${this.applying} > committed ${this.committed}`)
    assert(this.committed <= this.lastIndex(), `log: committed ${this.committed} > last ${this.lastIndex()}`)
    this.unstable.checkInvariants()
  }

  firstIndex(): LogIndex {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  lastIndex(): LogIndex {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  lastTerm(): Term {
    const t = this.term(this.lastIndex())
    assert(t.ok, 'log: last term unavailable')
    return t.value
  }

  /** The term at `index`; `compacted` below the first index - 1, `unavailable` above the last. */
  term(index: LogIndex): StorageResult<Term> {
    const u = this.unstable.maybeTerm(index)
    if (u !== null) return { ok: true, value: u }
    const dummy = this.firstIndex() - 1
    if (index < dummy) return { ok: false, reason: 'compacted' }
    if (index > this.lastIndex()) return { ok: false, reason: 'unavailable' }
    return this.storage.term(index)
  }

  /** The term at `index`, or 0 when it is unknown (compacted or beyond the log). */
  zeroTermOnOutOfBounds(index: LogIndex): Term {
    const t = this.term(index)
    return t.ok ? t.value : (0 as Term)
  }

  matchTerm(index: LogIndex, term: Term): boolean {
    const t = this.term(index)
    return t.ok && t.value === term
  }

  /** Is a log ending at (lastIndex, lastTerm) at least as up to date as ours (§3.6.1)? */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const ourTerm = this.lastTerm()
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex())
  }

  /**
   * The index of the first entry of `ents` that is not in our log (missing or of another term),
   * or 0 when all match.
   */
  findConflict(ents: readonly Entry[]): LogIndex {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) {
        if (e.index <= this.lastIndex()) {
          this.logger.debug(
            { index: e.index, existingTerm: this.zeroTermOnOutOfBounds(e.index), term: e.term },
            'found conflicting entry',
          )
        }
        return e.index
      }
    }
    return 0 as LogIndex
  }

  /**
   * The last index <= `index` whose term is <= `term`, with that term (fast backtracking: a
   * leader's entry at such an index could match ours, §5.3). Stops at the compaction point.
   */
  findConflictByTerm(index: LogIndex, term: Term): { index: LogIndex; term: Term } {
    let i = Math.min(index, this.lastIndex()) as LogIndex
    for (;;) {
      const t = this.term(i)
      if (!t.ok) return { index: i, term: 0 as Term }
      if (t.value <= term) return { index: i, term: t.value }
      i = (i - 1) as LogIndex
    }
  }

  /**
   * Handles an append from the leader: if our entry at `index` has `logTerm`, appends `ents`
   * (truncating a conflicting suffix) and advances commit to min(commit, last new index).
   * Returns the last new index, or null when the consistency check fails (§5.3).
   */
  maybeAppend(index: LogIndex, logTerm: Term, commit: LogIndex, ents: readonly Entry[]): LogIndex | null {
    if (!this.matchTerm(index, logTerm)) return null
    const lastNew = (index + ents.length) as LogIndex
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      // A committed entry never changes (Log Matching + Leader Completeness, §5.4).
      assert(ci > this.committed, `log: entry ${ci} conflicts with committed ${this.committed}`)
      const first = ents[0]
      assert(first !== undefined)
      this.append(ents.slice(ci - first.index))
    }
    this.commitTo(Math.min(commit, lastNew) as LogIndex)
    return lastNew
  }

  /** Appends entries (replacing a suffix). Returns the new last index. */
  append(ents: readonly Entry[]): LogIndex {
    const first = ents[0]
    if (first === undefined) return this.lastIndex()
    assert(first.index - 1 >= this.committed, `log: append at ${first.index} below commit ${this.committed}`)
    this.unstable.truncateAndAppend(ents)
    return this.lastIndex()
  }

  commitTo(index: LogIndex): void {
    if (this.committed >= index) return
    assert(index <= this.lastIndex(), `log: commit ${index} beyond last ${this.lastIndex()}`)
    this.committed = index
  }

  /**
   * Advances commit to `index` if our entry there has `term` (§5.4.2: a leader commits only
   * entries of its own term by counting replicas). `anyTerm` drops the term check (the
   * Figure 3.7 bug, for testing faults only).
   */
  maybeCommit(index: LogIndex, term: Term, anyTerm = false): boolean {
    if (index <= this.committed) return false
    if (!anyTerm && !this.matchTerm(index, term)) return false
    this.commitTo(index)
    return true
  }

  /** Entries in [lo, hi), at most `maxBytes` of payload but at least one entry. */
  slice(lo: LogIndex, hi: LogIndex, maxBytes: number): StorageResult<Entry[]> {
    assert(lo <= hi, `log.slice(${lo}, ${hi})`)
    if (lo < this.firstIndex()) return { ok: false, reason: 'compacted' }
    assert(hi <= this.lastIndex() + 1, `log.slice hi ${hi} beyond last ${this.lastIndex()}`)
    if (lo === hi) return { ok: true, value: [] }
    const out: Entry[] = []
    const uOffset = this.unstable.offset
    if (lo < uOffset) {
      const r = this.storage.entries(lo, Math.min(hi, uOffset) as LogIndex, maxBytes)
      if (!r.ok) return r
      out.push(...r.value)
      // Storage stopped early (byte limit): do not continue into the unstable part.
      if (out.length < Math.min(hi, uOffset) - lo) return { ok: true, value: out }
    }
    if (hi > uOffset) {
      let bytes = out.reduce((n, e) => n + entryBytes(e), 0)
      for (const e of this.unstable.slice(Math.max(lo, uOffset) as LogIndex, hi)) {
        bytes += entryBytes(e)
        if (out.length > 0 && bytes > maxBytes) break
        out.push(e)
      }
    }
    return { ok: true, value: out }
  }

  /** Committed entries to hand out for applying next (up to `maxBytes`, at least one). */
  nextCommittedEntries(maxBytes: number): Entry[] {
    if (this.applying >= this.committed) return []
    // A snapshot still being installed must be applied first.
    if (this.unstable.snapshot !== null) return []
    const r = this.slice((this.applying + 1) as LogIndex, (this.committed + 1) as LogIndex, maxBytes)
    assert(r.ok, 'log: committed entries unavailable')
    return r.value
  }

  hasNextCommittedEntries(): boolean {
    return this.applying < this.committed && this.unstable.snapshot === null
  }

  acceptApplying(index: LogIndex): void {
    assert(index <= this.committed)
    if (index > this.applying) this.applying = index
  }

  appliedTo(index: LogIndex): void {
    assert(index <= this.applying, `log: applied ${index} beyond applying ${this.applying}`)
    if (index > this.applied) this.applied = index
  }

  /** The most recent snapshot: the one being installed, else storage's. */
  snapshot(): StorageResult<Snapshot> {
    if (this.unstable.snapshot !== null) return { ok: true, value: this.unstable.snapshot }
    return this.storage.snapshot()
  }

  /** Replaces the log with a snapshot (a follower installing it). */
  restore(s: Snapshot): void {
    this.logger.info({ index: s.meta.index, term: s.meta.term }, 'log restored from snapshot')
    // Applying and applied catch up when the Ready carrying the snapshot is handed out and advanced.
    this.committed = s.meta.index
    this.unstable.restore(s)
  }

  /** The last index that is durable: every entry at or below it is in storage. */
  persistedLastIndex(): LogIndex {
    if (this.unstable.snapshot !== null)
      return Math.min(this.storage.lastIndex(), this.unstable.offset - 1) as LogIndex
    if (this.unstable.entries.length > 0)
      return Math.min(this.storage.lastIndex(), this.unstable.offset - 1) as LogIndex
    return this.storage.lastIndex()
  }
}
