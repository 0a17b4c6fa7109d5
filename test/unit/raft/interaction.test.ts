/**
 * Runs every script in testdata/ through the interaction environment. `REWRITE=1 npx vitest run
 * test/unit/raft` regenerates the expected outputs; only keep a diff you understand.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runScript } from './datadriven.ts'
import { InteractionEnv } from './interaction-env.ts'

const dir = join(import.meta.dirname, 'testdata')
const rewrite = process.env['REWRITE'] === '1'

describe('raft/interaction', () => {
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()) {
    it(file.replace(/\.txt$/, ''), () => {
      const path = join(dir, file)
      const text = readFileSync(path, 'utf8')
      const env = new InteractionEnv()
      const { actual, mismatch } = runScript(text, (d) => env.run(d))
      if (rewrite) {
        writeFileSync(path, actual)
        return
      }
      if (mismatch !== null) {
        expect(mismatch.actual, `${file}:${mismatch.line}: ${mismatch.command}`).toBe(mismatch.expected)
      }
    })
  }
})
