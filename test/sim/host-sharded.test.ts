/**
 * The host simulator (test/sim/host/) on a sharded cluster: five real NodeHosts, each created
 * with the replicas kvd gives it (`hostedOf(initialClusterMap(...), nodeId)`): 8 to 12 data shards
 * at three replicas each, placed by the ring, so every node runs a different subset of Raft groups
 * with different voter sets, plus the meta shard on three nodes. Clients send each key only to
 * nodes holding its shard; meta clients run the control plane's transactions (bootstrap, register,
 * heartbeat, markDead, read) through MetaStore on the meta leader. Same faults as host-seeds:
 * loss, delay, reordering, partitions, stream resets, slow fsyncs, power cuts with restarts.
 *
 * Replay one seed (the run is identical, trace hash included):
 *   HOST_SHARDED_SEED=0x1f npx vitest run test/sim/host-sharded.test.ts
 * and print its whole trace too:
 *   HOST_SHARDED_SEED=0x1f HOST_SIM_TRACE=1 npx vitest run test/sim/host-sharded.test.ts
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { ClusterMap, metaShardId, type NodeRecord } from '../../src/cluster/index.ts'
import { NodeId, SeededRandom } from '../../src/common/index.ts'
import type { Hasher } from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import { HostCluster } from './host/cluster.ts'
import { MicrotaskDrain } from './host/drain.ts'
import { AsyncDriver } from './host/driver.ts'
import { checkMetaMap, type MetaKnowledge } from './host/meta.ts'
import { hostSwarmOptions } from './host/options.ts'
import { describeHostResult, reportHostResult, runHostSeed, type HostRunResult } from './host/run.ts'
import { Simulator, parseSeed } from './simulator.ts'

/** Seeds run by default: 1..12 (one or two seconds each). HOST_SHARDED_FROM and HOST_SHARDED_SEEDS widen the sweep. */
const seedFrom = Number(process.env['HOST_SHARDED_FROM'] ?? 1)
const seedCount = Number(process.env['HOST_SHARDED_SEEDS'] ?? 12)
const seedDeterminism = 0x5
const only = process.env['HOST_SHARDED_SEED']
/** Long seeds: the sweep's per-test timeout (simulated runs take real time). */
const timeoutMs = 60_000

let hasher: Hasher
beforeAll(async () => {
  hasher = await loadHasher()
})

async function runSharded(seed: number, sink?: (line: string) => void): Promise<HostRunResult> {
  return await runHostSeed({
    seed,
    hasher,
    overrides: { placement: 'sharded' },
    ...(sink === undefined ? {} : { sink }),
  })
}

function replay(seed: number): string {
  return `replay: HOST_SHARDED_SEED=0x${seed.toString(16)} HOST_SIM_TRACE=1 npx vitest run test/sim/host-sharded.test.ts`
}

const report = (r: HostRunResult): string => reportHostResult(r, replay(r.seed))

function expectHealthy(r: HostRunResult): void {
  if (!r.ok) console.log(`FAILED seed 0x${r.seed.toString(16)}: ${replay(r.seed)}`)
  expect(r.ok, report(r)).toBe(true)
  expect(['ok', 'unknown'], report(r)).toContain(r.stats.linearizability)
  // The meta shard ran its transactions: the map was bootstrapped, and registrations got answers.
  expect(r.stats.meta.bootstraps, report(r)).toBeGreaterThan(0)
  expect(r.stats.meta.registers, report(r)).toBeGreaterThan(0)
  expect(r.stats.meta.reads, report(r)).toBeGreaterThan(0)
  // Group commit across the shards a node holds.
  expect(r.stats.groupCommit.multiShardBatches, report(r)).toBeGreaterThan(0)
}

function suiteIf(when: boolean, name: string, body: () => void): void {
  if (when) describe(name, body)
}

const results: HostRunResult[] = []

suiteIf(only === undefined, 'sim/host sharded: swarm seeds', () => {
  for (let seed = seedFrom; seed < seedFrom + seedCount; seed++) {
    it(
      `seed 0x${seed.toString(16)}: 5 nodes, ring-placed shards and the meta shard: linearizable, durable, converged, one id per address`,
      async () => {
        const r = await runSharded(seed)
        results.push(r)
        console.log(describeHostResult(r))
        expectHealthy(r)
      },
      timeoutMs,
    )
  }

  it('faults hit somewhere in the seeds: crashes, drops, registrations after unknown outcomes', () => {
    const total = (f: (r: HostRunResult) => number): number => results.reduce((s, r) => s + f(r), 0)
    const summary = [
      `seeds=${results.length}`,
      `crashes=${total((r) => r.stats.crashes)}`,
      `transportDrops=${total((r) => r.stats.transport.dropped)}`,
      `snapshots=${total((r) => r.stats.net.snapshotsDelivered)}`,
      `metaRegisters=${total((r) => r.stats.meta.registers)}`,
      `registersAfterUnknown=${total((r) => r.stats.meta.registersAfterUnknown)}`,
      `metaFailed=${total((r) => r.stats.meta.failed)}`,
    ].join(' ')
    console.log(`sim/host sharded: ${summary}`)
    // Only meaningful when every seed above ran (not under -t filtering).
    if (results.length < seedCount) {
      console.log(
        `sim/host sharded totals not asserted: only ${results.length} of ${seedCount} seeds ran (a -t filter)`,
      )
      return
    }
    expect(
      total((r) => r.stats.crashes),
      summary,
    ).toBeGreaterThan(0)
    expect(
      total((r) => r.stats.transport.dropped),
      summary,
    ).toBeGreaterThan(0)
    // A registration retried after an attempt that may have applied (crash of the meta leader, a
    // lost answer): idempotency by address had to answer the first id.
    expect(
      total((r) => r.stats.meta.registersAfterUnknown),
      summary,
    ).toBeGreaterThan(0)
  })
})

