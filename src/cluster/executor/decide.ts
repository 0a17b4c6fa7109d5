/**
 * The executor's decisions (pure: the clock's reading, the map and the moves come in as data, so
 * the unit tests and the simulator drive the very code the meta leader runs). One `step` per poll:
 *
 * 1. Reconcile the job with what happened: a listed move the mover still runs is running (also one
 *    the job listed as planned, when a meta leader recorded the move and died before writing the
 *    job); a running move the mover no longer has ended, done if the shard's replicas now hold its
 *    destination and not its source, else failed. Counted once: the job record says which moves
 *    it counted already, so a new meta leader replaying a step counts nothing twice.
 * 2. Start a job when there is none open and the plan has moves the executor may run: repairs and
 *    drains always, balance only with auto-rebalance (else the cluster plans only). A cancelled job
 *    is not followed by another until the registry changes (nodes join, die, drain, come back).
 * 3. Choose the moves to start now, in plan order (repairs, then drains, then balance), under the
 *    throttles: a cluster-wide cap, of which `repairSlots` only repairs may take; moves into each
 *    node and out of each live node (a dead source sends nothing: the shard's leader streams the
 *    snapshot). Nothing starts while the job is paused or cancelled; running moves go on. The job
 *    listing the moves to start as planned (`intent`) is written before they are recorded with the
 *    mover, so a meta leader that dies in between leaves a job that adopts them (step 1).
 * 4. The job ends `done` when nothing runs and the plan has nothing left to run; while shards are
 *    blocked (no quorum, no destination) or in safe mode it stays open and says why.
 *
 * A move that adds a replica (a shard short of replicas: no source) is a repair like any other:
 * it takes a repair slot and counts against its destination; no source sends for it but the
 * shard's leader, as for a dead source.
 */
import type { NodeId, ShardId } from '../../common/ids.ts'
import type { MoveInProgress, MoveReason, Plan, PlannedMove } from '../../planner/index.ts'
import type { JobMove, JobRecord } from './job.ts'

export interface Throttles {
  /** Moves running at once, cluster-wide. */
  readonly movesMax: number
  /** Of those, slots only repairs may take (clamped to leave balance one). */
  readonly repairSlots: number
  readonly inPerNodeMax: number
  readonly outPerNodeMax: number
}

/** Why a planned move did not start now (a fixed list, shown by `kvctl rebalance status`). */
export type WaitReason =
  'paused' | 'cancelled' | 'cluster-limit' | 'repair-slots-reserved' | 'destination-busy' | 'source-busy'
export const waitReasons: readonly WaitReason[] = [
  'paused',
  'cancelled',
  'cluster-limit',
  'repair-slots-reserved',
  'destination-busy',
  'source-busy',
]

export interface StepInput {
  readonly job: JobRecord | undefined
  readonly plan: Plan
  /** Every move the mover has in progress (the executor's and an operator's). */
  readonly running: readonly MoveInProgress[]
  /** A shard's replicas in the map now. */
  readonly replicasOf: (shardId: ShardId) => readonly NodeId[] | undefined
  /** Snapshot bytes a move's destination received, as last seen while it ran (0: unknown). */
  readonly bytesOf: (shardId: ShardId) => number
  /** Nodes that send nothing (unreachable or dead). */
  readonly down: ReadonlySet<number>
  /** The registry as a key (registryKey). */
  readonly registry: string
  readonly autoRebalance: boolean
  readonly throttles: Throttles
  /** Wall-clock ms, whole. */
  readonly nowMs: number
  readonly listedMax: number
}

export interface StepOutput {
  /** The job to write: the input's own object when nothing changed. */
  readonly job: JobRecord | undefined
  /** Moves to record with the mover now, in order. */
  readonly start: readonly PlannedMove[]
  /**
   * The job to write before `start` is recorded with the mover: `start` listed as planned, not yet
   * counted (the input's own object when it already says so; undefined when nothing starts).
   */
  readonly intent: JobRecord | undefined
  /** Why each planned move that did not start waits, by shard id. */
  readonly waiting: ReadonlyMap<ShardId, WaitReason>
}

/** What the registry looks like to the planner (ids, states, zones, weights), as a key. */
export function registryKey(
  nodes: Iterable<{ id: number; state: string; zone: string; weight: number }>,
): string {
  return JSON.stringify([...nodes].sort((a, b) => a.id - b.id).map((n) => [n.id, n.state, n.zone, n.weight]))
}

/** The plan's moves this executor may run (see the file comment). */
export function runnable(plan: Plan, autoRebalance: boolean): PlannedMove[] {
  return plan.moves.filter((m) => autoRebalance || m.reason !== 'balance')
}

