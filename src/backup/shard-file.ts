/**
 * Writing and reading one shard's backup file (format.ts) with bounded memory: the writer appends
 * frames as they come (each awaited, so a slow disk holds the stream back), the reader yields one
 * chunk of entries at a time. Both keep a running SHA-256 and byte count.
 *
 * The reader refuses (KvError INVALID_ARGUMENT naming the file) a file that is not what the manifest
 * says: wrong magic, a malformed or oversized frame, entries that are not the shard's records
 * (records.ts), a missing end frame or bytes after it, totals that differ from the end frame or the
 * manifest, or a size or checksum that differs. The size and checksum are known only at the end:
 * a consumer that writes entries as they come (a restore) must treat everything it wrote as void
 * until the iteration has finished without an error.
 */
import { createHash, type Hash } from 'node:crypto'
import { open, type FileHandle } from 'node:fs/promises'
import { ShardId } from '../common/ids.ts'
import type { Entry } from '../storage/index.ts'
import {
  FrameKind,
  decodeEnd,
  decodeEntries,
  decodeFrameHeader,
  encodeEnd,
  encodeFrame,
  entriesBytes,
  frameHeaderBytes,
  malformedIn,
  shardFileMagic,
  type EndTotals,
} from './format.ts'
import type { FileFacts, ShardBackup } from './manifest.ts'
import { RecordChecker } from './records.ts'

export class ShardFileWriter {
  private bytes = 0
  private entryCount = 0
  private entryBytes = 0
  private readonly hash: Hash = createHash('sha256')

  private constructor(
    private readonly file: FileHandle,
    readonly path: string,
  ) {}

  /** Creates `path` (refused if it exists) and writes the magic. */
  static async create(path: string): Promise<ShardFileWriter> {
    const file = await open(path, 'wx')
    const w = new ShardFileWriter(file, path)
    try {
      await w.append(shardFileMagic)
    } catch (err) {
      await file.close()
      throw err
    }
    return w
  }

  /**
   * Appends an entries payload (format.ts encodeEntries) as received, counted with its totals
   * (the caller decoded it to check it; the bytes written are the bytes received).
   */
  async writeEntries(payload: Uint8Array, entries: readonly Entry[]): Promise<void> {
    this.entryCount += entries.length
    this.entryBytes += entriesBytes(entries)
    await this.append(encodeFrame(FrameKind.Entries, payload))
  }

  get totals(): EndTotals {
    return { entryCount: this.entryCount, entryBytes: this.entryBytes }
  }

  get size(): number {
    return this.bytes
  }

  /** Writes the end frame, syncs and closes; the file's facts for the manifest. */
  async finish(): Promise<{ readonly fileBytes: number; readonly sha256: string } & EndTotals> {
    try {
      await this.append(encodeFrame(FrameKind.End, encodeEnd(this.totals)))
      await this.file.sync()
    } finally {
      await this.file.close()
    }
    return { fileBytes: this.bytes, sha256: this.hash.digest('hex'), ...this.totals }
  }

  /** Closes without finishing (the file is left incomplete; a verify refuses it). */
  async abandon(): Promise<void> {
    await this.file.close().catch(() => undefined)
  }

  private async append(bytes: Uint8Array): Promise<void> {
    let at = 0
    while (at < bytes.length) {
      const { bytesWritten } = await this.file.write(bytes, at, bytes.length - at)
      at += bytesWritten
    }
    this.hash.update(bytes)
    this.bytes += bytes.length
  }
}

export interface ReadShardFileOptions {
  /** Called with the size of every frame read (progress). */
  readonly onBytes?: (bytes: number) => void
}

/**
 * The entries of a shard's file, chunk by chunk, each checked (see the file comment). Ends without
 * an error only when the whole file is what `expect` (its manifest entry) says.
 */
export async function* readShardFile(
  path: string,
  expect: ShardBackup,
  options: ReadShardFileOptions = {},
): AsyncGenerator<Entry[]> {
  const malformed = malformedIn(`backup file ${expect.file}`)
  const checker = new RecordChecker(
    {
      shardId: ShardId(expect.shardId),
      hashStart: BigInt(expect.hashStart),
      hashEnd: BigInt(expect.hashEnd),
    },
    malformed,
  )
  const file = await open(path, 'r')
  const hash = createHash('sha256')
  let position = 0
  const read = async (n: number): Promise<Uint8Array> => {
    const out = new Uint8Array(n)
    let at = 0
    while (at < n) {
      const { bytesRead } = await file.read(out, at, n - at, position + at)
      if (bytesRead === 0) break
      at += bytesRead
    }
    position += at
    hash.update(out.subarray(0, at))
    return at === n ? out : out.subarray(0, at)
  }
  try {
    const magic = await read(shardFileMagic.length)
    if (magic.length !== shardFileMagic.length || !magic.every((b, i) => b === shardFileMagic[i]))
      malformed('not a ringkv shard backup (bad magic)')
    let entryCount = 0
    let entryBytes = 0
    for (;;) {
      const header = await read(frameHeaderBytes)
      if (header.length === 0) malformed('truncated: no end frame')
      const { kind, length } = decodeFrameHeader(header, malformed)
      const payload = await read(length)
      if (payload.length !== length) malformed('truncated frame')
      options.onBytes?.(frameHeaderBytes + length)
      if (kind === FrameKind.End) {
        const totals = decodeEnd(payload, malformed)
        if (totals.entryCount !== entryCount || totals.entryBytes !== entryBytes)
          malformed(
            `the end frame counts ${totals.entryCount} entries (${totals.entryBytes} bytes), the file holds ${entryCount} (${entryBytes})`,
          )
        break
      }
      const entries = decodeEntries(payload, malformed)
      checker.check(entries)
      entryCount += entries.length
      entryBytes += entriesBytes(entries)
      yield entries
    }
    if ((await read(1)).length !== 0) malformed('bytes after the end frame')
    if (entryCount !== expect.entryCount || entryBytes !== expect.entryBytes)
      malformed(
        `holds ${entryCount} entries (${entryBytes} bytes); the manifest says ${expect.entryCount} (${expect.entryBytes})`,
      )
    checkFacts(expect, position, hash.digest('hex'))
  } finally {
    await file.close()
  }
}

/** The size and checksum of a file read whole, against the manifest's. */
export function checkFacts(expect: FileFacts, fileBytes: number, sha256: string): void {
  const malformed = malformedIn(`backup file ${expect.file}`)
  if (fileBytes !== expect.fileBytes)
    malformed(`is ${fileBytes} bytes; the manifest says ${expect.fileBytes}`)
  if (sha256 !== expect.sha256) malformed(`SHA-256 ${sha256} differs from the manifest's ${expect.sha256}`)
}

/** Size and SHA-256 of a whole file (read in chunks). */
export async function fileFacts(path: string): Promise<{ fileBytes: number; sha256: string }> {
  const hash = createHash('sha256')
  let fileBytes = 0
  const file = await open(path, 'r')
  try {
    for await (const chunk of file.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false })) {
      hash.update(chunk as Buffer)
      fileBytes += (chunk as Buffer).length
    }
  } finally {
    await file.close()
  }
  return { fileBytes, sha256: hash.digest('hex') }
}
