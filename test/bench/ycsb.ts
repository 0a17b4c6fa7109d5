/**
 * `npm run bench -- ycsb [--workload A|B|C|F[,..]] [--records N] [--value-bytes B] [--threads T]
 *                        [--seconds S] [--runs R] [--nodes N] [--shards N] [--seed S]
 *                        [--etcd PATH | --no-etcd]`
 *
 * The core workloads of YCSB (Cooper et al., SoCC 2010) that a key-value store without scans
 * runs, against ringkv and against etcd in the same run:
 *   A  update heavy      50% read, 50% update
 *   B  read mostly       95% read,  5% update
 *   C  read only        100% read
 *   F  read-modify-write 50% read, 50% read-modify-write (a read, then a write of the same key)
 * Keys are chosen by YCSB's scrambled zipfian (constant 0.99) over `--records` records (YCSB's
 * default 1,000), loaded first; values are `--value-bytes` (YCSB's default record: 10 fields of
 * 100 bytes = 1,000). Reads are linearizable on both (etcd's default range is a ReadIndex read),
 * updates majority writes (an etcd put is a quorum commit). `--threads` closed-loop workers (default
 * 64) for `--seconds` per workload. ringkv runs twice on the same cluster, as in the cluster bench:
 * one RPC per operation (the SDK's batching off, as the etcd3 client sends them) and with the SDK's
 * default batching. Each figure is the median of `--runs` runs on fresh clusters, the systems
 * taking turns to go first. Per operation type: p50 and p99 latency; per system: throughput, the
 * ratios to etcd, and CPU microseconds per operation of the client and of each node or member.
 * A measurement, not a test: it asserts nothing about time.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Etcd3 } from 'etcd3'
import { KvClient } from '../../src/client/index.ts'
import { limits } from '../../src/common/limits.ts'
import { SeededRandom, type Random } from '../../src/common/random.ts'
import { startCluster } from '../integration/helpers/cluster.ts'
import { settleLeaders } from './cluster.ts'
import { metricsMeter, microsPerOp, readMeters, selfMeter, type CpuMeter } from './cpu.ts'
import { etcdToRun, startEtcd } from './etcd.ts'
import { median as medianOf, quantile } from './stats.ts'
import { ScrambledZipfian } from './zipfian.ts'

type OpType = 'read' | 'update' | 'rmw'
type WorkloadName = 'A' | 'B' | 'C' | 'F'

interface Workload {
  readonly name: WorkloadName
  readonly title: string
  /** Share of each operation type, in percent (they add up to 100). */
  readonly mix: Readonly<Partial<Record<OpType, number>>>
}

const workloads: Readonly<Record<WorkloadName, Workload>> = {
  A: { name: 'A', title: 'update heavy: 50% read, 50% update', mix: { read: 50, update: 50 } },
  B: { name: 'B', title: 'read mostly: 95% read, 5% update', mix: { read: 95, update: 5 } },
  C: { name: 'C', title: 'read only: 100% read', mix: { read: 100 } },
  F: { name: 'F', title: 'read-modify-write: 50% read, 50% read-modify-write', mix: { read: 50, rmw: 50 } },
}
const opTypes: readonly OpType[] = ['read', 'update', 'rmw']

interface Args {
  readonly workloads: readonly Workload[]
  readonly records: number
  readonly valueBytes: number
  readonly threads: number
  readonly seconds: number
  readonly runs: number
  readonly nodes: number
  readonly shards: number
  readonly seed: number
  readonly etcd: string | false | undefined
}

const usage =
  'usage: npm run bench -- ycsb [--workload A|B|C|F[,..]] [--records N] [--value-bytes B] [--threads T] ' +
  '[--seconds S] [--runs R] [--nodes N] [--shards N] [--seed S] [--etcd PATH | --no-etcd]'

