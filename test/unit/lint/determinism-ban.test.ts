import { ESLint } from 'eslint'
import { describe, expect, it } from 'vitest'

// The determinism ban (STYLE.md 7.6) is only worth something if it fires: lint snippets as if
// they were files of the pure and simulated rooms, and check which rules complain.
const eslint = new ESLint({ cwd: process.cwd() })

async function rulesHit(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath })
  return (result?.messages ?? []).map((m) => m.ruleId ?? m.message)
}

describe('lint/determinism ban', () => {
  const pure = [
    'src/raft/raft.ts',
    'src/hashing/xxhash.ts',
    'src/verify/linearizability.ts',
    'src/routing/policy.ts',
    'src/planner/plan.ts',
  ]

  it.each(pure)('bans ambient time, timers and randomness in %s', async (file) => {
    expect(await rulesHit(file, 'export const t = Date.now()\n')).toContain('no-restricted-properties')
    expect(await rulesHit(file, 'export const r = Math.random()\n')).toContain('no-restricted-properties')
    expect(await rulesHit(file, 'setTimeout(() => {}, 1)\n')).toContain('no-restricted-globals')
    expect(await rulesHit(file, 'export const d = new Date()\n')).toContain('no-restricted-globals')
  })

  it.each(pure)('bans node:* modules and async functions in %s', async (file) => {
    expect(
      await rulesHit(file, "import { readFileSync } from 'node:fs'\nexport const f = readFileSync\n"),
    ).toContain('no-restricted-imports')
    expect(await rulesHit(file, 'export async function f(): Promise<void> {}\n')).toContain(
      'no-restricted-syntax',
    )
  })

  it('bans ambient time in the simulated rooms but lets the system clock use it', async () => {
    expect(await rulesHit('src/shard/raft-replica.ts', 'export const t = Date.now()\n')).toContain(
      'no-restricted-properties',
    )
    expect(await rulesHit('src/common/clock-system.ts', 'export const t = Date.now()\n')).not.toContain(
      'no-restricted-properties',
    )
  })
})

describe('lint/the doors of routing/', () => {
  it('routing/ imports none of the rooms that use it', async () => {
    for (const room of ['cluster', 'client', 'router', 'shard', 'server', 'node', 'storage'])
      expect(
        await rulesHit(
          'src/routing/policy.ts',
          `import { x } from '../${room}/index.ts'\nexport const y = x\n`,
        ),
      ).toContain('no-restricted-imports')
  })
})
