/**
 * `npm run bench -- move [--mb N] [--rate MIB_PER_S] [--runs R] [--seconds S]`
 *
 * One replica move on real processes: a 3-node cluster (4 shards, every node holds every shard)
 * and a 4th node joined with --join. Shard 0 is filled with N MB (default 100) of 16 KiB values,
 * then moved to node 4 and back, R times in all (default 3), each a full snapshot throttled by
 * `--snapshot-rate` on every node (default 32 MiB/s). Meanwhile a foreground workload writes to
 * every shard (16 in flight, 1 KiB values): its p99 latency over S seconds without a move (the
 * baseline, measured just before each move, same run) is compared with its p99 during the move.
 *
 * Prints per run: the move's total time, the time from the learner's addition until it caught up
 * (the snapshot), the achieved snapshot rate against the throttle, and the foreground p50/p99
 * before and during; then medians, ratios and the load average. A measurement, not a test.
 */
import { loadavg } from 'node:os'
import { listMoves, moveReplica, type MoveStatus } from '../../src/client/admin-moves.ts'
import { KvClient } from '../../src/client/index.ts'
import { startCluster } from '../integration/helpers/cluster.ts'
import { keysOfShard } from '../integration/helpers/shard-keys.ts'
import { freePort, startKvd } from '../integration/helpers/kvd.ts'
import { positiveNumber } from './args.ts'
import { foreground, latency, sleep } from './foreground.ts'
import { median } from './stats.ts'

interface Args {
  readonly mb: number
  readonly rate: number
  readonly runs: number
  readonly seconds: number
}

function parseArgs(argv: readonly string[]): Args {
  const num = (name: string, dflt: number): number => positiveNumber(argv, name, dflt)
  return {
    mb: num('--mb', 100),
    rate: num('--rate', 32),
    runs: num('--runs', 3),
    seconds: num('--seconds', 5),
  }
}

export async function main(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv)
  const kvdArgs = ['--heartbeat-ms', '250', '--snapshot-rate', String(args.rate), '--log-level', 'warn']
  const cluster = await startCluster({
    nodes: 3,
    shards: 4,
    extraArgs: kvdArgs,
    logLevel: 'warn',
    readyTimeoutMs: 120_000,
  })
  const four = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...kvdArgs] })
  const client = new KvClient({ endpoints: [...cluster.endpoints, four.address] })
  try {
    for (;;) {
      const map = await client.shardMap()
      if (map.nodes.find((n) => n.nodeId === 4)?.state === 'active') break
      await sleep(200)
    }
    // Fill shard 0 with keys of its range only.
    const map = await client.shardMap()
    const shard = map.shards.find((s) => s.shardId === 0)!
    const valueBytes = 16 * 1024
    const keys = await keysOfShard(shard, 'bulk/', Math.ceil((args.mb * 1024 * 1024) / valueBytes))
    const value = Buffer.alloc(valueBytes, 7)
    for (let i = 0; i < keys.length; i += 64)
      await Promise.all(keys.slice(i, i + 64).map((k) => client.put(k, value, { deadlineMs: 60_000 })))
    const dataMiB = (keys.length * valueBytes) / 2 ** 20
    console.log(
      `move bench: shard 0 holds ${dataMiB.toFixed(1)} MiB (${keys.length} keys of 16 KiB); --snapshot-rate ${args.rate} MiB/s; load ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    )
    let holder = shard.replicas[0]!
    const rows: {
      total: number
      snapshot: number
      rate: number
      before: { p50: number; p99: number }
      during: { p50: number; p99: number }
    }[] = []
    for (let run = 0; run < args.runs; run++) {
      const [from, to] = run % 2 === 0 ? [holder, 4] : [4, holder]
      // Baseline: the same workload without a move, just before.
      const base = foreground(client, `b${run}`)
      await sleep(args.seconds * 1000)
      await base.stop()
      const during = foreground(client, `d${run}`)
      const t0 = Date.now()
      const move = await moveReplica(cluster.endpoints, { shardId: 0, from, to })
      let catchupAt = 0
      let caughtUpAt = 0
      let ended: MoveStatus | undefined
      while (ended === undefined) {
        const { running, recent } = await listMoves(cluster.endpoints)
        ended = recent.find((m) => m.startedMs === move.startedMs)
        const now = running.find((m) => m.startedMs === move.startedMs)
        if (now?.step === 'catchup' && catchupAt === 0) catchupAt = Date.now()
        if (now !== undefined && now.step !== 'catchup' && catchupAt > 0 && caughtUpAt === 0)
          caughtUpAt = Date.now()
        await sleep(100)
      }
      const total = (Date.now() - t0) / 1000
      await during.stop()
      if (ended.step !== 'done') throw new Error(`move ${from} -> ${to} ${ended.step}: ${ended.reason}`)
      if (caughtUpAt === 0) caughtUpAt = Date.now()
      const snapshot = catchupAt === 0 ? total : (caughtUpAt - catchupAt) / 1000
      const row = {
        total,
        snapshot,
        rate: dataMiB / snapshot,
        before: latency(base.samples),
        during: latency(during.samples),
      }
      rows.push(row)
      console.log(
        `run ${run + 1}: move ${from} -> ${to} in ${total.toFixed(1)} s (snapshot and catch-up ${snapshot.toFixed(1)} s, ` +
          `${row.rate.toFixed(1)} MiB/s against ${args.rate}); foreground writes p50/p99 ${row.before.p50.toFixed(1)}/${row.before.p99.toFixed(1)} ms ` +
          `before, ${row.during.p50.toFixed(1)}/${row.during.p99.toFixed(1)} ms during (p99 x${(row.during.p99 / row.before.p99).toFixed(2)})`,
      )
      if (run % 2 === 1) holder = to
    }
    const med = (f: (r: (typeof rows)[number]) => number): number => median(rows.map(f))
    console.log(
      `median of ${rows.length}: move ${med((r) => r.total).toFixed(1)} s; snapshot ${med((r) => r.rate).toFixed(1)} MiB/s ` +
        `(${((med((r) => r.rate) / args.rate) * 100).toFixed(0)}% of the throttle); foreground p99 ${med((r) => r.before.p99).toFixed(1)} ms ` +
        `before, ${med((r) => r.during.p99).toFixed(1)} ms during: ratio ${med((r) => r.during.p99 / r.before.p99).toFixed(2)}; ` +
        `load ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
    )
  } finally {
    client.close()
    await four.stop()
    await cluster.stop()
  }
}
