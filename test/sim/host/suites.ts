/**
 * The suites the host simulator's test files share: a sweep of seeds, or the replay of one seed
 * named in the environment (HOST_SIM_SEED and the like), printing its trace when HOST_SIM_TRACE=1.
 */
import { describe, it } from 'vitest'
import { parseSeed } from '../simulator.ts'
import { describeHostResult, type HostRunResult } from './run.ts'

/**
 * Registers a suite only when `when` holds: the sweep without a seed named, the one-seed replay
 * with it. Unregistered suites do not show up as skipped tests.
 */
export function suiteIf(when: boolean, name: string, body: () => void): void {
  if (when) describe(name, body)
}

export interface OneSeedSuite<R extends HostRunResult> {
  /** The seed named in the environment (hex or decimal); no suite when undefined. */
  readonly only: string | undefined
  readonly name: string
  /** Runs the seed, handing every trace line to `sink` when one is given. */
  readonly run: (seed: number, sink: ((line: string) => void) | undefined) => Promise<R>
  /** What this kind of run adds to the one-line description, if anything. */
  readonly describe?: (r: R) => string
  readonly expectHealthy: (r: R) => void
  readonly timeoutMs?: number
}

/** Replays the one seed named in the environment, with its trace on HOST_SIM_TRACE=1. */
export function oneSeedSuite<R extends HostRunResult>(suite: OneSeedSuite<R>): void {
  suiteIf(suite.only !== undefined, suite.name, () => {
    it(
      `seed ${suite.only ?? ''}`,
      async () => {
        const seed = parseSeed(suite.only ?? '0')
        const lines: string[] = []
        const trace = process.env['HOST_SIM_TRACE'] === '1'
        const r = await suite.run(seed, trace ? (l: string) => lines.push(l) : undefined)
        if (trace) console.log(lines.join('\n'))
        console.log(describeHostResult(r))
        if (suite.describe !== undefined) console.log(suite.describe(r))
        suite.expectHealthy(r)
      },
      suite.timeoutMs,
    )
  })
}
