/**
 * kvd as a process: exit codes, a second kvd on a locked data dir, graceful SIGTERM with durable
 * data, a restart that keeps the cluster id.
 */
import { status as Grpc } from '@grpc/grpc-js'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { freePort, runKvd, startKvd, type KvdHandle } from '../helpers/kvd.ts'
import { adminClient, adminStatus, expectFailure, kv, kvClient } from '../helpers/grpc.ts'

const b = (s: string): Buffer => Buffer.from(s)
const handles: KvdHandle[] = []
const dirs: string[] = []
afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()))
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-life-'))
  dirs.push(dir)
  return dir
}

describe('kvd process lifecycle', () => {
  it('keeps retrying a join that no node answers yet (it does not exit between attempts)', async () => {
    const dead = `127.0.0.1:${await freePort()}`
    const run = await runKvd(
      [
        '--data',
        tempDir(),
        '--listen',
        `127.0.0.1:${await freePort()}`,
        '--http',
        `127.0.0.1:${await freePort()}`,
        '--join',
        dead,
      ],
      { timeoutMs: 4_000 },
    )
    // Still waiting to retry when the test ran out of patience: killed, not exited on its own.
    expect(run.signal, run.stderr).toBe('SIGKILL')
    expect(run.stderr.match(/join attempt failed/g)?.length ?? 0).toBeGreaterThanOrEqual(2)
  })

  it('refuses a second kvd on the same data dir at once, with one line naming the dir', async () => {
    const first = await startKvd()
    handles.push(first)
    const second = await runKvd(
      [
        '--data',
        first.dataDir,
        '--listen',
        `127.0.0.1:${await freePort()}`,
        '--http',
        `127.0.0.1:${await freePort()}`,
      ],
      { env: { RINGKV_LOG_LEVEL: 'silent' } },
    )
    expect(second.code).toBe(1)
    expect(second.elapsedMs).toBeLessThan(10_000)
    const lines = second.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(first.dataDir)
    expect(lines[0]).toMatch(/^kvd: .*in use by another kvd.*LOCK/)
    // The first one is unharmed.
    expect(
      (await kv(kvClient(first.address)).put({ key: b('still'), value: b('here') })).version,
    ).toBeGreaterThan(0)
  })

  it('exits 2 with one line for bad flags, env or config file, and writes no data dir', async () => {
    const dir = tempDir()
    const file = join(dir, 'bad.json')
    writeFileSync(file, JSON.stringify({ dataDir: join(dir, 'd'), nodeId: 0 }))
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[], {}, /data directory is required/],
      [['--data', join(dir, 'd'), '--listen', 'nowhere'], {}, /--listen must be HOST:PORT/],
      [['--data', join(dir, 'd'), '--frobnicate'], {}, /unknown option/],
      [['--data', join(dir, 'd')], { RINGKV_LOG_LEVEL: 'chatty' }, /RINGKV_LOG_LEVEL must be one of/],
      [['--data', join(dir, 'd'), '--limit', 'valueBytesMax=999999999'], {}, /may only be tightened/],
      [['--config', file], {}, /nodeId/],
      [['--config', join(dir, 'missing.json')], {}, /cannot read config file/],
    ]
    for (const [args, env, message] of cases) {
      const run = await runKvd(args, { env })
      expect({ args, code: run.code }).toEqual({ args, code: 2 })
      expect(run.stderr.trim().split('\n')).toHaveLength(1)
      expect(run.stderr).toMatch(message)
      expect(run.stderr).not.toMatch(/\n\s+at /) // no stack
    }
    expect(existsSync(join(dir, 'd'))).toBe(false)
  })

  it('exits 1 with one line when its port is taken', async () => {
    const first = await startKvd()
    handles.push(first)
    const run = await runKvd(
      ['--data', tempDir(), '--listen', first.address, '--http', `127.0.0.1:${await freePort()}`],
      {
        env: { RINGKV_LOG_LEVEL: 'silent' },
      },
    )
    expect(run.code).toBe(1)
    expect(run.stderr.trim()).toMatch(/^kvd: cannot listen for grpc on 127\.0\.0\.1:\d+/)
  })

  it('shuts down gracefully on SIGTERM (exit 0) and keeps its data and cluster id across a restart', async () => {
    const node = await startKvd()
    handles.push(node)
    const c = kv(kvClient(node.address))
    const versions: number[] = []
    for (let i = 0; i < 50; i++)
      versions.push((await c.put({ key: b(`durable/${i}`), value: b(`v${i}`) })).version)
    const { clusterId } = await adminStatus(adminClient(node.address))

    node.kill('SIGTERM')
    const exit = await node.exited()
    expect(exit).toEqual({ code: 0, signal: null })
    expect(node.logs()).toContain('"msg":"kvd stopped"')
    await expectFailure(kv(kvClient(node.address), 2000).get({ key: b('durable/0') }), Grpc.UNAVAILABLE)

    await node.restart()
    const c2 = kv(kvClient(node.address))
    for (let i = 0; i < 50; i++) {
      const got = await c2.get({ key: b(`durable/${i}`) })
      expect({ found: got.found, value: got.value.toString(), version: got.version }).toEqual({
        found: true,
        value: `v${i}`,
        version: versions[i],
      })
    }
    expect((await adminStatus(adminClient(node.address))).clusterId).toBe(clusterId)
  })

  it('also stops cleanly on SIGINT', async () => {
    const node = await startKvd()
    handles.push(node)
    node.kill('SIGINT')
    expect(await node.exited()).toEqual({ code: 0, signal: null })
  })
})
