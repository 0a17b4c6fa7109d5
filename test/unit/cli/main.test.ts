import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { ErrorCode, KvError } from '../../../src/common/errors.ts'
import { limits } from '../../../src/common/limits.ts'
import { readFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { globalFlagEnv, main, type CliIo } from '../../../src/cli/main.ts'
import { ExitCode, exitCodeForError } from '../../../src/cli/exit-codes.ts'
import { encodeBytes, receiptLine, table } from '../../../src/cli/output.ts'
import type { GetRequest, PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import { FakeKvServer } from '../client/fake-server.ts'

const repoRoot = join(import.meta.dirname, '../../..')

interface Run {
  readonly code: number
  readonly stdout: string
  /** stdout exactly as written (get --print-value-only may write bytes). */
  readonly stdoutBytes: Buffer
  readonly stderr: string
}

interface RunOptions {
  readonly stdin?: string | Uint8Array
  readonly stdinIsTTY?: boolean
  readonly stdoutIsTTY?: boolean
  readonly env?: Record<string, string>
  readonly files?: Record<string, Uint8Array>
}

async function run(argv: string[], options: RunOptions = {}): Promise<Run> {
  const out: Buffer[] = []
  let stderr = ''
  const input = options.stdin
  const chunks =
    input === undefined ? [] : [typeof input === 'string' ? new TextEncoder().encode(input) : input]
  const stdin = Object.assign(
    (async function* () {
      yield* chunks
    })(),
    { isTTY: options.stdinIsTTY ?? input === undefined },
  )
  const io: CliIo = {
    stdout: {
      write: (s: string | Uint8Array) => out.push(typeof s === 'string' ? Buffer.from(s) : Buffer.from(s)),
      isTTY: options.stdoutIsTTY ?? false,
    },
    stderr: { write: (s: string) => (stderr += s) },
    stdin,
    env: options.env ?? {},
    readFile: async (path) => {
      const file = options.files?.[path]
      if (file === undefined) throw new Error(`ENOENT: ${path}`)
      return file
    },
  }
  const code = await main(argv, io)
  const stdoutBytes = Buffer.concat(out)
  return { code, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr }
}

describe('cli/kvctl against a fake kvd', () => {
  let server: FakeKvServer
  let ep: string[]
  beforeAll(async () => {
    server = await FakeKvServer.start()
    ep = ['--endpoints', server.address]
  })
  afterAll(async () => {
    await server.stop()
  })
  beforeEach(() => {
    server.store.rows.clear()
    server.requests.length = 0
  })

  it('puts and gets with table output on a TTY', async () => {
    const put = await run([...ep, 'put', 'greeting', 'hello'], { stdoutIsTTY: true })
    expect(put).toMatchObject({ code: 0, stderr: '' })
    expect(put.stdout).toMatch(
      /^OK\s+greeting @ version \d+\nserved\s+node 1, shard \d, index \d+, majority, fresh\n$/,
    )
    const get = await run([...ep, 'get', 'greeting'], { stdoutIsTTY: true })
    expect(get.code).toBe(0)
    expect(get.stdout).toContain('value    hello')
    expect(get.stdout).toMatch(/served\s+node 1, shard \d, index \d+, linearizable, fresh/)
  })

  it('prints full JSON when stdout is not a TTY, and -o overrides', async () => {
    await run([...ep, 'put', 'k', 'v'])
    const got = await run([...ep, 'get', 'k'])
    expect(JSON.parse(got.stdout)).toEqual({
      key: 'k',
      keyEncoding: 'utf8',
      found: true,
      value: 'v',
      valueEncoding: 'utf8',
      version: expect.any(Number),
      createVersion: expect.any(Number),
      receipt: {
        nodeId: 1,
        shardId: expect.any(Number),
        appliedIndex: expect.any(Number),
        // The SDK's name, and the old one kept for a release.
        delivered: 'linearizable',
        consistency: 'linearizable',
        stalenessMs: 0,
        term: 1,
      },
    })
    const table = await run([...ep, '-o', 'table', 'get', 'k'])
    expect(table.stdout).toContain('value    v')
    const jsonOnTty = await run([...ep, 'get', 'k', '-o', 'json'], { stdoutIsTTY: true })
    expect(JSON.parse(jsonOnTty.stdout).value).toBe('v')
  })

  it('prints binary values as base64 and says so', async () => {
    await run([...ep, 'put', 'bin', '-'], { stdin: new Uint8Array([0, 1, 2, 255]) })
    const got = JSON.parse((await run([...ep, 'get', 'bin'])).stdout)
    expect(got).toMatchObject({ value: 'AAEC/w==', valueEncoding: 'base64' })
    const table = await run([...ep, '-o', 'table', 'get', 'bin'])
    expect(table.stdout).toContain('base64:AAEC/w==')
  })

  it('reads the value from stdin when it is not a TTY, and from --file', async () => {
    await run([...ep, 'put', 'piped'], { stdin: 'from stdin\n', stdinIsTTY: false })
    expect(JSON.parse((await run([...ep, 'get', 'piped'])).stdout).value).toBe('from stdin\n')
    await run([...ep, 'put', 'filed', '--file', '/tmp/x.json'], {
      files: { '/tmp/x.json': new TextEncoder().encode('{}') },
    })
    expect(JSON.parse((await run([...ep, 'get', 'filed'])).stdout).value).toBe('{}')
  })

  it('refuses put without a value on a TTY stdin, and a value given twice', async () => {
    const noValue = await run([...ep, 'put', 'k'], { stdinIsTTY: true })
    expect(noValue.code).toBe(ExitCode.Usage)
    expect(noValue.stderr).toMatch(/^\{"error":\{"code":"INVALID_ARGUMENT"/)
    const both = await run([...ep, '-o', 'table', 'put', 'k', 'v', '--file', '/x'])
    expect(both.code).toBe(ExitCode.Usage)
    expect(both.stderr).toBe(
      'Error: INVALID_ARGUMENT: give the value either as VALUE or with --file, not both\n',
    )
    const missing = await run([...ep, 'put', 'k', '--file', '/missing'])
    expect(missing.code).toBe(ExitCode.Usage)
    expect(server.count('put')).toBe(0)
  })

  it('exits 5 for a missing key, with one error line', async () => {
    const r = await run([...ep, '-o', 'table', 'get', 'nope'])
    expect(r).toMatchObject({ code: 5, stdout: '', stderr: "Error: NOT_FOUND: key 'nope' not found\n" })
    const j = await run([...ep, 'get', 'nope'])
    expect(j.code).toBe(5)
    expect(j.stderr.trim().split('\n')).toHaveLength(1)
    expect(JSON.parse(j.stderr)).toMatchObject({
      error: { code: 'NOT_FOUND', key: 'nope', receipt: { nodeId: 1 } },
    })
  })

  it('does compare-and-set with --expected-version and exits 6 on a mismatch', async () => {
    const first = JSON.parse((await run([...ep, 'put', 'c', '1'])).stdout)
    const ok = await run([...ep, 'put', 'c', '2', '--expected-version', String(first.version)])
    expect(ok.code).toBe(0)
    expect(server.requestsOf<PutRequest>('put')[1]?.expectedVersion).toBe(first.version)
    const stale = await run([
      ...ep,
      '-o',
      'table',
      'put',
      'c',
      '3',
      '--expected-version',
      String(first.version),
    ])
    expect(stale.code).toBe(ExitCode.VersionMismatch)
    expect(stale.stderr).toMatch(/^Error: VERSION_MISMATCH: /)
    const staleJson = await run([...ep, 'put', 'c', '3', '--expected-version', String(first.version)])
    expect(JSON.parse(staleJson.stderr).error.details.currentVersion).toBe(JSON.parse(ok.stdout).version)
    const del = await run([...ep, 'del', 'c', '--expected-version', '1'])
    expect(del.code).toBe(ExitCode.VersionMismatch)
  })

  it('deletes, reporting whether the key existed', async () => {
    await run([...ep, 'put', 'd', 'x'])
    expect(JSON.parse((await run([...ep, 'del', 'd'])).stdout)).toMatchObject({ key: 'd', deleted: true })
    const again = await run([...ep, '-o', 'table', 'delete', 'd'])
    expect(again.code).toBe(0)
    expect(again.stdout).toMatch(/^ABSENT\s+d \(did not exist\)/)
  })

  it('scans by prefix with a limit, in both formats', async () => {
    for (let i = 0; i < 5; i++) await run([...ep, 'put', `s/${i}`, `value ${i}`])
    await run([...ep, 'put', 't/0', 'other'])
    const all = JSON.parse((await run([...ep, 'scan', '--prefix', 's/'])).stdout)
    expect(all.count).toBe(5)
    expect(all.entries.map((e: { key: string }) => e.key).sort()).toEqual(['s/0', 's/1', 's/2', 's/3', 's/4'])
    expect(all.entries[0]).toMatchObject({ valueEncoding: 'utf8', version: expect.any(Number) })
    expect(all.receipt).toMatchObject({ nodeId: 1 })
    const limited = await run([...ep, '-o', 'table', 'scan', '--prefix', 's/', '--limit', '2'])
    const lines = limited.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^KEY\s+VERSION\s+VALUE$/)
    expect(lines).toHaveLength(4)
    expect(lines[3]).toMatch(/^2 entries; served by node 1/)
    const none = await run([...ep, '-o', 'table', 'scan', '--prefix', 'zzz'])
    expect(none.stdout).toMatch(/^0 entries/)
  })

  it('shows status per endpoint and marks unreachable ones', async () => {
    const dead = await FakeKvServer.start()
    const deadAddress = dead.address
    await dead.kill()
    const r = await run([
      '--endpoints',
      `${server.address},${deadAddress}`,
      '-o',
      'table',
      'status',
      '--shards',
    ])
    // An endpoint given that does not answer is a problem even when the map does not name it.
    expect(r.code).toBe(ExitCode.Degraded)
    expect(r.stdout).toMatch(/^cluster fake-cluster: DEGRADED\n/)
    expect(r.stdout).toContain(`  endpoint ${deadAddress} does not answer: UNAVAILABLE: `)
    expect(r.stdout).toMatch(new RegExp(`${deadAddress}\\s+-\\s+unreachable \\(UNAVAILABLE`))
    expect(r.stdout).toMatch(/NODE\s+SHARD\s+ROLE/)
    const j = JSON.parse((await run([...ep, 'status'])).stdout)
    expect(j.endpoints[0]).toMatchObject({ ok: true, clusterId: 'fake-cluster', node: { nodeId: 1 } })
    const down = await run(['--endpoints', deadAddress, 'status'])
    expect(down.code).toBe(ExitCode.Unavailable)
  })

  it('passes --consistency, --max-staleness-ms and --deadline-ms to the call', async () => {
    await run([...ep, 'put', 'k', 'v', '--consistency', 'leader'])
    await run([...ep, 'get', 'k', '--consistency', 'eventual'])
    await run([...ep, 'get', 'k', '--max-staleness-ms', '300', '--deadline-ms', '1500'])
    expect(server.requestsOf<PutRequest>('put')[0]?.options?.consistency).toBe(Consistency.CONSISTENCY_LEADER)
    const gets = server.requestsOf<GetRequest>('get')
    expect(gets[0]?.options?.consistency).toBe(Consistency.CONSISTENCY_EVENTUAL)
    expect(gets[1]?.options).toMatchObject({
      consistency: Consistency.CONSISTENCY_BOUNDED,
      maxStalenessMs: 300,
    })
    const deadline = server.requests.filter((r) => r.method === 'get')[1]?.deadlineInMs ?? 0
    expect(deadline).toBeLessThanOrEqual(1500)
    expect(deadline).toBeGreaterThan(500)
  })

  it('takes endpoints from KVCTL_ENDPOINTS', async () => {
    const r = await run(['put', 'env', 'x'], { env: { KVCTL_ENDPOINTS: server.address } })
    expect(r.code).toBe(0)
  })

  it('get --print-value-only writes the value alone, byte for byte, whatever -o says', async () => {
    await run([...ep, 'put', 'text', 'two words\n'])
    const text = await run([...ep, '-o', 'json', 'get', 'text', '--print-value-only'])
    expect(text).toMatchObject({ code: 0, stdout: 'two words\n', stderr: '' })
    // A newline after it only on a terminal.
    expect((await run([...ep, 'get', 'text', '--print-value-only'], { stdoutIsTTY: true })).stdout).toBe(
      'two words\n\n',
    )
    const bytes = new Uint8Array([0, 1, 2, 255])
    await run([...ep, 'put', 'bin', '-'], { stdin: bytes })
    const bin = await run([...ep, '-v', '-o', 'table', 'get', 'bin', '--print-value-only'])
    expect(bin.code).toBe(0)
    expect([...bin.stdoutBytes]).toEqual([...bytes])
    expect(bin.stderr).toBe('')
    const missing = await run([...ep, '-o', 'table', 'get', 'nope', '--print-value-only'])
    expect(missing).toMatchObject({ code: ExitCode.NotFound, stdout: '' })
    expect(missing.stderr).toMatch(/^Error: NOT_FOUND: /)
  })

  it('takes every global flag from its KVCTL_* variable, the flag winning', async () => {
    const env = {
      KVCTL_ENDPOINTS: server.address,
      KVCTL_OUTPUT: 'table',
      KVCTL_CONSISTENCY: 'eventual',
      KVCTL_DEADLINE_MS: '1500',
      KVCTL_VERBOSE: '1',
    }
    await run(['put', 'k', 'v', '--consistency', 'majority'], { env: { KVCTL_ENDPOINTS: server.address } })
    const viaEnv = await run(['get', 'k'], { env })
    expect(viaEnv.code).toBe(0)
    expect(viaEnv.stdout).toMatch(/^key\s+k\n/) // table, not JSON
    expect(viaEnv.stderr).toMatch(/^receipt: node 1, .*eventual/) // verbose
    const get = server.requests.filter((r) => r.method === 'get').at(-1)
    expect((get?.request as GetRequest).options?.consistency).toBe(Consistency.CONSISTENCY_EVENTUAL)
    expect(get?.deadlineInMs ?? 0).toBeLessThanOrEqual(1500)
    const flagsWin = await run(['-o', 'json', 'get', 'k', '--consistency', 'linearizable'], { env })
    expect(JSON.parse(flagsWin.stdout).receipt.consistency).toBe('linearizable')
    const stale = await run(['get', 'k'], {
      env: { ...env, KVCTL_MAX_STALENESS_MS: '250', KVCTL_CONSISTENCY: '' },
    })
    expect(stale.code).toBe(0)
    const bounded = server.requests.filter((r) => r.method === 'get').at(-1)?.request as GetRequest
    expect(bounded.options).toMatchObject({
      consistency: Consistency.CONSISTENCY_BOUNDED,
      maxStalenessMs: 250,
    })
    for (const [name, value] of [
      ['KVCTL_OUTPUT', 'yaml'],
      ['KVCTL_DEADLINE_MS', 'soon'],
      ['KVCTL_DIAL_TIMEOUT_MS', '0'],
      ['KVCTL_ROUTE', 'maybe'],
    ] as const) {
      const bad = await run(['get', 'k'], { env: { ...env, [name]: value } })
      expect(bad.code, name).toBe(ExitCode.Usage)
      expect(bad.stderr, name).toContain(name)
    }
  })

  it('maps server errors to exit codes', async () => {
    // More failures than any retry policy may attempt: the call must give up, whatever its defaults
    // (a deadline far beyond the retries' backoff, so a busy machine cannot end it first).
    server.failNext('get', { code: 'NO_QUORUM' }, limits.retryAttemptsMax)
    const r = await run([...ep, '-o', 'table', 'get', 'k', '--deadline-ms', '20000'])
    server.clearFailures()
    expect(r.code).toBe(ExitCode.Unavailable)
    expect(r.stderr).toMatch(/^Error: NO_QUORUM: /)
    server.failNext('put', { code: 'VALUE_TOO_LARGE', metadata: { 'ringkv-limit': '10' } })
    expect((await run([...ep, 'put', 'k', 'v'])).code).toBe(ExitCode.Usage)
  })

  it('exits 4 when a write runs out of time (outcome unknown), 3 for a read', async () => {
    server.latencyMs = 300
    try {
      const w = await run([...ep, 'put', 'slow', 'v', '--deadline-ms', '100'])
      expect(w.code).toBe(ExitCode.OutcomeUnknown)
      expect(JSON.parse(w.stderr).error.code).toBe('DEADLINE_EXCEEDED')
      const r = await run([...ep, 'get', 'slow', '--deadline-ms', '100'])
      expect(r.code).toBe(ExitCode.Unavailable)
    } finally {
      server.latencyMs = 0
    }
  })
})

describe('cli/kvctl argument handling', () => {
  it('prints help with the exit codes and exits 0', async () => {
    const r = await run(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Usage: kvctl')
    expect(r.stdout).toContain('Exit codes:')
    expect(r.stdout).toMatch(/4 {2}outcome unknown/)
    expect((await run(['put', '--help'])).stdout).toContain('--expected-version')
  })

  it('prints its version, and lists a KVCTL_* variable for every global flag in its help', async () => {
    const version = await run(['--version'])
    expect(version).toMatchObject({ code: 0, stderr: '' })
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\S*\n$/)
    expect(version.stdout.trim()).toBe(
      (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version,
    )
    const help = (await run(['--help'])).stdout
    const options = help.slice(help.indexOf('Options:'), help.indexOf('Commands:'))
    const flags = [...options.matchAll(/^ {2}(?:-\w, )?--([a-z][a-z-]*)/gm)]
      .map((m) => `--${m[1]}`)
      .filter((f) => f !== '--help' && f !== '--version')
    expect(flags.length).toBeGreaterThan(10)
    for (const flag of new Set(flags)) {
      const entry = globalFlagEnv.find((e) => e.flag === flag)
      expect(entry, flag).toBeDefined()
      expect(help).toMatch(new RegExp(`^ {2}${entry?.env}\\s+${flag}$`, 'm'))
    }
    // The README's table documents every one.
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
    for (const e of globalFlagEnv) expect(readme, e.env).toContain(`\`${e.env}\``)
  })

  it('names what each endpoint said when none answers', async () => {
    const dead = await Promise.all([FakeKvServer.start(), FakeKvServer.start()])
    const addresses = dead.map((d) => d.address)
    for (const d of dead) await d.kill()
    const r = await run([
      '--endpoints',
      addresses.join(','),
      '-o',
      'table',
      'get',
      'k',
      '--deadline-ms',
      '1000',
    ])
    expect(r.code).toBe(ExitCode.Unavailable)
    expect(r.stderr).toBe(
      `Error: UNAVAILABLE: no endpoint answered: ${addresses.map((a) => `${a}: connect ECONNREFUSED ${a}`).join('; ')}\n`,
    )
  })

  it('gives up on an endpoint that never speaks at --dial-timeout-ms (or KVCTL_DIAL_TIMEOUT_MS), naming it', async () => {
    const sockets: Socket[] = []
    const silent = createServer((socket) => {
      sockets.push(socket)
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const address = `127.0.0.1:${(silent.address() as AddressInfo).port}`
    try {
      // A deadline far beyond the test's own timeout: only the dial timeout can end these in time.
      const argv = ['--endpoints', address, '-o', 'table', 'get', 'k', '--deadline-ms', '120000']
      const viaFlag = await run(['--dial-timeout-ms', '200', ...argv])
      expect(viaFlag.code).toBe(ExitCode.Unavailable)
      expect(viaFlag.stderr).toContain(`no connection to ${address} within the dial timeout of 200 ms`)
      const viaEnv = await run(argv, { env: { KVCTL_DIAL_TIMEOUT_MS: '300' } })
      expect(viaEnv.code).toBe(ExitCode.Unavailable)
      expect(viaEnv.stderr).toContain(`no connection to ${address} within the dial timeout of 300 ms`)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => silent.close(() => resolve()))
    }
  })

  it('reports usage errors in one line with exit code 2', async () => {
    for (const argv of [
      ['get'],
      ['get', 'a', 'b'],
      ['frobnicate'],
      ['get', 'k', '--bogus'],
      ['put', 'k', 'v', '--expected-version', 'x'],
      ['scan', '--limit', '0'],
      ['-o', 'yaml', 'get', 'k'],
    ]) {
      const r = await run(argv)
      expect(r.code, argv.join(' ')).toBe(ExitCode.Usage)
      expect(r.stderr, argv.join(' ')).toMatch(/^Error: USAGE: .*\n$/)
      expect(r.stderr.split('\n')).toHaveLength(2)
    }
    const none = await run([])
    expect(none.code).toBe(ExitCode.Usage)
  })

  it('rejects a level of the wrong kind and bad endpoints before connecting', async () => {
    expect((await run(['--endpoints', '127.0.0.1:1', 'get', 'k', '--consistency', 'majority'])).code).toBe(2)
    expect(
      (await run(['--endpoints', '127.0.0.1:1', 'put', 'k', 'v', '--consistency', 'eventual'])).code,
    ).toBe(2)
    expect((await run(['--endpoints', '127.0.0.1:1', 'get', 'k', '--consistency', 'bounded'])).code).toBe(2)
    expect((await run(['--endpoints', '127.0.0.1:1', 'put', 'k', 'v', '--max-staleness-ms', '5'])).code).toBe(
      2,
    )
    const bad = await run(['--endpoints', 'nohost', 'get', 'k'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain("bad endpoint 'nohost'")
  })

  it('exits 3 when no endpoint is reachable', async () => {
    const r = await run(['--endpoints', '127.0.0.1:1', '-o', 'table', 'get', 'k', '--deadline-ms', '1000'])
    expect(r.code).toBe(ExitCode.Unavailable)
    expect(r.stderr).toMatch(/^Error: UNAVAILABLE: .*ECONNREFUSED/)
    expect(r.stderr).not.toMatch(/\n.+/)
  })
})

describe('cli/exit codes and output helpers', () => {
  it('maps every error code', () => {
    const expected: Record<string, [number, number]> = {
      INVALID_ARGUMENT: [2, 2],
      KEY_TOO_LARGE: [2, 2],
      VALUE_TOO_LARGE: [2, 2],
      CROSS_SHARD: [2, 2],
      UNAVAILABLE: [3, 3],
      NO_QUORUM: [3, 3],
      NOT_LEADER: [3, 3],
      WRONG_SHARD: [3, 3],
      SHARD_MOVING: [3, 3],
      PROPOSAL_DROPPED: [3, 3],
      OVERLOADED: [3, 3],
      SESSION_BEHIND: [3, 3],
      STALENESS_BOUND_EXCEEDED: [3, 3],
      DEADLINE_EXCEEDED: [3, 4],
      SESSION_EXPIRED: [3, 4],
      NOT_FOUND: [5, 5],
      VERSION_MISMATCH: [6, 6],
      CANCELLED: [1, 1],
      FAULT_INJECTION_DISABLED: [1, 1],
      SHARD_BUSY: [3, 3],
      STALE_EPOCH: [7, 7],
      MOVE_REFUSED: [7, 7],
      UNAUTHENTICATED: [8, 8],
      PERMISSION_DENIED: [8, 8],
      INTERNAL: [1, 1],
    }
    for (const code of Object.values(ErrorCode)) {
      const err = new KvError(code, 'x')
      expect([exitCodeForError(err, 'read'), exitCodeForError(err, 'write')], code).toEqual(expected[code])
    }
    expect(exitCodeForError(new Error('boom'), 'read')).toBe(1)
  })

  it('encodes bytes as utf8 when printable, else base64', () => {
    expect(encodeBytes(new TextEncoder().encode('héllo\n'))).toEqual({ text: 'héllo\n', encoding: 'utf8' })
    expect(encodeBytes(new Uint8Array([0xc3, 0x28]))).toEqual({ text: 'wyg=', encoding: 'base64' })
    expect(encodeBytes(new Uint8Array([0x1b, 0x5b]))).toEqual({ text: 'G1s=', encoding: 'base64' })
  })

  it('aligns table columns and renders receipts', () => {
    expect(
      table([
        ['a', 'bb', 'c'],
        ['ddd', 'e', 'f'],
      ]),
    ).toBe('a    bb  c\nddd  e   f')
    // A short row's last cell runs on without widening its column.
    expect(
      table([
        ['a', 'bb', 'c'],
        ['ddd', 'unreachable (down)'],
      ]),
    ).toBe('a    bb  c\nddd  unreachable (down)')
    expect(
      receiptLine({
        nodeId: 2,
        shardId: 7,
        appliedIndex: 99,
        delivered: 'eventual',
        stalenessMs: 120,
        term: 3,
      }),
    ).toBe('node 2, shard 7, index 99, eventual, up to 120 ms stale')
  })
})
