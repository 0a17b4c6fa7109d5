/**
 * The KV state machine of one shard. `apply` is deterministic and synchronous: given the same
 * applied state and the same (index, command) it writes the same bytes and returns the same
 * result on every replica. It never awaits; the shell prefetches the keys it will read
 * (`readKeys`) and hands them in through an `ApplyOverlay`, which also makes the effects of
 * earlier commands of the same group visible to later ones.
 *
 * Semantics:
 * - A put writes a value record with version = index; createVersion is kept across overwrites and
 *   starts anew after a delete.
 * - Compare-and-set: expectedVersion 0 means "must not exist", n > 0 means "current version is
 *   n". On mismatch nothing is written and the result is `versionMismatch` with the current
 *   version (0 when absent). A batch is all or nothing: its ops apply in order (a later op sees an
 *   earlier op of the same batch), and any mismatch writes none of them.
 * - A tagged command (clientId, seq, firstIncompleteSeq) is applied once: a repeat returns the
 *   saved result (Raft thesis §6.3, dedup.ts), however many of the client's writes are in flight
 *   and in whatever order they arrive. Mismatches are saved too, so a retry sees the same answer.
 *   A seq below the client's watermark (`staleSeq`) or beyond its bound of saved results
 *   (`resultsFull`) is not applied; either still consumes its index.
 * - The applied index is written in the same batch as the effects, so after a crash the data and
 *   the applied index agree.
 * - The machine remembers the versions of the keys its latest applies read or wrote (at most
 *   limits.applyRecentKeysMax, the oldest forgotten first): `readKeys` leaves those out, so a
 *   write to a key written recently applies without a storage read. Apply only ever needs a key's
 *   versions and whether it exists, never its old value. The memory is forgotten only between
 *   applies and the next `readKeys` (never between a `readKeys` and the applies it prefetched
 *   for), and it is only ever filled by this machine's applies: nothing else writes the shard's
 *   data while the machine lives (an installed snapshot or a restore comes with a new machine).
 * - An entry may carry a group of tagged writes of one client (`applyEntry`, commands.ts): each
 *   applies in order as it would alone (its own dedup check and saved result: every write keeps
 *   its own seq and is retried on its own), all at the entry's index, which is then the version of
 *   every key they write (the leader never groups two writes of one key) and the client's last
 *   activity in the dedup table; the applied index is written once.
 */
import { assert, unreachable } from '../common/assert.ts'
import type { LogIndex, ShardId } from '../common/ids.ts'
import { limits } from '../common/limits.ts'
import type { Hasher } from '../hashing/index.ts'
import {
  ByteReader,
  ByteWriter,
  dataKey,
  decodeValueRecord,
  encodeValueRecord,
  raftAppliedIndexKey,
  bytesKey,
  type Entry,
  type WriteBatch,
} from '../storage/index.ts'
import type { BatchOp, BatchOpResult } from './api.ts'
import type { Command } from './commands.ts'
import { DedupTable, type ApplyResult, type DedupClientView } from './dedup.ts'

/** Synchronous reads of storage keys, reflecting earlier applies of the same group. */
export interface ApplyReader {
  get(storageKey: Uint8Array): Uint8Array | null
}

/** Where apply writes (a WriteBatch, or an ApplyOverlay over one). */
export interface ApplyWriter {
  put(storageKey: Uint8Array, value: Uint8Array): unknown
  del(storageKey: Uint8Array): unknown
}

/**
 * What one apply did: `applied` (the command took effect, or failed a CAS check), `duplicate` (a
 * retry of a seq whose result is saved: nothing applied, the saved result replayed), `staleSeq`
 * (below the client's watermark: the client already had it answered, so nothing is applied and no
 * result is known), or `resultsFull` (a new seq while the client has `limit` unacknowledged results
 * saved: nothing applied; the client may retry once its firstIncompleteSeq advances).
 */
