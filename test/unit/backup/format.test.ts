/**
 * The backup directory format (src/backup): a backup written with the real writer and real record
 * encoders verifies; every kind of damage (a flipped byte, a truncated file, a bad record, keys out
 * of order or outside the shard, totals that lie, a manifest that lies or points outside its
 * directory) is refused with an error naming the file, by `verifyBackup` and by `kvctl backup
 * verify` (exit code 2); a restore's records leave the shard descriptor out.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import {
  FrameKind,
  ShardFileWriter,
  decodeEntries,
  decodeManifest,
  encodeEntries,
  encodeFrame,
  encodeManifest,
  fileFacts,
  malformedIn,
  manifestFile,
  mapFile,
  openRestoreSource,
  restoreEntries,
  shardFileMagic,
  shardFileName,
  verifyBackup,
  type Manifest,
  type ShardBackup,
} from '../../../src/backup/index.ts'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { isKvError } from '../../../src/common/errors.ts'
import { ShardId, type LogIndex } from '../../../src/common/ids.ts'
import { equalHashRanges } from '../../../src/hashing/index.ts'
import { encodeDedupHeader, encodeDedupResult } from '../../../src/shard/dedup.ts'
import { encodeDescriptor } from '../../../src/shard/descriptor.ts'
import {
  dataKey,
  dedupClientKey,
  dedupResultKey,
  encodeValueRecord,
  shardDescriptorKey,
  type Entry,
} from '../../../src/storage/index.ts'

const root = mkdtempSync(join(tmpdir(), 'ringkv-backup-unit-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const shardCount = 2
const ranges = equalHashRanges(shardCount)
const enc = (s: string): Uint8Array => new TextEncoder().encode(s)

/** The records of shard `i` as a node stores them, in key order. */
function recordsOf(i: number, keys = 20): Entry[] {
  const id = ShardId(i)
  const { start } = ranges[i]!
  const data: Entry[] = []
  for (let k = 0; k < keys; k++)
    data.push([
      dataKey(start + BigInt(k) * 1000n, enc(`key-${i}-${k}`)),
      encodeValueRecord({
        version: (10 + k) as LogIndex,
        createVersion: (10 + k) as LogIndex,
        value: enc(`v${k}`),
      }),
    ])
  const local: Entry[] = [
    [dedupClientKey(id, 'client-a'), encodeDedupHeader({ watermark: 3, lastIndex: 12 as LogIndex })],
    [dedupResultKey(id, 'client-a', 4), encodeDedupResult({ kind: 'put', version: 12 as LogIndex })],
    [shardDescriptorKey(id), encodeDescriptor({ epoch: 3, confIndex: 9 as LogIndex })],
  ]
  return [...data, ...local]
}

/** Writes a whole backup of `shardCount` shards into a new directory; `records` may be altered per shard. */
async function writeBackup(
  name: string,
  records: (i: number) => Entry[][] = (i) => [recordsOf(i)],
): Promise<string> {
  const dir = join(root, name)
  mkdirSync(dir)
  writeFileSync(join(dir, mapFile), '{"shards":[]}\n')
  const shards: ShardBackup[] = []
  for (let i = 0; i < shardCount; i++) {
    const w = await ShardFileWriter.create(join(dir, shardFileName(i)))
    for (const chunk of records(i)) await w.writeEntries(encodeEntries(chunk), chunk)
    const facts = await w.finish()
    shards.push({
      shardId: i,
      file: shardFileName(i),
      fileBytes: facts.fileBytes,
      sha256: facts.sha256,
      hashStart: ranges[i]!.start.toString(),
      hashEnd: ranges[i]!.end.toString(),
      appliedIndex: 40 + i,
      term: 6,
      readIndex: 39 + i,
      epoch: 3,
      nodeId: 1,
      entryCount: facts.entryCount,
      entryBytes: facts.entryBytes,
    })
  }
  const manifest: Manifest = {
    format: 1,
    clusterId: 'ab'.repeat(16),
    shardCount,
    replicaCount: 3,
    startedMs: 1_000,
    finishedMs: 2_000,
    map: { file: mapFile, ...(await fileFacts(join(dir, mapFile))) },
    shards,
  }
  writeFileSync(join(dir, manifestFile), encodeManifest(manifest))
  return dir
}

