import { beforeAll, describe, it } from 'vitest'
import type { Hasher } from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import { describeHostResult, runHostSeed } from './host/run.ts'

let hasher: Hasher
beforeAll(async () => {
  hasher = await loadHasher()
})

const from = Number(process.env['FROM'] ?? 1)
const count = Number(process.env['COUNT'] ?? 10)
describe('scratch', () => {
  it('runs seeds', async () => {
    for (let seed = from; seed < from + count; seed++) {
      const r = await runHostSeed({ seed, hasher })
      console.log(describeHostResult(r))
      if (!r.ok) console.log(r.optionsLines.join('\n') + '\n' + (r.failure?.detail ?? '') + '\n' + r.traceTail.slice(-30).join('\n'))
    }
  }, 600_000)
})
