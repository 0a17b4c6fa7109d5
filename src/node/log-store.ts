/**
 * ShardLogStore: the durable Raft log of one shard in the node's single Engine, read by the core
 * through the synchronous `LogStorage` interface (raft/storage.ts).
 *
 * The core never awaits, so everything it may read is kept in memory: the hard state, the
 * configuration, the snapshot point and every entry after the compaction point (compacted
 * regularly, so bounded). The Engine is only read at `open`.
 *
 * Writes are two-phase so the ready loop can put the Ready of many shards into one WriteBatch and
 * fsync once (ARCHITECTURE.md section 3, STYLE.md 7.1): `stageX(batch, ...)` adds the writes to the
 * batch and leaves memory alone, so the core keeps seeing only what is durable; once the batch is
 * written, `commitX(...)` with the same arguments updates memory. Each stage is computed from the
 * committed state, so commit in the order staged, before staging the next Ready of the shard.
 *
 * What the Engine holds (keys.ts), and how `open` reads it back:
 * - hard state, conf state (the applied configuration) and snapshot meta under their keys;
 * - the log entries (offsetIndex, lastIndex], and an entry AT offsetIndex whenever the snapshot
 *   is beyond it. That entry is how a reopened store knows where its log starts and the term
 *   there (etcd-io/raft MemoryStorage keeps the same "dummy" entry in ents[0]). Compaction keeps
 *   the entry at its index for that purpose, and recording a snapshot point writes one (index and
 *   term of the offset, no data) in case the offset was not made by compaction. When the offset is
 *   the snapshot itself (a bootstrap or an installed snapshot) no such entry is needed: the term
 *   is the snapshot's. So at open, a first entry at or below the snapshot index is the offset, and
 *   a first entry at snapshot index + 1 (or none) means the offset is the snapshot.
 * The snapshot's data is not here: it is produced on demand from the state machine elsewhere, and
 * `snapshot()` hands out an empty `data`.
 */
import { assert, ErrorCode, isKvErrorWithCode, KvError } from '../common/index.ts'
import type { LogIndex, ShardId, Term } from '../common/index.ts'
import { EntryType, emptyConfState, entryBytes, tailEntries, tailTerm } from '../raft/index.ts'
import type {
  ConfState,
  Entry,
  HardState,
  InitialState,
  LogStorage,
  Snapshot,
  SnapshotMeta,
  StorageResult,
} from '../raft/index.ts'
import {
  raftConfStateKey,
  raftHardStateKey,
  raftLogKey,
  raftLogRange,
  raftSnapshotMetaKey,
  equalBytes,
} from '../storage/index.ts'
import type { Engine, KeyRange, WriteBatch } from '../storage/index.ts'
import {
  confStateProblem,
  decodeConfState,
  decodeEntry,
  decodeHardState,
  decodeSnapshotMeta,
  encodeConfState,
  encodeEntry,
  encodeHardState,
  encodeSnapshotMeta,
} from './raft-codec.ts'

/** What one Ready asks to persist for a shard; `snapshot` is the Ready's `snapshot?.meta ?? null`. */
export interface ShardLogWrite {
  readonly hardState: HardState | null
  readonly entries: readonly Entry[]
  readonly snapshot: SnapshotMeta | null
}

const zeroHardState: HardState = { term: 0 as Term, vote: null, commit: 0 as LogIndex }
const zeroSnapshotMeta: SnapshotMeta = { index: 0 as LogIndex, term: 0 as Term, confState: emptyConfState }
const noSnapshotData = new Uint8Array(0)
const noEntryData = new Uint8Array(0)
const logStart = 0 as LogIndex

/** What `open` found under a shard's keys, decoded but not yet checked against each other. */
interface StoredLog {
  readonly hardState: HardState | null
  readonly confState: ConfState | null
  readonly snapshotMeta: SnapshotMeta | null
  readonly entries: readonly Entry[]
}

/** The in-memory state, checked. */
interface LogState {
  readonly hardState: HardState
  readonly confState: ConfState
  readonly snapshotMeta: SnapshotMeta
  readonly offsetIndex: LogIndex
  readonly offsetTerm: Term
  readonly entries: Entry[]
  readonly empty: boolean
}