suiteIf(only === undefined, 'sim/host sharded: determinism', () => {
  it(
    'replays a seed exactly: same trace hash, same stats',
    async () => {
      const a = await runSharded(seedDeterminism)
      const b = await runSharded(seedDeterminism)
      expect(b.traceHash, describeHostResult(a)).toBe(a.traceHash)
      expect(b.traceLines).toBe(a.traceLines)
      expect(b.stats).toEqual(a.stats)
      expect(a.traceLines).toBeGreaterThan(100)
    },
    2 * timeoutMs,
  )
})

/** A cluster as a run builds it (nothing started). */
function shardedCluster(seed: number): HostCluster {
  const sim = new Simulator()
  return new HostCluster({
    options: hostSwarmOptions(seed, { placement: 'sharded' }),
    sim,
    driver: new AsyncDriver(sim, new MicrotaskDrain()),
    hasher,
    random: new SeededRandom(seed).fork('cluster'),
    logLevel: 'warn',
  })
}

suiteIf(only === undefined, 'sim/host sharded: placement and checker teeth', () => {
  it('nodes hold different subsets: each data shard on 3 of 5 nodes, the meta shard on 3', () => {
    for (let seed = seedFrom; seed < seedFrom + seedCount; seed++) {
      const c = shardedCluster(seed)
      const sets = c.members.map((id) =>
        c
          .bootstrapOf(id)
          .map((h) => h.shardId)
          .join(','),
      )
      expect(new Set(sets).size, `seed ${seed}: ${sets.join(' | ')}`).toBe(c.members.length)
      const voterSets = new Set<string>()
      for (const shardId of c.shardIds) {
        const on = c.replicasOf(shardId)
        expect(on, `seed ${seed} shard ${shardId}`).toHaveLength(3)
        voterSets.add(on.join(','))
        for (const id of on) {
          const hosted = c.bootstrapOf(id).find((h) => h.shardId === shardId)!
          expect([...hosted.voters].sort((a, b) => a - b)).toEqual([...on])
          expect(hosted.kind).toBe(shardId === metaShardId ? 'meta' : 'data')
        }
      }
      expect(voterSets.size, `seed ${seed}: one voter set for every shard`).toBeGreaterThan(1)
    }
  })

  it('the meta map check catches two ids for one address, gaps in ids and a changed registration', () => {
    const initial = shardedCluster(1).map!
    const node = (id: number, address: string): NodeRecord => ({
      id: NodeId(id),
      address,
      zone: '',
      weight: 1,
      state: 'joining',
      lastHeartbeatMs: 0,
    })
    const withNodes = (extra: readonly NodeRecord[]): ClusterMap =>
      new ClusterMap(initial.cluster, [...initial.nodes.values(), ...extra], initial.shards, initial.meta)
    const k = (registered: MetaKnowledge['registered'] = new Map()): MetaKnowledge => ({
      initial,
      addresses: [...[...initial.nodes.values()].map((n) => n.address), 'sim-new-1', 'sim-new-2'],
      bootstrapAckedMs: 0,
      registered,
      reads: [],
    })
    expect(checkMetaMap(k(), withNodes([node(6, 'sim-new-1')]), 10)).toBeNull()
    expect(checkMetaMap(k(), withNodes([node(6, 'sim-new-1'), node(7, 'sim-new-1')]), 10)).toMatch(
      /has two ids/,
    )
    expect(checkMetaMap(k(), withNodes([node(7, 'sim-new-1')]), 10)).toMatch(/not 1\.\.6/)
    expect(
      checkMetaMap(
        k(new Map([['sim-new-1', { id: NodeId(6), returnMs: 5 }]])),
        withNodes([node(6, 'sim-new-2'), node(7, 'sim-new-1')]),
        10,
      ),
    ).toMatch(/acknowledged as n6/)
    expect(checkMetaMap(k(), undefined, 10)).toMatch(/map is gone/)
  })
})

suiteIf(only !== undefined, 'sim/host sharded: one seed', () => {
  it(
    `seed ${only ?? ''}`,
    async () => {
      const seed = parseSeed(only ?? '0')
      const lines: string[] = []
      const trace = process.env['HOST_SIM_TRACE'] === '1'
      const r = await runSharded(seed, trace ? (l: string) => lines.push(l) : undefined)
      if (trace) console.log(lines.join('\n'))
      console.log(describeHostResult(r))
      expectHealthy(r)
    },
    timeoutMs,
  )
})
