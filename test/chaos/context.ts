/**
 * What every chaos test file shares: the base seed (RINGKV_CHAOS_SEED, default 1), how long each
 * run's workload lasts (RINGKV_CHAOS_RUN_SECONDS, default 12), the directory for histories and
 * logs (RINGKV_CHAOS_DIR, default a new temporary one; kept, and printed), a run id for labels,
 * and the table of results (`summary.txt` in that directory).
 */
import { appendFileSync, mkdirSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'vitest'
import { describeFailure, describeRow, type RunResult } from './run.ts'

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`${name}=${raw}: expected a non-negative integer`)
  return value
}

export const baseSeed = intFromEnv('RINGKV_CHAOS_SEED', 1)
export const runMs = intFromEnv('RINGKV_CHAOS_RUN_SECONDS', 12) * 1000
export const soakMinutes = intFromEnv('RINGKV_CHAOS_MINUTES', 0)

export function chaosDir(file: string): string {
  const given = process.env['RINGKV_CHAOS_DIR']
  const dir =
    given !== undefined && given !== ''
      ? join(given, file)
      : mkdtempSync(join(tmpdir(), `ringkv-chaos-${file}-`))
  mkdirSync(dir, { recursive: true })
  return dir
}

/** A short id for container and network names: the file, the process, the time. */
export function runId(file: string): string {
  return `${file}-${process.pid}-${Date.now().toString(36)}`
}

/** Records the run in the table and fails the test with the seed, schedule and history on a problem. */
export function expectClean(dir: string, result: RunResult): void {
  const row = describeRow(result)
  console.log(row)
  for (const line of result.known.slice(0, 5)) console.log(`  ${line}`)
  appendFileSync(join(dir, 'summary.txt'), `${row}\n`)
  expect(result.problems.length === 0 ? 'clean' : describeFailure(result)).toBe('clean')
}
