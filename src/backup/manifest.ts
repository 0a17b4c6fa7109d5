/**
 * The manifest of a backup directory (`manifest.json`), pure: what the backup holds and the facts
 * a restore and a verify check against.
 *
 *   DIR/manifest.json        this record (JSON, written last: a directory without it is no backup)
 *   DIR/shard-map.json       the cluster's shard map when the backup began (kv.proto ShardMapResponse
 *                            as JSON), for people and tools; a restore does not need it
 *   DIR/shard-NNNNN.rkvs     one file per data shard (format.ts)
 *
 * Per shard: its hash range, the applied index (and term) its file was exported at, the index the
 * leader's ReadIndex round confirmed (applied >= read), its epoch, the node that exported it, and
 * the file's size, SHA-256, entry count and bytes. The meta shard is not in a backup: its records
 * (nodes, addresses, moves) describe the old cluster; a restore makes a new cluster whose meta
 * shard is created from its own --initial-cluster, with the same shard count and ranges.
 *
 * `decodeManifest` reads hostile text: anything that is not a manifest this version writes is a
 * KvError INVALID_ARGUMENT naming the field (file names are checked, so a manifest cannot point
 * outside its directory).
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../common/errors.ts'

export const manifestFormat = 1
export const manifestFile = 'manifest.json'
export const mapFile = 'shard-map.json'
/** Data shards a backup may hold (kvd's shard count limit is lower). */
const shardsMax = 1 << 20
const hashEnd = 1n << 64n

export interface FileFacts {
  readonly file: string
  readonly fileBytes: number
  /** Lowercase hex. */
  readonly sha256: string
}

export interface ShardBackup extends FileFacts {
  readonly shardId: number
  /** Decimal strings of the hash range [hashStart, hashEnd); the end of the ring is 2^64. */
  readonly hashStart: string
  readonly hashEnd: string
  readonly appliedIndex: number
  readonly term: number
  readonly readIndex: number
  readonly epoch: number
  readonly nodeId: number
  readonly entryCount: number
  readonly entryBytes: number
}

export interface Manifest {
  readonly format: number
  /** The cluster the backup was taken from (hex). A restored cluster has a new id. */
  readonly clusterId: string
  readonly shardCount: number
  readonly replicaCount: number
  /** Wall clock of the machine that took it (ms since the epoch): when the backup began and ended. */
  readonly startedMs: number
  readonly finishedMs: number
  readonly map: FileFacts
  /** In hash order, covering the ring. */
  readonly shards: readonly ShardBackup[]
}

/** The file of shard `shardId`. */
export function shardFileName(shardId: number): string {
  return `shard-${String(shardId).padStart(5, '0')}.rkvs`
}

export function encodeManifest(m: Manifest): string {
  return `${JSON.stringify(m, null, 2)}\n`
}

function bad(field: string, why: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, `backup manifest: ${field} ${why}`, {
    details: { field: 'backup' },
  })
}

function objectOf(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(field, 'is not an object')
  return v as Record<string, unknown>
}

function uint(o: Record<string, unknown>, name: string, where: string, min = 0): number {
  const v = o[name]
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
    throw bad(`${where}${name}`, `must be an integer >= ${min}`)
  return v
}

function text(o: Record<string, unknown>, name: string, where: string, pattern: RegExp): string {
  const v = o[name]
  if (typeof v !== 'string' || !pattern.test(v)) throw bad(`${where}${name}`, `must match ${pattern.source}`)
  return v
}

const hexId = /^[0-9a-f]{1,64}$/
const sha256Hex = /^[0-9a-f]{64}$/
const decimal = /^(0|[1-9]\d{0,19})$/

function fileFacts(o: Record<string, unknown>, where: string, name: RegExp): FileFacts {
  return {
    file: text(o, 'file', where, name),
    fileBytes: uint(o, 'fileBytes', where),
    sha256: text(o, 'sha256', where, sha256Hex),
  }
}

