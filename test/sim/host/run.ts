/**
 * One run of the host simulator for one seed (the node layer's VOPR):
 *
 * 1. boot the NodeHosts (three holding every shard, or five holding the shards the ring placed on
 *    them plus the meta shard: options.ts `placement`) and wait for a leader per shard;
 * 2. safety phase: clients run while the seed's faults hit the network, the disks and the
 *    processes (crash, power cut, restart on the surviving MemoryEngine state); with the sharded
 *    placement every node also runs its real Router and ClusterAgent (services.ts), the clients
 *    route with the real SDK routing (sdk-path.ts), the meta clients (meta.ts) run the control
 *    plane's transactions too, and shard records change at run time (a higher epoch); with
 *    `moveIntervalMsMean` > 0 the move nemesis (moves.ts) moves replicas through the real mover
 *    and crashes the nodes involved at chosen steps;
 * 3. liveness phase: every fault healed, every node up; clients must make progress again;
 * 4. clients stop; the meta workload finishes (bootstrap and registrations still unacknowledged);
 *    every move ends (done or rolled back) and the shard records follow the configurations;
 *    every shard must converge (same applied index and byte-identical applied state on every
 *    replica its newest configuration names, no replica left elsewhere);
 * 5. checks: a final linearizable read of every key; the history (src/verify) is linearizable and
 *    eventual reads saw no phantom value; every acknowledged write is in the converged state of
 *    every replica of its shard; each node holds exactly the replicas placed on it and no data of
 *    other shards; the group commit batched (host writes < readies); the meta shard's map, read on
 *    its leader, is well formed with one id per registered address (meta.ts); and (sharded) routing
 *    converged: every client reaches every shard's leader with at most one forward, and soon
 *    straight away (routing-check.ts).
 *
 * Checked while the run goes on: every 100 ms of simulated time, replicas of a shard at the same
 * applied index must hold identical state, and a message storm ends the run as a liveness failure;
 * with moves, the membership rules are checked every 5 ms (membership-rules.ts) and once more at
 * the end; session reads are checked as they return (workload.ts); a fatal error reported by a live
 * process (onFatal), a failed open or a non-KvError thrown at a client fails the run at once.
 *
 * Any failure names its property; the trace hash makes a replay checkable.
 */
import { SeededRandom, type ShardId } from '../../../src/common/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import { decodeValueRecord, dataKey } from '../../../src/storage/index.ts'
import { letTheRunnerThrough } from '../../support/runner-turn.ts'
import { checkHistory } from '../checkers/linearizable.ts'
import { EventBudgetExceeded, SimClock, Simulator, type TraceSink } from '../simulator.ts'
import { History } from '../workload.ts'
import { HostCluster, describeErr, type GroupCommitStats, type HostCounters } from './cluster.ts'
import type { DiskStats } from './disk.ts'
import { MicrotaskDrain } from './drain.ts'
import { AsyncDriver } from './driver.ts'
import type { NetStats } from './network.ts'
import { MetaWorkload, type MetaStats } from './meta.ts'
import { HostNemesisRunner, planHostNemeses } from './nemesis.ts'
import { describeHostOptions, hostSwarmOptions, type HostSimOverrides } from './options.ts'
import {
  MembershipRules,
  emptyMembershipRuleStats,
  membershipSampleMs,
  type MembershipRuleStats,
} from './membership-rules.ts'
import { MoveNemesis, emptyMoveStats, moveFinishMsMax, type MoveStats } from './moves.ts'
import {
  RebalanceNemesis,
  emptyRebalanceStats,
  planRebalanceEvents,
  rebalanceFinishMsMax,
  type RebalanceStats,
} from './rebalance.ts'
import { checkRoutingConverges } from './routing-check.ts'
import { SdkPath } from './sdk-path.ts'
import type { RoutingStats } from './services.ts'
import { HostClient, finalRead, keyName, type AckedWrite } from './workload.ts'

export interface HostRunInit {
  readonly seed: number
  readonly hasher: Hasher
  readonly overrides?: HostSimOverrides
  readonly sink?: TraceSink
  readonly logLevel?: 'trace' | 'debug' | 'info' | 'warn'
  /** Linearizability search budget per key. */
  readonly checkStepsMaxPerKey?: number
  /** Events the run may execute before it counts as runaway (default: the simulator's). */
  readonly eventsMax?: number
  /** Called every `progressEvery` events (a long run's heartbeat while debugging). */
  readonly onProgress?: (simMs: number, events: number) => void
}