export type ApplyOutcome =
  | { readonly kind: 'applied'; readonly index: LogIndex; readonly result: ApplyResult }
  | { readonly kind: 'duplicate'; readonly index: LogIndex; readonly result: ApplyResult }
  | { readonly kind: 'staleSeq'; readonly index: LogIndex; readonly watermark: number }
  | { readonly kind: 'resultsFull'; readonly index: LogIndex; readonly limit: number }
  /** A write whose registered session is unknown here, another principal's, or expired. */
  | { readonly kind: 'sessionUnknown'; readonly index: LogIndex }
  /** A registration applied (a new session, or its principal's own renewed). */
  | { readonly kind: 'registered'; readonly index: LogIndex }
  /** A registration of an id another principal holds: nothing changed. */
  | { readonly kind: 'sessionConflict'; readonly index: LogIndex }
  /** A registration refused: the table holds `limit` live sessions of other principals. */
  | { readonly kind: 'sessionsFull'; readonly index: LogIndex; readonly limit: number }

/**
 * A WriteBatch plus the values prefetched for a group of commands: reads see the prefetched values
 * overlaid with every write made so far. Reading a key that was not prefetched is a programmer
 * error (the shell must prefetch `readKeys` of every command of the group).
 */
export class ApplyOverlay implements ApplyReader, ApplyWriter {
  private readonly values = new Map<string, Uint8Array | null>()

  constructor(
    readonly batch: WriteBatch,
    prefetched: Iterable<readonly [Uint8Array, Uint8Array | null]>,
  ) {
    for (const [key, value] of prefetched) this.values.set(bytesKey(key), value)
  }

  get(storageKey: Uint8Array): Uint8Array | null {
    const value = this.values.get(bytesKey(storageKey))
    assert(value !== undefined, 'apply read a key that was not prefetched')
    return value
  }

  put(storageKey: Uint8Array, value: Uint8Array): void {
    this.batch.put(storageKey, value)
    this.values.set(bytesKey(storageKey), value)
  }

  del(storageKey: Uint8Array): void {
    this.batch.del(storageKey)
    this.values.set(bytesKey(storageKey), null)
  }
}

export interface KvStateMachineInit {
  readonly shardId: ShardId
  /** The applied index found in storage (0 for a new shard). */
  readonly appliedIndex: LogIndex
  /** The persisted dedup records (keys.ts `dedupRange`). */
  readonly dedupRecords: readonly Entry[]
  readonly dedupClientsMax: number
  readonly dedupResultsPerClientMax: number
  /** Default limits.sessionsPerPrincipalMax. */
  readonly sessionsPerPrincipalMax?: number
  /** Default limits.sessionIdleMsMax. */
  readonly sessionIdleMsMax?: number
  /**
   * Where the shard keeps key `key` (whose xxh64 is `hash`); default the hash-first user data
   * layout (keys.ts `dataKey`). The meta shard keeps its keys under its shard id instead.
   */
  readonly storageKeyOf?: (hash: bigint, key: Uint8Array) => Uint8Array
  /** Default limits.applyRecentKeysMax. */
  readonly recentKeysMax?: number
}

/** What apply needs of a key's current record: its versions, never its value (null: absent). */
interface KeyVersions {
  readonly version: LogIndex
  readonly createVersion: LogIndex
}

/** A remembered key: its versions, and when it was remembered (KvStateMachine.recent). */
interface RecentKey {
  readonly versions: KeyVersions | null
  readonly seq: number
}

export interface KvStateMachineComponents {
  readonly hasher: Hasher
}

export function encodeAppliedIndex(index: LogIndex): Uint8Array {
  return new ByteWriter(10).u8(1).uvarint(index).finish()
}

export function decodeAppliedIndex(bytes: Uint8Array): LogIndex {
  const r = new ByteReader(bytes, 0, 'applied index')
  assert(r.u8() === 1, 'corrupt applied index: unknown format')
  const index = r.uvarint() as LogIndex
  r.end()
  return index
}

