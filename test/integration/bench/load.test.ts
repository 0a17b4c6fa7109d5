/**
 * Every compiled benchmark loads in a plain Node process, outside the test runner, and exports
 * `main` (scripts/bench.js runs it so): a benchmark that imports a test helper tied to vitest fails
 * at `npm run bench` and nowhere else.
 */
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = resolve(import.meta.dirname, '..', '..', '..')
const dir = join(root, 'dist', 'test', 'bench')
/** Modules beside the benchmarks that the benchmarks use (they must load too, but have no main). */
const helpers = [
  'args.js',
  'stats.js',
  'engine.js',
  'grpc-echo.js',
  'cpu.js',
  'etcd.js',
  'zipfian.js',
  'foreground.js',
]

describe('benchmarks', () => {
  it('load outside the test runner and export main', () => {
    const modules = readdirSync(dir).filter((f) => f.endsWith('.js'))
    expect(modules).toContain('move.js')
    const script = `
      const failed = []
      for (const [url, bench] of JSON.parse(process.argv[1])) {
        try {
          const mod = await import(url)
          if (bench && typeof mod.main !== 'function') failed.push(url + ': no main')
        } catch (err) {
          failed.push(url + ': ' + String(err).split('\\n')[0])
        }
      }
      console.log(JSON.stringify(failed))
    `
    const urls = modules.map((f) => [pathToFileURL(join(dir, f)).href, !helpers.includes(f)])
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(urls)], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(run.status, run.stderr).toBe(0)
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '[]')).toEqual([])
  })
})
