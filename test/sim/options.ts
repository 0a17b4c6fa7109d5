/**
 * Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012; TigerBeetle's VOPR): every option
 * of a run is drawn from its seed, so the seeds between them cover small and large clusters,
 * calm and hostile networks, and different mixes of faults, instead of one average mix.
 */
import { SeededRandom, type Random } from '../../src/common/index.ts'
import type { TestingFaults } from '../../src/raft/index.ts'
import { fmtSeed } from './simulator.ts'
import type { WorkloadMix } from './workload.ts'

export const NemesisKind = {
  Crash: 'crash',
  CrashLeader: 'crash-leader',
  PartitionRandom: 'partition-random',
  IsolateLeader: 'isolate-leader',
  PartitionOneWay: 'partition-one-way',
  PartitionBridge: 'partition-bridge',
  LossBurst: 'loss-burst',
  Clog: 'clog',
  ClockDrift: 'clock-drift',
  SlowDisk: 'slow-disk',
  AddLearner: 'add-learner',
  PromoteLearner: 'promote-learner',
  RemoveVoter: 'remove-voter',
  ReplaceVoter: 'replace-voter',
  TransferLeader: 'transfer-leader',
  /** For the step's duration, isolate every new leader shortly after it wins (short leaderships). */
  IsolateNewLeaders: 'isolate-new-leaders',
} as const
export type NemesisKind = (typeof NemesisKind)[keyof typeof NemesisKind]
export const nemesisKinds: readonly NemesisKind[] = Object.values(NemesisKind)

export interface SimOptions {
  readonly seed: number
  /** Nodes in the run; the first `voters` form the initial configuration, the rest are spares. */
  readonly nodes: number
  readonly voters: number
  readonly clients: number
  readonly keys: number
  readonly tickMs: number
  readonly electionTicks: number
  readonly heartbeatTicks: number
  readonly readOnly: 'safe' | 'lease-based'
  readonly preVote: boolean
  readonly checkQuorum: boolean
  readonly oneWayDelayMsMean: number
  readonly packetLossPer10k: number
  readonly duplicatePer10k: number
  readonly reorderPer10k: number
  readonly diskFsyncMsMean: number
  /** Each node's drift is drawn from [-clockDriftPpmMax, +clockDriftPpmMax]. */
  readonly clockDriftPpmMax: number
  readonly snapshotEntries: number
  /** Entries per append message (0 = the core's default, limits.appendEntriesMax). */
  readonly appendEntriesMax: number
  /** The nemeses this run may use, and the mean gap between two faults. */
  readonly nemeses: readonly NemesisKind[]
  readonly faultIntervalMsMean: number
  readonly faultDurationMsMax: number
  readonly safetyPhaseMs: number
  /** How long the healed cluster runs with clients before they stop. */
  readonly livenessPhaseMs: number
  /** How long convergence may take once clients have stopped. */
  readonly convergenceMsMax: number
  readonly mix: WorkloadMix
  readonly thinkMsMax: number
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
  readonly testingFaults: TestingFaults
}

export type SimOverrides = Partial<Omit<SimOptions, 'seed'>>

function pick<T>(r: Random, xs: readonly T[]): T {
  const x = xs[r.int(xs.length)]
  if (x === undefined) throw new RangeError('pick from an empty list')
  return x
}

/** The options of `seed`, with `overrides` on top (scenarios and the planted-bug search use them). */
export function swarmOptions(seed: number, overrides: SimOverrides = {}): SimOptions {
  const r = new SeededRandom(seed).fork('swarm')
  const nodes = 3 + r.int(5) // 3..7
  const voters = Math.min(nodes, pick(r, [3, 3, 5, nodes]))
  let nemeses = nemesisKinds.filter(() => r.int(2) === 0)
  if (nemeses.length === 0) nemeses = [pick(r, nemesisKinds)]
  const base: SimOptions = {
    seed,
    nodes,
    voters,
    clients: 2 + r.int(5),
    keys: 1 + r.int(5),
    tickMs: 10,
    electionTicks: pick(r, [8, 10, 15]),
    heartbeatTicks: pick(r, [1, 2, 3]),
    readOnly: r.int(3) === 0 ? 'lease-based' : 'safe',
    preVote: r.int(4) !== 0,
    checkQuorum: true,
    oneWayDelayMsMean: pick(r, [0.5, 1, 2, 5, 10]),
    packetLossPer10k: pick(r, [0, 0, 10, 100, 300]),
    duplicatePer10k: pick(r, [0, 10, 100]),
    reorderPer10k: pick(r, [0, 10, 200]),
    diskFsyncMsMean: pick(r, [0, 0.5, 2, 8]),
    clockDriftPpmMax: pick(r, [0, 200, 2000, 20_000]),
    snapshotEntries: pick(r, [0, 20, 50, 200]),
    appendEntriesMax: pick(r, [0, 0, 0, 4, 16]),
    nemeses,
    faultIntervalMsMean: pick(r, [200, 500, 1000, 2000]),
    faultDurationMsMax: pick(r, [300, 1000, 3000]),
    safetyPhaseMs: 6000 + r.int(6000),
    livenessPhaseMs: 1500,
    convergenceMsMax: 15_000,
    mix: {
      put: 2 + r.int(6),
      get: 2 + r.int(6),
      cas: r.int(5),
      delete: r.int(2),
      eventual: r.int(3),
    },
    thinkMsMax: pick(r, [4, 10, 20, 50]),
    attemptTimeoutMs: pick(r, [150, 300, 600]),
    deadlineMs: 1500,
    testingFaults: {},
  }
  const merged = { ...base, ...overrides }
  // The lease (electionTicks - 1 ticks) must outlast drift: fast followers time out early.
  if (merged.readOnly === 'lease-based')
    return { ...merged, clockDriftPpmMax: Math.min(merged.clockDriftPpmMax, 20_000) }
  return merged
}

/** The options as printed under SEED= (STYLE.md 7.6). */
export function describeOptions(o: SimOptions): string[] {
  const faults = Object.entries(o.testingFaults)
    .filter(([, on]) => on === true)
    .map(([k]) => k)
  return [
    `SEED=${fmtSeed(o.seed)}`,
    `  nodes=${o.nodes} voters=${o.voters} clients=${o.clients} keys=${o.keys} readOnly=${o.readOnly} preVote=${o.preVote} electionTicks=${o.electionTicks} heartbeatTicks=${o.heartbeatTicks}`,
    `  oneWayDelayMsMean=${o.oneWayDelayMsMean} packetLossRatio=${o.packetLossPer10k / 10_000} duplicateRatio=${o.duplicatePer10k / 10_000} reorderRatio=${o.reorderPer10k / 10_000} diskFsyncMsMean=${o.diskFsyncMsMean} clockDriftPpm=±${o.clockDriftPpmMax} snapshotEntries=${o.snapshotEntries} appendEntriesMax=${o.appendEntriesMax === 0 ? 'default' : o.appendEntriesMax}`,
    `  nemeses=${o.nemeses.join(',')} faultIntervalMsMean=${o.faultIntervalMsMean} faultDurationMsMax=${o.faultDurationMsMax} safetyPhaseMs=${o.safetyPhaseMs}${faults.length > 0 ? ` testingFaults=${faults.join(',')}` : ''}`,
  ]
}