/** Parses and checks a manifest (see the file comment). */
export function decodeManifest(json: string): Manifest {
  let parsed: unknown
  try {
    parsed = JSON.parse(json)
  } catch (err) {
    throw bad('', `is not JSON (${(err as Error).message})`)
  }
  const o = objectOf(parsed, 'manifest')
  const format = uint(o, 'format', '')
  if (format !== manifestFormat)
    throw bad('format', `${format} is not ${manifestFormat} (this ringkv reads format ${manifestFormat})`)
  const shardCount = uint(o, 'shardCount', '', 1)
  if (shardCount > shardsMax) throw bad('shardCount', `exceeds ${shardsMax}`)
  const rawShards = o['shards']
  if (!Array.isArray(rawShards)) throw bad('shards', 'is not a list')
  if (rawShards.length !== shardCount)
    throw bad('shards', `lists ${rawShards.length} shards, not shardCount ${shardCount}`)
  const shards: ShardBackup[] = []
  const ids = new Set<number>()
  let next = 0n
  for (const [i, raw] of rawShards.entries()) {
    const where = `shards[${i}].`
    const s = objectOf(raw, `shards[${i}]`)
    const shardId = uint(s, 'shardId', where)
    if (shardId > 0xffff_fffe) throw bad(`${where}shardId`, 'is out of range')
    if (ids.has(shardId)) throw bad(`${where}shardId`, `${shardId} is listed twice`)
    ids.add(shardId)
    const facts = fileFacts(s, where, /^shard-\d{5,10}\.rkvs$/)
    if (facts.file !== shardFileName(shardId)) throw bad(`${where}file`, `must be ${shardFileName(shardId)}`)
    const hashStart = text(s, 'hashStart', where, decimal)
    const hashEndText = text(s, 'hashEnd', where, decimal)
    if (BigInt(hashStart) !== next)
      throw bad(`${where}hashStart`, `must be ${next} (shards cover the ring in order)`)
    next = BigInt(hashEndText)
    if (next <= BigInt(hashStart) || next > hashEnd) throw bad(`${where}hashEnd`, 'is out of range')
    const appliedIndex = uint(s, 'appliedIndex', where, 1)
    const readIndex = uint(s, 'readIndex', where)
    if (readIndex > appliedIndex) throw bad(`${where}readIndex`, 'exceeds appliedIndex')
    shards.push({
      shardId,
      ...facts,
      hashStart,
      hashEnd: hashEndText,
      appliedIndex,
      term: uint(s, 'term', where),
      readIndex,
      epoch: uint(s, 'epoch', where, 1),
      nodeId: uint(s, 'nodeId', where, 1),
      entryCount: uint(s, 'entryCount', where),
      entryBytes: uint(s, 'entryBytes', where),
    })
  }
  if (next !== hashEnd) throw bad('shards', 'do not cover the ring (the last must end at 2^64)')
  const startedMs = uint(o, 'startedMs', '')
  const finishedMs = uint(o, 'finishedMs', '')
  if (finishedMs < startedMs) throw bad('finishedMs', 'is before startedMs')
  return {
    format,
    clusterId: text(o, 'clusterId', '', hexId),
    shardCount,
    replicaCount: uint(o, 'replicaCount', '', 1),
    startedMs,
    finishedMs,
    map: fileFacts(objectOf(o['map'], 'map'), 'map.', /^shard-map\.json$/),
    shards,
  }
}

/**
 * Reads and decodes the manifest of backup `dir`, with its text (a restore hashes it). A missing
 * manifest is INVALID_ARGUMENT naming `field` (the argument that gave `dir`: `backup` for kvctl
 * backup verify, `restore` for kvd --restore); other read errors pass through.
 */
export async function readManifestFile(
  dir: string,
  field: 'backup' | 'restore',
): Promise<{ readonly text: string; readonly manifest: Manifest }> {
  let text: string
  try {
    text = await readFile(join(dir, manifestFile), 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR')
      throw new KvError(
        ErrorCode.InvalidArgument,
        `${field === 'restore' ? '--restore ' : ''}${dir} is not a complete ringkv backup: it has no ${manifestFile}`,
        { details: { field } },
      )
    throw err
  }
  return { text, manifest: decodeManifest(text) }
}
