/**
 * The move nemesis (sharded placement): replica moves through the real control path, mixed with
 * crashes at chosen steps of them. Every `moveIntervalMsMean` (on average) of the safety phase it
 * does one of:
 *
 * - a move: MoveReplica to any node's agent (passed on once to the meta leader, whose real mover
 *   runs it: prepare, learner, catchup, transfer, replace, cleanup), of a data shard from one of
 *   its voters (sometimes its leader) to a node that does not hold it (sometimes a node that is
 *   down: the mover refuses it or rolls it back); sometimes a finished move back again. Most moves
 *   carry a crash plan: when the mover records the chosen step of that move (its trace line), the
 *   source, the destination, the shard's leader or the meta leader is power-cut a few ms later and
 *   restarted later on;
 * - a refused move, each with the codes it may get: an unknown shard or node (NOT_FOUND), the meta
 *   shard, the source as destination, a destination that holds the shard (MOVE_REFUSED), a second
 *   move of a moving shard (SHARD_BUSY), a planned epoch that is not the shard's (STALE_EPOCH);
 *   such a request may also go unanswered (UNAVAILABLE, DEADLINE_EXCEEDED, NOT_LEADER), never
 *   succeed or fail otherwise;
 * - a leader transfer (TransferLeader through any node's agent) to one of the shard's voters.
 *
 * After healing, `finish` waits until no move runs (each one ended done or failed, i.e. rolled
 * back) and the shard records in the meta shard name the voters of the shards' configurations.
 * The step of a move is read from the mover's own trace lines (`watch`: its info-level log lines,
 * so the run's log level must be info or finer), so a crash lands while that step runs, whichever
 * meta leader runs it.
 */
import { metaShardId, type MoveRequest, type MoveView, type MoveRecord } from '../../../src/cluster/index.ts'
import {
  DeadlineError,
  ErrorCode,
  ShardId,
  deadlineSignal,
  isKvError,
  type Clock,
  type NodeId,
  type Random,
} from '../../../src/common/index.ts'
import type { HostCluster, NodeSlot } from './cluster.ts'
import type { NodeServices } from './services.ts'

export const moveSteps = ['prepare', 'learner', 'catchup', 'transfer', 'replace', 'cleanup'] as const
export type MoveStepName = (typeof moveSteps)[number]
export const crashRoles = ['source', 'destination', 'shard-leader', 'meta-leader'] as const
export type CrashRole = (typeof crashRoles)[number]

type RefusedKind =
  'unknown-shard' | 'unknown-node' | 'meta-shard' | 'same-node' | 'to-holder' | 'busy' | 'stale-epoch'

/** The codes each refused request may get (besides going unanswered). */
const refusalCodes: Readonly<Record<RefusedKind, readonly string[]>> = {
  'unknown-shard': [ErrorCode.NotFound],
  'unknown-node': [ErrorCode.NotFound],
  'meta-shard': [ErrorCode.MoveRefused],
  'same-node': [ErrorCode.MoveRefused],
  'to-holder': [ErrorCode.MoveRefused],
  // The move it meets may have just ended (then the request is a move: counted as one).
  busy: [ErrorCode.ShardBusy],
  'stale-epoch': [ErrorCode.StaleEpoch],
}
const refusedKinds = Object.keys(refusalCodes) as RefusedKind[]
/**
 * Codes of a request that may not have reached the meta leader's decision (NO_QUORUM: the meta
 * leader could not confirm its leadership for the read it decides on, as under a partition;
 * OVERLOADED: a node's Raft inbox was full and took nothing in).
 */
const unanswered: readonly string[] = [
  ErrorCode.Unavailable,
  ErrorCode.DeadlineExceeded,
  ErrorCode.NotLeader,
  ErrorCode.NoQuorum,
  ErrorCode.Overloaded,
]

export interface MoveStats {
  /** Move requests sent, recorded by the meta leader (answered ok), and moves back. */
  requested: number
  started: number
  movesBack: number
  /** Moves that ended, as the meta shard's recent list has them. */
  done: number
  failed: number
  /** Move steps the mover recorded (trace lines), by step. */
  steps: Record<string, number>
  /** Refused requests by code (the deliberate ones and refused real moves). */
  refused: Record<string, number>
  /** Requests that went unanswered. */
  unanswered: number
  transfers: number
  transfersOk: number
  /** Crashes the plans made, by `step/role`; plans whose crash the down budget did not allow. */
  crashes: Record<string, number>
  crashesSkipped: number
}

