/**
 * Key hashing with xxh64 (seed 0). The ring, placement and the storage layout all hash keys the
 * same way, so a key's position is the same on every node and in the SDK.
 *
 * hashing/ is a pure room: the WebAssembly module is instantiated by the shell
 * (`loadHasher()` in src/storage/hasher-load.ts, or the SDK) and handed in here already
 * instantiated, so nothing in this file awaits.
 */

/** The part of the xxhash-wasm API we use (structural, so this room imports nothing). */
import { assert } from '../common/assert.ts'

export interface Xxh64Api {
  h64Raw(input: Uint8Array, seed?: bigint): bigint
}

/** A 64-bit key hash. Deterministic across processes and platforms. */
export interface Hasher {
  /** xxh64 of `bytes` with seed 0, as an unsigned 64-bit bigint. */
  hash64(bytes: Uint8Array): bigint
  /** The same hash as 8 big-endian bytes (the storage layout sorts by these). */
  hash64Bytes(bytes: Uint8Array): Uint8Array
}

/** The number of positions on the ring: hashes are in [0, hashSpaceEnd). */
export const hashSpaceEnd = 1n << 64n

const u64Mask = hashSpaceEnd - 1n

/** Wraps an instantiated xxhash-wasm API as a Hasher. */
export function createHasher(api: Xxh64Api): Hasher {
  return {
    hash64: (bytes) => api.h64Raw(bytes, 0n) & u64Mask,
    hash64Bytes: (bytes) => u64ToBytes(api.h64Raw(bytes, 0n) & u64Mask),
  }
}

/** `value` (in [0, 2^64)) as 8 big-endian bytes. */
export function u64ToBytes(value: bigint): Uint8Array {
  assert(value >= 0n && value <= u64Mask, 'u64 out of range')
  const out = new Uint8Array(8)
  let v = value
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return out
}

/** Reads 8 big-endian bytes at `offset` as an unsigned bigint. */
export function bytesToU64(bytes: Uint8Array, offset = 0): bigint {
  assert(offset >= 0 && offset + 8 <= bytes.length, 'u64 read out of bounds')
  let v = 0n
  for (let i = 0; i < 8; i++) v = (v << 8n) | BigInt(bytes[offset + i] ?? 0)
  return v
}
