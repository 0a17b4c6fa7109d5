/**
 * One chaos run: the workload (workload.ts) against a ChaosCluster while a nemesis schedule runs,
 * then every fault healed, the time until every key serves a majority write and a linearizable
 * read again (recovery), final linearizable reads, the time until every replica holds the final
 * version of every key (convergence), and the checkers (checks.ts).
 *
 * The history (every call, the schedule and what the nemesis did) is written to
 * `<dir>/<name>.history.json` on every run; `describeFailure` names it with the seed and the
 * schedule, which is what a failing test prints.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { KvClient } from '../../src/client/index.ts'
import { injectFault } from '../../src/client/admin-fault.ts'
import { Consistency } from '../../src/gen/ringkv/v1/kv.ts'
import { kv, kvClient } from '../integration/helpers/grpc.ts'
import {
  checkBounded,
  checkLinearizable,
  checkNoAckedWriteLost,
  checkReceipts,
  checkSessions,
} from './checks.ts'
import { sleep, type ChaosCluster } from './cluster.ts'
import { excuseKnown } from './known.ts'
import {
  describeFault,
  describeSchedule,
  runSchedule,
  type FaultWindow,
  type NemesisLog,
  type Schedule,
} from './nemesis.ts'
import { recordedGet, recordedPut, startWorkload, type ChaosOp } from './workload.ts'

export interface RunOptions {
  readonly name: string
  readonly seed: number
  readonly schedule: Schedule
  /** How long the workload runs (at least until the schedule's last heal). */
  readonly durationMs: number
  readonly keys: number
  readonly workers?: number
  /** Where the history file goes. */
  readonly dir: string
  /** Recovery and convergence must happen within this; default 60 s. */
  readonly settleMsMax?: number
  /**
   * One more checker, after convergence (membership.ts settledProblems: every shard back at the
   * replication factor on the members, the job ended): its problems, and how long it waited.
   */
  readonly settle?: (
    cluster: ChaosCluster,
    msMax: number,
  ) => Promise<{ problems: string[]; settledMs: number }>
  /**
   * Report write recovery under isolate and cut faults (`partitionRecoveries`). Meaningful only
   * when every key is written often (few keys, many workers): with sparse writes one failed try
   * and no other reads as a stall.
   */
  readonly partitionRecovery?: boolean
}

export interface RunResult {
  readonly name: string
  readonly seed: number
  readonly ok: number
  readonly fail: number
  readonly unknown: number
  readonly problems: readonly string[]
  /** Violations a known, reported finding explains (known.ts): printed, not failing the run. */
  readonly known: readonly string[]
  /** Linearizability verdict: ok, unknown (search budget ran out) or violation. */
  readonly linearizable: string
  /** From the last heal to every key serving a write and a linearizable read. */
  readonly recoveryMs: number
  /** From the final reads to every replica holding every key's final version. */
  readonly convergenceMs: number
  /** From convergence to the `settle` checker's verdict (NaN without one). */
  readonly settledMs: number
  /** Per isolate or cut fault: how long until every key took a majority write again (`partitionRecoveries`). */
  readonly partitionRecoveries: readonly PartitionRecovery[]
  readonly historyPath: string
  readonly schedule: Schedule
  readonly nemesis: NemesisLog
}

const callDeadlineMs = 2_000
const boundedMs = 1_000