export function emptyMoveStats(): MoveStats {
  return {
    requested: 0,
    started: 0,
    movesBack: 0,
    done: 0,
    failed: 0,
    steps: {},
    refused: {},
    unanswered: 0,
    transfers: 0,
    transfersOk: 0,
    crashes: {},
    crashesSkipped: 0,
  }
}

interface CrashPlan {
  readonly step: MoveStepName
  readonly role: CrashRole
  readonly delayMs: number
  readonly downMs: number
}

/** A move the nemesis asks for: always a replace (it names the source). */
type Replace = MoveRequest & { readonly from: NodeId }

interface Watched {
  readonly from: NodeId
  readonly to: NodeId
  plan: CrashPlan | undefined
}

/** Simulated time `finish` gives the moves to end after healing (a stalled one rolls back after 10 s). */
export const moveFinishMsMax = 45_000
/** The budget of one request to an agent. */
const requestMs = 2_000

export class MoveNemesis {
  readonly stats: MoveStats = emptyMoveStats()
  /** Shards with a move recorded and not ended (from the trace), with the move's plan. */
  private readonly running = new Map<ShardId, Watched>()
  /** Crash plans of moves asked for and not yet seen recorded. */
  private readonly planned = new Map<ShardId, Watched>()
  /** Moves that ended done, to move back. */
  private readonly finished: { shardId: ShardId; from: NodeId; to: NodeId }[] = []
  /** Nodes a move of the shard involved (the others hold it throughout). */
  private readonly involved = new Map<ShardId, Set<NodeId>>()
  private stopAtMs = 0

  constructor(
    private readonly cluster: HostCluster,
    private readonly random: Random,
    private readonly clock: Clock,
  ) {}

  /** Acts every `moveIntervalMsMean` (on average) until `untilMs`. */
  start(untilMs: number): void {
    this.stopAtMs = untilMs
    this.next()
  }

  /** A trace line: the mover records a move, a step of it, or its end. */
  watch(line: string): void {
    const fields = (marker: string): Record<string, unknown> | undefined => {
      const at = line.indexOf(marker)
      if (at < 0) return undefined
      try {
        return JSON.parse(line.slice(at + marker.length)) as Record<string, unknown>
      } catch {
        return undefined
      }
    }
    const recorded = fields('move recorded ')
    if (recorded !== undefined) {
      const shardId = ShardId(Number(recorded['shard']))
      const w = this.planned.get(shardId) ?? {
        from: Number(recorded['from']) as NodeId,
        to: Number(recorded['to']) as NodeId,
        plan: undefined,
      }
      this.planned.delete(shardId)
      this.running.set(shardId, w)
      this.reached(shardId, 'prepare')
      return
    }
    const step = fields('move step ')
    if (step !== undefined) {
      this.reached(ShardId(Number(step['shard'])), String(step['step']))
      return
    }
    const ended = fields('move ended ')
    if (ended !== undefined) {
      const shardId = ShardId(Number(ended['shard']))
      this.running.delete(shardId)
      if (ended['step'] === 'done')
        this.finished.push({
          shardId,
          from: Number(ended['from']) as NodeId,
          to: Number(ended['to']) as NodeId,
        })
    }
  }

  private reached(shardId: ShardId, step: string): void {
    this.stats.steps[step] = (this.stats.steps[step] ?? 0) + 1
    const w = this.running.get(shardId)
    const plan = w?.plan
    if (w === undefined || plan === undefined || plan.step !== step) return
    w.plan = undefined
    this.cluster.sim.schedule(plan.delayMs, () => this.crashFor(shardId, w, plan))
  }

