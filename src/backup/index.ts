/**
 * backup/: the format of a backup directory (manifest, shard files, what each record must be),
 * its writer and reader with bounded memory, and `verify`. Used by kvctl (create, verify) and by
 * kvd --restore (node/host-open.ts seeds a new cluster's replicas from it). See docs/operations.md.
 */
export {
  FrameKind,
  decodeEntries,
  encodeEntries,
  encodeFrame,
  entriesBytes,
  malformedIn,
  shardFileMagic,
} from './format.ts'
export {
  decodeManifest,
  encodeManifest,
  manifestFile,
  manifestFormat,
  mapFile,
  shardFileName,
  type FileFacts,
  type Manifest,
  type ShardBackup,
} from './manifest.ts'
export { RecordChecker, isDescriptorKey, type ShardRange } from './records.ts'
export { ShardFileWriter, checkFacts, fileFacts, readShardFile } from './shard-file.ts'
export { readManifest, verifyBackup, type VerifyReport } from './verify.ts'
export { openRestoreSource, restoreEntries, shardOf, type RestoreSource } from './restore.ts'
