/**
 * One VOPR run of one seed: a safety phase with the seed's faults (Raft safety asserted on every
 * step), a liveness phase on a healed cluster (progress, then convergence), and the
 * linearizability check over the recorded history. Used by vopr.ts and by the sim tests.
 */
import { AssertionError } from '../../src/common/index.ts'
import { SafetyProperty, SimViolation } from './checkers/raft-safety.ts'
import { convergence, divergedAtSameIndex } from './checkers/convergence.ts'
import { checkHistory } from './checkers/linearizable.ts'
import { SimCluster } from './cluster.ts'
import { describeOptions, type SimOverrides } from './options.ts'
import { EventBudgetExceeded, type TraceSink } from './simulator.ts'

export interface RunInit {
  readonly seed: number
  readonly overrides?: SimOverrides
  readonly sink?: TraceSink
  readonly logLevel?: 'trace' | 'debug' | 'info' | 'warn'
  /** 'record': Raft safety violations do not stop the run (see RunResult.recordedSafetyViolation). */
  readonly raftSafety?: 'enforce' | 'record'
  /** Events the run may execute before it counts as runaway (default: the simulator's). */
  readonly eventsMax?: number
  /** Linearizability search budget per key. */
  readonly checkStepsMaxPerKey?: number
}

export interface RunResult {
  readonly seed: number
  readonly ok: boolean
  readonly failure: { readonly property: string; readonly detail: string } | null
  /** With raftSafety 'record': the first Raft safety violation seen, if any. */
  readonly recordedSafetyViolation: string | null
  readonly traceHash: string
  readonly traceLines: number
  readonly optionsLines: readonly string[]
  readonly stats: {
    readonly simMs: number
    readonly events: number
    readonly ops: number
    readonly okOps: number
    readonly failOps: number
    readonly indeterminateOps: number
    readonly eventualReads: number
    readonly terms: number
    readonly committed: number
    readonly linearizability: string
    readonly checkSteps: number
    readonly nemesisSteps: number
    readonly safetyChecks: number
  }
  /** The last trace lines, for a failure report. */
  readonly traceTail: readonly string[]
}

export function runSeed(init: RunInit): RunResult {
  const t = SimCluster.create({
    seed: init.seed,
    ...(init.overrides === undefined ? {} : { overrides: init.overrides }),
    ...(init.sink === undefined ? {} : { sink: init.sink }),
    ...(init.logLevel === undefined ? {} : { logLevel: init.logLevel }),
    ...(init.raftSafety === undefined ? {} : { raftSafety: init.raftSafety }),
  })
  if (init.eventsMax !== undefined) t.sim.eventsMax = init.eventsMax
  const o = t.options
  const optionsLines = describeOptions(o)
  for (const line of optionsLines) t.sim.record(line)
  let failure: { property: string; detail: string } | null = null
  let linearizability = 'skipped'
  let checkSteps = 0
  let nemesisSteps = 0
  let safetyStop = false
  try {
    const plan = t.scheduleNemeses()
    nemesisSteps = plan.length
    t.startWorkload()
    // Safety phase: faults on, clients on.
    t.sim.runUntil(o.safetyPhaseMs)
    // Liveness phase: heal everything, the clients must make progress again.
    t.healAll()
    const okBefore = t.clients.reduce((s, c) => s + c.okCount, 0)
    const progressed = t.runUntil(
      () => t.clients.reduce((s, c) => s + c.okCount, 0) > okBefore,
      o.livenessPhaseMs + 10_000,
    )
    if (!progressed)
      throw new SimViolation(SafetyProperty.Liveness, 'no client operation succeeded after healing')
    t.runFor(o.livenessPhaseMs)
    t.stopWorkload()
    t.runUntil(() => t.clientsIdle(), o.deadlineMs + 5000)
    const converged = t.runUntil(() => convergence(t).converged, o.convergenceMsMax)
    if (!converged) {
      const diverged = divergedAtSameIndex(t)
      if (diverged !== null) throw new SimViolation(SafetyProperty.StateMachineSafety, diverged)
      throw new SimViolation(SafetyProperty.Convergence, convergence(t).detail)
    }
    t.sim.record(`converged ${convergence(t).detail}`)
  } catch (err) {
    if (err instanceof SimViolation) {
      failure = { property: err.property, detail: err.detail }
      safetyStop = err.property !== SafetyProperty.Liveness && err.property !== SafetyProperty.Convergence
    } else if (err instanceof EventBudgetExceeded)
      failure = { property: SafetyProperty.Liveness, detail: `runaway: ${err.message}` }
    else if (err instanceof AssertionError) {
      failure = {
        property: SafetyProperty.Crash,
        detail: `AssertionError: ${err.message}\n${err.stack ?? ''}`,
      }
      safetyStop = true
    } else throw err
  }
  // The history is checked whenever the run got to its end or stopped for liveness: a cut-short
  // run records its operations in flight as indeterminate first.
  if (!safetyStop) {
    for (const c of t.clients) c.abandon()
    const verdict = checkHistory(t.history, init.checkStepsMaxPerKey ?? 2_000_000)
    linearizability = verdict.result
    checkSteps = verdict.steps
    t.sim.record(`linearizability ${verdict.result} steps=${verdict.steps}`)
    if (!verdict.ok) {
      const also =
        failure === null ? '' : `\n(also ${failure.property}: ${failure.detail.split('\n')[0] ?? ''})`
      failure = { property: SafetyProperty.Linearizability, detail: verdict.detail + also }
    }
  }
  if (failure !== null) t.sim.record(`FAILED ${failure.property}: ${failure.detail.split('\n')[0] ?? ''}`)
  const counts = t.history.counts()
  return {
    seed: init.seed,
    ok: failure === null,
    failure,
    recordedSafetyViolation: t.checker.firstViolation?.message ?? null,
    traceHash: t.sim.trace.hex(),
    traceLines: t.sim.trace.lines,
    optionsLines,
    stats: {
      simMs: Math.round(t.sim.nowMs),
      events: t.sim.stepCount,
      ops: t.history.ops.length,
      okOps: counts.ok,
      failOps: counts.fail,
      indeterminateOps: counts.indeterminate,
      eventualReads: t.history.eventual.length,
      terms: t.checker.leaderCount(),
      committed: t.checker.committedCount(),
      linearizability,
      checkSteps,
      nemesisSteps,
      safetyChecks: t.checker.checks,
    },
    traceTail: t.sim.traceTail(),
  }
}

/** One line per seed, for vopr and the test logs. */
export function describeResult(r: RunResult): string {
  const s = r.stats
  const head = r.ok ? 'ok  ' : 'FAIL'
  return (
    `${head} seed=0x${r.seed.toString(16)} trace=${r.traceHash} simMs=${s.simMs} events=${s.events} ` +
    `ops=${s.ops} (ok=${s.okOps} fail=${s.failOps} indet=${s.indeterminateOps}) terms=${s.terms} committed=${s.committed} ` +
    `nemesis=${s.nemesisSteps} lin=${s.linearizability}` +
    (r.failure === null ? '' : ` ${r.failure.property}: ${r.failure.detail.split('\n')[0] ?? ''}`)
  )
}