  private crashFor(shardId: ShardId, w: Watched, plan: CrashPlan): void {
    const c = this.cluster
    let victim: NodeSlot | undefined
    switch (plan.role) {
      case 'source':
        victim = c.slot(w.from)
        break
      case 'destination':
        victim = c.slot(w.to)
        break
      case 'shard-leader': {
        const leader = c.leaderOf(shardId)
        victim = leader === undefined ? undefined : c.slot(leader.nodeId)
        break
      }
      case 'meta-leader': {
        const leader = c.leaderOf(metaShardId)
        victim = leader === undefined ? undefined : c.slot(leader.nodeId)
        break
      }
    }
    const what = `${plan.step}/${plan.role}`
    if (victim === undefined || victim.life === null || c.downCount >= c.options.downMax) {
      this.stats.crashesSkipped++
      c.sim.record(`move nemesis: no crash of the ${plan.role} of shard ${shardId} at ${plan.step}`)
      return
    }
    this.stats.crashes[what] = (this.stats.crashes[what] ?? 0) + 1
    c.sim.record(
      `move nemesis: crash n${victim.id}, the ${plan.role} of shard ${shardId}'s move at ${plan.step}`,
    )
    c.crash(victim, this.random.int(4) < c.options.loseUnsyncedPer4)
    c.sim.schedule(plan.downMs, () => c.start(victim))
  }

  private next(): void {
    const c = this.cluster
    const mean = c.options.moveIntervalMsMean
    const delay = Math.round(mean * (0.5 + this.random.int(1000) / 1000))
    if (c.sim.nowMs + delay >= this.stopAtMs) return
    c.sim.schedule(delay, () => {
      if (c.failure !== null) return
      this.act().catch((err: unknown) => c.fail('crash', `move nemesis: ${String(err)}`))
      this.next()
    })
  }

  private async act(): Promise<void> {
    const r = this.random.int(100)
    if (r < 55 && this.running.size + this.planned.size < this.cluster.options.limits.movesConcurrentMax)
      return await this.move()
    if (r < 85) return await this.refused(refusedKinds[this.random.int(refusedKinds.length)]!)
    return await this.transfer()
  }

  private dataShards(): ShardId[] {
    return this.cluster.shardIds.filter((id) => id !== metaShardId)
  }

  private pick<T>(xs: readonly T[]): T | undefined {
    return xs.length === 0 ? undefined : xs[this.random.int(xs.length)]
  }

  /** A real move, or a finished one back again. */
  private async move(): Promise<void> {
    const c = this.cluster
    const idle = this.dataShards().filter((id) => {
      const cfg = c.configs.newest(id)
      return (
        !this.running.has(id) &&
        !this.planned.has(id) &&
        cfg.votersOutgoing.length === 0 &&
        cfg.learners.length === 0
      )
    })
    let req: Replace | undefined
    const back =
      this.random.int(3) === 0 ? this.pick(this.finished.filter((f) => idle.includes(f.shardId))) : undefined
    if (back !== undefined) {
      const cfg = c.configs.newest(back.shardId)
      if (cfg.voters.includes(back.to) && !c.holds(back.from, back.shardId)) {
        req = { shardId: back.shardId, from: back.to, to: back.from, epoch: 0 }
        this.stats.movesBack++
        this.finished.splice(this.finished.indexOf(back), 1)
      }
    }
    if (req === undefined) {
      const shardId = this.pick(idle)
      if (shardId === undefined) return
      const voters = c.configs.newest(shardId).voters
      const leader = c.leaderOf(shardId)?.nodeId
      const from =
        this.random.int(3) === 0 && leader !== undefined && voters.includes(leader)
          ? leader
          : this.pick(voters)
      // Sometimes onto a node that is down: refused, or rolled back once the map has it dead.
      const outside = c.members.filter((id) => !c.holds(id, shardId))
      const down = outside.filter((id) => c.slot(id).life === null)
      const to = this.pick(down.length > 0 && this.random.int(2) === 0 ? down : outside)
      if (from === undefined || to === undefined) return
      req = { shardId, from, to, epoch: 0 }
    }
    const plan = this.random.int(5) === 0 ? undefined : this.crashPlan()
    this.planned.set(req.shardId, { from: req.from, to: req.to, plan })
    const involved = this.involved.get(req.shardId) ?? new Set<NodeId>()
    involved.add(req.from).add(req.to)
    this.involved.set(req.shardId, involved)
    this.stats.requested++
    c.sim.record(
      `move nemesis: move shard ${req.shardId} n${req.from} -> n${req.to}${plan === undefined ? '' : ` (crash the ${plan.role} at ${plan.step})`}`,
    )
    const outcome = await this.ask((s) => s.agent.serveMove(req, false))
    // A request that was not recorded leaves no plan behind (the trace took it if it was).
    if (outcome.ok) this.stats.started++
    else {
      this.planned.delete(req.shardId)
      this.count(outcome.code)
    }
  }