const progressEvery = 10_000
/**
 * Ticks after convergence within which every shard is led by its preferred voter: a few of the
 * host's balancing rounds (30 ticks) and the transfers they start (an election timeout each).
 */
const leadersSettleTicksMax = 200

/**
 * Coverage marks (TigerBeetle `marks.zig`, STYLE.md 7.9): trace lines of rare paths. A run counts
 * how often each appeared; the seed suite asserts that every one was hit by some seed.
 */
export const coverageMarks = {
  snapshotSent: 'snapshot sent',
  snapshotInstalled: 'snapshot installed',
  streamBroke: 'peer stream broke',
  streamReconnected: 'peer stream reconnected',
  powerCutLosingUnsynced: 'loseUnsynced=true',
  stepDownNoQuorum: 'stepped down: no quorum active',
  leaderTransfer: 'leader transfer started',
} as const
export type CoverageMark = keyof typeof coverageMarks

/**
 * Coverage marks of the sharded placement's control plane and routing (the sharded suite asserts
 * them over its seeds): the meta leader's agent marks a silent node dead, an agent's heartbeats
 * fail in a row (the meta leader crashed or was cut off), a shard record changes at run time.
 */
export const shardedMarks = {
  nodeMarkedDead: 'node marked dead: no heartbeat',
  heartbeatsFailing: 'heartbeats to the meta shard failing',
  recordChanged: 'record change: shard',
} as const
export type ShardedMark = keyof typeof shardedMarks

export interface HostRunResult {
  readonly seed: number
  readonly ok: boolean
  readonly failure: { readonly property: string; readonly detail: string } | null
  readonly traceHash: string
  readonly traceLines: number
  readonly optionsLines: readonly string[]
  readonly stats: {
    readonly simMs: number
    readonly events: number
    readonly drains: number
    readonly drainTurnsMax: number
    readonly ops: number
    readonly okOps: number
    readonly failOps: number
    readonly indeterminateOps: number
    readonly eventualReads: number
    readonly acked: number
    readonly crashes: number
    readonly linearizability: string
    readonly host: HostCounters
    readonly groupCommit: GroupCommitStats
    readonly transport: {
      sent: number
      sentBatches: number
      dropped: number
      faultDropped: number
      reconnects: number
    }
    readonly net: NetStats
    readonly disk: DiskStats
    readonly nemesisSteps: number
    /** The meta workload's counters (sharded placement; all zero otherwise). */
    readonly meta: MetaStats
    /** The move nemesis and the membership rules (all zero without moves). */
    readonly moves: MoveStats & { readonly rules: MembershipRuleStats; readonly configChanges: number }
    /** The rebalancing nemesis: events, meta leader crashes, what the jobs counted (all zero without). */
    readonly rebalance: RebalanceStats
    /** What routing did (sharded placement; all zero otherwise). */
    readonly routing: RoutingStats & {
      /** Shard entries the clients replaced from WRONG_SHARD descriptors, and their map loads. */
      readonly descriptorRepairs: number
      readonly mapLoads: number
      /** Shard records the harness changed at run time (acknowledged). */
      readonly recordChanges: number
      /** Rounds of the routing check after healing. */
      readonly probeRounds: number
    }
  }
  readonly marks: Readonly<Record<CoverageMark, number>>
  readonly shardedMarks: Readonly<Record<ShardedMark, number>>
  readonly traceTail: readonly string[]
}

/** How often (simulated) replicas at one applied index are compared while the run goes on. */
const safetyCheckEveryMs = 100
/** Envelopes or events per check interval that count as a storm (healthy runs stay near 3_000). */
const stormPerCheckMax = 30_000
/** Simulated time the cluster has to elect a leader for every shard after boot. */
const electionMsMax = 5_000
/** Simulated time clients have to get one operation through after healing. */
const progressMsMax = 10_000

