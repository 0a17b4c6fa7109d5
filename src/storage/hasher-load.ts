/**
 * The shell side of hashing/: instantiates the xxhash WebAssembly module (async) and hands the
 * instantiated API to the pure `createHasher` (src/hashing/xxhash.ts). Call once per process and
 * share the Hasher.
 */
import { createHasher, type Hasher } from '../hashing/index.ts'

export async function loadHasher(): Promise<Hasher> {
  const { default: xxhash } = await import('xxhash-wasm')
  return createHasher(await xxhash())
}