function parseArgs(argv: readonly string[]): Args {
  const out = {
    workloads: [workloads.A, workloads.B, workloads.C, workloads.F] as Workload[],
    records: 1000,
    valueBytes: 1000,
    threads: 64,
    seconds: 5,
    runs: 3,
    nodes: 3,
    shards: 8,
    seed: 1,
    etcd: undefined as string | false | undefined,
  }
  const int = (flag: string, text: string | undefined, min: number): number => {
    const n = Number(text)
    if (text === undefined || !Number.isSafeInteger(n) || n < min)
      throw new Error(`${flag} needs an integer >= ${min}\n${usage}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = (): string | undefined => argv[++i]
    switch (flag) {
      case '--workload': {
        const names = (value() ?? '').toUpperCase().split(',')
        out.workloads = names.map((n) => {
          const w = workloads[n as WorkloadName] as Workload | undefined
          if (w === undefined)
            throw new Error(`unknown workload ${JSON.stringify(n)} (A, B, C or F)\n${usage}`)
          return w
        })
        break
      }
      case '--records':
        out.records = int(flag, value(), 2)
        break
      case '--value-bytes':
        out.valueBytes = int(flag, value(), 1)
        break
      case '--threads':
        out.threads = int(flag, value(), 1)
        break
      case '--seconds':
        out.seconds = int(flag, value(), 1)
        break
      case '--runs':
        out.runs = int(flag, value(), 1)
        break
      case '--nodes':
        out.nodes = int(flag, value(), 1)
        break
      case '--shards':
        out.shards = int(flag, value(), 1)
        break
      case '--seed':
        out.seed = int(flag, value(), 0)
        break
      case '--etcd':
        out.etcd = value() ?? ''
        break
      case '--no-etcd':
        out.etcd = false
        break
      default:
        throw new Error(`unknown argument ${JSON.stringify(flag)}\n${usage}`)
    }
  }
  return out
}

/** The system under test, through one client. */
interface Store {
  read(key: string): Promise<void>
  update(key: string, value: Uint8Array): Promise<void>
  readonly meters: readonly CpuMeter[]
  close(): void
}

/** YCSB's key of record `i`. */
function recordKey(i: number): string {
  return `user${String(i).padStart(10, '0')}`
}

interface WorkloadResult {
  readonly opsPerSec: number
  /** Latency quantiles per operation type that ran (ms). */
  readonly p50: Partial<Record<OpType, number>>
  readonly p99: Partial<Record<OpType, number>>
  readonly errors: number
  readonly firstError: string | undefined
  readonly cpuUsPerOp: readonly number[]
}

/** The median of the finite values (a run where an operation type had no sample gives NaN). */
function median(xs: readonly number[]): number {
  return medianOf(xs.filter((x) => Number.isFinite(x)))
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

/** Loads every record (64 at a time), as YCSB's load phase does. */
async function load(store: Store, args: Args): Promise<void> {
  const value = new Uint8Array(args.valueBytes).fill(0x61)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < args.records) await store.update(recordKey(next++), value)
  }
  await Promise.all(Array.from({ length: 64 }, worker))
}

/** Runs one workload for `args.seconds` with `args.threads` closed-loop workers. */
async function runWorkload(
  store: Store,
  workload: Workload,
  args: Args,
  random: Random,
): Promise<WorkloadResult> {
  const chooser = new ScrambledZipfian(args.records, random.fork('keys'))
  const picker = random.fork('ops')
  const thresholds: Array<[OpType, number]> = []
  let sum = 0
  for (const t of opTypes) {
    const share = workload.mix[t] ?? 0
    if (share > 0) thresholds.push([t, (sum += share)])
  }
  const pickOp = (): OpType => {
    const r = picker.int(100)
    return thresholds.find(([, upTo]) => r < upTo)![0]
  }
  const value = new Uint8Array(args.valueBytes).fill(0x62)
  const latencies = new Map<OpType, number[]>(thresholds.map(([t]) => [t, []]))
  let errors = 0
  let firstError: string | undefined
  const cpuBefore = await readMeters(store.meters)
  const start = performance.now()
  const stopAt = start + args.seconds * 1000
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const op = pickOp()
      const key = recordKey(chooser.next())
      const t = performance.now()
      try {
        if (op === 'read') await store.read(key)
        else if (op === 'update') await store.update(key, value)
        else {
          await store.read(key)
          await store.update(key, value)
        }
        latencies.get(op)!.push(performance.now() - t)
      } catch (err) {
        errors++
        firstError ??= errorText(err)
        await sleep(10)
      }
    }
  }
  await Promise.all(Array.from({ length: args.threads }, worker))
  const elapsedS = (performance.now() - start) / 1000
  const cpuAfter = await readMeters(store.meters)
  let ops = 0
  const p50: Partial<Record<OpType, number>> = {}
  const p99: Partial<Record<OpType, number>> = {}
  for (const [t, list] of latencies) {
    list.sort((a, b) => a - b)
    ops += list.length
    p50[t] = quantile(list, 0.5)
    p99[t] = quantile(list, 0.99)
  }
  return {
    opsPerSec: ops / elapsedS,
    p50,
    p99,
    errors,
    firstError,
    cpuUsPerOp: microsPerOp(cpuBefore, cpuAfter, ops),
  }
}

type System = 'ringkv' | 'ringkv batched' | 'etcd'

/** One run of every workload on fresh clusters: results by system, then by workload. */
async function oneRun(
  args: Args,
  root: string,
  round: number,
  etcdBin: string | undefined,
): Promise<Map<System, Map<WorkloadName, WorkloadResult>>> {
  const out = new Map<System, Map<WorkloadName, WorkloadResult>>()
  const random = new SeededRandom(args.seed + round)
  const measure = async (system: System, store: Store): Promise<void> => {
    await load(store, args)
    const results = new Map<WorkloadName, WorkloadResult>()
    for (const w of args.workloads)
      results.set(w.name, await runWorkload(store, w, args, random.fork(`${system}-${w.name}`)))
    out.set(system, results)
  }
  const ringkv = async (): Promise<void> => {
    const cluster = await startCluster({
      nodes: args.nodes,
      shards: args.shards,
      logLevel: 'warn',
      parentDir: root,
    })
    try {
      const layout = await settleLeaders(cluster.endpoints, {})
      if (round === 0) console.log(`ringkv layout (run 1): ${layout}`)
      const meters = [selfMeter(), ...cluster.nodes.map((n) => metricsMeter(`node ${n.nodeId}`, n.http))]
      // The two modes take turns to go first; each loads the same records (overwrites, after the first).
      for (const batching of round % 2 === 0 ? [false, true] : [true, false]) {
        const client = new KvClient({ endpoints: cluster.endpoints, batching: { enabled: batching } })
        await client.status().catch(() => undefined)
        try {
          await measure(batching ? 'ringkv batched' : 'ringkv', {
            read: async (k) => {
              await client.get(k, { consistency: 'linearizable' })
            },
            update: async (k, v) => {
              await client.put(k, v)
            },
            meters,
            close: () => client.close(),
          })
        } finally {
          client.close()
        }
      }
      const crashed = await cluster.stop()
      if (crashed.length > 0)
        throw new Error(`ringkv node ${crashed.join(', ')} exited on its own during the run`)
    } catch (err) {
      await cluster.stop({ keepDir: true })
      console.error(`ringkv logs kept in ${cluster.dir}:\n${cluster.describeLogs()}`)
      throw err
    }
  }
  const etcd = async (bin: string): Promise<void> => {
    const dir = join(root, `etcd-${round}`)
    const members = await startEtcd(bin, args.nodes, dir)
    const { Etcd3: Client } = await import('etcd3')
    const deadlineMs = limits.requestDeadlineMsDefault
    const client: Etcd3 = new Client({
      hosts: members.endpoints.map((e) => `http://${e}`),
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + deadlineMs }),
    })
    try {
      await measure('etcd', {
        read: async (k) => {
          await client.get(k).buffer()
        },
        update: async (k, v) => {
          await client.put(k).value(Buffer.from(v.buffer, v.byteOffset, v.byteLength))
        },
        meters: [selfMeter(), ...members.meters],
        close: () => client.close(),
      })
    } finally {
      client.close()
      const died = await members.stop()
      if (died.length > 0) console.error(`etcd member ${died.join(', ')} exited on its own; logs in ${dir}`)
      else rmSync(dir, { recursive: true, force: true })
    }
  }
  const order = round % 2 === 0 ? ['ringkv', 'etcd'] : ['etcd', 'ringkv']
  for (const system of order) {
    if (system === 'ringkv') await ringkv()
    else if (etcdBin !== undefined) await etcd(etcdBin)
  }
  return out
}

