#!/usr/bin/env node
// `npm run chaos -- --minutes N --seed S [--nodes K] [--dir D]`: the chaos soak (test/chaos/soak.test.ts)
// for N minutes from seed S on a cluster of K containers (default 5), histories kept in D (default
// a new temporary directory, printed). Needs what `npm run test:chaos` needs (README: Chaos tests).
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const env = { ...process.env }
const names = {
  '--minutes': 'RINGKV_CHAOS_MINUTES',
  '--seed': 'RINGKV_CHAOS_SEED',
  '--nodes': 'RINGKV_CHAOS_NODES',
  '--dir': 'RINGKV_CHAOS_DIR',
}
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i += 2) {
  const name = names[argv[i]]
  const value = argv[i + 1]
  if (name === undefined || value === undefined) {
    console.error(`chaos: bad argument ${argv[i]} (use --minutes N --seed S --nodes K --dir D)`)
    process.exit(2)
  }
  env[name] = value
}
env['RINGKV_CHAOS_MINUTES'] ??= '10'
const result = spawnSync(
  process.execPath,
  [
    join(root, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    '--project',
    'chaos',
    'test/chaos/soak.test.ts',
  ],
  { cwd: root, env, stdio: 'inherit' },
)
process.exit(result.status ?? 1)
