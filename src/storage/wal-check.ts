/**
 * A check of RocksDB's write-ahead logs before the database is opened.
 *
 * The `rocksdb` binding (5.2.1, RocksDB 6.17) opens with `paranoid_checks = false` and the default
 * WAL recovery mode, point-in-time recovery: replay stops at the first record that fails its check
 * and everything after it is dropped without a word. That is right for a torn tail (the unsynced end
 * of the log when the power went), and wrong for a damaged record in the middle: every write after
 * it was synced and acknowledged, and dropping them silently makes this replica forget log entries
 * it acknowledged (a voter that forgets breaks Raft's safety). The binding exposes neither option,
 * so the logs are read here first, in RocksDB's log format (db/log_format.h):
 *
 *   the file is 32 KiB blocks; a block's last < 7 bytes are zero padding;
 *   record: masked crc32c u32 LE | length u16 LE | type u8 | [log number u32 LE, types 5..8] | payload
 *   types: 1 full, 2 first, 3 middle, 4 last (5..8 the same, recyclable); the crc covers the type
 *   byte, the log number if any, and the payload.
 *
 * Verdict per file: clean; a torn tail (no valid record follows the first bad one, and that one is
 * cut short by the end of the file or only zeros follow it: what a power cut leaves); or damage
 * (a valid record follows the bad one, or a bad record with data after it ends the file: bit rot,
 * not a tear). RocksDB starts a new log file after every recovery, so a tear is only ever at the
 * end of a file.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'

const blockBytes = 32 * 1024
const headerBytes = 7
const recyclableHeaderBytes = 11
/** The unit a disk writes whole: a write torn by a power cut leaves whole sectors unwritten. */
const sectorBytes = 512

const crcTable = ((): Uint32Array => {
  // CRC-32C (Castagnoli), reflected polynomial 0x82f63b78.
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

/** CRC-32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff
  for (const b of bytes) c = crcTable[(c ^ b) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** RocksDB's masked crc (util/crc32c.h Mask): stored crcs are rotated and offset. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0
}

export type WalVerdict =
  | { readonly kind: 'clean'; readonly records: number }
  | { readonly kind: 'torn-tail'; readonly records: number; readonly offset: number }
  | {
      readonly kind: 'damaged'
      readonly records: number
      /** Where the first bad record starts. */
      readonly offset: number
      readonly reason: string
      /** Valid records found after it: acknowledged writes RocksDB would drop. */
      readonly validAfter: number
    }

/** Reads one WAL file's bytes and says whether it is clean, torn at its tail, or damaged. Pure. */
export function checkWal(bytes: Uint8Array): WalVerdict {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let records = 0
  let damage: { offset: number; end: number; reason: string; truncated: boolean } | undefined
  let validAfter = 0
  let pos = 0
  while (pos < bytes.length) {
    const blockEnd = Math.min((Math.floor(pos / blockBytes) + 1) * blockBytes, bytes.length)
    if (blockEnd - pos < headerBytes) {
      // The block's trailer (zeros), or a header cut short by the end of the file.
      if (blockEnd === bytes.length && !allZero(bytes, pos, blockEnd) && damage === undefined)
        damage = { offset: pos, end: blockEnd, reason: 'truncated header', truncated: true }
      pos = blockEnd
      continue
    }
    const type = bytes[pos + 6]!
    const length = view.getUint16(pos + 4, true)
    const header = type >= 5 && type <= 8 ? recyclableHeaderBytes : headerBytes
    const end = pos + header + length
    let problem: string | undefined
    let skipTo = blockEnd
    if (type === 0 && length === 0) problem = 'zeroed record'
    else if (type < 1 || type > 8) problem = `unknown record type ${type}`
    else if (end > bytes.length) problem = 'record cut short by the end of the file'
    else if (end > blockEnd) problem = 'record length crosses its block'
    else {
      const stored = view.getUint32(pos, true)
      const actual = maskCrc(crc32c(bytes.subarray(pos + 6, end)))
      if (stored !== actual) problem = 'checksum mismatch'
      skipTo = end // the length is plausible: resynchronise right after the record
    }
    if (problem === undefined) {
      records++
      if (damage !== undefined) validAfter++
    } else if (damage === undefined) {
      damage = {
        offset: pos,
        end: problem === 'checksum mismatch' ? end : blockEnd,
        reason: problem,
        // A length that runs past the end is a torn tail only if no whole record follows it: a
        // damaged length field in the last block hides the records after it from the walk.
        truncated: end > bytes.length && !wholeRecordFrom(bytes, view, pos + 1),
      }
    }
    pos = problem === undefined ? end : skipTo
  }
  if (damage === undefined) return { kind: 'clean', records }
  // A power cut leaves the end of the log short, or whole sectors of it unwritten (zeros); a bad
  // record that neither explains is damage.
  let zeroFrom = bytes.length
  while (zeroFrom > 0 && bytes[zeroFrom - 1] === 0) zeroFrom--
  const zeroSectorsFrom = Math.ceil(zeroFrom / sectorBytes) * sectorBytes
  const unwritten = zeroSectorsFrom < bytes.length && zeroSectorsFrom < damage.end
  if (validAfter === 0 && (damage.truncated || unwritten))
    return { kind: 'torn-tail', records, offset: damage.offset }
  return { kind: 'damaged', records, offset: damage.offset, reason: damage.reason, validAfter }
}

/** Whether a record with a valid checksum, inside its block, starts anywhere at or after `from`. */
function wholeRecordFrom(bytes: Uint8Array, view: DataView, from: number): boolean {
  for (let pos = from; pos + headerBytes <= bytes.length; pos++) {
    const blockEnd = Math.min((Math.floor(pos / blockBytes) + 1) * blockBytes, bytes.length)
    const type = bytes[pos + 6]!
    if (type < 1 || type > 4) continue
    const end = pos + headerBytes + view.getUint16(pos + 4, true)
    if (end > blockEnd) continue
    if (view.getUint32(pos, true) === maskCrc(crc32c(bytes.subarray(pos + 6, end)))) return true
  }
  return false
}

function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] !== 0) return false
  return true
}

export interface WalFileVerdict {
  readonly file: string
  readonly verdict: WalVerdict
}

/** Checks every WAL file (`NNNNNN.log`) in a RocksDB directory; a missing directory has none. */
export async function checkWalFiles(dir: string): Promise<WalFileVerdict[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const out: WalFileVerdict[] = []
  for (const name of names.filter((n) => /^\d+\.log$/.test(n)).sort()) {
    const file = join(dir, name)
    out.push({ file, verdict: checkWal(await readFile(file)) })
  }
  return out
}
