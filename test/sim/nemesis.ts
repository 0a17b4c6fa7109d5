/**
 * Nemeses as data (FoundationDB `tests/*.toml`, Jepsen nemeses): a run's faults are a plan, a
 * list of steps drawn from the seed before the run starts, and printed in the trace. What a step
 * hits (which node is "the leader", which voter to remove) is resolved when it fires, from the
 * cluster's state and the step's own random `pick`, so the plan is the same however the run goes.
 */
import type { Random } from '../../src/common/index.ts'
import type { NemesisKind, SimOptions } from './options.ts'

export interface NemesisStep {
  readonly atMs: number
  readonly kind: NemesisKind
  /** How long the fault lasts (crash downtime, partition length, ...). */
  readonly durationMs: number
  /** A random number the executor uses to choose targets. */
  readonly pick: number
}

export function planNemeses(options: SimOptions, random: Random): NemesisStep[] {
  const steps: NemesisStep[] = []
  if (options.nemeses.length === 0) return steps
  const mean = options.faultIntervalMsMean
  let at = 300 + random.int(mean)
  while (at < options.safetyPhaseMs - 200) {
    const kind = options.nemeses[random.int(options.nemeses.length)]!
    steps.push({
      atMs: at,
      kind,
      durationMs: 50 + random.int(options.faultDurationMsMax),
      pick: random.int(1 << 30),
    })
    at += mean / 2 + random.int(mean)
  }
  return steps
}

export function describeStep(s: NemesisStep): string {
  return `nemesis ${s.kind} for=${s.durationMs}ms pick=${s.pick}`
}
