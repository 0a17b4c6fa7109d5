import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { checkWal, crc32c, maskCrc } from '../../../src/storage/wal-check.ts'

const block = 32 * 1024

/** Writes records in RocksDB's log format (db/log_writer.cc), fragmenting across 32 KiB blocks. */
function walOf(payloads: readonly Uint8Array[]): Uint8Array {
  const out: number[] = []
  for (const p of payloads) {
    let left = p.length
    let at = 0
    let first = true
    do {
      const room = block - (out.length % block)
      if (room < 7) {
        for (let i = 0; i < room; i++) out.push(0)
        continue
      }
      const n = Math.min(left, room - 7)
      const last = n === left
      const type = first && last ? 1 : first ? 2 : last ? 4 : 3
      const body = Uint8Array.of(type, ...p.subarray(at, at + n))
      const crc = maskCrc(crc32c(body))
      out.push(crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24, n & 0xff, n >>> 8, ...body)
      at += n
      left -= n
      first = false
    } while (left > 0)
  }
  return Uint8Array.from(out)
}

const payloads = (count: number, size: number): Uint8Array[] =>
  Array.from({ length: count }, (_, i) => new Uint8Array(size).fill((i % 250) + 1))

describe('storage/wal-check', () => {
  it('computes CRC-32C as RocksDB does (the standard check value)', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283)
  })

  it('a log written whole is clean, fragments across blocks included', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 70_000 }), { maxLength: 8 }), (sizes) => {
        const v = checkWal(walOf(sizes.map((s) => new Uint8Array(s).fill(7))))
        expect(v.kind).toBe('clean')
      }),
      { numRuns: 30 },
    )
  })

  it('a tail cut short or zero-filled is a torn tail (a power cut), never damage', () => {
    const wal = walOf(payloads(200, 400))
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5_000 }), (cut) => {
        const v = checkWal(wal.subarray(0, wal.length - cut))
        expect(['clean', 'torn-tail']).toContain(v.kind)
        const zeroed = wal.slice()
        zeroed.fill(0, Math.floor((wal.length - cut) / 512) * 512) // unwritten sectors
        expect(['clean', 'torn-tail']).toContain(checkWal(zeroed).kind)
      }),
      { numRuns: 50 },
    )
  })

  it('a byte flipped before the end, with acknowledged records after it, is damage (not a torn tail)', () => {
    const wal = walOf(payloads(200, 400))
    const flipped = wal.slice()
    flipped[wal.length - 3_000]! ^= 0x10
    const v = checkWal(flipped)
    expect(v.kind).toBe('damaged')
    if (v.kind === 'damaged') expect(v.validAfter).toBeGreaterThan(0)
  })

  it('a length field damaged in the last block, pointing past the end, is damage: whole records follow it', () => {
    const wal = walOf(payloads(120, 700))
    // The counterexample fast-check found: byte 69305 ^ 60 (a record's length, in the last block).
    const flipped = wal.slice()
    flipped[69305]! ^= 60
    expect(checkWal(flipped).kind).toBe('damaged')
  })

  it('any single flipped byte is found: damage, or a torn tail only when it hits the zero padding or the end', () => {
    const wal = walOf(payloads(120, 700))
    fc.assert(
      fc.property(fc.integer({ min: 0, max: wal.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, x) => {
        const flipped = wal.slice()
        flipped[at]! ^= x
        const v = checkWal(flipped)
        const inPadding = wal[at] === 0 && block - (at % block) < 7
        if (!inPadding) expect(v.kind).toBe('damaged')
      }),
      { numRuns: 300 },
    )
  })
})