export async function runChaos(cluster: ChaosCluster, options: RunOptions): Promise<RunResult> {
  const keys = Array.from({ length: options.keys }, (_, i) => `chaos/${options.name}/k${i}`)
  const settleMsMax = options.settleMsMax ?? 60_000
  const client = new KvClient({ endpoints: cluster.endpoints, deadlineMs: callDeadlineMs })
  const nemesis: NemesisLog = { lines: [], errors: [], windows: [] }
  const historyPath = join(options.dir, `${options.name}.history.json`)
  const problems: string[] = []
  const known: string[] = []
  let ops: ChaosOp[] = []
  let recoveryMs = Number.NaN
  let convergenceMs = Number.NaN
  let settledMs = Number.NaN
  let linearizable = 'not checked'
  try {
    const workload = startWorkload(client, {
      seed: options.seed,
      keys,
      workers: options.workers ?? 4,
      deadlineMs: callDeadlineMs,
      boundedMs,
    })
    ops = workload.ops
    const started = performance.now()
    await runSchedule(cluster, options.schedule, nemesis)
    await sleep(Math.max(0, started + options.durationMs - performance.now()))
    await workload.stop()
    await healAll(cluster, nemesis)
    const healedMs = performance.now()

    // Recovery: a majority write and a linearizable read of every key (both part of the history).
    for (const key of keys) {
      for (let i = 0; ; i++) {
        if (performance.now() - healedMs > settleMsMax) {
          problems.push(
            `key ${key}: no majority write and linearizable read within ${settleMsMax} ms of healing`,
          )
          break
        }
        const put = await recordedPut(ops, client, 'probe', key, `probe-${i}`, 'majority', callDeadlineMs)
        if (put.outcome !== 'ok') continue
        const get = await recordedGet(ops, client, 'probe', key, 'linearizable', callDeadlineMs)
        if (get.outcome === 'ok') break
      }
    }
    recoveryMs = performance.now() - healedMs

    // Final reads, then convergence: every node serves the final version of every key itself.
    const finals = new Map<string, ChaosOp>()
    for (const key of keys) {
      const get = await recordedGet(ops, client, 'final', key, 'linearizable', 10_000)
      finals.set(key, get)
    }
    const convergedAt = performance.now()
    const pending = await converge(cluster, finals, settleMsMax)
    convergenceMs = performance.now() - convergedAt
    problems.push(...pending)
    if (options.settle !== undefined) {
      const settled = await options.settle(cluster, settleMsMax)
      settledMs = settled.settledMs
      problems.push(...settled.problems)
    }

    // A fault that was not applied (or not healed) leaves the run without the evidence it is for.
    problems.push(...nemesis.errors.map((e) => `nemesis: ${e}`))
    const lin = checkLinearizable(ops)
    linearizable = lin.result
    problems.push(...lin.problems)
    problems.push(...checkNoAckedWriteLost(ops, finals))
    problems.push(...checkSessions(ops))
    const bounded = checkBounded(ops, excuseKnown(nemesis.windows, cluster.nodes.length))
    problems.push(...bounded.problems)
    known.push(...bounded.known)
    problems.push(...checkReceipts(ops))
  } finally {
    client.close()
    writeFileSync(
      historyPath,
      JSON.stringify(
        { name: options.name, seed: options.seed, schedule: options.schedule, nemesis, problems, known, ops },
        null,
        1,
      ),
    )
  }
  const count = (outcome: ChaosOp['outcome']): number => ops.filter((op) => op.outcome === outcome).length
  return {
    name: options.name,
    seed: options.seed,
    ok: count('ok'),
    fail: count('fail'),
    unknown: count('indeterminate'),
    problems,
    known,
    linearizable,
    recoveryMs,
    convergenceMs,
    settledMs,
    partitionRecoveries: options.partitionRecovery === true ? partitionRecoveries(ops, nemesis.windows) : [],
    historyPath,
    schedule: options.schedule,
    nemesis,
  }
}

/** Makes sure nothing is left broken: every node running and unpaused, no rule, no fault, true clocks. */
async function healAll(cluster: ChaosCluster, log: NemesisLog): Promise<void> {
  for (const node of cluster.nodes) {
    try {
      if (!(await cluster.running(node))) {
        log.lines.push(`final heal: node ${node.id} was down, starting it`)
        await cluster.startNode(node)
      }
      await cluster.unpause(node).catch(() => undefined)
      await cluster.flushRules(node)
      await injectFault(node.address, { clear: true }).catch(() => undefined)
      if (cluster.options.clock === true) cluster.skewClock(node, '+0')
    } catch (err) {
      log.errors.push(`final heal of node ${node.id}: ${String(err)}`)
    }
  }
}

