/**
 * The rebalancing nemesis (sharded placement with `rebalance` on): the real executor runs on the
 * meta leader (every node's agent has one; it works while its node leads the meta shard), and this
 * drives the events that give it work, as data drawn from the seed before the run starts:
 *
 *   join   a parked slot (options `joinNodes`) registers through any live node's agent (Join, as
 *          kvd --join does), opens an empty NodeHost with the map it got, and heartbeats: active,
 *          the executor fills it to its share (balance);
 *   drain  NodeAction drain through any live node's agent, the path `kvctl node drain` takes (the
 *          pre-flight may refuse it: then it is counted as refused); the executor empties it;
 *   death  a node is power-cut and never restarted: after `deadAfterMs` the meta leader marks it
 *          dead and the executor re-creates its replicas elsewhere (repair).
 *
 * Drained and dead nodes are ones without a replica of the meta shard (the meta shard does not
 * move). On top of the seed's crashes, partitions and loss, the meta leader is power-cut at chosen
 * points of a job, one after the other: after the executor started a move and before it wrote the
 * job (`started`), at each step of a move the mover records (`prepare` .. `cleanup`), and after a
 * job opened or ended (`job`); it comes back within 2.3 s, before it could be marked dead.
 *
 * While the run goes on, the job record and the mover's recent moves are read from the meta leader
 * every `sampleEveryMs`: a job's counters never go back, its ids only rise, and a job always has
 * `started = done + failed + moves listed running` (a move counted twice breaks it). After healing,
 * `finish` waits until nothing runs and nothing is left to run, then checks: the job ended (done,
 * cancelled) or says why; every data shard has the replication factor on nodes that take part (not
 * gone, not drained); a drained node holds nothing; and the jobs counted each move that ran once:
 * their started, done and failed moves against the moves the mover ended.
 */
import { metaShardId, type MoveRecord } from '../../../src/cluster/index.ts'
import {
  decodeJob,
  jobKey,
  runnable,
  type JobRecord,
  type NodeActionRequest,
  type NodeActionResult,
  type RebalanceStatus,
} from '../../../src/cluster/executor/index.ts'
import type { Executor } from '../../../src/cluster/executor/index.ts'
import { decodeRecentMoves, metaKeys } from '../../../src/cluster/records.ts'
import type { ClusterMap } from '../../../src/cluster/index.ts'
import {
  DeadlineError,
  NodeId,
  deadlineSignal,
  isKvError,
  type Clock,
  type Random,
} from '../../../src/common/index.ts'
import type { HostCluster, NodeSlot } from './cluster.ts'
import { moveSteps } from './moves.ts'
import { nodeAtAddress, simAddress, type NodeServices } from './services.ts'

export const rebalanceEventKinds = ['join', 'drain', 'death'] as const
export type RebalanceEventKind = (typeof rebalanceEventKinds)[number]

export interface RebalanceEvent {
  readonly atMs: number
  readonly kind: RebalanceEventKind
  readonly node: NodeId
}

/** Where in a job the meta leader may be power-cut (see the file comment). */
export const jobCrashPoints = ['started', ...moveSteps, 'job'] as const
export type JobCrashPoint = (typeof jobCrashPoints)[number]

interface CrashPlan {
  readonly point: JobCrashPoint
  readonly delayMs: number
  readonly downMs: number
}

export interface RebalanceStats {
  /** Events of the plan, by kind, and how they went. */
  planned: Record<string, number>
  joined: number
  drainsAccepted: number
  drainsRefused: number
  deaths: number
  /** Meta leader crashes by point, and points reached when no crash was allowed (down budget). */
  metaCrashes: Record<string, number>
  metaCrashesSkipped: number
  /** Job records read while the run went on. */
  samples: number
  /** Distinct jobs seen; of those, ended done. */
  jobs: number
  jobsDone: number
  /** Over the jobs seen (each at its last sample): moves started, done, failed. */
  started: number
  done: number
  failed: number
  /** Distinct moves the mover ended (its recent list, sampled), and of those done. */
  moverEnded: number
  moverDone: number
  /** Jobs whose id the samples skipped (never read): the totals are then compared as bounds only. */
  jobsUnseen: number
  /** The last job as `finish` read it. */
  finalJob: string
}

