/**
 * kvctl against a real kvd: the compiled CLI as a real process (`node bin/kvctl.js`) for the
 * round trips users do, and `main()` in-process for the wider matrix (same code, faster).
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { ExitCode } from '../../../src/cli/exit-codes.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'
import { runKvctl } from './run-kvctl.ts'
import { repoRoot } from '../helpers/kvd.ts'

async function inProcess(
  argv: string[],
  stdin = '',
): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Object.assign(
      (async function* () {
        if (stdin !== '') yield new TextEncoder().encode(stdin)
      })(),
      { isTTY: false },
    ),
    env: {},
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

describe('cli/kvctl against kvd', () => {
  let kvd: KvdHandle
  let ep: string[]

  beforeAll(async () => {
    // One replica per shard: a lone node with the default three would be in safe mode (DEGRADED),
    // which the status tests below would see or not depending on when the meta leader first plans.
    kvd = await startKvd({ args: ['--replicas', '1', '--meta-replicas', '1'] })
    ep = ['--endpoints', kvd.address]
  })
  afterAll(async () => {
    await kvd?.stop()
  })

  it('round-trips put/get/del as a real process, table output', async () => {
    const put = await runKvctl([...ep, '-o', 'table', 'put', 'cli/a', 'hello world'])
    expect(put.stderr).toBe('')
    expect(put.code).toBe(0)
    expect(put.stdout).toMatch(
      /^OK\s+cli\/a @ version \d+\nserved\s+node \d+, shard \d+, index \d+, majority, fresh\n$/,
    )
    const get = await runKvctl([...ep, '-o', 'table', 'get', 'cli/a'])
    expect(get.code).toBe(0)
    expect(get.stdout).toMatch(
      /^key\s+cli\/a\nvalue\s+hello world\nversion\s+\d+ \(created \d+\)\nserved\s+node/,
    )
    const del = await runKvctl([...ep, '-o', 'table', 'del', 'cli/a'])
    expect(del.code).toBe(0)
    expect(del.stdout).toMatch(/^DELETED\s+cli\/a\n/)
    const gone = await runKvctl([...ep, '-o', 'table', 'get', 'cli/a'])
    expect(gone).toMatchObject({
      code: ExitCode.NotFound,
      stdout: '',
      stderr: "Error: NOT_FOUND: key 'cli/a' not found\n",
    })
  })

  it('defaults to JSON when piped, reads the value from stdin, and uses KVCTL_ENDPOINTS', async () => {
    const env = { KVCTL_ENDPOINTS: kvd.address }
    const put = await runKvctl(['put', 'cli/stdin'], { stdin: 'line one\nline two\n', env })
    expect(put.code).toBe(0)
    const written = JSON.parse(put.stdout)
    expect(written).toMatchObject({
      key: 'cli/stdin',
      version: expect.any(Number),
      receipt: { consistency: 'majority' },
    })
    const get = await runKvctl(['get', 'cli/stdin', '--consistency', 'eventual'], { env })
    const read = JSON.parse(get.stdout)
    expect(read).toMatchObject({
      value: 'line one\nline two\n',
      valueEncoding: 'utf8',
      version: written.version,
      receipt: { consistency: 'eventual' },
    })
    expect(read.receipt).toHaveProperty('stalenessMs')
    expect(read.receipt).toHaveProperty('appliedIndex')
  })

  it('does compare-and-set and exits 6 on a mismatch, as a real process', async () => {
    const first = JSON.parse((await runKvctl([...ep, 'put', 'cli/cas', 'v1'])).stdout)
    const ok = await runKvctl([...ep, 'put', 'cli/cas', 'v2', '--expected-version', String(first.version)])
    expect(ok.code).toBe(0)
    const lost = await runKvctl([...ep, 'put', 'cli/cas', 'v3', '--expected-version', String(first.version)])
    expect(lost.code).toBe(ExitCode.VersionMismatch)
    expect(lost.stdout).toBe('')
    const err = JSON.parse(lost.stderr)
    expect(err.error).toMatchObject({
      code: 'VERSION_MISMATCH',
      details: { currentVersion: JSON.parse(ok.stdout).version },
    })
  })

  it('exits 2 on a usage error and 3 when nothing is reachable, as a real process', async () => {
    const usage = await runKvctl([...ep, 'get'])
    expect(usage.code).toBe(ExitCode.Usage)
    expect(usage.stderr).toMatch(/^Error: USAGE: missing required argument 'key'/)
    const down = await runKvctl([
      '--endpoints',
      '127.0.0.1:1',
      '-o',
      'table',
      'get',
      'k',
      '--deadline-ms',
      '1000',
    ])
    expect(down.code).toBe(ExitCode.Unavailable)
    expect(down.stderr).toMatch(/^Error: UNAVAILABLE: /)
    expect(down.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('scans in both formats', async () => {
    for (let i = 0; i < 12; i++) await inProcess([...ep, 'put', `cli/scan/${i}`, `v${i}`])
    const json = JSON.parse((await runKvctl([...ep, 'scan', '--prefix', 'cli/scan/'])).stdout)
    expect(json.count).toBe(12)
    expect(json.entries.map((e: { key: string }) => e.key).sort()).toEqual(
      [...Array(12).keys()].map((i) => `cli/scan/${i}`).sort(),
    )
    expect(json.receipt.consistency).toBe('linearizable')
    const table = await inProcess([...ep, '-o', 'table', 'scan', '--prefix', 'cli/scan/', '--limit', '5'])
    const lines = table.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^KEY\s+VERSION\s+VALUE$/)
    expect(lines).toHaveLength(7)
    expect(lines[6]).toMatch(/^5 entries; served by node \d+, shard \d+, index \d+, linearizable, fresh$/)
  })

  it('stops quietly with exit 0 when its reader closes the pipe early (kvctl status | head)', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/kvctl.js'), ...ep, '-o', 'table', 'status'], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // The reader goes away before kvctl writes a byte: every write meets EPIPE.
    child.stdout.destroy()
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    expect(stderr).not.toContain('EPIPE')
    expect(code).toBe(0)
  })

  it('shows status in both formats: the verdict first, the shard tables with --shards, --check quiet', async () => {
    const table = await runKvctl([...ep, '-o', 'table', 'status'])
    expect(table.code).toBe(0)
    // The verdict and its numbers first (one node, its data shards and the meta shard), then the map's nodes.
    expect(table.stdout).toMatch(
      /^cluster [0-9a-f]{32}: HEALTHY\n {2}nodes {3}1\/1 up\n {2}shards {2}2 total: 2 healthy, 0 under-replicated, 0 without leader\n {2}moves {3}0 running\n {2}rebalancing {2}no job yet\n/,
    )
    expect(table.stdout).toMatch(/^map from node 1: 1 nodes, 1 shards/m)
    expect(table.stdout).toMatch(/^NODE\s+ADDRESS\s+ZONE\s+STATE\s+HEARTBEAT/m)
    expect(table.stdout).not.toMatch(/^ENDPOINT\s/m)
    const shards = await runKvctl([...ep, '-o', 'table', 'status', '--shards'])
    expect(shards.stdout).toMatch(/^ENDPOINT\s+NODE\s+CLUSTER/m)
    expect(shards.stdout).toContain(kvd.address)
    expect(shards.stdout).toMatch(/NODE\s+SHARD\s+ROLE\s+LEADER\s+TERM\s+COMMIT\s+APPLIED\s+VOTERS/)
    // The meta shard by name, in both shard tables.
    expect(shards.stdout).toMatch(/^meta\s+\[0000000000000000, 10000000000000000\)\s+1\s+1\s/m)
    expect(shards.stdout).toMatch(/^1\s+meta\s+(leader|single)\s+1\s/m)
    expect(shards.stdout).not.toContain('4294967280')
    expect(await runKvctl([...ep, 'status', '--check'])).toMatchObject({ code: 0, stdout: '', stderr: '' })
    const health = await runKvctl([...ep, '-o', 'table', 'endpoint', 'health'])
    expect(health.code).toBe(0)
    expect(health.stdout).toMatch(
      new RegExp(`^${kvd.address} is healthy: node 1, 2 shards with a leader, took \\d+ ms\n$`),
    )
    const json = JSON.parse((await inProcess([...ep, 'status'])).stdout)
    expect(json.endpoints[0]).toMatchObject({
      endpoint: kvd.address,
      ok: true,
      node: { nodeId: expect.any(Number) },
    })
  })

  it('covers every read and write level', async () => {
    for (const level of ['majority', 'all', 'leader']) {
      const r = await inProcess([...ep, 'put', 'cli/level', level, '--consistency', level])
      expect(r.code, level).toBe(0)
      expect(JSON.parse(r.stdout).receipt.consistency).toBe(level)
    }
    for (const level of ['linearizable', 'eventual']) {
      const r = await inProcess([...ep, 'get', 'cli/level', '--consistency', level])
      expect(r.code, level).toBe(0)
      expect(JSON.parse(r.stdout).receipt.consistency).toBe(level)
    }
    const bounded = await inProcess([...ep, 'get', 'cli/level', '--max-staleness-ms', '1000'])
    expect(JSON.parse(bounded.stdout).receipt.consistency).toBe('bounded')
  })

  // A fresh kvctl process has an empty session token: every replica satisfies it (kv.proto:
  // "any replica caught up to the session token"), so the read must be served.
  it('serves a session read with an empty session token (a missing shard entry means index 0)', async () => {
    await inProcess([...ep, 'put', 'cli/session', 'x'])
    const r = await inProcess([...ep, 'get', 'cli/session', '--consistency', 'session'])
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout).receipt.consistency).toBe('session')
  })

  it('deletes with --expected-version and reports absent keys', async () => {
    const put = JSON.parse((await inProcess([...ep, 'put', 'cli/cad', 'x'])).stdout)
    expect(
      (await inProcess([...ep, 'del', 'cli/cad', '--expected-version', String(put.version + 1)])).code,
    ).toBe(ExitCode.VersionMismatch)
    const del = await inProcess([...ep, 'del', 'cli/cad', '--expected-version', String(put.version)])
    expect(JSON.parse(del.stdout)).toMatchObject({ deleted: true })
    expect(JSON.parse((await inProcess([...ep, 'del', 'cli/cad'])).stdout)).toMatchObject({ deleted: false })
  })

  it('prints binary values as base64', async () => {
    await inProcess([...ep, 'put', 'cli/bin', '-'], '\u0000\u0001binary')
    const got = JSON.parse((await inProcess([...ep, 'get', 'cli/bin'])).stdout)
    expect(got.valueEncoding).toBe('base64')
    expect(Buffer.from(got.value, 'base64').toString('latin1')).toBe('\u0000\u0001binary')
  })
})
