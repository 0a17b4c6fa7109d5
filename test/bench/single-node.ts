/**
 * `npm run bench -- single-node [--ops N] [--runs R] [--value-bytes B]`
 *
 * One real kvd process driven by the SDK over loopback gRPC, against two baselines measured in
 * the same run, at 1 and 64 requests in flight:
 * - the raw RocksDB engine in-process (synced puts, point gets): kvd/raw is the cost of our whole
 *   serving path (SDK, gRPC, validation, the shard's group commit) over the bare engine;
 * - a bare grpc-js unary echo (grpc-echo.ts) in its own process, with messages of exactly the
 *   sizes of kvd's Put and Get requests and responses: kvd/echo is the cost of our own code over
 *   gRPC itself, the honest measure of overhead when gRPC, not storage, is the ceiling.
 * Every figure is the median of R runs. A measurement, not a test: it asserts nothing about time.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { KvClient } from '../../src/client/index.ts'
import { limits } from '../../src/common/limits.ts'
import {
  Consistency,
  GetRequest,
  GetResponse,
  PutRequest,
  PutResponse,
  type Receipt,
} from '../../src/gen/ringkv/v1/kv.ts'
import { benchEngine, type EngineBenchResult } from './engine.ts'
import { EchoClient, echoRequest, startEchoServer } from './grpc-echo.ts'

interface Phase {
  readonly opsPerSec: number
  readonly msP50: number
  readonly msP99: number
}

interface Args {
  readonly ops: number
  readonly runs: number
  readonly valueBytes: number
}

const concurrencies = [1, 64] as const

function parseArgs(argv: readonly string[]): Args {
  const get = (name: string, fallback: number): number => {
    const i = argv.indexOf(`--${name}`)
    if (i < 0) return fallback
    const n = Number(argv[i + 1])
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer`)
    return n
  }
  return { ops: get('ops', 4000), runs: get('runs', 3), valueBytes: get('value-bytes', 100) }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer()
    server.once('error', fail)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => done(port))
    })
  })
}

async function startKvd(dataDir: string): Promise<{ child: ChildProcess; address: string }> {
  const port = await freePort()
  const address = `127.0.0.1:${port}`
  const bin = resolve(import.meta.dirname, '..', '..', '..', 'bin', 'kvd.js')
  const child = spawn(
    process.execPath,
    [bin, '--data', dataDir, '--listen', address, '--http', '127.0.0.1:0', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  )
  const client = new KvClient({ endpoints: [address], deadlineMs: 1000 })
  try {
    for (let attempt = 0; attempt < 100; attempt++) {
      if (child.exitCode !== null) throw new Error(`kvd exited with ${child.exitCode}`)
      try {
        await client.status()
        return { child, address }
      } catch {
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    throw new Error('kvd did not become ready in 10 s')
  } finally {
    client.close()
  }
}

async function stopKvd(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await exited
}

async function runPhase(
  ops: number,
  concurrency: number,
  op: (i: number) => Promise<unknown>,
): Promise<Phase> {
  const latencies: number[] = []
  let next = 0
  const start = performance.now()
  const worker = async (): Promise<void> => {
    while (next < ops) {
      const i = next++
      const t = performance.now()
      await op(i)
      latencies.push(performance.now() - t)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - start) / 1000
  latencies.sort((a, b) => a - b)
  return { opsPerSec: ops / seconds, msP50: quantile(latencies, 0.5), msP99: quantile(latencies, 0.99) }
}

async function benchKvd(args: Args, concurrency: number, address: string, round: number) {
  // One RPC per operation, as the echo baseline sends them (the SDK's call batching would fold the
  // 64 in flight into few Multi calls; the cluster bench measures that).
  const client = new KvClient({ endpoints: [address], batching: { enabled: false } })
  const value = new Uint8Array(args.valueBytes).fill(0x61)
  const key = (i: number): string => `bench:${round}:${concurrency}:${String(i).padStart(10, '0')}`
  try {
    // Warm the channel and the server's code paths.
    await runPhase(Math.min(200, args.ops), concurrency, (i) => client.put(`warm:${i}`, value))
    const put = await runPhase(args.ops, concurrency, (i) => client.put(key(i), value))
    const get = await runPhase(args.ops, concurrency, (i) => client.get(key(i)))
    return { put, get }
  } finally {
    client.close()
  }
}

/** Wire sizes of the bench's kvd calls (typical field values), for the echo baseline. */
function wireSizes(args: Args): { put: [number, number]; get: [number, number] } {
  const key = Buffer.from(`bench:0:64:${'0'.repeat(10)}`)
  const value = Buffer.alloc(args.valueBytes, 0x61)
  const receipt: Receipt = {
    nodeId: 1,
    shardId: 0,
    appliedIndex: 10_000,
    delivered: Consistency.CONSISTENCY_LINEARIZABLE,
    stalenessMs: 0,
    term: 0,
  }
  const seq = Date.now() * 1000
  const put = PutRequest.encode({
    key,
    value,
    options: {
      consistency: Consistency.CONSISTENCY_MAJORITY,
      clientId: 'f'.repeat(32),
      seq,
      firstIncompleteSeq: seq,
      route: undefined,
    },
  }).finish().length
  const putResponse = PutResponse.encode({ version: 10_000, receipt }).finish().length
  const get = GetRequest.encode({
    key,
    options: {
      consistency: Consistency.CONSISTENCY_LINEARIZABLE,
      maxStalenessMs: 0,
      session: undefined,
      route: undefined,
    },
  }).finish().length
  const getResponse = GetResponse.encode({
    found: true,
    value,
    version: 10_000,
    createVersion: 10_000,
    receipt,
  }).finish().length
  return { put: [put, putResponse], get: [get, getResponse] }
}

