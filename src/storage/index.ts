/**
 * storage/: the Engine interface and its two implementations, the key layout of a node's store,
 * the value record, and the shell-side hasher loader. Knows nothing of Raft groups or shards
 * beyond the keys it encodes.
 *
 * @example
 * const engine = await openRocksEngine({ dir: '/var/lib/ringkv' }, { logger })
 * const batch = engine.batch().put(dataKey(hasher.hash64(key), key), encodeValueRecord(record))
 * await engine.write(batch, { sync: true })
 */
export {
  WriteBatch,
  type Engine,
  type Entry,
  type KeyRange,
  type IterateOptions,
  type WriteOptions as EngineWriteOptions,
  type ExportOptions,
  type ImportOptions,
  type ImportStats,
  type BatchOperation,
  type DeleteRangeChunkOptions,
  type DeleteRangeChunkResult,
} from './engine.ts'
export {
  MemoryEngine,
  type MemoryEngineInit,
  type MemoryEngineHooks,
  type MemoryEngineStats,
} from './engine-memory.ts'
export {
  StorageCorruptError,
  openRocksEngine,
  RocksEngine,
  StorageLockedError,
  type RocksEngineInit,
  type RocksEngineComponents,
  type RocksSizes,
} from './engine-rocksdb.ts'
export * from './keys.ts'
export { encodeValueRecord, decodeValueRecord, valueRecordFormat, type ValueRecord } from './value-record.ts'
export {
  ByteReader,
  ByteWriter,
  compareBytes,
  equalBytes,
  startsWith,
  concatBytes,
  prefixEnd,
  keySuccessor,
  toHex,
  bytesKey,
  failStop,
  type MalformedHandler,
} from './bytes.ts'
export { abortError, throwIfAborted, closedError } from './abort.ts'
export { loadHasher } from './hasher-load.ts'
/** For Engine wrappers (tests, the simulator's disk): a chunked range delete over their own iterate and write. */
export { deleteRangeChunkVia } from './engine-common.ts'