  /**
   * Where a move's crash lands. A destination crashed before `replace` stays down 3 to 8 s, long
   * enough to be marked dead (the mover then rolls the move back); the others come back within 2.7 s.
   */
  private crashPlan(): CrashPlan {
    const step = moveSteps[this.random.int(moveSteps.length)]!
    const role = crashRoles[this.random.int(crashRoles.length)]!
    const delayMs = this.random.int(40)
    const down = this.random.int(2_500)
    const beforeReplace = step === 'prepare' || step === 'learner' || step === 'catchup'
    const downMs = role === 'destination' && beforeReplace ? 3_000 + 2 * down : 200 + down
    return { step, role, delayMs, downMs }
  }

  private async refused(kind: RefusedKind): Promise<void> {
    const c = this.cluster
    const shards = this.dataShards()
    const shardId = this.pick(shards)!
    const cfg = c.configs.newest(shardId)
    // Voters no move of the shard ever involved hold it throughout (the meta record names them).
    const stable = cfg.voters.filter((id) => !(this.involved.get(shardId)?.has(id) ?? false))
    const outsider = this.pick(c.members.filter((id) => !c.everHeld(id, shardId)))
    let req: Replace | undefined
    switch (kind) {
      case 'unknown-shard':
        req = { shardId: ShardId(c.options.shardCount + 7), from: c.members[0]!, to: c.members[1]!, epoch: 0 }
        break
      case 'unknown-node':
        if (stable[0] !== undefined)
          req = { shardId, from: stable[0], to: (c.options.nodes + 9) as NodeId, epoch: 0 }
        break
      case 'meta-shard':
        req = { shardId: metaShardId, from: c.members[0]!, to: c.members[1]!, epoch: 0 }
        break
      case 'same-node':
        if (stable[0] !== undefined) req = { shardId, from: stable[0], to: stable[0], epoch: 0 }
        break
      case 'to-holder':
        if (stable.length >= 2) req = { shardId, from: stable[0]!, to: stable[1]!, epoch: 0 }
        break
      case 'busy': {
        const moving = this.pick([...this.running.keys()])
        const s = moving === undefined ? undefined : c.configs.newest(moving)
        const from = s?.voters.find((id) => !(this.involved.get(moving!)?.has(id) ?? false))
        const to = c.members.find((id) => moving !== undefined && !c.everHeld(id, moving))
        if (moving !== undefined && from !== undefined && to !== undefined)
          req = { shardId: moving, from, to, epoch: 0 }
        break
      }
      case 'stale-epoch':
        if (
          stable[0] !== undefined &&
          outsider !== undefined &&
          !this.running.has(shardId) &&
          !this.planned.has(shardId)
        )
          req = { shardId, from: stable[0], to: outsider, epoch: 1_000_000 }
        break
    }
    if (req === undefined) return
    const sent = req
    c.sim.record(
      `move nemesis: refused ${kind}: shard ${sent.shardId} n${sent.from} -> n${sent.to} epoch ${sent.epoch}`,
    )
    const outcome = await this.ask((s) => s.agent.serveMove(sent, false))
    if (outcome.ok) {
      if (kind === 'busy') {
        // The move it was to meet had ended; this one runs now.
        this.stats.requested++
        this.stats.started++
        this.running.set(
          sent.shardId,
          this.running.get(sent.shardId) ?? { from: sent.from, to: sent.to, plan: undefined },
        )
        return
      }
      return c.fail(
        'move-refusal',
        `${kind} move of shard ${sent.shardId} n${sent.from} -> n${sent.to} was accepted`,
      )
    }
    this.count(outcome.code)
    // A destination the map has as down (dead, not yet active again) is refused before the epoch
    // or the other move is looked at.
    const notActive = outcome.code === ErrorCode.MoveRefused && /is \w+, not active/.test(outcome.message)
    const mayBeDown = kind === 'busy' || kind === 'stale-epoch'
    if (
      !unanswered.includes(outcome.code) &&
      !refusalCodes[kind].includes(outcome.code) &&
      !(mayBeDown && notActive)
    )
      c.fail(
        'move-refusal',
        `${kind} move of shard ${sent.shardId} n${sent.from} -> n${sent.to} got ${outcome.code} (${outcome.message}), expected ${refusalCodes[kind].join(' or ')}`,
      )
  }