function fmt(n: number | undefined, digits: number): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits)
}

function report(args: Args, runs: ReadonlyArray<Map<System, Map<WorkloadName, WorkloadResult>>>): void {
  const systems: System[] = ['ringkv', 'ringkv batched', 'etcd']
  for (const w of args.workloads) {
    const types = opTypes.filter((t) => (w.mix[t] ?? 0) > 0)
    console.log(`\nworkload ${w.name} (${w.title})`)
    const head = [
      'system'.padEnd(16),
      'ops/s'.padStart(9),
      ...types.flatMap((t) => [`${t} p50`.padStart(11), `${t} p99`.padStart(11)]),
    ]
    console.log(head.join(' '))
    const rates = new Map<System, number>()
    for (const system of systems) {
      const results = runs.map((r) => r.get(system)?.get(w.name)).filter((r) => r !== undefined)
      if (results.length === 0) continue
      const rate = median(results.map((r) => r.opsPerSec))
      rates.set(system, rate)
      const cellsOf = types.flatMap((t) => [
        `${fmt(median(results.map((r) => r.p50[t] ?? NaN)), 2)} ms`.padStart(11),
        `${fmt(median(results.map((r) => r.p99[t] ?? NaN)), 2)} ms`.padStart(11),
      ])
      const errors = results.reduce((a, r) => a + r.errors, 0)
      const note =
        errors > 0 ? `  (${errors} errors; first: ${results.find((r) => r.firstError)?.firstError})` : ''
      console.log([system.padEnd(16), fmt(rate, 0).padStart(9), ...cellsOf].join(' ') + note)
      const cpu = results[0]!.cpuUsPerOp.map((_, i) => median(results.map((r) => r.cpuUsPerOp[i] ?? NaN)))
      const names =
        system === 'etcd'
          ? ['client', ...Array.from({ length: args.nodes }, (_, i) => `e${i + 1}`)]
          : ['client', ...Array.from({ length: args.nodes }, (_, i) => `node ${i + 1}`)]
      const servers = cpu.slice(1).reduce((a, b) => a + b, 0)
      console.log(
        `${''.padEnd(16)} CPU µs/op: ${cpu.map((c, i) => `${names[i] ?? i} ${fmt(c, 0)}`).join(', ')}; servers together ${fmt(servers, 0)}`,
      )
    }
    const etcd = rates.get('etcd')
    if (etcd !== undefined && etcd > 0)
      console.log(
        `${'ratio to etcd'.padEnd(16)} ringkv ${fmt((rates.get('ringkv') ?? NaN) / etcd, 2)}x, ringkv batched ${fmt((rates.get('ringkv batched') ?? NaN) / etcd, 2)}x`,
      )
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv)
  const { bin: etcdBin, line: etcdLine } = etcdToRun(args.etcd, args.nodes)
  const before = loadavg()
  console.log(
    `ycsb: workloads ${args.workloads.map((w) => w.name).join(',')}, ${args.records} records of ${args.valueBytes} bytes, ` +
      `scrambled zipfian (0.99), ${args.threads} threads, ${args.seconds} s per workload, ${args.runs} run(s); ` +
      `ringkv ${args.nodes} nodes, ${args.shards} shards; ${cpus().length} cores, load average ${before.map((l) => l.toFixed(2)).join(' ')}`,
  )
  console.log(etcdLine)
  const root = mkdtempSync(join(tmpdir(), 'ringkv-ycsb-'))
  const runs: Array<Map<System, Map<WorkloadName, WorkloadResult>>> = []
  try {
    for (let round = 0; round < args.runs; round++) {
      runs.push(await oneRun(args, root, round, etcdBin))
      process.stderr.write(`run ${round + 1}/${args.runs} done\n`)
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
  report(args, runs)
  console.log(
    `\nload average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  )
}
