import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { repoRoot, startKvd, type KvdHandle } from '../helpers/kvd.ts'

// The README is the newcomer's first contact: its SDK example must run as written against a
// real kvd. The example imports 'ringkv', which resolves to this package through the package's
// own "exports" (Node's self-reference), so the script is placed inside the repository.
function sdkExample(): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## The SDK'))
  const match = /```ts\n([\s\S]*?)```/.exec(section)
  if (match?.[1] === undefined) throw new Error('README has no ts block under "## The SDK"')
  return match[1]
}

/** The first sh block after `marker` in the README. */
function shBlockAfter(marker: string): string {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
  const at = readme.indexOf(marker)
  if (at < 0) throw new Error(`README has no "${marker}"`)
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))
  if (match?.[1] === undefined) throw new Error(`README has no sh block after "${marker}"`)
  return match[1]
}

/** The environment without KVCTL_* (the block sets what it needs). */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KVCTL_')))
}

describe('docs/README', () => {
  let kvd: KvdHandle
  const script = join(repoRoot, 'dist', 'readme-example.mjs')

  beforeAll(async () => {
    // One replica per shard: the quick start's `kvctl status` must say HEALTHY, and a lone node
    // holding the default three replicas per shard is in safe mode (DEGRADED, exit 9).
    kvd = await startKvd({ args: ['--replicas', '1', '--meta-replicas', '1'] })
  })

  afterAll(async () => {
    rmSync(script, { force: true })
    await kvd.stop()
  })

  it('runs the SDK example as written against a real kvd', () => {
    const code = sdkExample()
    expect(code).toContain("'127.0.0.1:7001'")
    writeFileSync(script, code.replaceAll("'127.0.0.1:7001'", `'${kvd.address}'`))
    const out = execFileSync(process.execPath, [script], { cwd: repoRoot, encoding: 'utf8', timeout: 30_000 })
    // The example prints the write's receipt, the fresh read, the session read and the scan.
    expect(out).toContain("delivered: 'majority'")
    expect(out).toContain('cart/42')
    expect(out).toContain('v2')
  })
  it('runs the quick-start kvctl commands as written, from the repository folder', () => {
    const block = shBlockAfter('In another terminal, in the repository folder')
    const endpoints = '127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003'
    expect(block).toContain(`export KVCTL_ENDPOINTS=${endpoints}`)
    // Never a package we do not own: no npx, no npm exec of a name the registry would be asked for.
    expect(block).not.toMatch(/\bnpx\b|npm exec/)
    const script = block.replace(endpoints, kvd.address)
    const run = spawnSync('bash', ['-O', 'expand_aliases', '-e', '-c', script], {
      cwd: repoRoot,
      env: cleanEnv(),
      encoding: 'utf8',
      timeout: 120_000,
    })
    expect(run.stderr).not.toMatch(/Error:/)
    expect(run.status, run.stderr).toBe(0)
    expect(run.stdout).toContain('"key": "hello"')
    expect(run.stdout).toContain('"value": "world"')
    expect(run.stdout).toContain('greeting/fr')
    expect(run.stdout).toContain('"verdict": "healthy"')
  })

  it('never asks the registry for a package: no npx anywhere in the README or docs', () => {
    const docs = readdirSync(join(repoRoot, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f))
    for (const file of ['README.md', ...docs]) {
      const text = readFileSync(join(repoRoot, file), 'utf8')
      expect(text, file).not.toMatch(/\bnpx\s/)
    }
  })

  it('links only inside the repository, to files that exist', () => {
    const docs = readdirSync(join(repoRoot, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f))
    for (const file of ['README.md', ...docs]) {
      const text = readFileSync(join(repoRoot, file), 'utf8')
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (target === undefined || target.startsWith('#')) continue
        expect(target, `${file} -> ${target}`).not.toMatch(/^[a-z]+:/i)
        const path = resolve(dirname(join(repoRoot, file)), target.split('#')[0] as string)
        expect(path.startsWith(repoRoot), `${file} -> ${target}`).toBe(true)
        expect(existsSync(path), `${file} -> ${target}`).toBe(true)
      }
    }
  })

  it('says what kvd --help says about elections (10-20 ticks) and about every flag of kvd --help', () => {
    const help = execFileSync(process.execPath, [join(repoRoot, 'bin/kvd.js'), '--help'], {
      encoding: 'utf8',
    })
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
    expect(help).toContain('10-20 ticks')
    expect(readme).toContain('elections after 10-20 ticks')
    for (const [, flag] of help.matchAll(/^ {2}(--[a-z-]+)/gm)) {
      if (flag === '--help' || flag === '--version') continue
      expect(readme, flag).toContain(`\`${flag}\``)
    }
  })

  it('refuses a second npm start while a cluster holds its ports, naming them', async () => {
    // Hold every port the local cluster uses (some may be held by a cluster already: as good).
    const servers: Server[] = []
    const ports = [7001, 7002, 7003, 7101, 7102, 7103, 8001, 8002, 8003]
    for (const port of ports) {
      await new Promise<void>((done) => {
        const server = createServer()
        server.once('error', () => done())
        server.listen(port, '127.0.0.1', () => {
          servers.push(server)
          done()
        })
      })
    }
    const cwd = mkdtempSync(join(tmpdir(), 'ringkv-start-'))
    try {
      const start = spawnSync(process.execPath, [join(repoRoot, 'dist/src/server/local-cluster.js')], {
        cwd,
        encoding: 'utf8',
        timeout: 30_000,
      })
      expect(start.status).toBe(1)
      expect(start.stdout).not.toContain('ready')
      expect(start.stderr).toMatch(/^ringkv: 127\.0\.0\.1:7001, .* already in use: is a cluster .* running\?/)
      expect(existsSync(join(cwd, 'data'))).toBe(false)
    } finally {
      for (const server of servers) server.close()
      rmSync(cwd, { recursive: true, force: true })
    }
  })
})
