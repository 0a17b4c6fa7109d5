/**
 * The source of a restore (`kvd --restore DIR`): the manifest, its identity (the SHA-256 of its
 * text: every member restoring the same backup derives the same new cluster id from it, and a
 * data directory remembers which backup it was seeded from), and each shard's records as a
 * restore writes them. The shard descriptor is left out: a restored shard starts at the first
 * configuration of its new cluster (epoch 1), with its user data and its exactly-once table.
 */
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { ShardId } from '../common/ids.ts'
import type { Entry } from '../storage/index.ts'
import { readManifestFile, type Manifest, type ShardBackup } from './manifest.ts'
import { isDescriptorKey } from './records.ts'
import { readShardFile } from './shard-file.ts'

export interface RestoreSource {
  readonly dir: string
  readonly manifest: Manifest
  /** SHA-256 (hex) of the manifest's text. */
  readonly id: string
}

export async function openRestoreSource(dir: string): Promise<RestoreSource> {
  const { text, manifest } = await readManifestFile(dir, 'restore')
  return { dir, manifest, id: createHash('sha256').update(text).digest('hex') }
}

/** The manifest entry of `shardId`, or INVALID_ARGUMENT. */
export function shardOf(source: RestoreSource, shardId: ShardId): ShardBackup {
  const shard = source.manifest.shards.find((s) => s.shardId === shardId)
  if (shard === undefined)
    throw new KvError(
      ErrorCode.InvalidArgument,
      `--restore ${source.dir}: the backup has no shard ${shardId}`,
      {
        details: { field: 'restore' },
      },
    )
  return shard
}

/**
 * The records of one shard to write, chunk by chunk (the descriptor left out). Everything written
 * from it is void unless the iteration ends without an error (shard-file.ts).
 */
export async function* restoreEntries(source: RestoreSource, shard: ShardBackup): AsyncGenerator<Entry[]> {
  for await (const chunk of readShardFile(join(source.dir, shard.file), shard))
    yield chunk.filter(([key]) => !isDescriptorKey(shard.shardId as ShardId, key))
}