export function step(input: StepInput): StepOutput {
  const runningIds = new Set(input.running.map((m) => m.shardId))
  let job = input.job === undefined ? undefined : reconcile(input.job, input, runningIds)
  const moves = runnable(input.plan, input.autoRebalance)

  const open = job !== undefined && (job.state === 'running' || job.state === 'paused')
  if (!open && moves.length > 0 && !(job?.state === 'cancelled' && job.registry === input.registry))
    job = {
      id: (job?.id ?? 0) + 1,
      trigger: moves[0]!.reason,
      state: 'running',
      createdMs: input.nowMs,
      updatedMs: input.nowMs,
      finishedMs: 0,
      registry: input.registry,
      moves: [],
      unlisted: 0,
      started: 0,
      done: 0,
      failed: 0,
      bytes: 0,
      reason: '',
    }
  if (job === undefined) return { job: input.job, start: [], intent: undefined, waiting: new Map() }

  const { start, waiting } = choose(job, moves, input)
  const startedIds = new Set(start.map((m) => m.shardId))
  const running: JobMove[] = [
    ...job.moves.filter((m) => m.state === 'running'),
    ...start.map((m) => jobMoveOf(m, 'running')),
  ]
  const ending = job.state === 'cancelled' || job.state === 'done'
  const planned = ending ? [] : moves.filter((m) => !startedIds.has(m.shardId))
  const room = Math.max(0, input.listedMax - running.length)
  const ran = job.moves.filter((m) => m.state === 'running')
  const ahead = [...start, ...planned]
  const before: JobRecord = {
    ...job,
    registry: job.state === 'cancelled' ? job.registry : input.registry,
    moves: [
      ...ran,
      ...ahead.slice(0, Math.max(0, input.listedMax - ran.length)).map((m) => jobMoveOf(m, 'planned')),
    ],
    unlisted: Math.max(0, ahead.length - Math.max(0, input.listedMax - ran.length)),
    reason: reasonOf(input.plan, input.autoRebalance, job.state),
  }
  const intent =
    start.length === 0
      ? undefined
      : sameJob(input.job, before)
        ? input.job
        : { ...before, updatedMs: input.nowMs }
  let next: JobRecord = {
    ...job,
    registry: job.state === 'cancelled' ? job.registry : input.registry,
    moves: [...running, ...planned.slice(0, room).map((m) => jobMoveOf(m, 'planned'))],
    unlisted: Math.max(0, planned.length - room),
    started: job.started + start.length,
    reason: reasonOf(input.plan, input.autoRebalance, job.state),
  }
  if ((next.state === 'running' || next.state === 'paused') && running.length === 0 && moves.length === 0) {
    const stuck = input.plan.blocked.length > 0
    if (!stuck && next.state === 'running') next = { ...next, state: 'done', finishedMs: input.nowMs }
  }
  return {
    job: sameJob(input.job, next) ? input.job : { ...next, updatedMs: input.nowMs },
    start,
    intent,
    waiting,
  }
}

/** An operator's pause, resume or cancel, applied to the job (undefined: no such change applies). */
export function steer(
  job: JobRecord | undefined,
  action: 'pause' | 'resume' | 'cancel',
  nowMs: number,
): JobRecord | undefined {
  if (job === undefined) return undefined
  const open = job.state === 'running' || job.state === 'paused'
  if (!open) return undefined
  switch (action) {
    case 'pause':
      return job.state === 'paused' ? job : { ...job, state: 'paused', updatedMs: nowMs }
    case 'resume':
      return job.state === 'running' ? job : { ...job, state: 'running', updatedMs: nowMs }
    case 'cancel':
      return {
        ...job,
        state: 'cancelled',
        updatedMs: nowMs,
        finishedMs: nowMs,
        moves: job.moves.filter((m) => m.state === 'running'),
        unlisted: 0,
      }
  }
}

function reconcile(job: JobRecord, input: StepInput, runningIds: ReadonlySet<ShardId>): JobRecord {
  let done = job.done
  let failed = job.failed
  let bytes = job.bytes
  let adopted = 0
  const moves: JobMove[] = []
  for (const m of job.moves) {
    if (runningIds.has(m.shardId) && (m.state === 'running' || m.state === 'planned')) {
      // A planned move found running: recorded with the mover by a meta leader that died before
      // writing the job. Its bytes stay in memory until it ends (no write per poll for progress).
      if (m.state === 'planned') adopted++
      moves.push({ ...m, state: 'running' })
      continue
    }
    if (m.state !== 'running') continue // planned moves are listed afresh from the plan
    const replicas = input.replicasOf(m.shardId) ?? []
    const arrived = replicas.includes(m.to) && (m.from === 0 || !replicas.includes(m.from as NodeId))
    if (arrived) {
      done++
      bytes += Math.max(m.bytes, input.bytesOf(m.shardId))
    } else failed++
  }
  return { ...job, moves, done, failed, bytes, started: job.started + adopted }
}

