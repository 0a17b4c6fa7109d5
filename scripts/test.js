#!/usr/bin/env node
// `npm test`: the unit project (pure rooms, Raft scripts, simulator seeds), the chart project
// (charts/ringkv with a real helm; left out, saying why, where that helm cannot run), then the
// integration project (real kvd processes, one file at a time), then one plain summary line
// `tests: N passed, N failed, N skipped` that any CI can read. Exits non-zero on any failure.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { helmUnavailable } from './helm.js'

const root = resolve(import.meta.dirname, '..')
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs')
const noHelm = helmUnavailable()
if (noHelm !== undefined) console.log(`chart tests not run: ${noHelm}`)
const runs = [
  ['unit', ['--project', 'unit']],
  ...(noHelm === undefined ? [['chart', ['--project', 'chart']]] : []),
  ['integration', ['--project', 'integration', '--no-file-parallelism']],
]
const extra = process.argv.slice(2)
const scratch = mkdtempSync(join(tmpdir(), 'ringkv-test-'))
const total = { passed: 0, failed: 0, skipped: 0 }
let exitCode = 0
try {
  for (const [name, args] of runs) {
    const report = join(scratch, `${name}.json`)
    const result = spawnSync(
      process.execPath,
      [
        vitest,
        'run',
        ...args,
        '--reporter=default',
        '--reporter=json',
        `--outputFile.json=${report}`,
        ...extra,
      ],
      { cwd: root, stdio: 'inherit' },
    )
    if (result.status !== 0) exitCode = result.status ?? 1
    try {
      const json = JSON.parse(readFileSync(report, 'utf8'))
      total.passed += json.numPassedTests
      total.failed += json.numFailedTests
      total.skipped += json.numPendingTests + json.numTodoTests
    } catch {
      // No report: the run died before writing one; its exit code already says so.
      exitCode ||= 1
    }
    if (exitCode !== 0) break
  }
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`)
process.exit(exitCode)