export class KvStateMachine {
  readonly shardId: ShardId
  private applied: LogIndex
  private readonly dedup: DedupTable
  private readonly hasher: Hasher
  private readonly storageKeyOf: (hash: bigint, key: Uint8Array) => Uint8Array
  /**
   * Versions of recently applied keys (by bytesKey of the storage key), oldest first, each with
   * the sequence number it was remembered at (rising in the map's order).
   */
  private readonly recent = new Map<string, RecentKey>()
  private readonly recentKeysMax: number
  /** Set by an apply; the next `readKeys` forgets the oldest keys beyond the bound first. */
  private recentTrimDue = false
  /** The sequence number of the last key remembered, and of the newest key forgotten. */
  private rememberedSeq = 0
  private forgottenSeq = 0

  constructor(init: KvStateMachineInit, components: KvStateMachineComponents) {
    this.shardId = init.shardId
    this.applied = init.appliedIndex
    this.dedup = DedupTable.load(
      {
        shardId: init.shardId,
        clientsMax: init.dedupClientsMax,
        resultsPerClientMax: init.dedupResultsPerClientMax,
        ...(init.sessionsPerPrincipalMax === undefined
          ? {}
          : { sessionsPerPrincipalMax: init.sessionsPerPrincipalMax }),
        ...(init.sessionIdleMsMax === undefined ? {} : { sessionIdleMsMax: init.sessionIdleMsMax }),
      },
      init.dedupRecords,
    )
    this.hasher = components.hasher
    this.storageKeyOf = init.storageKeyOf ?? dataKey
    this.recentKeysMax = init.recentKeysMax ?? limits.applyRecentKeysMax
    assert(Number.isSafeInteger(this.recentKeysMax) && this.recentKeysMax >= 0, 'recentKeysMax')
  }

  /** Invariant: every command up to this index is applied, and none after it. */
  get appliedIndex(): LogIndex {
    return this.applied
  }

  get dedupClients(): number {
    return this.dedup.size
  }

  /** What the dedup table holds for `clientId` (for logs and tests). */
  dedupClient(clientId: string): DedupClientView | undefined {
    return this.dedup.client(clientId)
  }

  /** The storage key of user key `key`. */
  dataKey(key: Uint8Array): Uint8Array {
    return this.storageKeyOf(this.hasher.hash64(key), key)
  }

  /** The storage key of user key `key` and the key's hash (hashed once). */
  locate(key: Uint8Array): { readonly storageKey: Uint8Array; readonly hash: bigint } {
    const hash = this.hasher.hash64(key)
    return { storageKey: this.storageKeyOf(hash, key), hash }
  }

  /**
   * The storage keys `apply(command)` reads: prefetch these into the overlay. Keys whose versions
   * the machine remembers are left out; what it remembers now stays until the applies are done.
   */
  readKeys(command: Command): Uint8Array[] {
    if (this.recentTrimDue) this.trimRecent()
    return this.unknownKeys(this.storageKeysOf(command))
  }

  /** Every storage key `command` touches. */
  storageKeysOf(command: Command): Uint8Array[] {
    switch (command.kind) {
      case 'put':
      case 'delete':
        return [this.dataKey(command.key)]
      case 'batch':
        return command.ops.map((op) => this.dataKey(op.key))
      case 'register':
        return []
      default:
        return unreachable(command)
    }
  }

  /** Keys whose versions the machine remembers (for tests and metrics). */
  get recentKeys(): number {
    return this.recent.size
  }

  private trimRecent(): void {
    this.recentTrimDue = false
    for (const [key, known] of this.recent) {
      if (this.recent.size <= this.recentKeysMax) return
      this.recent.delete(key)
      this.forgottenSeq = known.seq
    }
  }

