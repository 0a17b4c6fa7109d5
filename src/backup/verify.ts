/**
 * `kvctl backup verify DIR`, without a cluster: the manifest decodes and is consistent
 * (manifest.ts), the shard map file has its size and checksum, and every shard file is read whole:
 * its frames, records, totals, size and checksum (shard-file.ts). The first problem found is
 * thrown (KvError INVALID_ARGUMENT naming the file and what is wrong).
 */
import { join } from 'node:path'
import { readManifestFile, type Manifest } from './manifest.ts'
import { checkFacts, fileFacts, readShardFile } from './shard-file.ts'

export interface VerifyOptions {
  /** Called with the bytes of every frame read (progress). */
  readonly onBytes?: (bytes: number) => void
}

export interface VerifyReport {
  readonly manifest: Manifest
  /** Every file's bytes, the manifest's own excluded. */
  readonly totalBytes: number
  readonly entryCount: number
}

/** Reads the manifest of `dir` (INVALID_ARGUMENT when it is missing or not one). */
export async function readManifest(dir: string): Promise<Manifest> {
  return (await readManifestFile(dir, 'backup')).manifest
}

export async function verifyBackup(dir: string, options: VerifyOptions = {}): Promise<VerifyReport> {
  const manifest = await readManifest(dir)
  const map = await fileFacts(join(dir, manifest.map.file))
  checkFacts(manifest.map, map.fileBytes, map.sha256)
  let totalBytes = map.fileBytes
  let entryCount = 0
  for (const shard of manifest.shards) {
    for await (const chunk of readShardFile(join(dir, shard.file), shard, options)) entryCount += chunk.length
    totalBytes += shard.fileBytes
  }
  return { manifest, totalBytes, entryCount }
}
