/**
 * `npm run bench -- cluster [--seconds S] [--runs R] [--nodes N] [--shards N] [--kvd-arg ARG]...
 *                           [--etcd PATH | --no-etcd] [--etcd-members N] [--tls]`
 *
 * A local ringkv cluster (N kvd processes on loopback, default 3 nodes and 8 shards, started by
 * test/integration/helpers/cluster.ts) driven by the SDK, against etcd measured in the same run:
 * an etcd cluster of the same size on loopback (temporary data dirs, free ports), driven by the
 * `etcd3` npm client. Same workload on both: 16-byte keys, 100-byte values, closed loop,
 * - writes at 1, 64 and 256 in flight (ringkv `majority`; etcd put, which is a quorum commit too);
 * - reads at 64 in flight of the keys just written: `linearizable` (etcd: the default range, a
 *   ReadIndex read), `session` (read-your-writes on the client that wrote; etcd has no such level)
 *   and `eventual` (etcd: a serializable range, served by whichever member gets it).
 * ringkv runs every phase twice on the same cluster, through two clients: `ringkv` with the SDK's
 * call batching off (one RPC per operation, as etcd3 sends them), and `ringkv batched` with it on
 * (the SDK default: concurrent calls bound for one node travel as one Multi call); the two modes
 * take turns to go first, and each reads the keys it wrote itself. Measuring starts once the
 * cluster's leaders are spread over its nodes (leader balancing moves some just after a start) and
 * after a shared warm-up of 3 s.
 * Each phase runs S seconds; every figure is the median of R runs, each on fresh clusters, the
 * two systems taking turns to go first. The ratios are ringkv/etcd, batched/etcd and
 * batched/ringkv (the gain of batching). The etcd column needs `etcd`
 * on PATH (Debian: apt-get install etcd-server) and the etcd3 devDependency; without them the
 * bench says so in one line and measures ringkv alone. `--nodes 1` runs one plain kvd (no
 * --initial-cluster, no --shards unless given) against a 1-member etcd (`--etcd-members` to
 * change). `--tls` also runs ringkv with TLS in every round (a fresh CA and node certificates from
 * `kvctl certs`'s issuer, mutual TLS between peers, the clients authenticated by an admin client
 * certificate), the plaintext and TLS clusters taking turns to go first, and reports the cost of
 * TLS as tls/plain ratios. Under each system's row, CPU microseconds per completed operation of
 * the client (this process) and of each node or member, from each process's own accounting read
 * before and after the phase (cpu.ts); and once per run, each process's CPU with no load over 2 s
 * (idle CPU ms/s), the background every phase's per-op figure carries spread over its ops.
 * A measurement, not a test: it asserts nothing about time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Etcd3 } from 'etcd3'
import { createCa, issueClient, issueNode } from '../../src/cli/certs/issue.ts'
import { KvClient, type KvClientInit } from '../../src/client/index.ts'
import { NodeId, ShardId } from '../../src/common/ids.ts'
import { limits } from '../../src/common/limits.ts'
import { preferredLeaderOf } from '../../src/node/leader-balance.ts'
import { startCluster, type Cluster, type NodePorts } from '../integration/helpers/cluster.ts'
import { metricsMeter, microsPerOp, readMeters, selfMeter, type CpuMeter } from './cpu.ts'
import { etcdToRun, startEtcd } from './etcd.ts'

type ReadLevel = 'linearizable' | 'session' | 'eventual'

interface Args {
  readonly seconds: number
  readonly runs: number
  readonly nodes: number
  readonly shards: number | undefined
  readonly kvdArgs: readonly string[]
  readonly etcd: string | false | undefined
  readonly etcdMembers: number
  /** Also measure ringkv with TLS (mutual between peers, client certificates). */
  readonly tls: boolean
}

/** How the bench's clients reach a cluster. */
type Access = Pick<KvClientInit, 'tls'>

interface Phase {
  readonly opsPerSec: number
  readonly msP50: number
  readonly msP99: number
  readonly errors: number
  readonly misses: number
  readonly firstError: string | undefined
  /** CPU microseconds per completed operation of each of the target's meters (cpu.ts). */
  readonly cpuUsPerOp: readonly number[]
}