  /** Of `storageKeys`, those whose versions the machine does not know (forgets nothing). */
  unknownKeys(storageKeys: readonly Uint8Array[]): Uint8Array[] {
    if (this.recent.size === 0) return [...storageKeys]
    return storageKeys.filter((k) => !this.recent.has(bytesKey(k)))
  }

  /**
   * A token for a read, taken from now on, of keys the machine does not know now
   * (`unknownKeys`); hand it back to `learn` with what was read. Such a key has no write in flight:
   * it was never applied while remembered, or it was forgotten, which happens only at the
   * `readKeys` of a batch after the one that wrote it, once that batch was written. So the read
   * shows its latest apply so far.
   */
  learnToken(): number {
    return this.rememberedSeq
  }

  /**
   * Learns the versions a read of storage (of keys unknown when `learnToken` returned `token`)
   * found, for the keys the machine still does not know. A key it knows now was applied since
   * (the read may be older than that apply). A key applied since and already forgotten again
   * would look unknown: if any key remembered after the token was forgotten, nothing is learned.
   */
  learn(token: number, storageKeys: readonly Uint8Array[], values: readonly (Uint8Array | null)[]): void {
    if (this.forgottenSeq > token) return
    for (const [i, storageKey] of storageKeys.entries()) {
      // At most twice the bound: only `readKeys` forgets (a learn may land between a readKeys and
      // its applies), and entries that append and never commit (a leader cut off) never call it.
      if (this.recent.size >= 2 * this.recentKeysMax) return
      const key = bytesKey(storageKey)
      if (this.recent.has(key)) continue
      const raw = values[i] ?? null
      const record = raw === null ? null : decodeValueRecord(raw)
      this.remember(
        key,
        record === null ? null : { version: record.version, createVersion: record.createVersion },
      )
    }
  }

  /** Remembers `key`'s versions as the newest. */
  private remember(key: string, versions: KeyVersions | null): void {
    if (this.recentKeysMax === 0) return
    this.recent.delete(key)
    this.recent.set(key, { versions, seq: ++this.rememberedSeq })
    this.recentTrimDue = true
  }

  /**
   * Consumes `index` without a command: a leader's no-op entry or a configuration change. Only
   * the applied index moves (written to `writer`, like every apply).
   */
  skip(index: LogIndex, writer: ApplyWriter): void {
    assert(index === this.applied + 1, 'skip out of order')
    this.applied = index
    writer.put(raftAppliedIndexKey(this.shardId), encodeAppliedIndex(index))
  }

  /**
   * Applies `command` at `index` (which must be appliedIndex + 1), writing its effects, its dedup
   * records and the new applied index into `writer`. Deterministic; never throws for any valid
   * command (user errors such as CAS mismatches are results).
   */
  apply(index: LogIndex, command: Command, writer: ApplyWriter, reader: ApplyReader): ApplyOutcome {
    assert(index === this.applied + 1, 'apply out of order')
    this.applied = index
    writer.put(raftAppliedIndexKey(this.shardId), encodeAppliedIndex(index))
    const outcome = this.applyAt(index, command, writer, reader)
    this.dedup.flush(writer)
    return outcome
  }

  /**
   * Applies the commands of one entry at `index` (commands.ts `decodeEntry`): each in order, as
   * `apply` would alone, every one at the entry's index (a put's version is the index), with the
   * applied index written once. A group's commands are tagged writes of one client (commands.ts),
   * each with its own seq and so its own dedup result; each gets its own outcome.
   */
  applyEntry(
    index: LogIndex,
    commands: readonly Command[],
    writer: ApplyWriter,
    reader: ApplyReader,
  ): ApplyOutcome[] {
    const first = commands[0]
    assert(first !== undefined, 'an entry without commands')
    if (commands.length === 1) return [this.apply(index, first, writer, reader)]
    assert(index === this.applied + 1, 'apply out of order')
    this.applied = index
    writer.put(raftAppliedIndexKey(this.shardId), encodeAppliedIndex(index))
    const outcomes = commands.map((command) => {
      assert(command.kind !== 'register', 'a registration in a group')
      return this.applyAt(index, command, writer, reader)
    })
    // The client's header once for the whole entry, not once per command.
    this.dedup.flush(writer)
    return outcomes
  }