export function emptyRebalanceStats(): RebalanceStats {
  return {
    planned: {},
    joined: 0,
    drainsAccepted: 0,
    drainsRefused: 0,
    deaths: 0,
    metaCrashes: {},
    metaCrashesSkipped: 0,
    samples: 0,
    jobs: 0,
    jobsDone: 0,
    started: 0,
    done: 0,
    failed: 0,
    moverEnded: 0,
    moverDone: 0,
    jobsUnseen: 0,
    finalJob: '',
  }
}

/** How often the job record and the recent moves are read while the run goes on. */
const sampleEveryMs = 250
/** The budget of one request to an agent or one read of the meta shard. */
const requestMs = 2_000
/**
 * Attempts of a join or a drain whose request went unanswered, and the pause between two (with
 * the meta shard's leaders crashing, an operator may need a while: `finish` waits for them).
 */
const attemptsMax = 40
const retryMs = 500
/** Simulated time `finish` gives the cluster to settle after healing. */
export const rebalanceFinishMsMax = 120_000

/**
 * The events of a run (data, drawn before it starts): a non-empty subset of join, drain and death,
 * at times spread over the safety phase; drain and death take the nodes without a meta replica.
 */
export function planRebalanceEvents(
  random: Random,
  map: ClusterMap,
  nodes: number,
  joinNodes: number,
  startMs: number,
  phaseMs: number,
): RebalanceEvent[] {
  const kinds = rebalanceEventKinds.filter(() => random.int(4) !== 0)
  if (kinds.length === 0) kinds.push(rebalanceEventKinds[random.int(rebalanceEventKinds.length)]!)
  const spare = [...map.nodes.values()]
    .map((n) => n.id)
    .filter((id) => !map.meta.replicas.includes(id))
    .sort((a, b) => a - b)
  if (random.int(2) === 0) spare.reverse()
  const events: RebalanceEvent[] = []
  for (const kind of kinds) {
    const node =
      kind === 'join'
        ? joinNodes > 0
          ? NodeId(nodes + 1)
          : undefined
        : (spare.shift() as NodeId | undefined)
    if (node === undefined) continue
    // In the first two thirds of the phase: the last event's work mostly runs before healing.
    const atMs = startMs + 500 + random.int(Math.max(1, Math.floor((phaseMs * 2) / 3)))
    events.push({ atMs, kind, node })
  }
  return events.sort((a, b) => a.atMs - b.atMs)
}

export class RebalanceNemesis {
  readonly stats: RebalanceStats = emptyRebalanceStats()
  /** Crash points still to reach, in order. */
  private readonly crashes: CrashPlan[] = []
  private crashArmed = true
  /** The newest sample of each job, by id. */
  private readonly jobs = new Map<number, JobRecord>()
  private lastJobId = 0
  /** Every move the mover ended (its recent list, sampled), by identity. */
  private readonly ended = new Map<string, MoveRecord>()
  private sampling = false
  /** Events under way (a join or a drain retrying): `finish` waits for them. */
  private pending = 0
  /** The node a drain was accepted for (it must end empty), and the node gone for good. */
  private readonly drained = new Set<NodeId>()
  private readonly gone = new Set<NodeId>()

  constructor(
    private readonly cluster: HostCluster,
    private readonly random: Random,
    private readonly clock: Clock,
  ) {}

  /** Schedules the events and the crash plan, and starts sampling the job. */
  start(events: readonly RebalanceEvent[]): void {
    const c = this.cluster
    for (const e of events) {
      this.stats.planned[e.kind] = (this.stats.planned[e.kind] ?? 0) + 1
      c.sim.schedule(Math.max(0, e.atMs - c.sim.nowMs), () => {
        if (c.failure !== null) return
        this.pending++
        this.apply(e)
          .catch((err: unknown) => c.fail('crash', `rebalance nemesis: ${String(err)}`))
          .finally(() => this.pending--)
      })
    }
    const n = 1 + this.random.int(4)
    for (let i = 0; i < n; i++)
      this.crashes.push({
        point: jobCrashPoints[this.random.int(jobCrashPoints.length)]!,
        delayMs: this.random.int(30),
        downMs: 300 + this.random.int(2_000),
      })
    c.sim.record(
      `rebalance nemesis: events ${events.map((e) => `${e.kind} n${e.node} at ${Math.round(e.atMs)}`).join(', ')}; meta leader crashes at ${this.crashes.map((p) => p.point).join(', ')}`,
    )
    this.sampling = true
    void this.sampleLoop()
  }

  /** Stops the crash plan (healing: no more faults). */
  disarm(): void {
    this.crashArmed = false
  }

