/**
 * The end-of-run history check: the recorded linearizable operations through src/verify, and the
 * eventual reads for phantom values (they promise only convergence, so nothing stronger).
 */
import { checkLinearizability, type CheckResult } from '../../../src/verify/index.ts'
import type { History } from '../workload.ts'

export interface HistoryVerdict {
  readonly ok: boolean
  /** 'unknown' when the checker's budget ran out (counted, not a failure). */
  readonly result: CheckResult['result'] | 'phantom'
  readonly detail: string
  readonly steps: number
}

export function checkHistory(history: History, stepsMaxPerKey: number): HistoryVerdict {
  const r = checkLinearizability(history.ops, { stepsMaxPerKey })
  if (r.result === 'violation')
    return { ok: false, result: 'violation', detail: r.window.text, steps: r.steps }
  const phantoms = history.phantomReads()
  if (phantoms.length > 0) {
    const p = phantoms[0]!
    return {
      ok: false,
      result: 'phantom',
      detail: `eventual read of ${p.key} on node ${p.servedBy} returned ${JSON.stringify(p.value)}, which nobody wrote`,
      steps: r.steps,
    }
  }
  return {
    ok: true,
    result: r.result,
    detail: r.result === 'unknown' ? `budget exhausted on keys ${r.unknownKeys.join(',')}` : '',
    steps: r.steps,
  }
}