  private async transfer(): Promise<void> {
    const c = this.cluster
    const shardId = this.pick(this.dataShards())!
    const leader = c.leaderOf(shardId)?.nodeId
    const to = this.pick(c.configs.newest(shardId).voters.filter((id) => id !== leader))
    if (to === undefined) return
    this.stats.transfers++
    c.sim.record(`move nemesis: transfer shard ${shardId}'s leadership to n${to}`)
    const outcome = await this.ask((s) => s.agent.serveTransferLeader(shardId, to))
    if (outcome.ok) this.stats.transfersOk++
  }

  private count(code: string): void {
    if (unanswered.includes(code)) this.stats.unanswered++
    else this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1
  }

  /** One request to a random live node's agent (as kvctl would send it to any node). */
  private async ask<T>(
    serve: (s: NodeServices) => Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false; code: string; message: string }> {
    const c = this.cluster
    const up = c.slots.filter((s) => s.host !== undefined)
    const to = this.pick(up.length === 0 ? c.slots : up)!.id
    const d = deadlineSignal(this.clock, requestMs)
    try {
      return { ok: true, value: await c.rpc.call(undefined, to, d.signal, serve) }
    } catch (err) {
      // The request's own deadline (the SDK would report DEADLINE_EXCEEDED).
      if (err instanceof DeadlineError)
        return { ok: false, code: ErrorCode.DeadlineExceeded, message: err.message }
      if (!isKvError(err)) throw err
      return { ok: false, code: err.code, message: err.message }
    } finally {
      d.dispose()
    }
  }

  /**
   * After healing: waits until no move runs, counts how the moves ended (the meta shard's recent
   * list), and until the shard records name the voters of the shards' newest configurations.
   * A description of what did not happen in time, or null.
   */
  async finish(): Promise<string | null> {
    const c = this.cluster
    const until = c.sim.nowMs + moveFinishMsMax
    let last = 'no answer'
    let moves: { running: MoveView[]; recent: MoveRecord[] } | undefined
    while (c.sim.nowMs < until && c.failure === null) {
      const outcome = await this.ask((s) => s.agent.serveListMoves(false))
      if (outcome.ok) {
        moves = outcome.value
        if (moves.running.length === 0) break
        last = moves.running
          .map((m) => `shard ${m.shardId} n${m.from}->n${m.to} at ${m.step} (${m.reason})`)
          .join('; ')
      } else last = `${outcome.code}: ${outcome.message}`
      moves = undefined
      await c.driver.sleep(200)
    }
    if (moves === undefined) return `moves still running ${moveFinishMsMax} ms after healing: ${last}`
    for (const m of moves.recent) {
      if (m.step === 'done') this.stats.done++
      else if (m.step === 'failed') this.stats.failed++
    }
    // The records follow the configurations (the mover's cleanup; a map refresh brings them).
    while (c.sim.nowMs < until && c.failure === null) {
      c.observeConfigs()
      const outcome = await this.ask((s) => Promise.resolve(s.agent.map))
      if (outcome.ok) {
        const wrong = this.dataShards().filter((id) => {
          const record = outcome.value.shard(id)
          const voters = c.configs.newest(id).voters
          return (
            record === undefined || [...record.replicas].sort().join(',') !== [...voters].sort().join(',')
          )
        })
        if (wrong.length === 0) return null
        last = wrong
          .map(
            (id) =>
              `shard ${id} record ${outcome.value.shard(id)?.replicas.join(',')} voters ${c.configs.newest(id).voters.join(',')}`,
          )
          .join('; ')
      }
      await c.driver.sleep(200)
    }
    return `shard records do not name their shards' voters: ${last}`
  }
}
