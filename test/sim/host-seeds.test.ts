/**
 * The node layer under the simulator (test/sim/host/): three real NodeHosts, their one Ready
 * loop each, group commit across shards into one engine write, and the production transport's
 * batching (GrpcPeerTransport over a simulated channel) or a datagram transport, all on simulated
 * time, under seeded faults: loss, delay, reordering, partitions, stream resets, slow fsyncs and
 * power cuts with restarts on the surviving MemoryEngine state. See host/run.ts for the phases
 * and the checks.
 *
 * Replay one seed (the run is identical, trace hash included):
 *   HOST_SIM_SEED=0x1f npx vitest run test/sim/host-seeds.test.ts
 * and print its whole trace too:
 *   HOST_SIM_SEED=0x1f HOST_SIM_TRACE=1 npx vitest run test/sim/host-seeds.test.ts
 */
import { beforeAll, expect, it } from 'vitest'
import type { Hasher } from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import { HostNemesis } from './host/options.ts'
import {
  coverageMarks,
  describeHostResult,
  reportHostResult,
  runHostSeed,
  type CoverageMark,
  type HostRunResult,
} from './host/run.ts'
import { oneSeedSuite, suiteIf } from './host/suites.ts'

/** Seeds run by default: 1..32 (about half a second each on an idle core). HOST_SIM_FROM and
 * HOST_SIM_SEEDS widen the sweep: HOST_SIM_FROM=1000 HOST_SIM_SEEDS=500 npx vitest run ... */
const seedFrom = Number(process.env['HOST_SIM_FROM'] ?? 1)
const seedCount = Number(process.env['HOST_SIM_SEEDS'] ?? 32)
const seedDeterminism = 0x2a

let hasher: Hasher
beforeAll(async () => {
  hasher = await loadHasher()
})

function replay(seed: number): string {
  return `replay: HOST_SIM_SEED=0x${seed.toString(16)} HOST_SIM_TRACE=1 npx vitest run test/sim/host-seeds.test.ts`
}

const report = (r: HostRunResult): string => reportHostResult(r, replay(r.seed))

function expectHealthy(r: HostRunResult): void {
  expect(r.ok, report(r)).toBe(true)
  expect(['ok', 'unknown'], report(r)).toContain(r.stats.linearizability)
  // Group commit: fewer engine writes than group Readies, and some batch carried the work of two
  // shards or two proposals of one shard. The transport batched envelopes into fewer messages.
  expect(r.stats.host.writes, report(r)).toBeLessThan(r.stats.host.readies)
  expect(
    r.stats.groupCommit.multiShardBatches + r.stats.groupCommit.multiEntryBatches,
    report(r),
  ).toBeGreaterThan(0)
  expect(r.stats.transport.sentBatches, report(r)).toBeLessThan(r.stats.transport.sent)
}

const only = process.env['HOST_SIM_SEED']

/** The swarm seeds' results, for the suite-wide checks at the end. */
const results: HostRunResult[] = []

suiteIf(only === undefined, 'sim/host: swarm seeds', () => {
  for (let seed = seedFrom; seed < seedFrom + seedCount; seed++) {
    it(`seed 0x${seed.toString(16)}: linearizable, acknowledged writes survive, replicas converge, batching holds`, async () => {
      const r = await runHostSeed({ seed, hasher })
      results.push(r)
      console.log(describeHostResult(r))
      expectHealthy(r)
    })
  }

  it('hit every coverage mark and every fault path somewhere in the seeds', (ctx) => {
    // Only meaningful when every seed above ran (not under -t filtering).
    if (results.length < seedCount) {
      console.log(`sim/host marks: skipped, only ${results.length} of ${seedCount} seeds ran (a -t filter)`)
      return ctx.skip()
    }
    const total = (f: (r: HostRunResult) => number): number => results.reduce((s, r) => s + f(r), 0)
    const marks = Object.keys(coverageMarks) as CoverageMark[]
    const summary = [
      ...marks.map((m) => `${m}=${total((r) => r.marks[m])}`),
      `crashes=${total((r) => r.stats.crashes)}`,
      `inboxDrops=${total((r) => r.stats.host.envelopesDropped)}`,
      `transportDrops=${total((r) => r.stats.transport.dropped)}`,
      `multiShardBatches=${total((r) => r.stats.groupCommit.multiShardBatches)}`,
      `multiEntryBatches=${total((r) => r.stats.groupCommit.multiEntryBatches)}`,
      `grpcSeeds=${results.filter((r) => r.optionsLines.some((l) => l.includes('transport=grpc'))).length}`,
    ].join(' ')
    console.log(`sim/host marks: ${summary}`)
    for (const m of marks)
      expect(
        total((r) => r.marks[m]),
        `mark ${m} never hit: ${summary}`,
      ).toBeGreaterThan(0)
    expect(
      total((r) => r.stats.crashes),
      summary,
    ).toBeGreaterThan(0)
    expect(
      total((r) => r.stats.transport.dropped),
      summary,
    ).toBeGreaterThan(0)
    expect(
      total((r) => r.stats.groupCommit.multiShardBatches),
      summary,
    ).toBeGreaterThan(0)
  })
})

suiteIf(only === undefined, 'sim/host: determinism and teeth', () => {
  it('replays a seed exactly: same trace hash, same stats', async () => {
    const a = await runHostSeed({ seed: seedDeterminism, hasher })
    const b = await runHostSeed({ seed: seedDeterminism, hasher })
    expect(b.traceHash, describeHostResult(a)).toBe(a.traceHash)
    expect(b.traceLines).toBe(a.traceLines)
    expect(b.stats).toEqual(a.stats)
    expect(a.traceLines).toBeGreaterThan(100)
  })

  it('catches a disk that acknowledges fsyncs it never did (planted fault)', async () => {
    // Power cuts then lose acknowledged Raft state (a node forgets its vote and its log): some seed
    // must end in a safety verdict, not only in a storm or a stall.
    const safety = ['linearizability', 'acked-writes', 'state-machine-safety', 'session', 'phantom-read']
    const seen: string[] = []
    let caught: HostRunResult | undefined
    for (let seed = 1; seed <= 10 && caught === undefined; seed++) {
      const r = await runHostSeed({
        seed,
        hasher,
        eventsMax: 100_000,
        overrides: {
          plantedFault: 'fsync-lies',
          nemeses: [HostNemesis.Crash, HostNemesis.CrashLeader],
          loseUnsyncedPer4: 4,
          faultIntervalMsMean: 300,
        },
      })
      console.log(`planted: ${describeHostResult(r)}`)
      seen.push(`0x${seed.toString(16)}: ${r.failure?.property ?? 'ok'}`)
      if (r.failure !== null && safety.includes(r.failure.property)) caught = r
    }
    expect(
      caught,
      `no seed caught the planted fsync bug as a safety violation: ${seen.join(', ')}`,
    ).toBeDefined()
    // Several whole seeds in one test: ~60 s of CPU on a busy 2-core machine, so a larger budget.
  }, 240_000)
})

oneSeedSuite({
  only,
  name: 'sim/host: one seed',
  run: (seed, sink) => runHostSeed({ seed, hasher, ...(sink === undefined ? {} : { sink }) }),
  expectHealthy,
})
