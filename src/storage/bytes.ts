/**
 * Byte helpers for the storage layout and the binary encodings built on it: bytewise comparison,
 * concatenation, and a small reader/writer with big-endian fixed ints and LEB128 varints.
 * Decoding our own stored bytes that turn out malformed is corruption: the reader asserts
 * (fail-stop, STYLE.md 7.4), it never returns a guess. Bytes from a peer are not ours, and their
 * being malformed is an operating error: such a reader is given a `MalformedHandler` that throws
 * one instead.
 */
import { assert } from '../common/assert.ts'

/** Bytewise comparison (unsigned; a prefix sorts first), the order of every Engine. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0
}

export function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false
  return true
}

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let n = 0
  for (const p of parts) n += p.length
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/**
 * The smallest key greater than every key starting with `prefix`, or null when there is none (the
 * prefix is all 0xff). Makes a prefix into a [gte, lt) range.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array | null {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const out = prefix.slice(0, i + 1)
      out[i] = (out[i] as number) + 1
      return out
    }
  }
  return null
}

/** The smallest key strictly greater than `key` (key + 0x00). */
export function keySuccessor(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(key.length + 1)
  out.set(key)
  return out
}

/** Lowercase hex, for logs of hashes and for map keys. */
export function toHex(bytes: Uint8Array): string {
  let s = ''
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

/**
 * A string that stands for `bytes` as a map key: one char per byte (latin1), so two byte strings
 * give the same key exactly when they are equal. Several times cheaper than toHex on hot paths.
 */
export function bytesKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}

const twoPow32 = 0x1_0000_0000

/** Appends fixed-width and variable-width fields to a growing buffer. */
export class ByteWriter {
  private buf: Uint8Array
  private at = 0

  constructor(capacity = 64) {
    this.buf = new Uint8Array(Math.max(8, capacity))
  }

  private reserve(n: number): void {
    if (this.at + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.at + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.at))
    this.buf = next
  }

  u8(v: number): this {
    assert(Number.isInteger(v) && v >= 0 && v <= 0xff, 'u8 out of range')
    this.reserve(1)
    this.buf[this.at++] = v
    return this
  }

  u32(v: number): this {
    assert(Number.isInteger(v) && v >= 0 && v < twoPow32, 'u32 out of range')
    this.reserve(4)
    this.buf[this.at++] = (v >>> 24) & 0xff
    this.buf[this.at++] = (v >>> 16) & 0xff
    this.buf[this.at++] = (v >>> 8) & 0xff
    this.buf[this.at++] = v & 0xff
    return this
  }

  /** A safe non-negative integer as 8 big-endian bytes (sorts numerically as bytes). */
  u64(v: number): this {
    assert(Number.isSafeInteger(v) && v >= 0, 'u64 out of range')
    this.u32(Math.floor(v / twoPow32))
    return this.u32(v % twoPow32)
  }

  /** A safe non-negative integer as an unsigned LEB128 varint (1..8 bytes). */
  uvarint(v: number): this {
    assert(Number.isSafeInteger(v) && v >= 0, 'uvarint out of range')
    let x = v
    while (x >= 0x80) {
      this.u8((x % 0x80) | 0x80)
      x = Math.floor(x / 0x80)
    }
    return this.u8(x)
  }

  raw(bytes: Uint8Array): this {
    this.reserve(bytes.length)
    this.buf.set(bytes, this.at)
    this.at += bytes.length
    return this
  }

  /** Length (uvarint) then bytes. */
  bytes(bytes: Uint8Array): this {
    return this.uvarint(bytes.length).raw(bytes)
  }

  get length(): number {
    return this.at
  }

  /** The bytes written so far (a copy sized exactly). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.at)
  }
}

/** What a ByteReader calls on malformed bytes, with a message naming what is wrong. Must throw. */
export type MalformedHandler = (message: string) => never

/** The default: our own bytes being malformed is corruption, a bug or a broken disk (fail-stop). */
export function failStop(message: string): never {
  assert(false, message)
}

/**
 * Reads what ByteWriter wrote. Every read past the end, or any malformed field, calls `malformed`
 * (by default an assertion); the reader never returns a guess.
 */
export class ByteReader {
  private at: number

  constructor(
    private readonly buf: Uint8Array,
    offset = 0,
    private readonly what = 'record',
    private readonly malformed: MalformedHandler = failStop,
  ) {
    this.at = offset
  }

  private need(n: number): void {
    if (this.at + n > this.buf.length) this.malformed(`corrupt ${this.what}: truncated`)
  }

  u8(): number {
    this.need(1)
    return this.buf[this.at++] as number
  }

  u32(): number {
    this.need(4)
    const b = this.buf
    const v =
      (b[this.at] as number) * 0x1000000 +
      (((b[this.at + 1] as number) << 16) | ((b[this.at + 2] as number) << 8) | (b[this.at + 3] as number))
    this.at += 4
    return v
  }

  u64(): number {
    const hi = this.u32()
    const lo = this.u32()
    if (hi >= 0x200000) this.malformed(`corrupt ${this.what}: u64 beyond safe integer`)
    return hi * twoPow32 + lo
  }

  uvarint(): number {
    let v = 0
    let scale = 1
    for (let i = 0; i < 8; i++) {
      const b = this.u8()
      v += (b & 0x7f) * scale
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(v)) this.malformed(`corrupt ${this.what}: varint beyond safe integer`)
        if (i > 0 && b === 0) this.malformed(`corrupt ${this.what}: non-minimal varint`)
        return v
      }
      scale *= 0x80
    }
    this.malformed(`corrupt ${this.what}: varint too long`)
  }

  raw(n: number): Uint8Array {
    this.need(n)
    const out = this.buf.slice(this.at, this.at + n)
    this.at += n
    return out
  }

  bytes(): Uint8Array {
    return this.raw(this.uvarint())
  }

  /** Everything left. */
  rest(): Uint8Array {
    return this.raw(this.buf.length - this.at)
  }

  get remaining(): number {
    return this.buf.length - this.at
  }

  /** Asserts that every byte was consumed (trailing garbage is corruption too). */
  end(): void {
    if (this.at !== this.buf.length) this.malformed(`corrupt ${this.what}: trailing bytes`)
  }
}
