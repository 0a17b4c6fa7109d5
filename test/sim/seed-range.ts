/**
 * Registers one vitest case per seed of a range (the sim test files split the 200+ seeds so
 * vitest can spread them over the cores). A failing case names its seed and replay command.
 */
import { expect, it } from 'vitest'
import { describeResult, runSeed } from './run.ts'

export function itRunsSeeds(from: number, count: number): void {
  for (let seed = from; seed < from + count; seed++) {
    it(`seed 0x${seed.toString(16)} keeps Raft safe, converges and stays linearizable`, () => {
      const r = runSeed({ seed })
      const replay = `npm run sim -- --seed 0x${seed.toString(16)} --trace`
      expect(r.ok, `${describeResult(r)}\n${r.failure?.detail ?? ''}\nreplay: ${replay}`).toBe(true)
      expect(r.stats.linearizability).not.toBe('skipped')
    })
  }
}
