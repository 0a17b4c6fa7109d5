/**
 * Bytes at the SDK boundary. Callers pass `string | Uint8Array` (strings are UTF-8); results
 * carry plain `Uint8Array` views (never a pooled Buffer that a caller could mistake for a copy
 * they own beyond its bytes). The generated proto types ask for `Buffer`, which is a Uint8Array
 * subclass; `toWire` wraps without copying.
 */
const utf8Encoder = new TextEncoder()
const utf8Lenient = new TextDecoder('utf-8')
const utf8Strict = new TextDecoder('utf-8', { fatal: true })

/** Bytes a caller may pass as a key or a value. Strings are encoded as UTF-8. */
export type Bytes = string | Uint8Array

export function toBytes(input: Bytes): Uint8Array {
  return typeof input === 'string' ? utf8Encoder.encode(input) : input
}

/** The bytes as the Buffer type the generated code declares, sharing memory with `input`. */
export function toWire(input: Bytes): Buffer {
  const bytes = toBytes(input)
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** A plain Uint8Array view of bytes decoded off the wire (no copy). */
export function fromWire(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** UTF-8 text of `bytes`; invalid sequences become U+FFFD. */
export function utf8(bytes: Uint8Array): string {
  return utf8Lenient.decode(bytes)
}

/** UTF-8 text of `bytes`, or undefined when they are not valid UTF-8. */
export function strictUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(bytes)
  } catch {
    return undefined
  }
}
