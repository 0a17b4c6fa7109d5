/**
 * Keys that hash into a shard's range (free of the test runner, so benches use it too).
 */
import { loadHasher } from '../../../src/storage/index.ts'

/**
 * Keys (`${prefix}${i}` for rising i) whose hash falls in `shard`'s range, as many as `count`:
 * how a test or benchmark fills one shard. The hasher is the nodes' own (xxh64).
 */
export async function keysOfShard(
  shard: { readonly hashStart: string; readonly hashEnd: string },
  prefix: string,
  count: number,
): Promise<string[]> {
  const hasher = await loadHasher()
  const [start, end] = [BigInt(shard.hashStart), BigInt(shard.hashEnd)]
  const keys: string[] = []
  for (let i = 0; keys.length < count; i++) {
    const h = hasher.hash64(Buffer.from(`${prefix}${i}`))
    if (h >= start && h < end) keys.push(`${prefix}${i}`)
  }
  return keys
}
