/**
 * Shard ranges: the 64-bit hash space cut into `count` contiguous slices of (nearly) equal size,
 * [start_i, start_{i+1}), start_i = floor(i * 2^64 / count). Pure. Every node and the SDK compute
 * the same cut from the count alone; the ring (placement of replicas) comes on top of it.
 */
import { assert } from '../common/assert.ts'
import { hashSpaceEnd } from './xxhash.ts'

export interface HashRange {
  /** Inclusive. */
  readonly start: bigint
  /** Exclusive; hashSpaceEnd for the last range. */
  readonly end: bigint
}

/** `count` equal slices of the hash space, in order. */
export function equalHashRanges(count: number): HashRange[] {
  assert(Number.isSafeInteger(count) && count >= 1, `shard count must be >= 1, got ${count}`)
  const n = BigInt(count)
  const starts = Array.from({ length: count }, (_, i) => (BigInt(i) * hashSpaceEnd) / n)
  return starts.map((start, i) => ({ start, end: starts[i + 1] ?? hashSpaceEnd }))
}

/** The index of the range holding `hash` (binary search; the ranges are sorted and contiguous). */
export function rangeIndexOf(ranges: readonly HashRange[], hash: bigint): number {
  assert(ranges.length > 0 && hash >= 0n && hash < hashSpaceEnd, 'hash outside the hash space')
  let lo = 0
  let hi = ranges.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (ranges[mid]!.start <= hash) lo = mid
    else hi = mid - 1
  }
  return lo
}
