/**
 * The value record stored under a data key (keys.ts): the user value with its versions.
 *
 *   format u8 (=1) | version uvarint | version - createVersion uvarint | value bytes (the rest)
 *
 * `version` is the log index that last wrote the key and `createVersion` the index that created it
 * (kept across overwrites, reset by a delete). Both are >= 1 and createVersion <= version, so the
 * difference is small for hot keys and the record costs 3..17 bytes over the value. Decoding a
 * record that is not what `encodeValueRecord` writes is corruption: an assertion (STYLE.md 7.4),
 * unless the bytes come from outside (a backup file): then the caller's MalformedHandler throws.
 */
import { assert } from '../common/assert.ts'
import type { LogIndex } from '../common/ids.ts'
import { ByteReader, ByteWriter, failStop, type MalformedHandler } from './bytes.ts'

export const valueRecordFormat = 1

export interface ValueRecord {
  readonly value: Uint8Array
  readonly version: LogIndex
  readonly createVersion: LogIndex
}

export function encodeValueRecord(record: ValueRecord): Uint8Array {
  assert(record.version >= 1, 'value record version must be >= 1')
  assert(
    record.createVersion >= 1 && record.createVersion <= record.version,
    'bad value record createVersion',
  )
  return new ByteWriter(record.value.length + 20)
    .u8(valueRecordFormat)
    .uvarint(record.version)
    .uvarint(record.version - record.createVersion)
    .raw(record.value)
    .finish()
}

export function decodeValueRecord(bytes: Uint8Array, malformed: MalformedHandler = failStop): ValueRecord {
  const r = new ByteReader(bytes, 0, 'value record', malformed)
  if (r.u8() !== valueRecordFormat) malformed('corrupt value record: unknown format')
  const version = r.uvarint()
  const age = r.uvarint()
  if (version < 1) malformed('corrupt value record: version 0')
  if (age >= version) malformed('corrupt value record: createVersion out of range')
  return { version: version as LogIndex, createVersion: (version - age) as LogIndex, value: r.rest() }
}
