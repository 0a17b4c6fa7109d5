/**
 * Guards on the data directory, with real kvd processes:
 * - deleting RocksDB's LOCK file does not let a second kvd open a directory a live one holds (both
 *   used to accept writes, and the database was then unopenable);
 * - a write-ahead log damaged before its end (a byte flipped 3,000 bytes before the end: RocksDB
 *   recovered silently with 5 of 200 acknowledged writes gone) makes kvd refuse to start and say
 *   why; a torn tail (the end cut short, as a power cut leaves it) is let through.
 */
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { kv, kvClient } from '../helpers/grpc.ts'
import { freePort, runKvd, startKvd, type KvdHandle } from '../helpers/kvd.ts'

const handles: KvdHandle[] = []
const dirs: string[] = []
afterAll(async () => {
  for (const h of handles) await h.stop().catch(() => undefined)
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

const b = (s: string): Buffer => Buffer.from(s)

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-disk-'))
  dirs.push(dir)
  return dir
}

async function runOn(dataDir: string) {
  return runKvd(
    [
      '--data',
      dataDir,
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--http',
      `127.0.0.1:${await freePort()}`,
    ],
    { env: { RINGKV_LOG_LEVEL: 'silent' } },
  )
}

/** The largest write-ahead log of a stopped kvd's data dir. */
function largestWal(dataDir: string): string {
  const db = join(dataDir, 'db')
  const logs = readdirSync(db)
    .filter((n) => /^\d+\.log$/.test(n))
    .map((n) => join(db, n))
    .sort((x, y) => statSync(y).size - statSync(x).size)
  expect(logs.length).toBeGreaterThan(0)
  return logs[0]!
}

/** 200 acknowledged writes, then kill -9 (so they live in the write-ahead log only). */
async function writeThenKill(): Promise<string> {
  const dataDir = tempDir()
  const node = await startKvd({ dataDir })
  const c = kv(kvClient(node.address))
  for (let i = 0; i < 200; i++) await c.put({ key: b(`k${i}`), value: Buffer.alloc(200, i % 250) })
  node.kill('SIGKILL')
  await node.exited()
  return dataDir
}

describe('data directory guards', () => {
  it('a second kvd is refused even after RocksDB LOCK was deleted; the first is unharmed', async () => {
    const first = await startKvd()
    handles.push(first)
    await kv(kvClient(first.address)).put({ key: b('before'), value: b('1') })
    unlinkSync(join(first.dataDir, 'db', 'LOCK'))
    const second = await runOn(first.dataDir)
    expect(second.code).toBe(1)
    expect(second.stderr).toContain(first.dataDir)
    expect(second.stderr).toMatch(/in use by another kvd/)
    expect(
      (await kv(kvClient(first.address)).put({ key: b('after'), value: b('2') })).version,
    ).toBeGreaterThan(0)
  }, 60_000)

  it('refuses to start on a write-ahead log damaged before its end, and says so', async () => {
    const dataDir = await writeThenKill()
    const wal = largestWal(dataDir)
    const bytes = readFileSync(wal)
    expect(bytes.length).toBeGreaterThan(3_000)
    bytes[bytes.length - 3_000]! ^= 0x10
    writeFileSync(wal, bytes)
    const run = await runOn(dataDir)
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/write-ahead log .* is damaged at byte \d+/)
    expect(run.stderr).toMatch(/refuses to start/)
  }, 60_000)

  it('starts on a write-ahead log with a torn tail, and keeps what is before the tear', async () => {
    const dataDir = await writeThenKill()
    const wal = largestWal(dataDir)
    truncateSync(wal, statSync(wal).size - 100)
    const node = await startKvd({ dataDir })
    handles.push(node)
    expect(node.logs()).toMatch(/write-ahead log has a torn tail/)
    const got = await kv(kvClient(node.address)).get({ key: b('k100') })
    expect(got.found).toBe(true)
  }, 60_000)
})
