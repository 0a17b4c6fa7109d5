/**
 * Every fault of the nemesis table on a 3-node cluster of containers (4 shards), one run per kind
 * (each a seeded schedule of that kind only), then one run of them all composed; every run ends
 * with every checker (run.ts). One cluster serves every run of this file: each run has its own keys.
 * Then `kvctl cap-demo` (the compiled CLI, from this host) against the containers: every level's
 * promise must hold with a shard's leader cut off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runKvctl } from '../integration/cli/run-kvctl.ts'
import { ChaosCluster } from './cluster.ts'
import { baseSeed, chaosDir, expectClean, runId, runMs } from './context.ts'
import { compose, planSchedule, type FaultKind } from './nemesis.ts'
import { runChaos } from './run.ts'

const dir = chaosDir('faults')
const id = runId('faults')
let cluster: ChaosCluster | undefined

beforeAll(async () => {
  console.log(`chaos faults: seed ${baseSeed}, histories and logs in ${dir}`)
  cluster = await ChaosCluster.start({ nodes: 3, shards: 4, runId: id, seed: baseSeed, dir })
}, 180_000)

afterAll(async () => {
  await cluster?.saveLogs()
  await cluster?.stop()
}, 120_000)

const kinds: readonly FaultKind[] = [
  'kill',
  'stop',
  'pause',
  'isolate',
  'one-way',
  'bridge',
  'loss',
  'latency',
  'bandwidth',
]

describe('one kind of fault at a time', () => {
  for (const [i, kind] of kinds.entries()) {
    it(
      `${kind}: every checker holds`,
      async () => {
        const seed = baseSeed * 1000 + i
        const schedule = planSchedule({ seed, kinds: [kind], durationMs: runMs, nodes: 3 })
        const result = await runChaos(cluster!, {
          name: kind,
          seed,
          schedule,
          durationMs: runMs,
          keys: 6,
          dir,
        })
        expectClean(dir, result)
      },
      runMs + 150_000,
    )
  }

  it(
    'rolling-restart: every checker holds',
    async () => {
      const seed = baseSeed * 1000 + 100
      const schedule = {
        seed,
        faults: [{ atMs: 1_000, forMs: 0, fault: { kind: 'rolling-restart' as const } }],
      }
      const result = await runChaos(cluster!, {
        name: 'rolling-restart',
        seed,
        schedule,
        durationMs: runMs,
        keys: 6,
        dir,
      })
      expectClean(dir, result)
    },
    runMs + 240_000,
  )
})

describe('faults composed', () => {
  it(
    'two seeded schedules of every kind, overlapping: every checker holds',
    async () => {
      const seed = baseSeed * 1000 + 200
      const durationMs = runMs * 2
      const schedule = compose(
        planSchedule({ seed, kinds: ['kill', 'pause', 'stop', 'latency'], durationMs, nodes: 3 }),
        planSchedule({
          seed: seed + 1,
          kinds: ['isolate', 'one-way', 'bridge', 'loss'],
          durationMs,
          nodes: 3,
        }),
      )
      const result = await runChaos(cluster!, { name: 'composed', seed, schedule, durationMs, keys: 6, dir })
      expectClean(dir, result)
    },
    runMs * 2 + 150_000,
  )
})

describe('kvctl cap-demo in containers', () => {
  it('cuts a leader off, every level on both sides keeps its promise (exit 0)', async () => {
    const run = await runKvctl(['--endpoints', cluster!.endpoints.join(','), 'cap-demo', '-o', 'json'], {
      timeoutMs: 120_000,
    })
    const out = JSON.parse(run.stdout === '' ? '{}' : run.stdout) as {
      broken?: number
      failoverMs?: number
      rows?: Array<{ side: string; op: string; level: string; outcome: string }>
    }
    console.log(
      `cap-demo | exit ${run.code} | broken ${out.broken} | failover ${out.failoverMs} ms | ` +
        (out.rows ?? []).map((r) => `${r.side} ${r.op} ${r.level} ${r.outcome}`).join(', '),
    )
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    expect(out.broken).toBe(0)
    const minority = (out.rows ?? []).filter((r) => r.side === 'minority')
    expect(minority.find((r) => r.op === 'read' && r.level === 'linearizable')?.outcome).toBe('refused')
    expect(minority.find((r) => r.op === 'read' && r.level === 'eventual')?.outcome).toBe('served')
  }, 150_000)
})