/** The message of what `verifyBackup(dir)` throws (a KvError INVALID_ARGUMENT), or 'ok'. */
async function refusal(dir: string): Promise<string> {
  try {
    await verifyBackup(dir)
    return 'ok'
  } catch (err) {
    if (!isKvError(err)) throw err
    expect(err.code).toBe('INVALID_ARGUMENT')
    return err.message
  }
}

async function kvctl(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string | Uint8Array) => (stdout += String(s)), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Object.assign((async function* () {})(), { isTTY: true }),
    env: {},
  }
  return { code: await main(argv, io), stdout, stderr }
}

/** Rewrites the manifest of `dir` through `change`, keeping it otherwise as written. */
function editManifest(dir: string, change: (m: Record<string, unknown>) => void): void {
  const m = JSON.parse(readFileSync(join(dir, manifestFile), 'utf8')) as Record<string, unknown>
  change(m)
  writeFileSync(join(dir, manifestFile), JSON.stringify(m))
}

/** Recomputes a shard file's size and checksum in the manifest after its bytes were changed. */
async function refreshFacts(
  dir: string,
  shard: number,
  entryTotals?: { entryCount: number; entryBytes: number },
): Promise<void> {
  const facts = await fileFacts(join(dir, shardFileName(shard)))
  editManifest(dir, (m) => {
    const s = (m['shards'] as Record<string, unknown>[])[shard]!
    Object.assign(s, facts, entryTotals ?? {})
  })
}

