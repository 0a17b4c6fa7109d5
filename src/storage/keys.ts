/**
 * The key layout of one node's Engine (ARCHITECTURE.md section 5). Pure encode/decode; every
 * decoder asserts on bytes that are not what our encoders write (corruption is fail-stop).
 *
 *   'D' | xxh64(key) u64 BE | key                   user data -> value record (value-record.ts)
 *   'M' | name (UTF-8)                               node-local meta (node id, cluster id, format)
 *   'R' | shardId u32 BE | 'h'                       Raft hard state
 *   'R' | shardId u32 BE | 'c'                       Raft conf state
 *   'R' | shardId u32 BE | 's'                       Raft snapshot metadata
 *   'R' | shardId u32 BE | 'a'                       applied index (written with the applied data)
 *   'R' | shardId u32 BE | 'l' | index u64 BE        Raft log entry
 *   'S' | shardId u32 BE | 'k' | key                 the data of a shard outside the user hash space
 *                                                    (the meta shard: node registry, shard map)
 *   'S' | shardId u32 BE | 'd' | len u8 | clientId (UTF-8) | 0x00
 *                                                    exactly-once dedup: one client's header
 *   'S' | shardId u32 BE | 'd' | len u8 | clientId (UTF-8) | 0x01 | seq u64 BE
 *                                                    exactly-once dedup: one saved result (shard/dedup.ts)
 *   'S' | shardId u32 BE | 'r'                       the shard's replicated descriptor: its epoch and the
 *                                                    index of the entry that last changed its replicas
 *                                                    (shard/descriptor.ts); travels with snapshots
 *
 * User data is hash-first, so a shard (a range of the hash ring) is one contiguous key range:
 * a snapshot is one iterator and dropping a moved shard is one range delete. Everything else a
 * shard owns sits under its shard id ('R' and 'S'), so it can be exported and dropped by range too.
 * Big-endian fixed-width integers make numeric order equal byte order. The client id of a dedup key
 * is length-prefixed, so one client's header and results are contiguous, header first, results in
 * seq order, and no client id is a prefix of another's keys.
 */
import { assert } from '../common/assert.ts'
import type { LogIndex, ShardId } from '../common/ids.ts'
import {
  ByteReader,
  ByteWriter,
  concatBytes,
  failStop,
  keySuccessor,
  startsWith,
  type MalformedHandler,
} from './bytes.ts'
import type { KeyRange } from './engine.ts'

export const KeySpace = {
  Data: 0x44, // 'D'
  Meta: 0x4d, // 'M'
  Raft: 0x52, // 'R'
  ShardLocal: 0x53, // 'S'
} as const
export type KeySpace = (typeof KeySpace)[keyof typeof KeySpace]

export const RaftKeyKind = {
  AppliedIndex: 0x61, // 'a'
  ConfState: 0x63, // 'c'
  HardState: 0x68, // 'h'
  LogEntry: 0x6c, // 'l'
  SnapshotMeta: 0x73, // 's'
} as const
export type RaftKeyKind = (typeof RaftKeyKind)[keyof typeof RaftKeyKind]

export const ShardLocalKind = {
  Dedup: 0x64, // 'd'
  /** The key-value data of a shard that lives outside the user hash space (the meta shard). */
  Data: 0x6b, // 'k'
  /** The shard's replicated descriptor (epoch, configuration index). */
  Descriptor: 0x72, // 'r'
} as const
export type ShardLocalKind = (typeof ShardLocalKind)[keyof typeof ShardLocalKind]

/** Hashes are in [0, hashEnd); a hash range's `end` may be hashEnd (the end of the ring). */
export const hashEnd = 1n << 64n
const shardIdEnd = 0x1_0000_0000
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** Writes `hash` big-endian into out[offset..offset+8) (two number halves: no bigint per byte). */
function writeHash(out: Uint8Array, offset: number, hash: bigint): void {
  assert(hash >= 0n && hash < hashEnd, 'hash out of range')
  const hi = Number(hash >> 32n)
  const lo = Number(hash & 0xffff_ffffn)
  out[offset] = hi >>> 24
  out[offset + 1] = (hi >>> 16) & 0xff
  out[offset + 2] = (hi >>> 8) & 0xff
  out[offset + 3] = hi & 0xff
  out[offset + 4] = lo >>> 24
  out[offset + 5] = (lo >>> 16) & 0xff
  out[offset + 6] = (lo >>> 8) & 0xff
  out[offset + 7] = lo & 0xff
}

function hashBytes(hash: bigint): Uint8Array {
  const out = new Uint8Array(8)
  writeHash(out, 0, hash)
  return out
}

function readHash(bytes: Uint8Array, offset: number): bigint {
  const hi =
    (((bytes[offset] as number) << 24) |
      ((bytes[offset + 1] as number) << 16) |
      ((bytes[offset + 2] as number) << 8) |
      (bytes[offset + 3] as number)) >>>
    0
  const lo =
    (((bytes[offset + 4] as number) << 24) |
      ((bytes[offset + 5] as number) << 16) |
      ((bytes[offset + 6] as number) << 8) |
      (bytes[offset + 7] as number)) >>>
    0
  return (BigInt(hi) << 32n) | BigInt(lo)
}