  /** A trace line: the executor started a move or changed the job, the mover recorded a step. */
  watch(line: string): void {
    const next = this.crashes[0]
    if (next === undefined || !this.crashArmed) return
    if (!matches(line, next.point)) return
    this.crashes.shift()
    this.cluster.sim.schedule(next.delayMs, () => this.crashMetaLeader(next))
  }

  private crashMetaLeader(plan: CrashPlan): void {
    const c = this.cluster
    const leader = c.leaderOf(metaShardId)
    const victim = leader === undefined ? undefined : c.slot(leader.nodeId)
    if (
      !this.crashArmed ||
      victim === undefined ||
      victim.life === null ||
      c.downCount >= c.options.downMax
    ) {
      this.stats.metaCrashesSkipped++
      c.sim.record(`rebalance nemesis: no crash of the meta leader at ${plan.point}`)
      // Tried again at the next such point.
      if (this.crashArmed) this.crashes.unshift(plan)
      return
    }
    this.stats.metaCrashes[plan.point] = (this.stats.metaCrashes[plan.point] ?? 0) + 1
    c.sim.record(`rebalance nemesis: crash n${victim.id}, the meta leader, at ${plan.point}`)
    c.crash(victim, this.random.int(4) < c.options.loseUnsyncedPer4)
    c.sim.schedule(plan.downMs, () => c.start(victim))
  }

  private async apply(e: RebalanceEvent): Promise<void> {
    const c = this.cluster
    c.sim.record(`rebalance nemesis: ${e.kind} n${e.node}`)
    switch (e.kind) {
      case 'join':
        return await this.join(c.slot(e.node))
      case 'drain':
        return await this.drain(e.node)
      case 'death': {
        const slot = c.slot(e.node)
        slot.parked = 'gone'
        this.gone.add(e.node)
        this.stats.deaths++
        if (slot.life !== null) c.crash(slot, this.random.int(4) < c.options.loseUnsyncedPer4)
        c.sim.record(`rebalance nemesis: n${e.node} is gone for good`)
        return
      }
    }
  }

  /** Registers the slot's node (as kvd --join), then starts its process on the map it got. */
  private async join(slot: NodeSlot): Promise<void> {
    const c = this.cluster
    const args = { address: simAddress(slot.id), zone: '', weight: 1 }
    for (let attempt = 0; attempt < attemptsMax && c.failure === null; attempt++) {
      const outcome = await this.ask((s) => s.agent.serveJoin(args, false))
      if (outcome.ok) {
        const { node, map } = outcome.value
        // Ids count up from the first map's nodes and nothing else registers in this suite.
        if (node.id !== slot.id)
          return c.fail('join', `n${slot.id} joined as ${node.id} (address ${node.address})`)
        slot.storedMap = map
        slot.parked = null
        this.stats.joined++
        c.sim.record(`rebalance nemesis: n${slot.id} joined (${node.state})`)
        c.start(slot)
        return
      }
      await c.driver.sleep(retryMs)
    }
    c.sim.record(`rebalance nemesis: n${slot.id} could not join`)
  }

  /** `kvctl node drain N`: the meta leader's executor judges it (pre-flight) and records it. */
  private async drain(nodeId: NodeId): Promise<void> {
    const c = this.cluster
    const req: NodeActionRequest = { nodeId, action: 'drain', dryRun: false, force: false }
    for (let attempt = 0; attempt < attemptsMax && c.failure === null; attempt++) {
      const outcome = await this.rebalancing<NodeActionResult>((ex, signal) => ex.nodeAction(req, signal))
      if (outcome.ok) {
        const r = outcome.value
        if (r.possible) {
          this.drained.add(nodeId)
          this.stats.drainsAccepted++
        } else this.stats.drainsRefused++
        c.sim.record(
          `rebalance nemesis: drain n${nodeId}: ${r.possible ? `accepted, ${r.state}, ${r.moves.length} moves` : `refused (${r.blockingCount} blocking shards: ${r.blocking.map((b) => `${b.shardId}:${b.reason}`).join(' ')}; ${r.safeMode})`}`,
        )
        return
      }
      // Unanswered, or refused while the node is not active (a crash made it unreachable): an
      // operator tries again.
      c.sim.record(
        `rebalance nemesis: drain n${nodeId} not answered: ${outcome.err instanceof Error ? outcome.err.message : String(outcome.err)}`,
      )
      await c.driver.sleep(retryMs)
    }
    this.stats.drainsRefused++
    c.sim.record(`rebalance nemesis: drain n${nodeId} given up`)
  }