  private applyAt(index: LogIndex, command: Command, writer: ApplyWriter, reader: ApplyReader): ApplyOutcome {
    if (command.kind === 'register') {
      const r = this.dedup.register(command.clientId, command.floor, command.session, index, writer)
      switch (r.kind) {
        case 'registered':
          return { kind: 'registered', index }
        case 'conflict':
          return { kind: 'sessionConflict', index }
        case 'full':
          return { kind: 'sessionsFull', index, limit: r.limit }
        default:
          return unreachable(r)
      }
    }
    const tag = command.tag
    if (tag !== undefined) {
      const check = this.dedup.begin(tag, index, writer)
      switch (check.kind) {
        case 'duplicate':
          return { kind: 'duplicate', index, result: check.result }
        case 'stale':
          return { kind: 'staleSeq', index, watermark: check.watermark }
        case 'full':
          return { kind: 'resultsFull', index, limit: check.limit }
        case 'unknown':
          return { kind: 'sessionUnknown', index }
        case 'new':
          break
        default:
          unreachable(check)
      }
    }
    const result = this.applyOps(index, command, writer, reader)
    if (tag !== undefined) this.dedup.record(tag, result, writer)
    return { kind: 'applied', index, result }
  }

  private applyOps(
    index: LogIndex,
    command: Exclude<Command, { kind: 'register' }>,
    writer: ApplyWriter,
    reader: ApplyReader,
  ): ApplyResult {
    const ops: readonly BatchOp[] = command.kind === 'batch' ? command.ops : [command]
    // Pass 1: evaluate in order against the state overlaid with earlier ops of this command.
    const pending = new Map<
      string,
      {
        readonly storageKey: Uint8Array
        readonly value: Uint8Array | null
        readonly versions: KeyVersions | null
      }
    >()
    const current = (storageKey: Uint8Array, key: string): KeyVersions | null => {
      const mine = pending.get(key)
      if (mine !== undefined) return mine.versions
      const known = this.recent.get(key)
      if (known !== undefined) return known.versions
      const raw = reader.get(storageKey)
      const record = raw === null ? null : decodeValueRecord(raw)
      const versions =
        record === null ? null : { version: record.version, createVersion: record.createVersion }
      // What storage holds now: true whether or not this command goes on to write.
      this.remember(key, versions)
      return versions
    }
    const results: BatchOpResult[] = []
    for (const [opIndex, op] of ops.entries()) {
      const storageKey = this.dataKey(op.key)
      const key = bytesKey(storageKey)
      const before = current(storageKey, key)
      if (op.expectedVersion !== undefined) {
        const currentVersion = before?.version ?? 0
        if (currentVersion !== op.expectedVersion) return { kind: 'versionMismatch', opIndex, currentVersion }
      }
      switch (op.kind) {
        case 'put': {
          const createVersion = before?.createVersion ?? index
          pending.set(key, { storageKey, value: op.value, versions: { version: index, createVersion } })
          results.push({ kind: 'put', version: index })
          break
        }
        case 'delete':
          pending.set(key, { storageKey, value: null, versions: null })
          results.push({ kind: 'delete', deleted: before !== null })
          break
        default:
          unreachable(op)
      }
    }
    // Pass 2: every check passed; write the final state of each touched key.
    for (const [key, { storageKey, value, versions }] of pending) {
      if (value === null || versions === null) writer.del(storageKey)
      else writer.put(storageKey, encodeValueRecord({ value, ...versions }))
      this.remember(key, versions)
    }
    if (command.kind === 'batch') return { kind: 'batch', results }
    const only = results[0]
    assert(only !== undefined && only.kind === command.kind, 'single op result missing')
    return only
  }
}
