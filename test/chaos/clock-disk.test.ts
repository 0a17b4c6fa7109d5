/**
 * The faults that need a node started differently: clock skew and jumps (libfaketime preloaded on
 * every node, with lease reads on: the case leases get wrong) and a full disk (node 3's /data is
 * a small file system of its own, filled to the last byte from the host). With leases on, too,
 * partitions by iptables and by the node's own fault injection (`kvctl fault --isolate`), each
 * reporting how long after the cut the shards of the cut-off leader took writes again.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import { ChaosCluster } from './cluster.ts'
import { baseSeed, chaosDir, expectClean, runId, runMs } from './context.ts'
import { planSchedule } from './nemesis.ts'
import { runChaos } from './run.ts'

const dir = chaosDir('clock-disk')
const id = runId('clock')
const smallDiskNode = 3
let cluster: ChaosCluster | undefined

beforeAll(async () => {
  console.log(`chaos clock-disk: seed ${baseSeed}, histories and logs in ${dir}`)
  cluster = await ChaosCluster.start({
    nodes: 3,
    shards: 4,
    runId: id,
    seed: baseSeed + 1,
    dir,
    leaseReads: true,
    clock: true,
    smallDisk: { node: smallDiskNode, mib: 64 },
  })
}, 180_000)

afterAll(async () => {
  await cluster?.saveLogs()
  await cluster?.stop()
}, 120_000)

describe('with lease reads on', () => {
  it('clock: jumps and rate changes on one node at a time; every checker holds', async () => {
    const seed = baseSeed * 1000 + 300
    const schedule = planSchedule({
      seed,
      kinds: ['clock'],
      durationMs: runMs,
      nodes: 3,
    })
    const result = await runChaos(cluster!, {
      name: 'clock',
      seed,
      schedule,
      durationMs: runMs,
      keys: 6,
      dir,
    })
    expectClean(dir, result)
  })

  it('disk-full: one node out of space; every checker holds', async () => {
    const seed = baseSeed * 1000 + 400
    const schedule = planSchedule({
      seed,
      kinds: ['disk-full'],
      durationMs: runMs,
      nodes: 3,
      smallDiskNode,
    })
    const result = await runChaos(cluster!, {
      name: 'disk-full',
      seed,
      schedule,
      durationMs: runMs,
      keys: 6,
      dir,
    })
    expectClean(dir, result)
  })

  it('isolate and pause with leases: every checker holds', async () => {
    const seed = baseSeed * 1000 + 500
    const schedule = planSchedule({ seed, kinds: ['isolate', 'pause'], durationMs: runMs, nodes: 3 })
    const result = await runChaos(cluster!, {
      name: 'lease-partition',
      seed,
      schedule,
      durationMs: runMs,
      keys: 6,
      dir,
    })
    expectClean(dir, result)
  })

  it(
    'isolate with leases: the shards of the cut-off leader take writes again within the partition; every checker holds',
    async () => {
      const seed = baseSeed * 1000 + 501
      const durationMs = runMs + 14_000
      const schedule = planSchedule({
        seed,
        kinds: ['isolate', 'cut'],
        durationMs,
        nodes: 3,
        faultMs: [5_000, 7_000],
      })
      // Few keys, many workers: every key is written often enough to see when its writes come back.
      const result = await runChaos(cluster!, {
        name: 'lease-isolate',
        seed,
        schedule,
        durationMs,
        keys: 3,
        workers: 8,
        dir,
        partitionRecovery: true,
      })
      // Reported, not asserted (timing): from each cut until every key took a majority write again.
      for (const r of result.partitionRecoveries)
        console.log(
          `  ${r.fault}: writes back after ${r.recoveryMs === undefined ? 'never (stalled)' : `${Math.round(r.recoveryMs)} ms`} of ${Math.round(r.forMs)} ms`,
        )
      expectClean(dir, result)
    },
    runMs + 164_000,
  )
})