export async function runHostSeed(init: HostRunInit): Promise<HostRunResult> {
  // Before the run starts (nothing of it exists yet): a test running seeds in a loop must not
  // starve its runner for longer than one run.
  await letTheRunnerThrough()
  const o = hostSwarmOptions(init.seed, init.overrides)
  const marks = Object.fromEntries(Object.keys(coverageMarks).map((k) => [k, 0])) as Record<
    CoverageMark,
    number
  >
  const markEntries = Object.entries(coverageMarks) as [CoverageMark, string][]
  const sharded = Object.fromEntries(Object.keys(shardedMarks).map((k) => [k, 0])) as Record<
    ShardedMark,
    number
  >
  const shardedEntries = Object.entries(shardedMarks) as [ShardedMark, string][]
  const userSink = init.sink
  let moves: MoveNemesis | null = null
  let rebalance: RebalanceNemesis | null = null
  const sim = new Simulator((line) => {
    for (const [mark, text] of markEntries) if (line.includes(text)) marks[mark]++
    for (const [mark, text] of shardedEntries) if (line.includes(text)) sharded[mark]++
    moves?.watch(line)
    rebalance?.watch(line)
    userSink?.(line)
  })
  if (init.eventsMax !== undefined) sim.eventsMax = init.eventsMax
  const onProgress = init.onProgress
  if (onProgress !== undefined)
    sim.afterEachStep(() => {
      if (sim.stepCount % progressEvery === 0) onProgress(sim.nowMs, sim.stepCount)
    })
  const drain = new MicrotaskDrain()
  const driver = new AsyncDriver(sim, drain)
  const random = new SeededRandom(init.seed)
  const optionsLines = describeHostOptions(o)
  for (const line of optionsLines) sim.record(line)
  const history = new History()
  const acked: AckedWrite[] = []
  const clients: HostClient[] = []
  let linearizability = 'skipped'
  let nemesisSteps = 0
  let probeRounds = 0
  let meta: MetaWorkload | null = null
  const cluster = new HostCluster({
    options: o,
    sim,
    driver,
    hasher: init.hasher,
    random: random.fork('cluster'),
    logLevel: init.logLevel ?? 'info',
  })
  const stopped = (): boolean => cluster.failure !== null
  driver.every(safetyCheckEveryMs, () => cluster.checkSameIndexSameState())
  const movesOn = o.moveIntervalMsMean > 0 && cluster.map !== null
  const rebalanceOn = o.rebalance && cluster.map !== null
  const rules = movesOn || rebalanceOn ? new MembershipRules(cluster) : null
  if (rules !== null)
    driver.every(membershipSampleMs, () => {
      rules.sample()
      return Promise.resolve()
    })
  let envelopesBefore = 0
  let eventsBefore = 0
  driver.every(safetyCheckEveryMs, () => {
    // A message storm (the FINDINGS observation after a safety break) is a liveness failure, and
    // stopping it early keeps a bad seed cheap.
    const sent = cluster.net.stats.envelopes - envelopesBefore
    const events = sim.stepCount - eventsBefore
    envelopesBefore = cluster.net.stats.envelopes
    eventsBefore = sim.stepCount
    if (sent > stormPerCheckMax || events > stormPerCheckMax)
      cluster.fail(
        'liveness',
        `message storm: ${sent} envelopes, ${events} events in ${safetyCheckEveryMs} ms`,
      )
    return Promise.resolve()
  })
  drain.install()
  try {
    await cluster.bootAll()
    const elected = await driver.runFor(electionMsMax, () => {
      for (const shardId of cluster.shardIds) if (cluster.leaderOf(shardId) === undefined) return stopped()
      return true
    })
    if (!elected) cluster.fail('liveness', 'no leader for every shard after boot')

    // Safety phase.
    const clientClock = new SimClock(sim, 0, 0)
    const clientRandom = random.fork('clients')
    for (let i = 1; i <= o.clients; i++)
      clients.push(new HostClient(i, cluster, clientClock, clientRandom.fork(`c${i}`), o, history, acked))
    const nemesis = new HostNemesisRunner(cluster, random.fork('nemesis-apply'), clientClock)
    const plan = planHostNemeses(o, random.fork('nemesis'), sim.nowMs)
    nemesisSteps = plan.length
    nemesis.schedule(plan)
    if (o.metaClients > 0) {
      const workload = new MetaWorkload(cluster, clientClock, random.fork('meta'), o)
      meta = workload
      nemesis.beforeMetaLeaderCrash = () => workload.registerNow()
    }
    if (movesOn) {
      moves = new MoveNemesis(cluster, random.fork('moves'), clientClock)
      moves.start(sim.nowMs + o.safetyPhaseMs)
    }
    if (rebalanceOn) {
      rebalance = new RebalanceNemesis(cluster, random.fork('rebalance'), clientClock)
      rebalance.start(
        planRebalanceEvents(
          random.fork('rebalance-events'),
          cluster.map!,
          o.nodes,
          o.joinNodes,
          sim.nowMs,
          o.safetyPhaseMs,
        ),
      )
    }
    for (const c of clients) c.start()
    meta?.start()
    await driver.runFor(o.safetyPhaseMs, stopped)

    // Liveness phase.
    if (!stopped()) {
      nemesis.healAll()
      rebalance?.disarm()
      const okBefore = clients.reduce((s, c) => s + c.okCount, 0)
      const progressed = await driver.runFor(
        progressMsMax,
        () => stopped() || clients.reduce((s, c) => s + c.okCount, 0) > okBefore,
      )
      if (!progressed) cluster.fail('liveness', 'no client operation succeeded after healing')
      await driver.runFor(o.livenessPhaseMs, stopped)
    }
    for (const c of clients) c.stop()
    meta?.stop()
    await driver.runFor(o.deadlineMs * 2, () => clients.every((c) => c.idle) && (meta?.idle ?? true))
    if (meta !== null && !stopped()) {
      const problem = await meta.finish(clientClock, 10_000)
      if (problem !== null) cluster.fail('liveness', problem)
    }
    // Every move ends (done or rolled back), and the records follow the configurations.
    if (moves !== null && !stopped()) {
      const problem = await driver.until(moves.finish(), moveFinishMsMax + 5_000, 'moves finishing')
      if (problem !== null) cluster.fail('moves', problem)
    }
    // Rebalancing settles: nothing runs or is left to run, and the jobs counted what ran.
    if (rebalance !== null && !stopped()) {
      const problem = await driver.until(
        rebalance.finish(),
        rebalanceFinishMsMax + 5_000,
        'rebalancing settling',
      )
      if (problem !== null) cluster.fail('rebalance', problem)
    }

    // Convergence.
    if (!stopped()) {
      let state = await cluster.convergence()
      const until = sim.nowMs + o.convergenceMsMax
      while (!state.converged && sim.nowMs < until && !stopped()) {
        await driver.runFor(50)
        state = await cluster.convergence()
      }
      if (!state.converged) cluster.fail('convergence', state.detail)
      else sim.record(`converged ${state.detail}`)
    }

    // Leaders settle on the voters leader balancing prefers (leader-balance.ts) within a few rounds.
    if (!stopped()) {
      const settled = await driver.runFor(
        leadersSettleTicksMax * o.tickMs,
        () => stopped() || cluster.misled().length === 0,
      )
      if (!settled) cluster.fail('leaders', `not on their preferred voters: ${cluster.misled().join('; ')}`)
    }

    // Routing converged: clients reach the leaders, soon without a forward.
    if (!stopped() && cluster.map !== null) probeRounds = await checkRoutingConverges(cluster, clients)

    // Final reads, then the durability of acknowledged writes.
    if (!stopped()) {
      for (let k = 0; k < o.keys; k++) {
        const key = keyName(k)
        const r = await finalRead(cluster, clientClock, key, 5_000)
        if (r === null) {
          cluster.fail('liveness', `final read of ${key} found no leader answering`)
          break
        }
        history.ops.push({
          kind: 'get',
          clientId: 'final',
          key,
          input: {},
          output: r.value === null ? { value: null } : { value: r.value, version: r.version },
          callMs: r.callMs,
          returnMs: r.returnMs,
          outcome: 'ok',
        })
      }
    }
    if (!stopped()) rules?.finish()
    if (!stopped()) await checkAcked(cluster, history, acked)
    if (!stopped()) await cluster.checkPlacement()
    if (meta !== null && !stopped()) await meta.checkFinal(clientClock, 5_000)
    if (!stopped()) {
      const c = cluster.hostCounters()
      if (!(c.writes < c.readies))
        cluster.fail('group-commit', `no batching: ${c.writes} engine writes for ${c.readies} readies`)
    }
  } catch (err) {
    if (err instanceof EventBudgetExceeded) cluster.fail('liveness', `runaway: ${err.message}`)
    else cluster.fail('crash', `${describeErr(err)}\n${err instanceof Error ? (err.stack ?? '') : ''}`)
  } finally {
    for (const c of clients) c.stop()
    meta?.stop()
    try {
      await cluster.shutdown()
    } finally {
      drain.uninstall()
    }
  }
  // The history is checked even when the run stopped early: what completed must be linearizable.
  const verdict = checkHistory(history, init.checkStepsMaxPerKey ?? 1_000_000)
  linearizability = verdict.result
  sim.record(`linearizability ${verdict.result} steps=${verdict.steps}`)
  if (!verdict.ok) {
    const also =
      cluster.failure === null ? '' : `\n(also ${cluster.failure.property}: ${cluster.failure.detail})`
    cluster.failure = null
    cluster.fail(verdict.result === 'phantom' ? 'phantom-read' : 'linearizability', verdict.detail + also)
  }
  const counts = history.counts()
  const failure = cluster.failure
  return {
    seed: init.seed,
    ok: failure === null,
    failure,
    traceHash: sim.trace.hex(),
    traceLines: sim.trace.lines,
    optionsLines,
    stats: {
      simMs: Math.round(sim.nowMs),
      events: sim.stepCount,
      drains: drain.drains,
      drainTurnsMax: drain.turnsMaxSeen,
      ops: history.ops.length,
      okOps: counts.ok,
      failOps: counts.fail,
      indeterminateOps: counts.indeterminate,
      eventualReads: history.eventual.length,
      acked: acked.length,
      crashes: cluster.slots.reduce((s, x) => s + x.crashes, 0),
      linearizability,
      host: cluster.hostCounters(),
      groupCommit: { ...cluster.groupCommit },
      transport: cluster.transportCounters(),
      net: { ...cluster.net.stats },
      disk: cluster.diskCounters(),
      nemesisSteps,
      meta: meta === null ? emptyMetaStats() : { ...meta.stats },
      moves: {
        ...(moves === null ? emptyMoveStats() : structuredClone(moves.stats)),
        rules: rules === null ? emptyMembershipRuleStats() : { ...rules.stats },
        configChanges: cluster.configs.changes,
      },
      rebalance: rebalance === null ? emptyRebalanceStats() : structuredClone(rebalance.stats),
      routing: {
        ...cluster.routingStats,
        descriptorRepairs: clients.reduce(
          (n, c) => n + (c.path instanceof SdkPath ? c.path.routing.descriptorRepairs : 0),
          0,
        ),
        mapLoads: clients.reduce((n, c) => n + (c.path instanceof SdkPath ? c.path.routing.refreshes : 0), 0),
        recordChanges: cluster.recordChanges,
        probeRounds,
      },
    },
    marks,
    shardedMarks: sharded,
    traceTail: sim.traceTail(),
  }
}

