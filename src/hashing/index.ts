/**
 * hashing/: key hashing (xxh64), and later the ring and placement. Pure: no I/O, no awaits.
 *
 * @example
 * const hasher = await loadHasher()              // shell side (src/storage/hasher-load.ts)
 * const position = hasher.hash64(new TextEncoder().encode('user:42'))
 */
export { createHasher, hashSpaceEnd, u64ToBytes, bytesToU64, type Hasher, type Xxh64Api } from './xxhash.ts'
export { equalHashRanges, rangeIndexOf, type HashRange } from './ranges.ts'
