/**
 * The long run: `npm run chaos -- --minutes N --seed S [--nodes 5]` (scripts/chaos.js). A cluster
 * of RINGKV_CHAOS_NODES containers (default 5, 8 shards) takes one-minute rounds of every
 * restartable fault kind composed, each round with its own seed (S, S+1, ...), keys and checkers,
 * until N minutes have passed. Skipped (saying so) when no minutes are asked for: `npm run
 * test:chaos` runs the short suite only.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import { ChaosCluster } from './cluster.ts'
import { baseSeed, chaosDir, expectClean, runId, soakMinutes } from './context.ts'
import { compose, planSchedule } from './nemesis.ts'
import { runChaos } from './run.ts'

const nodes = Number(process.env['RINGKV_CHAOS_NODES'] ?? '5')
const roundMs = 60_000
if (soakMinutes === 0)
  console.log('chaos soak skipped: no RINGKV_CHAOS_MINUTES (npm run chaos -- --minutes N)')

describe.skipIf(soakMinutes === 0)(`soak: ${soakMinutes} min on ${nodes} nodes`, () => {
  const dir = chaosDir('soak')
  let cluster: ChaosCluster | undefined

  beforeAll(async () => {
    if (!(Number.isSafeInteger(nodes) && nodes >= 3 && nodes <= 7))
      throw new Error(`RINGKV_CHAOS_NODES=${nodes}: 3..7`)
    console.log(`chaos soak: seed ${baseSeed}, ${nodes} nodes, histories and logs in ${dir}`)
    cluster = await ChaosCluster.start({ nodes, shards: 8, runId: runId('soak'), seed: baseSeed + 2, dir })
  }, 180_000)

  afterAll(async () => {
    await cluster?.saveLogs()
    await cluster?.stop()
  }, 120_000)

  it(
    'every round: every checker holds',
    async () => {
      const endMs = performance.now() + soakMinutes * 60_000
      for (let round = 0; performance.now() < endMs; round++) {
        const seed = baseSeed + round
        const schedule = compose(
          planSchedule({ seed, kinds: ['kill', 'pause', 'stop', 'latency'], durationMs: roundMs, nodes }),
          planSchedule({
            seed: seed + 0x10000,
            kinds: ['isolate', 'one-way', 'bridge', 'loss'],
            durationMs: roundMs,
            nodes,
          }),
        )
        const result = await runChaos(cluster!, {
          name: `soak-${round}`,
          seed,
          schedule,
          durationMs: roundMs,
          keys: 12,
          dir,
        })
        expectClean(dir, result)
      }
    },
    soakMinutes * 60_000 + 600_000,
  )
})