export class ShardLogStore implements LogStorage {
  readonly shardId: ShardId
  private hard: HardState
  /** The applied configuration, which the shell persists; a snapshot install replaces it. */
  private conf: ConfState
  private snap: Snapshot
  /** The compaction point (a "dummy" entry). Invariant: offsetIndex <= snap.meta.index <= lastIndex(). */
  private offsetIndex: LogIndex
  private offsetTerm: Term
  /** Entries after the compaction point. Invariant: ents[i].index === offsetIndex + 1 + i. */
  private ents: Entry[]
  /** Invariant: the sum of entryBytes over `ents` (bounds the log in memory by bytes, not only count). */
  private bytes = 0
  private empty: boolean
  /** True between `stage` and `commit`: a Ready's tail writes are computed from the committed tail. */
  private readyStaged = false

  private constructor(shardId: ShardId, state: LogState) {
    this.shardId = shardId
    this.hard = state.hardState
    this.conf = state.confState
    this.snap = { meta: state.snapshotMeta, data: noSnapshotData }
    this.offsetIndex = state.offsetIndex
    this.offsetTerm = state.offsetTerm
    this.ents = state.entries
    for (const e of this.ents) this.bytes += entryBytes(e)
    this.empty = state.empty
    this.checkInvariants()
  }

  /**
   * Loads the shard's Raft state from `engine` and checks that it lines up (see `recover`).
   * Nothing stored opens as an empty store (`isEmpty()`). Throws KvError INTERNAL naming the shard
   * when the stored state is corrupt or inconsistent. Nothing may write the shard's keys meanwhile.
   */
  static async open(engine: Engine, shardId: ShardId): Promise<ShardLogStore> {
    const [hardState, confState, snapshotMeta] = await engine.multiGet([
      raftHardStateKey(shardId),
      raftConfStateKey(shardId),
      raftSnapshotMetaKey(shardId),
    ])
    const stored: StoredLog = {
      hardState: decodeStored(shardId, 'hard state', decodeHardState, hardState ?? null),
      confState: decodeStored(shardId, 'conf state', decodeConfState, confState ?? null),
      snapshotMeta: decodeStored(shardId, 'snapshot meta', decodeSnapshotMeta, snapshotMeta ?? null),
      entries: await loadEntries(engine, shardId),
    }
    return new ShardLogStore(shardId, recover(shardId, stored))
  }

  /**
   * Stages the initial state of a new group: a snapshot at (`index`, `term`) with `confState`, the
   * same configuration as the applied one, and a hard state committed up to it. Open the store
   * once written. Groups start at a non-zero index (node/bootstrap.ts) so that a replica added
   * later, whose log is empty, can only be caught up by a snapshot: the entries it would need
   * from index 1 were never in any log.
   */
  static stageBootstrap(
    batch: WriteBatch,
    shardId: ShardId,
    confState: ConfState,
    index: LogIndex,
    term: Term,
  ): void {
    checkConfState(confState)
    const meta: SnapshotMeta = { index, term, confState }
    batch.put(raftSnapshotMetaKey(shardId), encodeSnapshotMeta(meta))
    batch.put(raftConfStateKey(shardId), encodeConfState(confState))
    batch.put(raftHardStateKey(shardId), encodeHardState({ term, vote: null, commit: index }))
  }

  /** The store of a shard with nothing stored (what `open` returns for it), without reading. */
  static empty(shardId: ShardId): ShardLogStore {
    return new ShardLogStore(shardId, {
      hardState: zeroHardState,
      confState: emptyConfState,
      snapshotMeta: zeroSnapshotMeta,
      offsetIndex: 0 as LogIndex,
      offsetTerm: 0 as Term,
      entries: [],
      empty: true,
    })
  }

  /**
   * Stages forgetting the log: every entry goes, the snapshot point is index 0 with `confState`,
   * and the hard state keeps its term and vote (a vote once given is never taken back) with commit
   * 0. For a replica whose state was lost (a snapshot install cut short): it then holds nothing,
   * and its leader can only catch it up with a new snapshot. Commit with `commitReset`.
   */
  stageReset(batch: WriteBatch, confState: ConfState): void {
    assert(!this.readyStaged, `shard ${this.shardId}: reset while a Ready awaits its commit`)
    checkConfState(confState)
    for (let i = this.offsetIndex; i <= this.lastIndex(); i++)
      batch.del(raftLogKey(this.shardId, i as LogIndex))
    batch.put(raftSnapshotMetaKey(this.shardId), encodeSnapshotMeta({ ...zeroSnapshotMeta, confState }))
    batch.put(raftConfStateKey(this.shardId), encodeConfState(confState))
    batch.put(raftHardStateKey(this.shardId), encodeHardState(this.resetHardState()))
  }