type PhaseSpec =
  | { readonly id: string; readonly kind: 'put'; readonly concurrency: number; readonly tag: string }
  | { readonly id: string; readonly kind: 'get'; readonly concurrency: number; readonly level: ReadLevel }

const phases: readonly PhaseSpec[] = [
  { id: 'put majority, 1 in flight', kind: 'put', concurrency: 1, tag: 'a' },
  { id: 'put majority, 64 in flight', kind: 'put', concurrency: 64, tag: 'b' },
  { id: 'put majority, 256 in flight', kind: 'put', concurrency: 256, tag: 'c' },
  { id: 'get linearizable, 64 in flight', kind: 'get', concurrency: 64, level: 'linearizable' },
  { id: 'get session, 64 in flight', kind: 'get', concurrency: 64, level: 'session' },
  { id: 'get eventual, 64 in flight', kind: 'get', concurrency: 64, level: 'eventual' },
]

const keyBytes = 16
const valueBytes = 100

/** The system under test, through one client. */
interface Target {
  put(key: string): Promise<void>
  /** Resolves with whether the key was found. */
  get(key: string, level: ReadLevel): Promise<boolean>
  supports(level: ReadLevel): boolean
  /** The client process first, then each server process (node or member). */
  readonly meters: readonly CpuMeter[]
  close(): void
}

const usage =
  'usage: npm run bench -- cluster [--seconds S] [--runs R] [--nodes N] [--shards N] [--kvd-arg ARG]... ' +
  '[--etcd PATH | --no-etcd] [--etcd-members N] [--tls]'

