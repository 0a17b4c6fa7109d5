/**
 * The opaque scan cursor: a ScanPosition bound to one cluster and sealed with a checksum.
 *
 *     version (1 byte, = 1) | cluster id (16 bytes) | hash (8 bytes, big-endian)
 *     | key length (2 bytes, big-endian) | key | checksum (8 bytes: sha256 of all before)
 *
 * Decoding refuses, with INVALID_ARGUMENT (details.field = 'cursor'), a cursor of another
 * version, a truncated or over-long one, one whose checksum does not match (corrupt or forged by
 * hand) and one minted by another cluster: a position in someone else's key space means nothing
 * here. The checksum is an integrity check, not a secret: clients must treat the bytes as opaque,
 * but a cursor grants nothing a scan without one would not.
 */
import { createHash } from 'node:crypto'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { ScanPosition } from '../shard/index.ts'

const cursorVersion = 1
export const clusterIdBytes = 16
const checksumBytes = 8
const headerBytes = 1 + clusterIdBytes + 8 + 2
const keyLengthMax = 0xffff

function checksum(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest().subarray(0, checksumBytes)
}

function invalidCursor(reason: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, `scan cursor is invalid: ${reason}`, {
    details: { field: 'cursor' },
  })
}

/** Encodes `position` for the cluster `clusterId` (16 bytes). */
export function encodeCursor(position: ScanPosition, clusterId: Uint8Array): Buffer {
  if (clusterId.length !== clusterIdBytes) throw new RangeError('cluster id must be 16 bytes')
  if (position.key.length > keyLengthMax) throw new RangeError('cursor key too long')
  const body = Buffer.alloc(headerBytes + position.key.length)
  body.writeUInt8(cursorVersion, 0)
  body.set(clusterId, 1)
  body.writeBigUInt64BE(position.hash, 1 + clusterIdBytes)
  body.writeUInt16BE(position.key.length, 1 + clusterIdBytes + 8)
  body.set(position.key, headerBytes)
  return Buffer.concat([body, checksum(body)])
}

/** The position of `cursor`, or undefined for an empty cursor (start of the scan). */
export function decodeCursor(cursor: Uint8Array, clusterId: Uint8Array): ScanPosition | undefined {
  if (cursor.length === 0) return undefined
  const bytes = Buffer.from(cursor.buffer, cursor.byteOffset, cursor.length)
  if (bytes.length < headerBytes + checksumBytes) throw invalidCursor('truncated')
  if (bytes.readUInt8(0) !== cursorVersion) throw invalidCursor('unknown version')
  const keyLength = bytes.readUInt16BE(1 + clusterIdBytes + 8)
  if (bytes.length !== headerBytes + keyLength + checksumBytes) throw invalidCursor('truncated or padded')
  const body = bytes.subarray(0, headerBytes + keyLength)
  if (!checksum(body).equals(bytes.subarray(headerBytes + keyLength)))
    throw invalidCursor('checksum mismatch')
  if (!bytes.subarray(1, 1 + clusterIdBytes).equals(clusterId))
    throw invalidCursor('it belongs to another cluster')
  return {
    hash: bytes.readBigUInt64BE(1 + clusterIdBytes),
    key: new Uint8Array(bytes.subarray(headerBytes, headerBytes + keyLength)),
  }
}