// ---- user data ----

/** The storage key of user key `key` whose xxh64 is `hash`. */
export function dataKey(hash: bigint, key: Uint8Array): Uint8Array {
  // One allocation: this runs for every key of every read and write, on every replica.
  const out = new Uint8Array(9 + key.length)
  out[0] = KeySpace.Data
  writeHash(out, 1, hash)
  out.set(key, 9)
  return out
}

export function isDataKey(storageKey: Uint8Array): boolean {
  return storageKey.length >= 9 && storageKey[0] === KeySpace.Data
}

/** The hash and user key of a data storage key. The returned key is a copy. */
export function decodeDataKey(storageKey: Uint8Array): { readonly hash: bigint; readonly key: Uint8Array } {
  assert(isDataKey(storageKey), 'corrupt data key')
  return { hash: readHash(storageKey, 1), key: storageKey.slice(9) }
}

/** The storage range holding every user key whose hash is in [start, end); `end` may be `hashEnd`. */
export function dataRangeForHashRange(start: bigint, end: bigint): KeyRange {
  assert(start >= 0n && start < end && end <= hashEnd, 'bad hash range')
  const gte = concatBytes(Uint8Array.of(KeySpace.Data), hashBytes(start))
  const lt =
    end === hashEnd
      ? Uint8Array.of(KeySpace.Data + 1)
      : concatBytes(Uint8Array.of(KeySpace.Data), hashBytes(end))
  return { gte, lt }
}

/** Every user key of the node. */
export function dataRangeAll(): KeyRange {
  return dataRangeForHashRange(0n, hashEnd)
}

/** The first storage key strictly after the user key at (hash, key): where a scan resumes. */
export function dataKeyAfter(hash: bigint, key: Uint8Array): Uint8Array {
  return keySuccessor(dataKey(hash, key))
}

// ---- per shard: Raft state and shard-local state ----

/** The prefix of a shard's keys in `space`, in a writer with room for `moreBytes` after it. */
function shardPrefix(space: KeySpace, shardId: ShardId, moreBytes = 11): ByteWriter {
  assert(Number.isSafeInteger(shardId) && shardId >= 0 && shardId < shardIdEnd, 'shard id out of key range')
  return new ByteWriter(5 + moreBytes).u8(space).u32(shardId)
}

function raftKey(shardId: ShardId, kind: RaftKeyKind): Uint8Array {
  return shardPrefix(KeySpace.Raft, shardId).u8(kind).finish()
}

export const raftHardStateKey = (shardId: ShardId): Uint8Array => raftKey(shardId, RaftKeyKind.HardState)
export const raftConfStateKey = (shardId: ShardId): Uint8Array => raftKey(shardId, RaftKeyKind.ConfState)
export const raftSnapshotMetaKey = (shardId: ShardId): Uint8Array =>
  raftKey(shardId, RaftKeyKind.SnapshotMeta)
export const raftAppliedIndexKey = (shardId: ShardId): Uint8Array =>
  raftKey(shardId, RaftKeyKind.AppliedIndex)

export function raftLogKey(shardId: ShardId, index: LogIndex): Uint8Array {
  return shardPrefix(KeySpace.Raft, shardId).u8(RaftKeyKind.LogEntry).u64(index).finish()
}

/** The log entries of a shard with index in [fromIndex, toIndex) (toIndex omitted: to the end). */
export function raftLogRange(shardId: ShardId, fromIndex: LogIndex, toIndex?: LogIndex): KeyRange {
  const gte = raftLogKey(shardId, fromIndex)
  const lt =
    toIndex === undefined
      ? shardPrefix(KeySpace.Raft, shardId)
          .u8(RaftKeyKind.LogEntry + 1)
          .finish()
      : raftLogKey(shardId, toIndex)
  return { gte, lt }
}

export function decodeRaftLogKey(storageKey: Uint8Array): {
  readonly shardId: ShardId
  readonly index: LogIndex
} {
  const r = new ByteReader(storageKey, 0, 'raft log key')
  assert(r.u8() === KeySpace.Raft, 'corrupt raft log key')
  const shardId = r.u32() as ShardId
  assert(r.u8() === RaftKeyKind.LogEntry, 'corrupt raft log key')
  const index = r.u64() as LogIndex
  r.end()
  return { shardId, index }
}

/** Every Raft key of a shard (hard state, conf state, snapshot meta, applied index, log). */
export function raftRange(shardId: ShardId): KeyRange {
  const gte = shardPrefix(KeySpace.Raft, shardId).finish()
  return { gte, lt: nextShardPrefix(KeySpace.Raft, shardId) }
}

function nextShardPrefix(space: KeySpace, shardId: ShardId): Uint8Array {
  return shardId + 1 < shardIdEnd
    ? shardPrefix(space, (shardId + 1) as ShardId).finish()
    : Uint8Array.of(space + 1)
}

/** A shard-local state key: 'S' | shardId | kind | suffix. */
export function shardLocalKey(shardId: ShardId, kind: ShardLocalKind, suffix: Uint8Array): Uint8Array {
  return shardPrefix(KeySpace.ShardLocal, shardId, 1 + suffix.length)
    .u8(kind)
    .raw(suffix)
    .finish()
}

