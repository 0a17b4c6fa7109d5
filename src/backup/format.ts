/**
 * The bytes of a backup (pure: no I/O). A backup is a directory (manifest.ts says what is in it);
 * each data shard is one file of frames:
 *
 *   file    = magic "RKVSHRD1" | frame* | end frame
 *   frame   = kind u8 | length u32 big-endian | payload[length]
 *   entries = (kind 1) count uvarint | (key uvarint-length-prefixed | value uvarint-length-prefixed)*
 *   end     = (kind 2) entry count uvarint | entry bytes uvarint (keys and values together)
 *
 * An entries payload is also what the ExportShard stream carries (admin.proto
 * ExportShardResponse.entries), so kvctl writes what a node sends without decoding it twice.
 * Keys are storage keys as the node's RocksDB holds them (storage/keys.ts): a file is the shard's
 * replicated ranges (node/replica-record.ts replicatedRanges) at one applied index, in key order.
 *
 * Every decoder here reads bytes from outside (a file, the network): malformed bytes are a
 * KvError INVALID_ARGUMENT naming what is wrong, never an assertion.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import { ByteReader, ByteWriter, type Entry, type MalformedHandler } from '../storage/index.ts'

export const shardFileMagic = new TextEncoder().encode('RKVSHRD1')
export const FrameKind = { Entries: 1, End: 2 } as const
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind]
/** kind u8 + length u32. */
export const frameHeaderBytes = 5

/** A malformed-bytes handler that throws INVALID_ARGUMENT prefixed with `where`. */
export function malformedIn(where: string): MalformedHandler {
  return (message: string): never => {
    throw new KvError(ErrorCode.InvalidArgument, `${where}: ${message}`, { details: { field: 'backup' } })
  }
}

/** The payload of an entries frame (and of an export message). */
export function encodeEntries(entries: readonly Entry[]): Uint8Array {
  let size = 10
  for (const [k, v] of entries) size += k.length + v.length + 10
  const w = new ByteWriter(size).uvarint(entries.length)
  for (const [k, v] of entries) w.bytes(k).bytes(v)
  return w.finish()
}

/**
 * The entries of a payload. Refused (through `malformed`) when truncated, with trailing bytes, with
 * an empty or oversized key, or larger than limits.backupChunkBytesMax.
 */
export function decodeEntries(payload: Uint8Array, malformed: MalformedHandler): Entry[] {
  if (payload.length > limits.backupChunkBytesMax)
    malformed(`entries chunk of ${payload.length} bytes exceeds ${limits.backupChunkBytesMax}`)
  const r = new ByteReader(payload, 0, 'entries chunk', malformed)
  const count = r.uvarint()
  // Each entry takes at least three bytes (two lengths and a key byte).
  if (count * 3 > r.remaining) malformed('corrupt entries chunk: count beyond its bytes')
  const out: Entry[] = []
  for (let i = 0; i < count; i++) {
    const key = r.bytes()
    if (key.length === 0) malformed('corrupt entries chunk: empty key')
    out.push([key, r.bytes()])
  }
  r.end()
  return out
}

/** A whole frame: header and payload. */
export function encodeFrame(kind: FrameKind, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(frameHeaderBytes + payload.length)
  out[0] = kind
  new DataView(out.buffer).setUint32(1, payload.length)
  out.set(payload, frameHeaderBytes)
  return out
}

/** A frame header's kind and payload length; refused when the kind is unknown or the length absurd. */
export function decodeFrameHeader(
  header: Uint8Array,
  malformed: MalformedHandler,
): { readonly kind: FrameKind; readonly length: number } {
  if (header.length !== frameHeaderBytes) malformed('truncated frame header')
  const kind = header[0]
  if (kind !== FrameKind.Entries && kind !== FrameKind.End) malformed(`unknown frame kind ${String(kind)}`)
  const length = new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(1)
  if (length > limits.backupChunkBytesMax)
    malformed(`frame of ${length} bytes exceeds ${limits.backupChunkBytesMax}`)
  return { kind: kind as FrameKind, length }
}

export interface EndTotals {
  readonly entryCount: number
  readonly entryBytes: number
}

export function encodeEnd(totals: EndTotals): Uint8Array {
  return new ByteWriter(20).uvarint(totals.entryCount).uvarint(totals.entryBytes).finish()
}

export function decodeEnd(payload: Uint8Array, malformed: MalformedHandler): EndTotals {
  const r = new ByteReader(payload, 0, 'end frame', malformed)
  const entryCount = r.uvarint()
  const entryBytes = r.uvarint()
  r.end()
  return { entryCount, entryBytes }
}

/** Bytes of keys and values of `entries` (what the end frame totals). */
export function entriesBytes(entries: readonly Entry[]): number {
  let n = 0
  for (const [k, v] of entries) n += k.length + v.length
  return n
}