/**
 * Every acknowledged write survived: each replica applied at least every acknowledged index of its
 * shard, and each key's converged state is at least as new as its newest acknowledged put (same
 * value at that version, or a newer version, or absent only if a delete may have come after it).
 */
async function checkAcked(
  cluster: HostCluster,
  history: History,
  acked: readonly AckedWrite[],
): Promise<void> {
  const maxIndex = new Map<number, number>()
  const newestPut = new Map<string, AckedWrite>()
  for (const w of acked) {
    maxIndex.set(w.shardId, Math.max(maxIndex.get(w.shardId) ?? 0, w.appliedIndex))
    if (w.version === null) continue
    const prev = newestPut.get(w.key)
    if (prev === undefined || (prev.version ?? 0) < w.version) newestPut.set(w.key, w)
  }
  for (const s of cluster.taking) {
    const host = s.host
    if (host === undefined) return cluster.fail('acked-writes', `node ${s.id} is down at the end`)
    for (const [shard, index] of maxIndex) {
      const shardId = shard as ShardId
      if (!cluster.holds(s.id, shardId)) continue
      const applied = cluster.viewOf(host, shardId)?.appliedIndex ?? 0
      if (applied < index)
        return cluster.fail(
          'acked-writes',
          `node ${s.id} shard ${shard} applied ${applied} < acknowledged index ${index}`,
        )
    }
  }
  const enc = new TextEncoder()
  const dec = new TextDecoder()
  for (const [key, w] of newestPut) {
    const keyBytes = enc.encode(key)
    const storageKey = dataKey(cluster.hasher.hash64(keyBytes), keyBytes)
    for (const s of cluster.slotsOf(w.shardId)) {
      const raw = await s.memory.get(storageKey)
      const version = w.version ?? 0
      if (raw === null) {
        // Absent: some delete of the key may have applied after the put.
        const deleteAfter = history.ops.some(
          (op) =>
            op.key === key &&
            op.kind === 'delete' &&
            op.outcome !== 'fail' &&
            (op.outcome === 'indeterminate' || op.returnMs >= w.callMs),
        )
        if (!deleteAfter)
          return cluster.fail(
            'acked-writes',
            `node ${s.id}: ${key} is absent, but put v${version} was acknowledged`,
          )
        continue
      }
      const rec = decodeValueRecord(raw)
      if (rec.version < version)
        return cluster.fail(
          'acked-writes',
          `node ${s.id}: ${key} is at v${rec.version}, older than acknowledged v${version}`,
        )
      if (rec.version === version && dec.decode(rec.value) !== w.value)
        return cluster.fail(
          'acked-writes',
          `node ${s.id}: ${key}@v${version} holds another value than acknowledged`,
        )
    }
  }
}