async function benchEcho(args: Args, concurrency: number, address: string) {
  const client = new EchoClient(address)
  const sizes = wireSizes(args)
  const putRequest = echoRequest(...sizes.put)
  const getRequest = echoRequest(...sizes.get)
  const deadlineMs = limits.requestDeadlineMsDefault
  try {
    await runPhase(Math.min(200, args.ops), concurrency, () => client.echo(putRequest, deadlineMs))
    const put = await runPhase(args.ops, concurrency, () => client.echo(putRequest, deadlineMs))
    const get = await runPhase(args.ops, concurrency, () => client.echo(getRequest, deadlineMs))
    return { put, get }
  } finally {
    client.close()
  }
}

function row(label: string, phases: readonly Phase[]): string {
  const rate = median(phases.map((p) => p.opsPerSec))
  const p50 = median(phases.map((p) => p.msP50))
  const p99 = median(phases.map((p) => p.msP99))
  return `${label.padEnd(34)} ${rate.toFixed(0).padStart(9)} ops/s   p50 ${p50.toFixed(2).padStart(7)} ms   p99 ${p99.toFixed(2).padStart(7)} ms`
}

export async function main(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv)
  console.log(
    `single-node bench: ${args.ops} ops per phase, ${args.valueBytes}-byte values, median of ${args.runs} runs, node ${process.version}`,
  )
  const root = mkdtempSync(join(tmpdir(), 'ringkv-bench-'))
  const raw = new Map<number, EngineBenchResult[]>()
  const served = new Map<number, { put: Phase; get: Phase }[]>()
  const echoed = new Map<number, { put: Phase; get: Phase }[]>()
  try {
    for (let round = 0; round < args.runs; round++) {
      for (const c of concurrencies) {
        // Baseline: the raw engine, synced puts and point gets, no gRPC, no shard.
        const r = await benchEngine({
          dir: join(root, `raw-${round}-${c}`),
          ops: args.ops,
          valueBytes: args.valueBytes,
          concurrency: c,
        })
        raw.set(c, [...(raw.get(c) ?? []), r])
        const { child, address } = await startKvd(join(root, `kvd-${round}-${c}`))
        try {
          served.set(c, [...(served.get(c) ?? []), await benchKvd(args, c, address, round)])
        } finally {
          await stopKvd(child)
        }
        // Baseline: bare grpc-js, same message sizes, server in its own process.
        const echoAddress = `127.0.0.1:${await freePort()}`
        const echo = await startEchoServer(echoAddress)
        try {
          echoed.set(c, [...(echoed.get(c) ?? []), await benchEcho(args, c, echoAddress)])
        } finally {
          await stopKvd(echo)
        }
      }
    }
    for (const c of concurrencies) {
      const rawRuns = raw.get(c) ?? []
      const kvdRuns = served.get(c) ?? []
      const rawPut = rawRuns.map((r) => ({ opsPerSec: r.putsPerSec, msP50: r.putMsP50, msP99: r.putMsP99 }))
      const rawGet = rawRuns.map((r) => ({ opsPerSec: r.getsPerSec, msP50: r.getMsP50, msP99: r.getMsP99 }))
      const kvdPut = kvdRuns.map((r) => r.put)
      const kvdGet = kvdRuns.map((r) => r.get)
      const echoPut = (echoed.get(c) ?? []).map((r) => r.put)
      const echoGet = (echoed.get(c) ?? []).map((r) => r.get)
      console.log(`\n== ${c} in flight`)
      console.log(row('raw RocksDB put (sync)', rawPut))
      console.log(row('grpc-js echo, put-sized', echoPut))
      console.log(row('kvd put (majority, fsynced)', kvdPut))
      console.log(row('raw RocksDB get', rawGet))
      console.log(row('grpc-js echo, get-sized', echoGet))
      console.log(row('kvd get (linearizable)', kvdGet))
      const ratio = (a: readonly Phase[], b: readonly Phase[]): string =>
        (median(a.map((p) => p.opsPerSec)) / median(b.map((p) => p.opsPerSec))).toFixed(2)
      console.log(`ratio kvd/raw throughput: put ${ratio(kvdPut, rawPut)}, get ${ratio(kvdGet, rawGet)}`)
      console.log(`ratio kvd/echo throughput: put ${ratio(kvdPut, echoPut)}, get ${ratio(kvdGet, echoGet)}`)
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
}