  commitReset(confState: ConfState): void {
    this.hard = this.resetHardState()
    this.conf = confState
    this.snap = { meta: { ...zeroSnapshotMeta, confState }, data: noSnapshotData }
    this.offsetIndex = 0 as LogIndex
    this.offsetTerm = 0 as Term
    this.ents = []
    this.bytes = 0
    this.empty = false
    this.checkInvariants()
  }

  private resetHardState(): HardState {
    return { term: this.hard.term, vote: this.hard.vote, commit: 0 as LogIndex }
  }

  /** Bytes of the entries held in memory (the log after the compaction point). */
  entryBytes(): number {
    return this.bytes
  }

  /**
   * The index compaction may drop up to so that at most `entriesMax` entries, and no more than
   * `bytesMax` bytes (but always the entry at `snapIndex` itself), stay behind `snapIndex`.
   */
  retainFrom(snapIndex: LogIndex, entriesMax: number, bytesMax: number): LogIndex {
    let keepFrom = snapIndex
    let bytes = 0
    const floor = Math.max(this.offsetIndex + 1, snapIndex - entriesMax + 1)
    for (let i = snapIndex; i >= floor; i--) {
      const e = this.ents[i - this.offsetIndex - 1]
      if (e === undefined) break
      bytes += entryBytes(e)
      if (bytes > bytesMax && i < snapIndex) break
      keepFrom = i as LogIndex
    }
    return (keepFrom - 1) as LogIndex
  }

  // -------------------------------------------------------------------------------------------
  // LogStorage: what the core reads.