async function converge(
  cluster: ChaosCluster,
  finals: ReadonlyMap<string, ChaosOp>,
  msMax: number,
): Promise<string[]> {
  const started = performance.now()
  const clients = cluster.nodes.map((node) => kvClient(node.address))
  let behind: string[] = []
  try {
    do {
      behind = []
      for (const [i, node] of cluster.nodes.entries()) {
        const raw = kv(clients[i]!, callDeadlineMs)
        for (const [key, final] of finals) {
          if (final.outcome !== 'ok') continue
          try {
            const got = await raw.get({
              key: Buffer.from(key),
              options: {
                consistency: Consistency.CONSISTENCY_EVENTUAL,
                maxStalenessMs: 0,
                session: undefined,
                route: undefined,
              },
            })
            // Served elsewhere (the node holds no replica of the key's shard): nothing to compare.
            if (got.receipt?.nodeId !== node.id) continue
            if (got.version !== final.version)
              behind.push(`node ${node.id} key ${key}: v${got.version}, final v${final.version}`)
          } catch (err) {
            behind.push(`node ${node.id} key ${key}: ${String(err)}`)
          }
        }
      }
      if (behind.length === 0) return []
      await sleep(200)
    } while (performance.now() - started < msMax)
  } finally {
    for (const c of clients) c.close()
  }
  return [`no convergence within ${msMax} ms:`, ...behind.slice(0, 10)]
}

export interface PartitionRecovery {
  readonly fault: string
  /** How long the fault was in force. */
  readonly forMs: number
  /**
   * From the fault's start until every key had taken a majority or all write issued after it (the
   * shards the cut-off node led need a new leader); undefined when some key took none while the
   * fault was in force (its writes stalled for the whole partition).
   */
  readonly recoveryMs: number | undefined
}

/**
 * Write recovery under each isolate or cut fault, from the history (see PartitionRecovery). Only
 * keys the workload tried to write while the fault was in force count: a key it left alone shows
 * nothing either way.
 */
export function partitionRecoveries(
  ops: readonly ChaosOp[],
  windows: readonly FaultWindow[],
): PartitionRecovery[] {
  const keys = [...new Set(ops.map((op) => op.key))]
  return windows
    .filter((w) => w.fault.kind === 'isolate' || w.fault.kind === 'cut')
    .map((w) => {
      let recoveryMs: number | undefined = 0
      for (const key of keys) {
        const writes = ops.filter(
          (op) =>
            op.key === key &&
            op.kind === 'put' &&
            (op.level === 'majority' || op.level === 'all') &&
            op.callMs >= w.fromMs &&
            op.callMs <= w.toMs,
        )
        if (writes.length === 0) continue
        const first = writes
          .filter((op) => op.outcome === 'ok' && op.returnMs <= w.toMs)
          .reduce((min, op) => Math.min(min, op.returnMs), Number.POSITIVE_INFINITY)
        if (first === Number.POSITIVE_INFINITY) {
          recoveryMs = undefined
          break
        }
        recoveryMs = Math.max(recoveryMs, first - w.fromMs)
      }
      return { fault: describeFault(w.fault), forMs: w.toMs - w.fromMs, recoveryMs }
    })
}

export function describeFailure(result: RunResult): string {
  return [
    `chaos run '${result.name}' failed (seed ${result.seed}); history: ${result.historyPath}`,
    describeSchedule(result.schedule),
    'nemesis:',
    ...result.nemesis.lines.map((l) => `  ${l}`),
    ...result.nemesis.errors.map((l) => `  ERROR ${l}`),
    'problems:',
    ...result.problems.slice(0, 20).map((p) => `  ${p}`),
  ].join('\n')
}

/** One table row: name | seed | ok/fail/unknown | violations | recovery | convergence. */
export function describeRow(result: RunResult): string {
  return [
    result.name,
    `seed ${result.seed}`,
    `ops ${result.ok}/${result.fail}/${result.unknown}`,
    `violations ${result.problems.length}`,
    `known ${result.known.length}`,
    `linearizable ${result.linearizable}`,
    `recovery ${Math.round(result.recoveryMs)} ms`,
    `convergence ${Math.round(result.convergenceMs)} ms`,
    ...(Number.isNaN(result.settledMs) ? [] : [`settled ${Math.round(result.settledMs)} ms`]),
    ...(result.partitionRecoveries.length === 0
      ? []
      : [
          `writes back under isolation ${result.partitionRecoveries
            .map(
              (r) =>
                `${r.recoveryMs === undefined ? 'stalled' : `${(r.recoveryMs / 1000).toFixed(1)} s`} of ${(r.forMs / 1000).toFixed(1)} s`,
            )
            .join(', ')}`,
        ]),
  ].join(' | ')
}