function choose(
  job: JobRecord,
  moves: readonly PlannedMove[],
  input: StepInput,
): { start: PlannedMove[]; waiting: Map<ShardId, WaitReason> } {
  const waiting = new Map<ShardId, WaitReason>()
  const start: PlannedMove[] = []
  if (job.state !== 'running') {
    const why: WaitReason = job.state === 'paused' ? 'paused' : 'cancelled'
    for (const m of moves) waiting.set(m.shardId, why)
    return { start, waiting }
  }
  const t = input.throttles
  const reasons = new Map<ShardId, MoveReason>(job.moves.map((m) => [m.shardId, m.reason]))
  const into = new Map<number, number>()
  const outOf = new Map<number, number>()
  const bump = (m: Map<number, number>, id: number): void => {
    m.set(id, (m.get(id) ?? 0) + 1)
  }
  let total = 0
  let others = 0
  for (const r of input.running) {
    total++
    // A move the job does not know (an operator's) counts as balance: it may not take repair slots.
    if (reasons.get(r.shardId) !== 'repair') others++
    bump(into, r.to)
    if (r.from !== undefined && !input.down.has(r.from)) bump(outOf, r.from)
  }
  const reserved = Math.min(t.repairSlots, t.movesMax - 1)
  for (const m of moves) {
    let why: WaitReason | undefined
    if (total >= t.movesMax) why = 'cluster-limit'
    else if (m.reason !== 'repair' && others >= t.movesMax - reserved) why = 'repair-slots-reserved'
    else if ((into.get(m.to) ?? 0) >= t.inPerNodeMax) why = 'destination-busy'
    else if (m.from !== undefined && !input.down.has(m.from) && (outOf.get(m.from) ?? 0) >= t.outPerNodeMax)
      why = 'source-busy'
    if (why !== undefined) {
      waiting.set(m.shardId, why)
      continue
    }
    start.push(m)
    total++
    if (m.reason !== 'repair') others++
    bump(into, m.to)
    if (m.from !== undefined && !input.down.has(m.from)) bump(outOf, m.from)
  }
  return { start, waiting }
}

/**
 * The job counting `m` as started: listed as running, `started` one more. The executor writes it
 * in the same batch as the move's record (meta-store.ts startMove), so neither exists without the
 * other and an operator's steer lands before both or after both.
 */
export function withStarted(job: JobRecord, m: PlannedMove): JobRecord {
  const listed = job.moves.some((x) => x.shardId === m.shardId && x.state === 'planned')
  const moves: JobMove[] = listed
    ? job.moves.map((x) =>
        x.shardId === m.shardId && x.state === 'planned' ? { ...x, state: 'running' } : x,
      )
    : [jobMoveOf(m, 'running'), ...job.moves]
  return { ...job, started: job.started + 1, moves }
}

function jobMoveOf(m: PlannedMove, state: JobMove['state']): JobMove {
  return { shardId: m.shardId, from: m.from ?? 0, to: m.to, reason: m.reason, state, bytes: 0 }
}

function reasonOf(plan: Plan, autoRebalance: boolean, state: JobRecord['state']): string {
  const parts: string[] = []
  if (state === 'paused') parts.push('paused by an operator')
  if (plan.safeMode !== undefined) parts.push(`safe mode: ${plan.safeMode.message}`)
  if (plan.blocked.length > 0) {
    const quorum = plan.blocked.filter((b) => b.reason === 'no-quorum').length
    const dest = plan.blocked.length - quorum
    parts.push(
      `${plan.blocked.length} shards blocked (${quorum} without a quorum of live replicas, ${dest} without a destination)`,
    )
  }
  if (!autoRebalance && plan.moves.some((m) => m.reason === 'balance'))
    parts.push('balance moves planned only (auto-rebalance is off)')
  return parts.join('; ')
}

function sameJob(a: JobRecord | undefined, b: JobRecord): boolean {
  if (a === undefined) return false
  return JSON.stringify({ ...a, updatedMs: 0 }) === JSON.stringify({ ...b, updatedMs: 0 })
}