  /** Reads the job and the recent moves from the meta leader every `sampleEveryMs` until stopped. */
  private async sampleLoop(): Promise<void> {
    const c = this.cluster
    while (this.sampling && c.failure === null) {
      await this.sample()
      await c.driver.sleep(sampleEveryMs)
    }
  }

  private async sample(): Promise<void> {
    const c = this.cluster
    const replica = c.leaderOf(metaShardId)?.replica(metaShardId)
    if (replica === undefined) return
    const d = deadlineSignal(this.clock, requestMs)
    let found
    try {
      found = (
        await replica.getMany([jobKey, metaKeys.movesRecent], { level: 'linearizable', signal: d.signal })
      ).found
    } catch (err) {
      if (isKvError(err) || err instanceof DeadlineError) return
      throw err
    } finally {
      d.dispose()
    }
    this.stats.samples++
    const [job, recent] = found
    if (recent !== null && recent !== undefined)
      for (const m of decodeRecentMoves(recent.value)) this.ended.set(moveIdentity(m), m)
    if (job !== null && job !== undefined) this.noteJob(decodeJob(job.value))
  }

  /** A job as read: its counters hold together and never go back. */
  private noteJob(job: JobRecord): void {
    const c = this.cluster
    const running = job.moves.filter((m) => m.state === 'running').length
    if (job.started !== job.done + job.failed + running)
      return c.fail(
        'rebalance-job',
        `job ${job.id}: started ${job.started} != done ${job.done} + failed ${job.failed} + running ${running}`,
      )
    if (job.id < this.lastJobId)
      return c.fail('rebalance-job', `job ${job.id} read after job ${this.lastJobId}`)
    const before = this.jobs.get(job.id)
    if (before !== undefined) {
      for (const k of ['started', 'done', 'failed', 'bytes'] as const)
        if (job[k] < before[k])
          return c.fail('rebalance-job', `job ${job.id}: ${k} went from ${before[k]} to ${job[k]}`)
      const ended = (s: string): boolean => s === 'done' || s === 'cancelled'
      if (ended(before.state) && job.state !== before.state)
        return c.fail('rebalance-job', `job ${job.id} was ${before.state}, now ${job.state}`)
    }
    if (job.id > this.lastJobId + 1 && !this.jobs.has(job.id))
      this.stats.jobsUnseen += job.id - this.lastJobId - 1
    this.lastJobId = Math.max(this.lastJobId, job.id)
    this.jobs.set(job.id, job)
  }

  /**
   * After healing: waits until nothing runs and nothing is left to run, then checks the end state
   * (file comment). A description of what did not hold, or null.
   */
  async finish(): Promise<string | null> {
    const c = this.cluster
    this.disarm()
    const until = c.sim.nowMs + rebalanceFinishMsMax
    let last = 'no answer'
    let status: RebalanceStatus | undefined
    while (c.sim.nowMs < until && c.failure === null) {
      c.observeConfigs()
      const outcome = await this.rebalancing<RebalanceStatus>((ex, signal) => ex.status(signal))
      if (outcome.ok) {
        status = outcome.value
        const problem = this.unsettled(status)
        if (problem === null) break
        last = problem
      } else last = `${outcome.err instanceof Error ? outcome.err.message : String(outcome.err)}`
      status = undefined
      await c.driver.sleep(retryMs)
    }
    this.sampling = false
    if (status === undefined)
      return `rebalancing not settled ${rebalanceFinishMsMax} ms after healing: ${last}`
    await this.sample()
    const job = status.job
    if (job !== undefined) this.noteJob(job)
    this.stats.finalJob =
      job === undefined ? 'none' : `${job.id} ${job.state}${job.reason === '' ? '' : ` (${job.reason})`}`
    this.stats.jobs = this.jobs.size
    for (const j of this.jobs.values()) {
      if (j.state === 'done') this.stats.jobsDone++
      this.stats.started += j.started
      this.stats.done += j.done
      this.stats.failed += j.failed
    }
    this.stats.moverEnded = this.ended.size
    this.stats.moverDone = [...this.ended.values()].filter((m) => m.step === 'done').length
    const s = this.stats
    const counts = `jobs started ${s.started} done ${s.done} failed ${s.failed}; the mover ended ${s.moverEnded} (${s.moverDone} done)`
    if (s.done > s.moverDone || s.done + s.failed > s.moverEnded)
      return `the jobs counted more moves than ran: ${counts}`
    if (s.jobsUnseen === 0 && (s.started !== s.moverEnded || s.done + s.failed !== s.moverEnded))
      return `the jobs did not count each move that ran once: ${counts}`
    return null
  }

