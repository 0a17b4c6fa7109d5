/**
 * The SDK's side of hashing/: instantiates the xxhash WebAssembly module and hands it to the pure
 * `createHasher`, exactly as the server does (src/storage/hasher-load.ts, which the SDK may not
 * import), so the SDK places a key on the same shard as every node does.
 *
 * The instantiated module is stateless, so one is shared by every client of the process.
 */
import { createHasher, type Hasher } from '../hashing/index.ts'

let loading: Promise<Hasher> | undefined

/** The process's Hasher, instantiated on first use. A failed load is retried by the next call. */
export function loadClientHasher(): Promise<Hasher> {
  loading ??= import('xxhash-wasm')
    .then(async ({ default: xxhash }) => createHasher(await xxhash()))
    .catch((err: unknown) => {
      loading = undefined
      throw err
    })
  return loading
}
