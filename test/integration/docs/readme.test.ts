import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
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

describe('docs/README', () => {
  let kvd: KvdHandle
  const script = join(repoRoot, 'dist', 'readme-example.mjs')

  beforeAll(async () => {
    kvd = await startKvd()
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
})
