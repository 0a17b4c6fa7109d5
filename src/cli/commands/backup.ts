/**
 * `kvctl backup create DIR` and `kvctl backup verify DIR` (docs/operations.md, Backup).
 *
 * create: the shard map first (written to DIR/shard-map.json), then every data shard in hash
 * order, one at a time, streamed from its leader (ExportShard: a ReadIndex round, then one view at
 * the leader's durable applied index) into DIR/shard-NNNNN.rkvs.part, each chunk checked as it
 * comes (backup/records.ts) and written before the next is read (memory stays one chunk whatever
 * the shard's size), renamed into place once whole; the manifest last. A shard whose leader moved
 * is asked again where the answer points (NOT_LEADER's hint), then of every replica in turn.
 *
 * What a backup holds: for every shard, every write acknowledged before `create` began, at the
 * applied index the manifest names (each shard at its own index, taken one after another: it is
 * not one instant across shards, and a write acknowledged while `create` ran may or may not be in).
 *
 * verify: backup/verify.ts, with no cluster.
 */
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Option } from 'commander'
import {
  RecordChecker,
  ShardFileWriter,
  decodeEntries,
  encodeManifest,
  fileFacts,
  malformedIn,
  manifestFile,
  manifestFormat,
  mapFile,
  shardFileName,
  verifyBackup,
  type FileFacts,
  type Manifest,
  type ShardBackup,
} from '../../backup/index.ts'
import { ErrorCode, KvError, isKvError } from '../../common/errors.ts'
import type { MalformedHandler } from '../../storage/index.ts'
import { ShardId } from '../../common/ids.ts'
import { limits } from '../../common/limits.ts'
import { exportShard } from '../../client/admin-export.ts'
import type { MapShard, ShardMapResult } from '../../client/types.ts'
import type { CliContext } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { fetchMap, formatBytes } from './cluster-view.ts'
import { parsePositive, type CommandSpec } from './command.ts'

/** Passes over a shard's replicas before create gives up on it, and the pause between passes. */
const exportPassesMax = 5
const exportRetryPauseMs = 1_000
/** Width of the progress bar, in characters. */
const barWidth = 30

/** One line redrawn in place on a terminal; nothing on a pipe (the summary follows). */
class Progress {
  private lastLength = 0
  private readonly startedMs: number

  constructor(
    private readonly ctx: CliContext,
    private readonly enabled: boolean,
  ) {
    this.startedMs = ctx.clock.nowMs()
  }

  show(label: string, done: number, total: number, bytes: number): void {
    if (!this.enabled) return
    const filled = total === 0 ? barWidth : Math.round((barWidth * done) / total)
    const seconds = Math.max(0.001, (this.ctx.clock.nowMs() - this.startedMs) / 1000)
    const line =
      `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${done}/${total} ${label}  ` +
      `${formatBytes(bytes)}  ${formatBytes(bytes / seconds)}/s`
    this.ctx.io.stdout.write(`\r${line.padEnd(this.lastLength)}`)
    this.lastLength = line.length
  }

  end(): void {
    if (this.enabled && this.lastLength > 0) this.ctx.io.stdout.write('\n')
  }
}