/** Every shard-local key of one kind. */
export function shardLocalKindRange(shardId: ShardId, kind: ShardLocalKind): KeyRange {
  return {
    gte: shardPrefix(KeySpace.ShardLocal, shardId).u8(kind).finish(),
    lt: shardPrefix(KeySpace.ShardLocal, shardId)
      .u8(kind + 1)
      .finish(),
  }
}

/** Every shard-local key of a shard (travels with the shard's data in snapshots and moves). */
export function shardLocalRange(shardId: ShardId): KeyRange {
  return {
    gte: shardPrefix(KeySpace.ShardLocal, shardId).finish(),
    lt: nextShardPrefix(KeySpace.ShardLocal, shardId),
  }
}

const DedupRecordKind = { Client: 0x00, Result: 0x01 } as const

/**
 * A client id as dedup keys hold it (UTF-8): `dedupClientKey` and `dedupResultKey` take the
 * string or these bytes, so a caller making many keys of one client encodes its id once.
 */
export function dedupClientIdBytes(clientId: string): Uint8Array {
  return encoder.encode(clientId)
}

function dedupClientPrefix(shardId: ShardId, clientId: string | Uint8Array): ByteWriter {
  const id = typeof clientId === 'string' ? encoder.encode(clientId) : clientId
  assert(id.length > 0 && id.length <= 0xff, 'dedup client id must be 1..255 bytes')
  // Room for the kind, the id and what follows it (a record kind and a seq: dedupResultKey).
  return shardPrefix(KeySpace.ShardLocal, shardId, 11 + id.length)
    .u8(ShardLocalKind.Dedup)
    .u8(id.length)
    .raw(id)
}

/** The key of one client's dedup header (watermark and last activity). */
export function dedupClientKey(shardId: ShardId, clientId: string | Uint8Array): Uint8Array {
  return dedupClientPrefix(shardId, clientId).u8(DedupRecordKind.Client).finish()
}

/** The key of the saved result of `seq` of one client. */
export function dedupResultKey(shardId: ShardId, clientId: string | Uint8Array, seq: number): Uint8Array {
  return dedupClientPrefix(shardId, clientId).u8(DedupRecordKind.Result).u64(seq).finish()
}

/** The storage key of `key` in a shard whose data lives under its shard id (the meta shard). */
export function shardDataKey(shardId: ShardId, key: Uint8Array): Uint8Array {
  return shardLocalKey(shardId, ShardLocalKind.Data, key)
}

/** Every key of a shard whose data lives under its shard id. */
export const shardDataRange = (shardId: ShardId): KeyRange =>
  shardLocalKindRange(shardId, ShardLocalKind.Data)

/** The shard's replicated descriptor (shard/descriptor.ts). */
export function shardDescriptorKey(shardId: ShardId): Uint8Array {
  return shardPrefix(KeySpace.ShardLocal, shardId).u8(ShardLocalKind.Descriptor).finish()
}

/** Every dedup record of a shard: each client's header followed by its saved results. */
export const dedupRange = (shardId: ShardId): KeyRange => shardLocalKindRange(shardId, ShardLocalKind.Dedup)

/**
 * A dedup key: `seq` is undefined for a client header, the seq for a saved result. A key that is
 * not one is corruption (an assertion), unless `malformed` says otherwise (bytes from outside).
 */
export function decodeDedupKey(
  storageKey: Uint8Array,
  malformed: MalformedHandler = failStop,
): {
  readonly shardId: ShardId
  readonly clientId: string
  readonly seq: number | undefined
} {
  const r = new ByteReader(storageKey, 0, 'dedup key', malformed)
  if (r.u8() !== KeySpace.ShardLocal) malformed('corrupt dedup key')
  const shardId = r.u32() as ShardId
  if (r.u8() !== ShardLocalKind.Dedup) malformed('corrupt dedup key')
  const idLength = r.u8()
  if (idLength === 0) malformed('corrupt dedup key: empty client id')
  let clientId = ''
  try {
    clientId = decoder.decode(r.raw(idLength))
  } catch {
    malformed('corrupt dedup key: client id is not UTF-8')
  }
  const kind = r.u8()
  let seq: number | undefined
  if (kind === DedupRecordKind.Result) seq = r.u64()
  else if (kind !== DedupRecordKind.Client) malformed('corrupt dedup key: unknown record kind')
  r.end()
  return { shardId, clientId, seq }
}

// ---- node-local meta ----

export function metaKey(name: string): Uint8Array {
  assert(name.length > 0, 'empty meta key name')
  return concatBytes(Uint8Array.of(KeySpace.Meta), encoder.encode(name))
}

export function metaRange(): KeyRange {
  return { gte: Uint8Array.of(KeySpace.Meta), lt: Uint8Array.of(KeySpace.Meta + 1) }
}

/** True when `storageKey` lies in `space`. */
export function inKeySpace(storageKey: Uint8Array, space: KeySpace): boolean {
  return startsWith(storageKey, Uint8Array.of(space))
}