function emptyMetaStats(): MetaStats {
  return {
    ok: 0,
    failed: 0,
    bootstraps: 0,
    registers: 0,
    registersAfterUnknown: 0,
    heartbeats: 0,
    reads: 0,
    markDeads: 0,
  }
}

/** One line per seed for the test logs. */
export function describeHostResult(r: HostRunResult): string {
  const s = r.stats
  const g = s.groupCommit
  return (
    `${r.ok ? 'ok  ' : 'FAIL'} seed=0x${r.seed.toString(16)} trace=${r.traceHash} simMs=${s.simMs} events=${s.events} ` +
    `turnsMax=${s.drainTurnsMax} ops=${s.ops} (ok=${s.okOps} fail=${s.failOps} indet=${s.indeterminateOps}) eventual=${s.eventualReads} ` +
    `crashes=${s.crashes} lin=${s.linearizability} readies=${s.host.readies} writes=${s.host.writes} ` +
    `multiShard=${g.multiShardBatches} multiEntry=${g.multiEntryBatches} entriesMax=${g.entriesPerBatchMax} ` +
    `envelopes=${s.transport.sent}/${s.transport.sentBatches} snapshots=${s.net.snapshotsDelivered}` +
    (r.optionsLines.some((l) => l.includes('placement=sharded'))
      ? ` meta=${s.meta.ok} (boot=${s.meta.bootstraps} reg=${s.meta.registers} afterUnknown=${s.meta.registersAfterUnknown} hb=${s.meta.heartbeats} reads=${s.meta.reads} dead=${s.meta.markDeads} fail=${s.meta.failed})` +
        ` routing=${s.routing.sent} (direct=${s.routing.direct} fwd1=${s.routing.forwardedOnce} fwd2=${s.routing.forwardedTwice} wrongShard=${s.routing.wrongShard} repairs=${s.routing.descriptorRepairs} loads=${s.routing.mapLoads} records=${s.routing.recordChanges} refused=${s.routing.refused} lost=${s.routing.lost} rounds=${s.routing.probeRounds})`
      : '') +
    (r.failure === null ? '' : ` ${r.failure.property}: ${r.failure.detail.split('\n')[0] ?? ''}`)
  )
}

/** Everything a failing seed's assertion message shows: the line, the options, the failure, how to replay, the trace tail. */
export function reportHostResult(r: HostRunResult, replayLine: string): string {
  return [
    describeHostResult(r),
    ...r.optionsLines,
    r.failure?.detail ?? '',
    replayLine,
    '--- trace tail ---',
    ...r.traceTail.slice(-60),
  ].join('\n')
}