describe('backup format', () => {
  it('a backup written whole verifies, and kvctl backup verify says so (exit 0)', async () => {
    const dir = await writeBackup('good', (i) => [recordsOf(i).slice(0, 10), recordsOf(i).slice(10)])
    const report = await verifyBackup(dir)
    expect(report.entryCount).toBe(shardCount * 23)
    expect(report.manifest.shards.map((s) => s.appliedIndex)).toEqual([40, 41])
    const r = await kvctl(['backup', 'verify', dir, '-o', 'json'])
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, shards: 2, entries: 46 })
  })

  it('a flipped byte anywhere in a shard file is refused', async () => {
    const dir = await writeBackup('flip')
    const path = join(dir, shardFileName(1))
    const bytes = readFileSync(path)
    for (const at of [3, shardFileMagic.length + 2, Math.floor(bytes.length / 2), bytes.length - 1]) {
      const damaged = Buffer.from(bytes)
      damaged[at] = damaged[at]! ^ 0x40
      writeFileSync(path, damaged)
      expect(await refusal(dir)).toContain(shardFileName(1))
    }
    writeFileSync(path, bytes)
    expect(await refusal(dir)).toBe('ok')
  })

  it('a truncated file, or bytes after its end, are refused even with matching facts', async () => {
    const dir = await writeBackup('truncate')
    const path = join(dir, shardFileName(0))
    const bytes = readFileSync(path)
    writeFileSync(path, bytes.subarray(0, bytes.length - 3))
    await refreshFacts(dir, 0)
    expect(await refusal(dir)).toMatch(/truncated/)
    writeFileSync(path, Buffer.concat([bytes, Buffer.from([1])]))
    await refreshFacts(dir, 0)
    expect(await refusal(dir)).toMatch(/after the end frame/)
  })

  it('a record that does not decode, keys out of order or outside the shard are refused', async () => {
    const badValue = recordsOf(0)
    badValue[3] = [badValue[3]![0], Uint8Array.of(9, 1, 0)]
    expect(await refusal(await writeBackup('bad-value', (i) => [i === 0 ? badValue : recordsOf(i)]))).toMatch(
      /value record/,
    )
    const swapped = recordsOf(1)
    ;[swapped[1], swapped[2]] = [swapped[2]!, swapped[1]!]
    expect(await refusal(await writeBackup('order', (i) => [i === 1 ? swapped : recordsOf(i)]))).toMatch(
      /order/,
    )
    // Shard 0 holding a record of shard 1's hash range.
    expect(
      await refusal(
        await writeBackup('outside', (i) => [
          i === 0 ? [...recordsOf(0).slice(0, 20), recordsOf(1)[0]!] : recordsOf(i),
        ]),
      ),
    ).toMatch(/outside shard 0/)
    const badDedup = recordsOf(1)
    badDedup[20] = [badDedup[20]![0], Uint8Array.of(7)]
    expect(await refusal(await writeBackup('dedup', (i) => [i === 1 ? badDedup : recordsOf(i)]))).toMatch(
      /dedup/,
    )
  })

  it('an end frame or a manifest whose totals differ from the records is refused', async () => {
    const dir = await writeBackup('totals')
    editManifest(dir, (m) => {
      ;(m['shards'] as Record<string, number>[])[0]!['entryCount'] = 22
    })
    expect(await refusal(dir)).toMatch(/manifest says 22/)
    // A file whose end frame lies (written by hand, facts recomputed).
    const lying = await writeBackup('end-lies')
    const chunk = recordsOf(0)
    const end = new Uint8Array([chunk.length + 1, 0])
    writeFileSync(
      join(lying, shardFileName(0)),
      Buffer.concat([
        shardFileMagic,
        encodeFrame(FrameKind.Entries, encodeEntries(chunk)),
        encodeFrame(FrameKind.End, end),
      ]),
    )
    await refreshFacts(lying, 0)
    expect(await refusal(lying)).toMatch(/end frame counts/)
  })

  it('a frame header announcing more than a chunk may hold is refused before it is read', async () => {
    const dir = await writeBackup('huge-frame')
    const header = Buffer.alloc(5)
    header[0] = FrameKind.Entries
    header.writeUInt32BE(0xffff_fff0, 1)
    writeFileSync(join(dir, shardFileName(0)), Buffer.concat([shardFileMagic, header]))
    await refreshFacts(dir, 0)
    expect(await refusal(dir)).toMatch(/exceeds/)
  })

  it('a manifest that is missing, lies about a checksum, points outside its directory or leaves the ring uncovered is refused', async () => {
    const dir = await writeBackup('manifest')
    const original = readFileSync(join(dir, manifestFile), 'utf8')
    editManifest(dir, (m) => {
      ;(m['shards'] as Record<string, string>[])[1]!['sha256'] = '0'.repeat(64)
    })
    expect(await refusal(dir)).toMatch(/SHA-256/)
    writeFileSync(join(dir, manifestFile), original)
    editManifest(dir, (m) => {
      ;(m['shards'] as Record<string, string>[])[1]!['file'] = '../shard-00001.rkvs'
    })
    expect(await refusal(dir)).toMatch(/file/)
    writeFileSync(join(dir, manifestFile), original)
    editManifest(dir, (m) => {
      ;(m['shards'] as Record<string, string>[])[1]!['hashEnd'] = '18446744073709551615'
    })
    expect(await refusal(dir)).toMatch(/cover the ring/)
    writeFileSync(join(dir, manifestFile), original)
    writeFileSync(join(dir, mapFile), '{}\n')
    expect(await refusal(dir)).toMatch(/shard-map\.json/)
    expect(await refusal(join(root, 'no-such-backup'))).toMatch(/no manifest\.json/)
    expect(() => decodeManifest('{"format":2}')).toThrow(/format/)
    const r = await kvctl(['backup', 'verify', dir])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/shard-map\.json/)
  })

  it("a restore's records are the shard's records without its descriptor", async () => {
    const dir = await writeBackup('restore')
    const source = await openRestoreSource(dir)
    const seen: Entry[] = []
    for await (const chunk of restoreEntries(source, source.manifest.shards[1]!)) seen.push(...chunk)
    const expected = recordsOf(1).slice(0, 22)
    expect(seen.map(([k]) => Buffer.from(k).toString('hex'))).toEqual(
      expected.map(([k]) => Buffer.from(k).toString('hex')),
    )
  })

  it('entries chunks round-trip, and a chunk cut anywhere is refused', () => {
    const malformed = malformedIn('test')
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.uint8Array({ maxLength: 60 })), {
          maxLength: 20,
        }),
        fc.nat(),
        (entries, cut) => {
          const bytes = encodeEntries(entries)
          const back = decodeEntries(bytes, malformed)
          expect(back.map(([k, v]) => [[...k], [...v]])).toEqual(entries.map(([k, v]) => [[...k], [...v]]))
          if (entries.length === 0) return
          const at = cut % bytes.length
          expect(() => decodeEntries(bytes.subarray(0, at), malformed)).toThrow()
        },
      ),
    )
  })
})