  initialState(): InitialState {
    return { hardState: this.hard, confState: this.conf }
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

  // -------------------------------------------------------------------------------------------
  // Getters for the shell.

  hardState(): HardState {
    return this.hard
  }

  confState(): ConfState {
    return this.conf
  }

  snapshotMeta(): SnapshotMeta {
    return this.snap.meta
  }

  /** True when nothing of this shard was stored at open and nothing has been committed since. */
  isEmpty(): boolean {
    return this.empty
  }

  // -------------------------------------------------------------------------------------------
  // A Ready's writes.

  /**
   * Stages what a Ready asks to persist, in the order the core requires (raft/storage.ts): the
   * snapshot replaces the whole log (the core only installs one whose point its log does not
   * match, so every stored entry, even beyond the snapshot index, belongs to a diverged log), then
   * the entries are appended (an overlap replaces the stored tail and the stale suffix beyond the
   * new last entry is deleted, §5.3), then the hard state. Memory is untouched until `commit`.
   * Preconditions: no other `stage` of this store awaits its commit; the entries are contiguous,
   * start at most one past the last index, and do not go back in term.
   */
  stage(batch: WriteBatch, write: ShardLogWrite): void {
    assert(!this.readyStaged, `shard ${this.shardId}: a staged Ready awaits its commit`)
    this.readyStaged = true
    const { snapshot, entries, hardState } = write
    if (snapshot !== null) this.stageInstall(batch, snapshot)
    const tail = snapshot === null ? this.tail() : installedTail(snapshot)
    this.stageAppend(batch, tail, entries)
    if (hardState !== null) batch.put(raftHardStateKey(this.shardId), encodeHardState(hardState))
  }

  /** Makes a staged Ready visible once its batch is durable. `write` is what was staged. */
  commit(write: ShardLogWrite): void {
    assert(this.readyStaged, `shard ${this.shardId}: commit without stage`)
    this.readyStaged = false
    const { snapshot, entries, hardState } = write
    if (snapshot !== null) this.install(snapshot)
    this.append(entries)
    if (hardState !== null) this.hard = hardState
    if (snapshot !== null || entries.length > 0 || hardState !== null) this.empty = false
    this.checkInvariants()
  }

  private stageInstall(batch: WriteBatch, meta: SnapshotMeta): void {
    this.checkInstall(meta)
    deleteKeyRange(batch, raftLogRange(this.shardId, logStart))
    batch.put(raftSnapshotMetaKey(this.shardId), encodeSnapshotMeta(meta))
    batch.put(raftConfStateKey(this.shardId), encodeConfState(meta.confState))
  }

  private install(meta: SnapshotMeta): void {
    this.checkInstall(meta)
    this.snap = { meta, data: noSnapshotData }
    this.conf = meta.confState
    this.offsetIndex = meta.index
    this.offsetTerm = meta.term
    this.ents = []
    this.bytes = 0
  }

  private checkInstall(meta: SnapshotMeta): void {
    checkConfState(meta.confState)
    assert(
      meta.index >= this.snap.meta.index,
      `shard ${this.shardId}: installing snapshot ${meta.index} older than ${this.snap.meta.index}`,
    )
  }

  private stageAppend(batch: WriteBatch, tail: Tail, entries: readonly Entry[]): void {
    const fresh = this.freshEntries(tail, entries)
    const last = fresh[fresh.length - 1]
    if (last === undefined) return
    for (const e of fresh) batch.put(raftLogKey(this.shardId, e.index), encodeEntry(e))
    if (last.index < tail.lastIndex) {
      deleteKeyRange(batch, raftLogRange(this.shardId, (last.index + 1) as LogIndex))
    }
  }

  private append(entries: readonly Entry[]): void {
    const fresh = this.freshEntries(this.tail(), entries)
    const first = fresh[0]
    if (first === undefined) return
    const keep = first.index - this.offsetIndex - 1
    for (let i = keep; i < this.ents.length; i++) this.bytes -= entryBytes(this.ents[i]!)
    this.ents.length = keep
    for (const e of fresh) {
      this.ents.push(e)
      this.bytes += entryBytes(e)
    }
  }

  /**
   * The entries of `entries` not already covered by the compaction point (they are in a snapshot),
   * after checking that they follow on from `tail`.
   */
  private freshEntries(tail: Tail, entries: readonly Entry[]): readonly Entry[] {
    const first = entries[0]
    if (first === undefined) return entries
    for (let i = 1; i < entries.length; i++) {
      assert(entries[i]!.index === first.index + i, `shard ${this.shardId}: append with a gap`)
      assert(entries[i]!.term >= entries[i - 1]!.term, `shard ${this.shardId}: append goes back in term`)
    }
    const skip = Math.max(0, tail.offsetIndex + 1 - first.index)
    const fresh = entries.slice(skip)
    const start = fresh[0]
    if (start === undefined) return fresh
    assert(
      start.index <= tail.lastIndex + 1,
      `shard ${this.shardId}: append at ${start.index} leaves a gap after ${tail.lastIndex}`,
    )
    const before = start.index - 1 === tail.offsetIndex ? tail.offsetTerm : this.termOrAssert(start.index - 1)
    assert(start.term >= before, `shard ${this.shardId}: append at ${start.index} goes back in term`)
    return fresh
  }

  /** Asserts the invariants on the fields; called after every commit. */
  private checkInvariants(): void {
    const first = this.ents[0]
    assert(first === undefined || first.index === this.offsetIndex + 1, `shard ${this.shardId}: log offset`)
    assert(
      this.offsetIndex <= this.snap.meta.index && this.snap.meta.index <= this.lastIndex(),
      `shard ${this.shardId}: snapshot ${this.snap.meta.index} outside [${this.offsetIndex}, ${this.lastIndex()}]`,
    )
  }

  private tail(): Tail {
    return { offsetIndex: this.offsetIndex, offsetTerm: this.offsetTerm, lastIndex: this.lastIndex() }
  }

  private termOrAssert(index: number): Term {
    const t = this.term(index as LogIndex)
    assert(t.ok, `shard ${this.shardId}: no term at ${index}`)
    return t.value
  }

  // -------------------------------------------------------------------------------------------
  // Compaction, snapshot points and the applied configuration.

  /**
   * Stages dropping the entries up to and including `index`; the entry at `index` itself stays in
   * the Engine as the compaction point's term (see the file comment). Precondition: index <= the
   * snapshot index, so what is dropped is covered by a snapshot.
   */
  stageCompact(batch: WriteBatch, index: LogIndex): void {
    if (!this.checkCompact(index)) return
    // Point deletes of the keys known to exist (the old compaction point and the entries after
    // it): a range delete would have the engine read the range first (rocksdb 5.2.1 has no native
    // DeleteRange), stalling the Ready loop for every compaction.
    for (let i = this.offsetIndex; i < index; i++) batch.del(raftLogKey(this.shardId, i as LogIndex))
  }

  commitCompact(index: LogIndex): void {
    if (!this.checkCompact(index)) return
    const t = this.termOrAssert(index)
    const dropped = index - this.offsetIndex
    for (let i = 0; i < dropped; i++) this.bytes -= entryBytes(this.ents[i]!)
    this.ents = this.ents.slice(dropped)
    this.offsetIndex = index
    this.offsetTerm = t
    this.checkInvariants()
  }

  /** Asserts the precondition; false when there is nothing to drop. */
  private checkCompact(index: LogIndex): boolean {
    assert(
      index <= this.snap.meta.index,
      `shard ${this.shardId}: compact ${index} beyond the snapshot ${this.snap.meta.index}`,
    )
    return index > this.offsetIndex
  }

  /**
   * Stages a new snapshot point: the application has applied `meta.index` and can produce its
   * state there. Entries are kept until `stageCompact`. Preconditions: the snapshot index <=
   * meta.index <= lastIndex(), and meta.term is the log's term at meta.index.
   */
  stageSnapshotMeta(batch: WriteBatch, meta: SnapshotMeta): void {
    this.checkSnapshotMeta(meta)
    batch.put(raftSnapshotMetaKey(this.shardId), encodeSnapshotMeta(meta))
    // The offset entry: without it, a reopened store would take the first entry for the offset.
    const offset = {
      index: this.offsetIndex,
      term: this.offsetTerm,
      type: EntryType.Normal,
      data: noEntryData,
    }
    batch.put(raftLogKey(this.shardId, this.offsetIndex), encodeEntry(offset))
  }

  commitSnapshotMeta(meta: SnapshotMeta): void {
    this.checkSnapshotMeta(meta)
    this.snap = { meta, data: noSnapshotData }
    this.empty = false
    this.checkInvariants()
  }

  private checkSnapshotMeta(meta: SnapshotMeta): void {
    checkConfState(meta.confState)
    assert(
      meta.index >= this.snap.meta.index,
      `shard ${this.shardId}: snapshot ${meta.index} older than ${this.snap.meta.index}`,
    )
    assert(
      meta.index <= this.lastIndex(),
      `shard ${this.shardId}: snapshot ${meta.index} beyond the log ${this.lastIndex()}`,
    )
    const term = this.termOrAssert(meta.index)
    assert(meta.term === term, `shard ${this.shardId}: snapshot term ${meta.term}, log term ${term}`)
  }

  /** Stages the applied configuration (the shell persists it as it applies conf changes). */
  stageConfState(batch: WriteBatch, cs: ConfState): void {
    checkConfState(cs)
    batch.put(raftConfStateKey(this.shardId), encodeConfState(cs))
  }

  commitConfState(cs: ConfState): void {
    checkConfState(cs)
    this.conf = cs
    this.empty = false
  }
}

/** The part of the log an append is checked against. */
interface Tail {
  readonly offsetIndex: LogIndex
  readonly offsetTerm: Term
  readonly lastIndex: LogIndex
}

/** The tail right after installing `meta`: empty, starting after the snapshot. */
function installedTail(meta: SnapshotMeta): Tail {
  return { offsetIndex: meta.index, offsetTerm: meta.term, lastIndex: meta.index }
}

function deleteKeyRange(batch: WriteBatch, range: KeyRange): void {
  batch.deleteRange(range.gte, range.lt)
}

function checkConfState(cs: ConfState): void {
  const problem = confStateProblem(cs)
  assert(problem === null, `inconsistent configuration: ${problem}`)
}

// ---------------------------------------------------------------------------------------------
// Recovery.

function corrupt(shardId: ShardId, why: string, cause?: unknown): KvError {
  return new KvError(ErrorCode.Internal, `shard ${shardId}: corrupt raft log: ${why}`, {
    details: { shardId },
    ...(cause === undefined ? {} : { cause }),
  })
}

/** Decodes a stored record; a record that does not decode is corruption (INTERNAL), not bad input. */
function decodeStored<T>(
  shardId: ShardId,
  what: string,
  decode: (bytes: Uint8Array) => T,
  bytes: Uint8Array | null,
): T | null {
  if (bytes === null) return null
  try {
    return decode(bytes)
  } catch (err) {
    if (isKvErrorWithCode(err, ErrorCode.InvalidArgument))
      throw corrupt(shardId, `${what} does not decode`, err)
    throw err
  }
}

/** Every stored entry in index order, each checked to sit under its own index's key. */
async function loadEntries(engine: Engine, shardId: ShardId): Promise<Entry[]> {
  const entries: Entry[] = []
  for await (const [key, value] of engine.iterate(raftLogRange(shardId, logStart))) {
    const e = decodeStored(shardId, 'log entry', decodeEntry, value)
    assert(e !== null)
    if (!equalBytes(key, raftLogKey(shardId, e.index)))
      throw corrupt(shardId, `entry ${e.index} under another key`)
    entries.push(e)
  }
  return entries
}

/**
 * Checks that what was stored lines up and builds the in-memory state. Throws KvError INTERNAL
 * naming the shard and the violation:
 * - the entries are contiguous, and the first is at or below snapshot index + 1 (entries at or
 *   below the snapshot are kept until compaction; the first of them is the compaction point);
 * - when the log reaches below the snapshot, it reaches the snapshot too, with the snapshot's term;
 * - terms never go back along the log;
 * - the hard state's commit lies in [compaction point, last index] (the core asserts the same at
 *   start, raft.ts; checked here so corruption is an operating error naming the shard).
 */
function recover(shardId: ShardId, stored: StoredLog): LogState {
  const snapshotMeta = stored.snapshotMeta ?? zeroSnapshotMeta
  checkContiguous(shardId, stored.entries)
  const { offsetIndex, offsetTerm, entries } = splitOffset(shardId, snapshotMeta, stored.entries)
  checkTerms(shardId, offsetIndex, offsetTerm, entries)
  const lastIndex = offsetIndex + entries.length
  const hardState = stored.hardState ?? zeroHardState
  checkCommit(shardId, hardState, offsetIndex, lastIndex)
  return {
    hardState,
    confState: stored.confState ?? snapshotMeta.confState,
    snapshotMeta,
    offsetIndex,
    offsetTerm,
    entries,
    empty:
      stored.hardState === null &&
      stored.confState === null &&
      stored.snapshotMeta === null &&
      stored.entries.length === 0,
  }
}

function checkContiguous(shardId: ShardId, entries: readonly Entry[]): void {
  for (let i = 1; i < entries.length; i++) {
    const before = entries[i - 1]!.index
    const after = entries[i]!.index
    if (after !== before + 1) throw corrupt(shardId, `gap in the log between ${before} and ${after}`)
  }
}

/** Where the log's offset is (see the file comment), and the entries after it. */
function splitOffset(
  shardId: ShardId,
  snap: SnapshotMeta,
  stored: readonly Entry[],
): { offsetIndex: LogIndex; offsetTerm: Term; entries: Entry[] } {
  const first = stored[0]
  const last = stored[stored.length - 1]
  if (first === undefined || last === undefined || first.index === snap.index + 1)
    return { offsetIndex: snap.index, offsetTerm: snap.term, entries: [...stored] }
  if (first.index > snap.index + 1)
    throw corrupt(shardId, `gap between the snapshot at ${snap.index} and the first entry ${first.index}`)
  if (last.index < snap.index)
    throw corrupt(shardId, `the log ends at ${last.index}, before the snapshot at ${snap.index}`)
  const atSnapshot = stored[snap.index - first.index]
  assert(atSnapshot !== undefined)
  if (atSnapshot.term !== snap.term)
    throw corrupt(shardId, `entry ${snap.index} has term ${atSnapshot.term}, the snapshot says ${snap.term}`)
  return { offsetIndex: first.index, offsetTerm: first.term, entries: stored.slice(1) }
}

function checkTerms(
  shardId: ShardId,
  offsetIndex: LogIndex,
  offsetTerm: Term,
  entries: readonly Entry[],
): void {
  let term = offsetTerm
  let index: number = offsetIndex
  for (const e of entries) {
    if (e.term < term)
      throw corrupt(shardId, `term goes back from ${term} at ${index} to ${e.term} at ${e.index}`)
    term = e.term
    index = e.index
  }
}

function checkCommit(shardId: ShardId, hs: HardState, offsetIndex: number, lastIndex: number): void {
  // A zero hard state is "never written"; the core then starts from the compaction point itself.
  if (hs.term === 0 && hs.commit === 0) return
  if (hs.commit > lastIndex) throw corrupt(shardId, `commit ${hs.commit} beyond the last index ${lastIndex}`)
  if (hs.commit < offsetIndex)
    throw corrupt(shardId, `commit ${hs.commit} below the compaction point ${offsetIndex}`)
}
