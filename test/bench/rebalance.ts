/**
 * `npm run bench -- rebalance [--shards S] [--mb N] [--rate MIB_PER_S] [--seconds T]`
 *
 * Rebalancing after a join, on real processes: a 3-node cluster of S shards (default 4, three
 * replicas each) is filled with N MB a shard (default 32; 16 KiB values), then a 4th node joins
 * and the meta leader's executor moves its share onto it by itself, each snapshot throttled by
 * `--snapshot-rate` (default 16 MiB/s) on every node. A foreground workload writes to every shard
 * (16 in flight, 1 KiB values) for T seconds before the join (the baseline, same run) and all
 * through the job.
 *
 * Prints: the plan as the meta leader first shows it (moves, bytes, its time estimate at the
 * throttle), the time from the join until the job is done, the bytes the job counted and the
 * achieved MB/s against the throttle, the moves done and failed, and the foreground p50/p99
 * before and during the job (ratio); then the load average. A measurement, not a test.
 */
import { loadavg } from 'node:os'
import { rebalance, type RebalanceResponse } from '../../src/client/admin-rebalance.ts'
import { KvClient } from '../../src/client/index.ts'
import { startCluster } from '../integration/helpers/cluster.ts'
import { keysOfShard } from '../integration/helpers/shard-keys.ts'
import { freePort, startKvd } from '../integration/helpers/kvd.ts'
import { positiveNumber } from './args.ts'
import { foreground, latency, sleep } from './foreground.ts'

interface Args {
  readonly shards: number
  readonly mb: number
  readonly rate: number
  readonly seconds: number
}

function parseArgs(argv: readonly string[]): Args {
  const num = (name: string, dflt: number): number => positiveNumber(argv, name, dflt)
  return {
    shards: Math.round(num('--shards', 4)),
    mb: num('--mb', 32),
    rate: Math.round(num('--rate', 16)),
    seconds: num('--seconds', 5),
  }
}

const MiB = 1024 * 1024
const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')

export async function main(argv: readonly string[]): Promise<void> {
  const args = parseArgs(argv)
  const kvdArgs = ['--heartbeat-ms', '250', '--snapshot-rate', String(args.rate), '--log-level', 'warn']
  const cluster = await startCluster({
    nodes: 3,
    shards: args.shards,
    extraArgs: kvdArgs,
    logLevel: 'warn',
    readyTimeoutMs: 120_000,
  })
  const client = new KvClient({ endpoints: cluster.endpoints })
  let four: Awaited<ReturnType<typeof startKvd>> | undefined
  try {
    const map = await client.shardMap()
    const valueBytes = 16 * 1024
    const value = Buffer.alloc(valueBytes, 7)
    const perShard = Math.ceil((args.mb * MiB) / valueBytes)
    for (const shard of map.shards) {
      const keys = await keysOfShard(shard, 'bulk/', perShard)
      for (let i = 0; i < keys.length; i += 64)
        await Promise.all(keys.slice(i, i + 64).map((k) => client.put(k, value, { deadlineMs: 60_000 })))
    }
    console.log(
      `rebalance bench: ${args.shards} shards of ${((perShard * valueBytes) / MiB).toFixed(1)} MiB (16 KiB values), 3 nodes; ` +
        `--snapshot-rate ${args.rate} MiB/s; load ${load()}`,
    )
    // The leaders report sizes every few heartbeats: let them.
    await sleep(3_000)
    const base = foreground(client, 'base')
    await sleep(args.seconds * 1000)
    await base.stop()

    const during = foreground(client, 'during')
    const t0 = Date.now()
    four = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...kvdArgs] })
    let first: RebalanceResponse | undefined
    let jobId = 0
    let end: RebalanceResponse | undefined
    while (end === undefined) {
      const r = await rebalance(cluster.endpoints, 'status').catch(() => undefined)
      if (r?.job !== undefined && r.job.createdMs >= t0 - 1000) {
        if (first === undefined) {
          first = r
          jobId = r.job.id
        }
        if (r.job.id === jobId && (r.job.state === 'done' || r.job.state === 'cancelled')) end = r
      }
      if (Date.now() - t0 > 30 * 60_000) throw new Error('the job did not end in 30 minutes')
      await sleep(250)
    }
    const seconds = (Date.now() - t0) / 1000
    const jobSeconds = (end.job!.finishedMs - end.job!.createdMs) / 1000
    await during.stop()
    const before = latency(base.samples)
    const inJob = latency(during.samples)
    const planMoves = first!.plannedTotal + first!.running.length + first!.job!.done + first!.job!.failed
    console.log(
      `plan as first seen: ${planMoves} moves, ${(first!.plannedBytes / MiB).toFixed(1)} MiB planned` +
        `${first!.plannedUnsized > 0 ? ` (${first!.plannedUnsized} of unknown size)` : ''}, estimate ${(first!.plannedMs / 1000).toFixed(1)} s ` +
        `at ${args.rate} MiB/s a sending node (moves already running: ${first!.running.length})`,
    )
    const mbps = end.job!.bytes / MiB / Math.max(jobSeconds, 0.001)
    console.log(
      `job ${end.job!.state}: ${end.job!.done} moves done, ${end.job!.failed} failed; join to balanced ${seconds.toFixed(1)} s ` +
        `(job ${jobSeconds.toFixed(1)} s); ${(end.job!.bytes / MiB).toFixed(1)} MiB of snapshots counted, ${mbps.toFixed(1)} MiB/s ` +
        `against ${args.rate} MiB/s a sending node`,
    )
    console.log(
      `foreground writes p50/p99 ${before.p50.toFixed(1)}/${before.p99.toFixed(1)} ms before, ` +
        `${inJob.p50.toFixed(1)}/${inJob.p99.toFixed(1)} ms during the job: p99 ratio ${(inJob.p99 / before.p99).toFixed(2)}; load ${load()}`,
    )
  } finally {
    client.close()
    await four?.stop()
    await cluster.stop()
  }
}