/** Writes `text` to `path` durably (a new file). */
async function writeNewFile(path: string, text: string): Promise<void> {
  const file = await open(path, 'wx')
  try {
    await file.writeFile(text)
    await file.sync()
  } finally {
    await file.close()
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Creates `dir`, or takes it when it exists and is empty; refused otherwise. */
async function prepareDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  const present = await readdir(dir)
  if (present.length > 0)
    throw new KvError(
      ErrorCode.InvalidArgument,
      `${dir} is not empty: a backup goes into a new or empty directory`,
      {
        details: { field: 'dir' },
      },
    )
}

/** The nodes to ask for `shard`'s export, best first: the leader it names, then its replicas. */
function candidates(shard: MapShard, hint: number | undefined): number[] {
  const order = [hint ?? 0, shard.leaderId, ...shard.replicas].filter((id) => id > 0)
  return [...new Set(order)]
}

/**
 * Exports one shard into DIR (see the file comment); resolves with its manifest entry. Transient
 * refusals (not the leader, unreachable, overloaded, moving) try the next replica, then pass again.
 */
async function backupShard(
  ctx: CliContext,
  dir: string,
  map: ShardMapResult,
  shard: MapShard,
  deadlineMs: number,
  onBytes: (bytes: number) => void,
): Promise<ShardBackup> {
  const addressOf = new Map(map.nodes.map((n) => [n.nodeId, n.address] as const))
  let hint: number | undefined
  let last: unknown
  for (let pass = 0; pass < exportPassesMax; pass++) {
    if (pass > 0) await new Promise((resolve) => setTimeout(resolve, exportRetryPauseMs))
    for (const nodeId of candidates(shard, hint)) {
      const address = addressOf.get(nodeId)
      if (address === undefined || address === '') continue
      try {
        return await exportOnce(ctx, dir, address, shard, deadlineMs, onBytes)
      } catch (err) {
        last = err
        if (!isKvError(err)) throw err
        if (err.code === ErrorCode.NotLeader && err.details?.leaderHint !== undefined) {
          hint = err.details.leaderHint
          if (hint !== nodeId && addressOf.has(hint)) {
            try {
              return await exportOnce(ctx, dir, addressOf.get(hint)!, shard, deadlineMs, onBytes)
            } catch (again) {
              last = again
              if (!isKvError(again)) throw again
            }
          }
          continue
        }
        const transient: readonly string[] = [
          ErrorCode.NotLeader,
          ErrorCode.Unavailable,
          ErrorCode.Overloaded,
          ErrorCode.ShardMoving,
          ErrorCode.WrongShard,
          ErrorCode.NoQuorum,
          ErrorCode.DeadlineExceeded,
        ]
        if (!transient.includes(err.code)) throw err
      }
    }
  }
  throw new KvError(
    ErrorCode.Unavailable,
    `shard ${shard.shardId}: no replica exported it: ${(last as Error | undefined)?.message ?? 'no replica has an address'}`,
    { cause: last, details: { shardId: shard.shardId } },
  )
}

async function exportOnce(
  ctx: CliContext,
  dir: string,
  address: string,
  shard: MapShard,
  deadlineMs: number,
  onBytes: (bytes: number) => void,
): Promise<ShardBackup> {
  const file = shardFileName(shard.shardId)
  const part = join(dir, `${file}.part`)
  const malformed: MalformedHandler = malformedIn(`the export of shard ${shard.shardId} from ${address}`)
  const writer = await ShardFileWriter.create(part)
  let finished = false
  let sent = 0
  try {
    let header:
      { appliedIndex: number; term: number; epoch: number; nodeId: number; readIndex: number } | undefined
    let checker: RecordChecker | undefined
    let totals: { entryCount: number; entryBytes: number } | undefined
    for await (const message of exportShard(address, shard.shardId, ctx.adminOptions(deadlineMs))) {
      if (totals !== undefined) malformed('a message after the last')
      if (header === undefined) {
        const h = message.header
        if (h === undefined) malformed('the stream does not begin with its header')
        if (h.shardId !== shard.shardId || h.hashStart !== shard.hashStart || h.hashEnd !== shard.hashEnd)
          malformed(`the header names shard ${h.shardId} [${h.hashStart}, ${h.hashEnd}), not the map's`)
        if (h.appliedIndex < 1 || h.readIndex > h.appliedIndex)
          malformed('the header has a bad applied index')
        header = h
        checker = new RecordChecker(
          {
            shardId: ShardId(shard.shardId),
            hashStart: BigInt(shard.hashStart),
            hashEnd: BigInt(shard.hashEnd),
          },
          malformed,
        )
        continue
      }
      if (message.done) {
        totals = { entryCount: message.entryCount, entryBytes: message.entryBytes }
        continue
      }
      const entries = decodeEntries(message.entries, malformed)
      checker!.check(entries)
      await writer.writeEntries(message.entries, entries)
      sent += message.entries.length
      onBytes(message.entries.length)
    }
    if (header === undefined || totals === undefined) malformed('the stream ended before its last message')
    const written = writer.totals
    if (written.entryCount !== totals.entryCount || written.entryBytes !== totals.entryBytes)
      malformed(`the node counted ${totals.entryCount} entries, ${written.entryCount} came`)
    const facts = await writer.finish()
    finished = true
    await rename(part, join(dir, file))
    return {
      shardId: shard.shardId,
      file,
      fileBytes: facts.fileBytes,
      sha256: facts.sha256,
      hashStart: shard.hashStart,
      hashEnd: shard.hashEnd,
      appliedIndex: header.appliedIndex,
      term: header.term,
      readIndex: header.readIndex,
      epoch: header.epoch,
      nodeId: header.nodeId,
      entryCount: facts.entryCount,
      entryBytes: facts.entryBytes,
    }
  } catch (err) {
    onBytes(-sent)
    throw err
  } finally {
    if (!finished) {
      await writer.abandon()
      await rm(part, { force: true })
    }
  }
}

export const backupCreateCommand: CommandSpec = {
  name: 'create',
  arguments: '<dir>',
  summary: 'back up every data shard and the shard map into a new directory',
  kind: 'read',
  options: [
    new Option('--shard-deadline-ms <ms>', "each shard's export budget (default and most: 600000)").argParser(
      parsePositive,
    ),
  ],
  details: [
    'Each shard is exported by its leader after a ReadIndex round, from one view at its applied',
    'index: the backup holds every write acknowledged before `create` began (each shard at the',
    'index the manifest names; shards are taken one after another, not at one instant).',
    'The meta shard is not backed up: the shard map is (shard-map.json). Restore into a new',
    'cluster with `kvd --restore DIR` (README: Backup and restore).',
  ],
  examples: ['kvctl backup create /backups/ringkv-2026-12-06', 'kvctl backup create ./bk -o json'],
  async run(ctx, args, options) {
    const dir = args[0]!
    const deadlineMs = Math.min(
      (options['shardDeadlineMs'] as number | undefined) ?? limits.requestDeadlineMsMax,
      limits.requestDeadlineMsMax,
    )
    await prepareDir(dir)
    const startedMs = ctx.clock.wallMs()
    const map = await fetchMap(ctx)
    const mapPath = join(dir, mapFile)
    await writeNewFile(mapPath, `${JSON.stringify(map, null, 2)}\n`)
    const mapFacts: FileFacts = { file: mapFile, ...(await fileFacts(mapPath)) }
    const progress = new Progress(ctx, ctx.io.stdout.isTTY === true && ctx.format === 'table')
    let bytes = 0
    const shards: ShardBackup[] = []
    for (const [i, shard] of map.shards.entries()) {
      progress.show(`shard ${shard.shardId}`, i, map.shards.length, bytes)
      shards.push(
        await backupShard(ctx, dir, map, shard, deadlineMs, (n) => {
          bytes += n
          progress.show(`shard ${shard.shardId}`, i, map.shards.length, bytes)
        }),
      )
    }
    progress.show('done', map.shards.length, map.shards.length, bytes)
    progress.end()
    const manifest: Manifest = {
      format: manifestFormat,
      clusterId: map.clusterId,
      shardCount: map.shards.length,
      replicaCount: map.replicaCount,
      startedMs,
      finishedMs: ctx.clock.wallMs(),
      map: mapFacts,
      shards,
    }
    const temp = join(dir, `${manifestFile}.tmp`)
    await writeNewFile(temp, encodeManifest(manifest))
    await rename(temp, join(dir, manifestFile))
    await syncDir(dir)
    const totalBytes = shards.reduce((n, s) => n + s.fileBytes, mapFacts.fileBytes)
    const entries = shards.reduce((n, s) => n + s.entryCount, 0)
    if (ctx.format === 'json')
      ctx.print(
        json({
          dir,
          clusterId: manifest.clusterId,
          shards: shards.length,
          entries,
          bytes: totalBytes,
          startedMs,
          finishedMs: manifest.finishedMs,
        }),
      )
    else
      ctx.print(
        `backup of cluster ${manifest.clusterId} in ${dir}: ${shards.length} shards, ${entries} records, ${formatBytes(totalBytes)}`,
      )
    return ExitCode.Ok
  },
}

export const backupVerifyCommand: CommandSpec = {
  name: 'verify',
  arguments: '<dir>',
  summary: 'check a backup without a cluster: manifest, sizes, checksums and every record',
  kind: 'read',
  details: ['Exit code 0: the backup is whole; 2: it is not (the message names the file and the problem).'],
  examples: ['kvctl backup verify /backups/ringkv-2026-12-06'],
  async run(ctx, args) {
    const dir = args[0]!
    const report = await verifyBackup(dir)
    const m = report.manifest
    if (ctx.format === 'json')
      ctx.print(
        json({
          dir,
          ok: true,
          clusterId: m.clusterId,
          shards: m.shards.length,
          entries: report.entryCount,
          bytes: report.totalBytes,
          startedMs: m.startedMs,
          finishedMs: m.finishedMs,
        }),
      )
    else {
      ctx.print(
        table([
          ['SHARD', 'APPLIED', 'EPOCH', 'RECORDS', 'SIZE'],
          ...m.shards.map((s) => [
            String(s.shardId),
            String(s.appliedIndex),
            String(s.epoch),
            String(s.entryCount),
            formatBytes(s.fileBytes),
          ]),
        ]),
      )
      ctx.print(
        `backup of cluster ${m.clusterId} in ${dir} is whole: ${m.shards.length} shards, ${report.entryCount} records, ${formatBytes(report.totalBytes)}`,
      )
    }
    return ExitCode.Ok
  },
}

export const backupCommand: CommandSpec = {
  name: 'backup',
  arguments: '',
  summary: 'back up a cluster (create) and check a backup (verify); restore with kvd --restore',
  kind: 'read',
  subcommands: [backupCreateCommand, backupVerifyCommand],
  examples: ['kvctl backup create ./bk', 'kvctl backup verify ./bk'],
  async run(ctx) {
    ctx.io.stderr.write('kvctl backup: name a subcommand: create DIR | verify DIR\n')
    return ExitCode.Usage
  },
}
