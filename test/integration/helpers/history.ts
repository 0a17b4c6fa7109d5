/**
 * A checked workload for tests on real clusters: writers and linearizable readers over a small key
 * set through the SDK, every operation recorded (a write that failed with a code that says it
 * did not apply is `fail`, one whose outcome is unknown is `indeterminate`), then final reads of
 * every key, and the history handed to the linearizability checker (src/verify). Also keeps the
 * acknowledged writes, so a test can check none was lost.
 */
import { expect } from 'vitest'
import type { KvClient } from '../../../src/client/index.ts'
import { errorCodeTable, isErrorCode } from '../../../src/common/errors.ts'
import { checkLinearizability, type Operation } from '../../../src/verify/index.ts'

export interface CheckedWorkload {
  readonly history: Operation[]
  /** The last acknowledged value of each key. */
  readonly acked: Map<string, string>
  /** Stops the workers and waits for them. */
  stop(): Promise<void>
}

export interface CheckedWorkloadOptions {
  readonly keys: readonly string[]
  readonly workers?: number
  /** Every this-many operations of a worker is a linearizable read (default 3). */
  readonly readEvery?: number
  readonly deadlineMs?: number
}

/** True for the error of a call on a closed client (a test that failed and cleaned up). */
function closed(err: unknown): boolean {
  return (err as { code?: unknown }).code === 'CANCELLED'
}

export function startCheckedWorkload(client: KvClient, options: CheckedWorkloadOptions): CheckedWorkload {
  const history: Operation[] = []
  const acked = new Map<string, string>()
  const state = { done: false }
  const t = (): number => performance.now()
  const readEvery = options.readEvery ?? 3
  const deadlineMs = options.deadlineMs ?? 3_000
  let n = 0
  const worker = async (w: number): Promise<void> => {
    while (!state.done) {
      const key = options.keys[(w * 7 + n++) % options.keys.length]!
      if (n % readEvery === 0) {
        const callMs = t()
        try {
          const got = await client.get(key, { consistency: 'linearizable', deadlineMs })
          history.push({
            kind: 'get',
            clientId: w,
            key,
            callMs,
            returnMs: t(),
            outcome: 'ok',
            input: {},
            output: { value: got.valueText() },
          })
        } catch (err) {
          // A failed read says nothing; leave it out. A closed client ends the worker.
          if (closed(err)) return
        }
        continue
      }
      const value = `w${w}-${n}`
      const callMs = t()
      try {
        await client.put(key, value, { deadlineMs })
        history.push({
          kind: 'put',
          clientId: w,
          key,
          callMs,
          returnMs: t(),
          outcome: 'ok',
          input: { value },
          output: {},
        })
        acked.set(key, value)
      } catch (err) {
        if (closed(err)) return
        const code = (err as { code?: unknown }).code
        const notApplied = isErrorCode(code) && errorCodeTable[code].writeNotApplied
        history.push({
          kind: 'put',
          clientId: w,
          key,
          callMs,
          returnMs: t(),
          outcome: notApplied ? 'fail' : 'indeterminate',
          input: { value },
          output: null,
        })
      }
    }
  }
  const running = Promise.all(Array.from({ length: options.workers ?? 8 }, (_, w) => worker(w)))
  return {
    history,
    acked,
    async stop() {
      state.done = true
      await running
    },
  }
}

/**
 * Final linearizable reads of every key (part of the checked history), then the checker: fails
 * the test on a violation. Returns the number of acknowledged writes and the verdict.
 */
export async function expectLinearizable(
  client: KvClient,
  workload: CheckedWorkload,
  keys: readonly string[],
): Promise<{ okWrites: number; ops: number; verdict: string }> {
  for (const key of keys) {
    const callMs = performance.now()
    const got = await client.get(key, { consistency: 'linearizable', deadlineMs: 15_000 })
    workload.history.push({
      kind: 'get',
      clientId: 'final',
      key,
      callMs,
      returnMs: performance.now(),
      outcome: 'ok',
      input: {},
      output: { value: got.valueText() },
    })
  }
  const okWrites = workload.history.filter((op) => op.kind === 'put' && op.outcome === 'ok').length
  const verdict = checkLinearizability(workload.history)
  expect(verdict.result === 'violation' ? verdict.window.text : verdict.result).not.toBe('violation')
  return { okWrites, ops: workload.history.length, verdict: verdict.result }
}
