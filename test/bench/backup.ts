/**
 * `npm run bench -- backup [--keys N] [--value-bytes B] [--runs R]`
 *
 * Backup and restore on real processes: a 3-node cluster of 8 shards (every node holds every
 * shard) filled with N keys (default 100,000) of B-byte values (default 100); then R times
 * (default 3): `kvctl backup create` (the compiled CLI, shards one after another from their
 * leaders), `kvctl backup verify`, and a new 3-node cluster started with `--restore` until every
 * node is ready and a write succeeded on every shard. A fresh cluster without `--restore` is
 * started once in the same run as the baseline, so the restore's own cost is its start time minus
 * the baseline's. Prints MB/s of each (bytes of the backup's files over the time), medians, and
 * the load average. A measurement, not a test.
 */
import { rmSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { KvClient } from '../../src/client/index.ts'
import { runKvctl } from '../integration/cli/run-kvctl.ts'
import { startCluster } from '../integration/helpers/cluster.ts'
import { positiveNumber } from './args.ts'
import { median } from './stats.ts'

const num = positiveNumber

const shards = 8
const inFlight = 512

export async function main(argv: readonly string[]): Promise<void> {
  const keys = num(argv, '--keys', 100_000)
  const valueBytes = num(argv, '--value-bytes', 100)
  const runs = num(argv, '--runs', 3)
  const source = await startCluster({ nodes: 3, shards, logLevel: 'warn', readyTimeoutMs: 120_000 })
  const client = new KvClient({ endpoints: [...source.endpoints], deadlineMs: 60_000 })
  try {
    const value = 'v'.repeat(valueBytes)
    let next = 0
    const t0 = performance.now()
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        for (let i = next++; i < keys; i = next++) await client.put(`bench/${i}`, value)
      }),
    )
    console.log(`loaded ${keys} keys of ${valueBytes} B in ${((performance.now() - t0) / 1000).toFixed(1)} s`)

    const t1 = performance.now()
    const baseline = await startCluster({ nodes: 3, shards, logLevel: 'warn', readyTimeoutMs: 180_000 })
    const baselineS = (performance.now() - t1) / 1000
    await baseline.stop()
    console.log(`baseline: a new cluster ready in ${baselineS.toFixed(1)} s`)

    const create: number[] = []
    const verify: number[] = []
    const restore: number[] = []
    for (let run = 1; run <= runs; run++) {
      const dir = join(source.dir, `backup-${run}`)
      let t = performance.now()
      const made = await runKvctl(
        ['--endpoints', source.endpoints.join(','), 'backup', 'create', dir, '-o', 'json'],
        { timeoutMs: 600_000 },
      )
      if (made.code !== 0) throw new Error(`backup create failed: ${made.stderr}`)
      const createS = (performance.now() - t) / 1000
      const { bytes } = JSON.parse(made.stdout) as { bytes: number }
      const mb = bytes / 1e6
      t = performance.now()
      const checked = await runKvctl(['backup', 'verify', dir, '-o', 'json'], { timeoutMs: 600_000 })
      if (checked.code !== 0) throw new Error(`backup verify failed: ${checked.stderr}`)
      const verifyS = (performance.now() - t) / 1000
      t = performance.now()
      const restored = await startCluster({
        nodes: 3,
        shards,
        logLevel: 'warn',
        extraArgs: ['--restore', dir],
        readyTimeoutMs: 300_000,
      })
      const restoreS = (performance.now() - t) / 1000
      await restored.stop()
      rmSync(dir, { recursive: true, force: true })
      const restoreOwnS = Math.max(0.001, restoreS - baselineS)
      create.push(mb / createS)
      verify.push(mb / verifyS)
      restore.push(mb / restoreOwnS)
      console.log(
        `run ${run}: ${mb.toFixed(1)} MB; create ${createS.toFixed(1)} s (${(mb / createS).toFixed(1)} MB/s), ` +
          `verify ${verifyS.toFixed(1)} s (${(mb / verifyS).toFixed(1)} MB/s), restored cluster ready in ` +
          `${restoreS.toFixed(1)} s (${restoreOwnS.toFixed(1)} s over the baseline: ${(mb / restoreOwnS).toFixed(1)} MB/s per node, 3 nodes seeding at once)`,
      )
    }
    console.log(
      `median: create ${median(create).toFixed(1)} MB/s, verify ${median(verify).toFixed(1)} MB/s, ` +
        `restore ${median(restore).toFixed(1)} MB/s; load average ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}`,
    )
  } finally {
    client.close()
    await source.stop()
  }
}