  /** Why the cluster has not settled yet, or null (see `finish`). */
  private unsettled(status: RebalanceStatus): string | null {
    const c = this.cluster
    if (this.pending > 0) return `${this.pending} events still under way`
    if (status.running.length > 0)
      return `moves running: ${status.running.map((m) => `shard ${m.shardId} n${m.from}->n${m.to} at ${m.step} (${m.reason})`).join('; ')}`
    const left = runnable(status.plan, true)
    if (left.length > 0)
      return `moves left to run: ${left.map((m) => `shard ${m.shardId} n${m.from ?? 0}->n${m.to} (${m.reason})`).join('; ')}${status.plan.blocked.length > 0 ? `; blocked ${status.plan.blocked.map((b) => `${b.shardId}:${b.reason}`).join(' ')}` : ''}`
    const job = status.job
    if (job !== undefined && job.state !== 'done' && job.state !== 'cancelled' && job.reason === '')
      return `job ${job.id} is ${job.state} and says not why`
    const bad: string[] = []
    for (const shardId of c.shardIds) {
      if (shardId === metaShardId) continue
      const cfg = c.configs.newest(shardId)
      const off = cfg.voters.filter((id) => c.slot(id).parked !== null || this.drained.has(id))
      if (
        cfg.voters.length !== c.options.replicaCount ||
        off.length > 0 ||
        cfg.learners.length > 0 ||
        cfg.votersOutgoing.length > 0
      )
        bad.push(
          `shard ${shardId} voters ${cfg.voters.join(',')}${cfg.learners.length > 0 ? ` learners ${cfg.learners.join(',')}` : ''}${cfg.votersOutgoing.length > 0 ? ' (joint)' : ''}`,
        )
    }
    if (bad.length > 0)
      return `shards not at the replication factor on the nodes that stay: ${bad.join('; ')}${status.plan.safeMode === undefined ? '' : `; safe mode: ${status.plan.safeMode.message}`}`
    return null
  }

  /** Whether `nodeId` was drained (accepted) or is gone for good. */
  leaving(nodeId: NodeId): boolean {
    return this.drained.has(nodeId) || this.gone.has(nodeId)
  }

  /** A rebalancing call as kvctl sends it: to any live node, served by the meta leader's executor. */
  private async rebalancing<T>(
    onLeader: (executor: Executor, signal: AbortSignal) => Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
    return await this.ask((s) =>
      s.agent.serveRebalancing(false, onLeader, (address, signal) =>
        this.cluster.rpc.call(s.host.nodeId, peerOf(address), signal, (t) =>
          t.agent.serveRebalancing(true, onLeader, () => Promise.reject(new Error('forwarded twice'))),
        ),
      ),
    )
  }

  /** One request to a random live node's agent (as kvctl would send it to any node). */
  private async ask<T>(
    serve: (s: NodeServices) => Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
    const c = this.cluster
    const up = c.slots.filter((s) => s.life?.services !== undefined)
    const pool = up.length > 0 ? up : c.taking
    const pick = pool[this.random.int(pool.length)]!
    const d = deadlineSignal(this.clock, requestMs)
    try {
      return { ok: true, value: await c.rpc.call(undefined, pick.id, d.signal, serve) }
    } catch (err) {
      if (err instanceof DeadlineError || isKvError(err)) return { ok: false, err }
      throw err
    } finally {
      d.dispose()
    }
  }
}

function matches(line: string, point: JobCrashPoint): boolean {
  switch (point) {
    case 'started':
      return line.includes('move started {')
    case 'job':
      return line.includes('rebalancing job {')
    case 'prepare':
      return line.includes('move recorded {')
    default:
      return line.includes('move step {') && line.includes(`"step":"${point}"`)
  }
}

function moveIdentity(m: MoveRecord): string {
  return `${m.shardId}:${m.from}:${m.to}:${m.startedMs}`
}

function peerOf(address: string): NodeId {
  const to = nodeAtAddress(address)
  if (to === undefined) throw new Error(`no node at ${address}`)
  return to
}