function parseArgs(argv: readonly string[]): Args {
  let seconds = 5
  let runs = 3
  let nodes = 3
  let shards: number | undefined
  let etcd: string | false | undefined
  let etcdMembers: number | undefined
  let tls = false
  const kvdArgs: string[] = []
  const positive = (name: string, raw: string | undefined, integer: boolean): number => {
    const n = Number(raw)
    if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isSafeInteger(n)))
      throw new Error(`--${name} needs a positive ${integer ? 'integer' : 'number'}\n${usage}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value\n${usage}`)
      return v
    }
    switch (flag) {
      case '--seconds':
        seconds = positive('seconds', value(), false)
        break
      case '--runs':
        runs = positive('runs', value(), true)
        break
      case '--nodes':
        nodes = positive('nodes', value(), true)
        break
      case '--shards':
        shards = positive('shards', value(), true)
        break
      case '--kvd-arg':
        kvdArgs.push(value())
        break
      case '--etcd':
        etcd = value()
        break
      case '--no-etcd':
        etcd = false
        break
      case '--etcd-members':
        etcdMembers = positive('etcd-members', value(), true)
        break
      case '--tls':
        tls = true
        break
      default:
        throw new Error(`unknown argument ${JSON.stringify(flag)}\n${usage}`)
    }
  }
  // A cluster gets the default shard count; one plain kvd only what was asked for.
  if (shards === undefined && nodes > 1) shards = 8
  return { seconds, runs, nodes, shards, kvdArgs, etcd, etcdMembers: etcdMembers ?? nodes, tls }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function errorText(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

/** A 16-byte key: `k`, a one-letter tag, 14 digits. */
function key(tag: string, i: number): string {
  return `k${tag}${String(i).padStart(keyBytes - 2, '0')}`
}

/**
 * `concurrency` workers each issue `op(i)` and wait for it, until `seconds` have passed; calls in
 * flight then finish. A failed op counts as an error (not as a latency sample) and its worker
 * pauses 10 ms so an outage does not spin. `op` resolves false for a miss (a key not found).
 */
async function closedLoop(
  seconds: number,
  concurrency: number,
  op: (i: number) => Promise<boolean>,
  meters: readonly CpuMeter[] = [],
): Promise<Phase> {
  const latencies: number[] = []
  let next = 0
  let errors = 0
  let misses = 0
  let firstError: string | undefined
  const cpuBefore = await readMeters(meters)
  const start = performance.now()
  const stopAt = start + seconds * 1000
  const worker = async (): Promise<void> => {
    while (performance.now() < stopAt) {
      const i = next++
      const t = performance.now()
      try {
        if (!(await op(i))) misses++
        latencies.push(performance.now() - t)
      } catch (err) {
        errors++
        firstError ??= errorText(err)
        await sleep(10)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsedS = (performance.now() - start) / 1000
  const cpuAfter = await readMeters(meters)
  latencies.sort((a, b) => a - b)
  return {
    opsPerSec: latencies.length / elapsedS,
    msP50: quantile(latencies, 0.5),
    msP99: quantile(latencies, 0.99),
    errors,
    misses,
    firstError,
    cpuUsPerOp: microsPerOp(cpuBefore, cpuAfter, latencies.length),
  }
}

/**
 * Runs every phase against one target: a warm-up, the writes, then reads of the keys written.
 * `upperTags`: write keys of their own (a second run on the same cluster reads only what it wrote).
 */
async function runPhases(target: Target, args: Args, upperTags = false): Promise<Map<string, Phase>> {
  const out = new Map<string, Phase>()
  const tagOf = (tag: string): string => (upperTags ? tag.toUpperCase() : tag)
  await closedLoop(Math.min(1, args.seconds), 64, async (i) => (await target.put(key(tagOf('w'), i)), true))
  const written: string[] = []
  for (const spec of phases) {
    if (spec.kind === 'put') {
      out.set(
        spec.id,
        await closedLoop(
          args.seconds,
          spec.concurrency,
          async (i) => {
            const k = key(tagOf(spec.tag), i)
            await target.put(k)
            written.push(k)
            return true
          },
          target.meters,
        ),
      )
    } else if (target.supports(spec.level)) {
      if (written.length === 0) throw new Error('no write succeeded, nothing to read')
      // Stride through the written keys (a prime stride visits all of them, in no write order).
      const stride = 7919
      out.set(
        spec.id,
        await closedLoop(
          args.seconds,
          spec.concurrency,
          (i) => target.get(written[(i * stride) % written.length]!, spec.level),
          target.meters,
        ),
      )
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// ringkv

/** A ringkv client, with the SDK's call batching on or off. */
async function ringkvTarget(
  endpoints: readonly string[],
  batching: boolean,
  access: Access,
  meters: readonly CpuMeter[] = [],
): Promise<Target> {
  const client = new KvClient({ endpoints, batching: { enabled: batching }, ...access })
  // Learn every node's address first, so NOT_LEADER hints can be followed from the first call.
  await client.status().catch(() => undefined)
  const value = new Uint8Array(valueBytes).fill(0x61)
  return {
    put: async (k) => {
      await client.put(k, value)
    },
    // On the client that wrote: a session read carries the client's session token, so it must
    // see every write above (read-your-writes), which is what makes it differ from eventual.
    get: async (k, level) => (await client.get(k, { consistency: level })).found,
    supports: () => true,
    meters,
    close: () => client.close(),
  }
}

/** Shard id -> leader id (0 = none known), from every node's status. */
/** Each shard's leader (0: none) and the voter leader balancing prefers, from its leader's view. */
interface ShardLeader {
  readonly leader: number
  readonly preferred: number | undefined
}

async function leaderLayout(endpoints: readonly string[], access: Access): Promise<Map<number, ShardLeader>> {
  const client = new KvClient({ endpoints, deadlineMs: 5000, ...access })
  try {
    const leaders = new Map<number, ShardLeader>()
    for (const endpoint of endpoints) {
      const status = await client.status({ endpoint })
      for (const shard of status.node?.shards ?? []) {
        const led = shard.role === 'leader'
        if (!led && leaders.has(shard.shardId)) continue
        const conf = {
          voters: shard.voters.map(NodeId),
          learners: shard.learners.map(NodeId),
          votersOutgoing: shard.votersOutgoing.map(NodeId),
        }
        leaders.set(shard.shardId, {
          leader: led ? (status.node?.nodeId ?? 0) : 0,
          preferred: preferredLeaderOf(ShardId(shard.shardId), conf),
        })
      }
    }
    return leaders
  } finally {
    client.close()
  }
}

/** `8 shards, leaders: node 1 x3, node 2 x3, node 3 x2`. */
function describeLayout(leaders: ReadonlyMap<number, ShardLeader>): string {
  const byNode = new Map<number, number>()
  for (const { leader } of leaders.values()) byNode.set(leader, (byNode.get(leader) ?? 0) + 1)
  const parts = [...byNode.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([node, n]) => (node > 0 ? `node ${node} x${n}` : `no leader x${n}`))
  return `${leaders.size} shard${leaders.size === 1 ? '' : 's'}, leaders: ${parts.join(', ') || 'none reported'}`
}

/**
 * Waits (up to 10 s) until every shard is led by the voter leader balancing prefers (so the
 * leaders are spread over the nodes as kvd spreads them), so that neither mode measured first
 * pays for the leadership transfers that follow a start. Returns the layout.
 */
export async function settleLeaders(endpoints: readonly string[], access: Access): Promise<string> {
  const startMs = performance.now()
  let layout = 'status failed'
  if (endpoints.length === 1)
    return describeLayout(await leaderLayout(endpoints, access).catch(() => new Map()))
  while (performance.now() - startMs < 10_000) {
    try {
      const leaders = await leaderLayout(endpoints, access)
      layout = describeLayout(leaders)
      const settled = [...leaders.values()].every(
        (s) => s.leader > 0 && (s.preferred === undefined || s.leader === s.preferred),
      )
      if (settled) return `${layout} (settled after ${((performance.now() - startMs) / 1000).toFixed(1)} s)`
    } catch (err) {
      layout = `status failed: ${errorText(err)}`
    }
    await sleep(250)
  }
  return `${layout} (not on the preferred leaders after 10 s)`
}

/** What one ringkv run measured: one RPC per operation, and with the SDK's batching. */
interface RingkvRun {
  readonly unbatched: Map<string, Phase>
  readonly batched: Map<string, Phase>
  /** CPU ms per second of each meter (the client first) with no load, after the warm-up. */
  readonly idle: readonly number[]
}

/** Seconds of quiet over which a run measures each process's CPU without load. */
const idleSeconds = 2

/**
 * CPU milliseconds per second each meter uses over `seconds` with no load: the background work
 * (ticks, heartbeats, timers) that every phase's CPU per op also carries, spread over its ops.
 */
async function idleCpu(meters: readonly CpuMeter[], seconds: number): Promise<number[]> {
  const before = await readMeters(meters)
  const start = performance.now()
  await sleep(seconds * 1000)
  const after = await readMeters(meters)
  const elapsedS = (performance.now() - start) / 1000
  return before.map((b, i) => ((after[i]! - b) * 1000) / elapsedS)
}

/**
 * What a TLS run needs: a fresh CA in `dir`, a node certificate per node (made once its ports are
 * known) and an admin client certificate for the bench's clients.
 */
async function tlsSetup(
  dir: string,
): Promise<{ nodeArgs: (n: NodePorts) => Promise<string[]>; access: Access }> {
  mkdirSync(dir, { recursive: true })
  const nowMs = Date.now()
  const ca = await createCa({ cluster: 'ringkv', days: 2, nowMs })
  const admin = await issueClient(ca, { cluster: 'ringkv', name: 'bench', role: 'admin', days: 2, nowMs })
  const caFile = join(dir, 'ca.crt')
  writeFileSync(caFile, ca.certPem)
  return {
    access: { tls: { ca: ca.certPem, cert: admin.certPem, key: admin.keyPem } },
    nodeArgs: async (n) => {
      const node = await issueNode(ca, {
        cluster: 'ringkv',
        name: `node${n.nodeId}`,
        peerAddresses: [`127.0.0.1:${n.peerPort}`],
        hosts: ['127.0.0.1'],
        days: 2,
        nowMs,
      })
      const base = join(dir, `node${n.nodeId}-${n.peerPort}`)
      writeFileSync(`${base}.crt`, node.certPem)
      writeFileSync(`${base}.key`, node.keyPem)
      return ['--cert-file', `${base}.crt`, '--key-file', `${base}.key`, '--ca-file', caFile]
    },
  }
}

async function benchRingkv(args: Args, dir: string, round: number, tls: boolean): Promise<RingkvRun> {
  const secured = tls ? await tlsSetup(join(dir, `certs-${round}`)) : undefined
  const access: Access = secured?.access ?? {}
  const cluster: Cluster = await startCluster({
    nodes: args.nodes,
    ...(args.shards === undefined ? {} : { shards: args.shards }),
    extraArgs: args.kvdArgs,
    logLevel: 'warn',
    parentDir: dir,
    ...(secured === undefined ? {} : { nodeArgs: secured.nodeArgs, client: access }),
  })
  let target: Target | undefined
  try {
    const layout = await settleLeaders(cluster.endpoints, access)
    if (round === 0) console.log(`ringkv${tls ? ' tls' : ''} layout (run 1): ${layout}`)
    // A fresh cluster serves its first seconds slower (JIT, allocator, caches) whatever the client
    // does: warm it up before either mode, so that the one measured first does not pay for it.
    target = await ringkvTarget(cluster.endpoints, false, access)
    const warm = target
    await closedLoop(Math.min(3, args.seconds), 64, async (i) => (await warm.put(key('z', i)), true))
    target.close()
    target = undefined
    const meters = [selfMeter(), ...cluster.nodes.map((n) => metricsMeter(`node ${n.nodeId}`, n.http))]
    const idle = await idleCpu(meters, idleSeconds)
    // The two modes take turns to go first (the second runs on a cluster holding more keys).
    const modes = round % 2 === 0 ? [false, true] : [true, false]
    const measured = new Map<boolean, Map<string, Phase>>()
    for (const batching of modes) {
      target = await ringkvTarget(cluster.endpoints, batching, access, meters)
      measured.set(batching, await runPhases(target, args, batching))
      target.close()
      target = undefined
    }
    const result: RingkvRun = { unbatched: measured.get(false)!, batched: measured.get(true)!, idle }
    const crashed = await cluster.stop()
    if (crashed.length > 0)
      throw new Error(`ringkv node ${crashed.join(', ')} exited on its own during the run`)
    return result
  } catch (err) {
    target?.close()
    await cluster.stop({ keepDir: true })
    console.error(`ringkv logs kept in ${cluster.dir}:\n${cluster.describeLogs()}`)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// etcd

async function etcdTarget(endpoints: readonly string[], meters: readonly CpuMeter[]): Promise<Target> {
  const { Etcd3: Client } = await import('etcd3')
  const deadlineMs = limits.requestDeadlineMsDefault
  const client: Etcd3 = new Client({
    hosts: endpoints.map((e) => `http://${e}`),
    // The same per-call budget as the ringkv SDK's default; etcd3's default retry policy stays.
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + deadlineMs }),
  })
  const value = Buffer.alloc(valueBytes, 0x61)
  return {
    put: async (k) => {
      await client.put(k).value(value)
    },
    get: async (k, level) => {
      const range = client.get(k)
      if (level === 'eventual') range.serializable(true)
      return (await range.buffer()) !== null
    },
    supports: (level) => level !== 'session',
    meters,
    close: () => client.close(),
  }
}

async function benchEtcd(
  bin: string,
  args: Args,
  dir: string,
): Promise<{ phases: Map<string, Phase>; idle: number[] }> {
  const etcd = await startEtcd(bin, args.etcdMembers, dir).catch((err: unknown) => {
    console.error(`etcd logs kept in ${dir}`)
    throw err
  })
  let target: Target | undefined
  try {
    const meters = [selfMeter(), ...etcd.meters]
    const idle = await idleCpu(meters, idleSeconds)
    target = await etcdTarget(etcd.endpoints, meters)
    const result = { phases: await runPhases(target, args), idle }
    target.close()
    target = undefined
    const died = await etcd.stop()
    if (died.length > 0) throw new Error(`etcd member ${died.join(', ')} exited on its own during the run`)
    rmSync(dir, { recursive: true, force: true })
    return result
  } catch (err) {
    target?.close()
    await etcd.stop()
    console.error(`etcd logs kept in ${dir}:\n${etcd.logFiles.map((f) => `  ${f}`).join('\n')}`)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const col = { label: 34, system: 15, num: 10 } as const

function cells(rate: string, p50: string, p99: string): string {
  return `${rate.padStart(col.num)} ${p50.padStart(col.num)} ${p99.padStart(col.num)}`
}

function summarize(runs: readonly Phase[]): {
  rate: number
  p50: number
  p99: number
  note: string
  /** Median CPU µs per op of each meter (the client first), over the runs that had it. */
  cpu: number[]
} {
  const errors = runs.reduce((n, p) => n + p.errors, 0)
  const misses = runs.reduce((n, p) => n + p.misses, 0)
  const notes: string[] = []
  if (errors > 0) notes.push(`${errors} errors (first: ${runs.find((p) => p.firstError)?.firstError})`)
  if (misses > 0) notes.push(`${misses} reads found no value`)
  return {
    rate: median(runs.map((p) => p.opsPerSec)),
    p50: median(runs.map((p) => p.msP50)),
    p99: median(runs.map((p) => p.msP99)),
    note: notes.length === 0 ? '' : `   ${notes.join('; ')}`,
    cpu: Array.from({ length: Math.max(0, ...runs.map((p) => p.cpuUsPerOp.length)) }, (_, i) =>
      median(
        runs.map((p) => p.cpuUsPerOp[i]).filter((us): us is number => us !== undefined && !Number.isNaN(us)),
      ),
    ),
  }
}

type Summary = ReturnType<typeof summarize>

/** `CPU µs/op: client 310; servers 250 + 240 + 180 = 670` (the client is the first meter). */
function cpuLine(cpu: readonly number[]): string | undefined {
  const [client, ...servers] = cpu
  if (client === undefined) return undefined
  const us = (x: number): string => (Number.isNaN(x) ? '?' : x.toFixed(0))
  const total = servers.reduce((a, b) => a + b, 0)
  const serverPart =
    servers.length === 0
      ? ''
      : `; servers ${servers.map(us).join(' + ')}${servers.length > 1 ? ` = ${us(total)}` : ''}`
  return `CPU µs/op: client ${us(client)}${serverPart}`
}

function ratioCells(ours: Summary, theirs: Summary): string {
  return cells(
    (ours.rate / theirs.rate).toFixed(2),
    (ours.p50 / theirs.p50).toFixed(2),
    (ours.p99 / theirs.p99).toFixed(2),
  )
}

function report(
  ringkv: readonly RingkvRun[],
  etcd: readonly Map<string, Phase>[] | undefined,
  etcdNames: Readonly<Record<string, string>>,
  tls: readonly RingkvRun[],
): void {
  console.log(
    `\n${'phase'.padEnd(col.label)} ${'system'.padEnd(col.system)} ${cells('ops/s', 'p50 ms', 'p99 ms')}`,
  )
  const blank = ''.padEnd(col.label)
  const row = (label: string, system: string, s: Summary, suffix = ''): void => {
    console.log(
      `${label.padEnd(col.label)} ${system.padEnd(col.system)} ` +
        `${cells(s.rate.toFixed(0), s.p50.toFixed(2), s.p99.toFixed(2))}${suffix}${s.note}`,
    )
    const line = cpuLine(s.cpu)
    if (line !== undefined) console.log(`${blank} ${''.padEnd(col.system)} ${line}`)
  }
  for (const spec of phases) {
    const ours = summarize(ringkv.map((r) => r.unbatched.get(spec.id)).filter((p) => p !== undefined))
    const batched = summarize(ringkv.map((r) => r.batched.get(spec.id)).filter((p) => p !== undefined))
    row(spec.id, 'ringkv', ours, '   one RPC per op')
    row(blank, 'ringkv batched', batched, '   SDK batching')
    const theirRuns = etcd?.map((r) => r.get(spec.id)).filter((p) => p !== undefined)
    if (etcd !== undefined && theirRuns?.length === 0) {
      console.log(`${blank} ${'etcd'.padEnd(col.system)} ${'n/a: etcd has no session-level read'}`)
    }
    if (theirRuns !== undefined && theirRuns.length > 0) {
      const theirs = summarize(theirRuns)
      const name = etcdNames[spec.kind === 'get' ? spec.level : 'put'] ?? ''
      row(blank, 'etcd', theirs, `   ${name}`)
      console.log(`${blank} ${'ringkv/etcd'.padEnd(col.system)} ${ratioCells(ours, theirs)}`)
      console.log(`${blank} ${'batched/etcd'.padEnd(col.system)} ${ratioCells(batched, theirs)}`)
    }
    console.log(`${blank} ${'batched/ringkv'.padEnd(col.system)} ${ratioCells(batched, ours)}`)
    if (tls.length > 0) {
      const secured = summarize(tls.map((r) => r.unbatched.get(spec.id)).filter((p) => p !== undefined))
      const securedBatched = summarize(tls.map((r) => r.batched.get(spec.id)).filter((p) => p !== undefined))
      row(blank, 'ringkv tls', secured, '   one RPC per op, TLS')
      row(blank, 'tls batched', securedBatched, '   SDK batching, TLS')
      console.log(`${blank} ${'tls/plain'.padEnd(col.system)} ${ratioCells(secured, ours)}`)
      console.log(`${blank} ${'tls/plain batch'.padEnd(col.system)} ${ratioCells(securedBatched, batched)}`)
    }
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv)
  const { bin: etcdBin, line: etcdLine } = etcdToRun(args.etcd, args.etcdMembers)
  const withEtcd = etcdBin !== undefined
  const shape =
    args.nodes === 1
      ? `1 kvd (no --initial-cluster${args.shards === undefined ? '' : `, --shards ${args.shards}`})`
      : `${args.nodes} kvd nodes, ${args.shards} shards`
  console.log(
    `cluster bench: ringkv ${shape}${args.kvdArgs.length > 0 ? ` (${args.kvdArgs.join(' ')})` : ''}; ` +
      `${keyBytes}-byte keys, ${valueBytes}-byte values, closed loop, ${args.seconds} s per phase, ` +
      `median of ${args.runs} run${args.runs === 1 ? '' : 's'}; node ${process.version}, ${cpus().length} CPUs`,
  )
  console.log(etcdLine)
  console.log(
    'ringkv: SDK call batching off (one RPC per operation); ringkv batched: on (the SDK default, Multi calls)',
  )
  console.log('ratios a/b: throughput above 1 and latencies below 1 favor a')
  if (args.tls)
    console.log(
      'ringkv tls: the same cluster with TLS on both listeners, mutual between peers, clients by certificate',
    )

  const loadStart = loadavg()[0]!
  const root = mkdtempSync(join(tmpdir(), 'ringkv-bench-cluster-'))
  const ringkvRuns: RingkvRun[] = []
  const tlsRuns: RingkvRun[] = []
  const etcdRuns: Map<string, Phase>[] = []
  const etcdIdle: number[][] = []
  try {
    for (let round = 0; round < args.runs; round++) {
      // The systems take turns to go first, so neither always runs on a warmer machine.
      const order = round % 2 === 0 ? (['ringkv', 'etcd'] as const) : (['etcd', 'ringkv'] as const)
      for (const system of order) {
        if (system === 'ringkv') {
          // Plaintext and TLS take turns to go first as well.
          for (const tls of args.tls ? (round % 2 === 0 ? [false, true] : [true, false]) : [false])
            (tls ? tlsRuns : ringkvRuns).push(await benchRingkv(args, root, round, tls))
        } else if (withEtcd) {
          const run = await benchEtcd(etcdBin, args, join(root, `etcd-${round}`))
          etcdRuns.push(run.phases)
          etcdIdle.push(run.idle)
        }
      }
      process.stderr.write(`run ${round + 1}/${args.runs} done\n`)
    }
  } catch (err) {
    console.error(`cluster bench failed; everything kept in ${root}`)
    throw err
  }
  rmSync(root, { recursive: true, force: true })
  // Other work on the machine skews every figure; the load average says how much there was.
  console.log(
    `load average (1 min): ${loadStart.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end`,
  )
  // Background CPU with no load: every phase's CPU per op carries it, spread over the phase's ops.
  const idleLine = (system: string, runs: readonly (readonly number[])[]): void => {
    if (runs.length === 0) return
    const perMeter = Array.from({ length: Math.max(...runs.map((r) => r.length)) }, (_, i) =>
      median(runs.map((r) => r[i]).filter((ms): ms is number => ms !== undefined)),
    )
    const [client, ...servers] = perMeter.map((ms) => ms.toFixed(1))
    console.log(
      `idle CPU ms/s (${idleSeconds} s without load, median of runs), ${system}: client ${client}; servers ${servers.join(' + ')}`,
    )
  }
  idleLine(
    'ringkv',
    ringkvRuns.map((r) => r.idle),
  )
  idleLine(
    'ringkv tls',
    tlsRuns.map((r) => r.idle),
  )
  idleLine('etcd', etcdIdle)
  report(
    ringkvRuns,
    withEtcd ? etcdRuns : undefined,
    {
      put: 'put',
      linearizable: 'range (linearizable)',
      eventual: 'range serializable',
    },
    tlsRuns,
  )
}
