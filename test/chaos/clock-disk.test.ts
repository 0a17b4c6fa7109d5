/**
 * The faults that need a node started differently: clock skew and jumps (libfaketime preloaded on
 * every node, with lease reads on: the case leases get wrong) and a full disk (node 3's /data is
 * a small file system of its own, filled to the last byte from the host).
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
})
