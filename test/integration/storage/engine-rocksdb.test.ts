import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ErrorCode, silentLogger } from '../../../src/common/index.ts'
import { openRocksEngine, RocksEngine, StorageLockedError, type Engine } from '../../../src/storage/index.ts'
import { engineCompliance } from '../../unit/storage/engine-compliance.ts'

const root = mkdtempSync(join(tmpdir(), 'ringkv-rocks-'))
let counter = 0
const freshDir = (): string => join(root, `db-${++counter}`)
afterAll(() => rmSync(root, { recursive: true, force: true }))

const open = (dir: string): Promise<RocksEngine> => openRocksEngine({ dir }, { logger: silentLogger })

engineCompliance('RocksEngine', {
  open: () => open(freshDir()),
  reopen: async (engine: Engine) => {
    expect(engine).toBeInstanceOf(RocksEngine)
    const dir = (engine as RocksEngine).dir
    await engine.close()
    return open(dir)
  },
})

const s = (text: string): Uint8Array => new TextEncoder().encode(text)

/** Starts a child process that opens `dir` with the rocksdb binding and holds it until killed. */
function holdInChild(dir: string): Promise<ChildProcess> {
  const script = `
    const db = require('rocksdb')(process.argv[1])
    db.open({ createIfMissing: true }, (err) => {
      if (err) { console.log('error ' + err.message); process.exit(1) }
      console.log('ready')
      setInterval(() => {}, 1000)
    })`
  const child = spawn(process.execPath, ['-e', script, dir], {
    cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve(child)
      else reject(new Error(chunk.toString()))
    })
    child.on('exit', (code) => reject(new Error(`child exited ${code}`)))
  })
}

describe('storage/engine-rocksdb', () => {
  it('refuses a second handle on the same directory with StorageLockedError naming it', async () => {
    const dir = freshDir()
    const first = await open(dir)
    try {
      const err = await open(dir).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(StorageLockedError)
      expect((err as StorageLockedError).code).toBe(ErrorCode.Unavailable)
      expect((err as StorageLockedError).message).toContain(dir)
      expect((err as StorageLockedError).dataDir).toBe(dir)
    } finally {
      await first.close()
    }
    // Released on close: a new handle opens.
    const again = await open(dir)
    await again.close()
  })

  it('refuses a directory held by another process', async () => {
    const dir = freshDir()
    const child = await holdInChild(dir)
    try {
      const err = await open(dir).then(
        () => undefined,
        (e: unknown) => e,
      )
      expect(err).toBeInstanceOf(StorageLockedError)
      expect((err as Error).message).toContain(dir)
    } finally {
      child.kill('SIGKILL')
      await new Promise((resolve) => child.once('exit', resolve))
    }
    // kill -9 released the LOCK (fcntl locks die with the process).
    const engine = await open(dir)
    await engine.close()
  })

  it('survives a reopen after many synced batches, with a deleteRange racing plain writes', async () => {
    const dir = freshDir()
    let engine = await open(dir)
    const writes: Promise<void>[] = []
    for (let i = 0; i < 200; i++)
      writes.push(
        engine.write(engine.batch().put(s(`k${String(i).padStart(3, '0')}`), s(`${i}`)), { sync: true }),
      )
    await Promise.all(writes)
    await Promise.all([
      engine.write(engine.batch().deleteRange(s('k100'), s('k200')), { sync: true }),
      engine.write(engine.batch().put(s('z'), s('after')), { sync: true }),
    ])
    await engine.close()
    engine = await open(dir)
    let n = 0
    for await (const _entry of engine.iterate({ gte: s('k'), lt: s('l') })) n++
    expect(n).toBe(100)
    expect(new TextDecoder().decode((await engine.get(s('z'))) ?? new Uint8Array())).toBe('after')
    expect(Number(engine.property('rocksdb.estimate-num-keys'))).toBeGreaterThan(0)
    await engine.close()
  })
})
