/**
 * The host simulator (test/sim/host/) on a sharded cluster: five real NodeHosts, each created
 * with the replicas kvd gives it (`hostedOf(initialClusterMap(...), nodeId)`): 8 to 12 data shards
 * at three replicas each, placed by the ring, so every node runs a different subset of Raft groups
 * with different voter sets, plus the meta shard on three nodes. Every node also runs its real
 * Router and ClusterAgent (heartbeats, map refresh, marking silent nodes dead); clients route with
 * the real SDK routing (routing cache, route choice and repair, retries) over a simulated KvService
 * call path, where each node serves or forwards once; shard records change at run time (a higher
 * epoch), so routes are repaired from WRONG_SHARD descriptors. Meta clients run the control plane's
 * transactions (bootstrap, register, heartbeat, setNodeStates, read) through MetaStore on the meta
 * leader. Same faults as host-seeds (loss, delay, reordering, partitions, stream resets, slow
 * fsyncs, power cuts with restarts), plus crashes of the meta leader. After healing, routing must
 * converge: every client reaches every leader with at most one forward, and soon directly.
 *
 * Replay one seed (the run is identical, trace hash included):
 *   HOST_SHARDED_SEED=0x1f npx vitest run test/sim/host-sharded.test.ts
 * and print its whole trace too:
 *   HOST_SHARDED_SEED=0x1f HOST_SIM_TRACE=1 npx vitest run test/sim/host-sharded.test.ts
 */
import { beforeAll, expect, it } from 'vitest'
import { ClusterMap, metaShardId, type NodeRecord } from '../../src/cluster/index.ts'
import { NodeId, SeededRandom } from '../../src/common/index.ts'
import type { Hasher } from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import { HostCluster } from './host/cluster.ts'
import { MicrotaskDrain } from './host/drain.ts'
import { AsyncDriver } from './host/driver.ts'
import { checkMetaMap, type MetaKnowledge } from './host/meta.ts'
import { hostSwarmOptions } from './host/options.ts'
import {
  describeHostResult,
  reportHostResult,
  runHostSeed,
  shardedMarks,
  type HostRunResult,
  type ShardedMark,
} from './host/run.ts'
import { Simulator } from './simulator.ts'
import { oneSeedSuite, suiteIf } from './host/suites.ts'

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
  // The clients routed with the SDK's routing through the nodes' routers, which forwarded some.
  expect(r.stats.routing.direct, report(r)).toBeGreaterThan(0)
  expect(r.stats.routing.mapLoads, report(r)).toBeGreaterThan(0)
  expect(r.stats.routing.probeRounds, report(r)).toBeGreaterThan(0)
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
      `forwarded=${total((r) => r.stats.routing.forwardedOnce + r.stats.routing.forwardedTwice)}`,
      `wrongShard=${total((r) => r.stats.routing.wrongShard)}`,
      `descriptorRepairs=${total((r) => r.stats.routing.descriptorRepairs)}`,
      `recordChanges=${total((r) => r.stats.routing.recordChanges)}`,
      ...(Object.keys(shardedMarks) as ShardedMark[]).map((m) => `${m}=${total((r) => r.shardedMarks[m])}`),
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
    // Routing ran for real: nodes forwarded, shard records changed at run time, and clients
    // repaired their routes from WRONG_SHARD descriptors; agents marked silent nodes dead and saw
    // their heartbeats fail while the meta leader was gone.
    for (const n of [
      total((r) => r.stats.routing.forwardedOnce),
      total((r) => r.stats.routing.recordChanges),
      total((r) => r.stats.routing.wrongShard),
      total((r) => r.stats.routing.descriptorRepairs),
      ...(Object.keys(shardedMarks) as ShardedMark[]).map((m) => total((r) => r.shardedMarks[m])),
    ])
      expect(n, summary).toBeGreaterThan(0)
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
      records: new Map(initial.shards.map((s) => [s.shardId, [{ epoch: s.epoch, replicas: s.replicas }]])),
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
    // A shard record the harness never wrote, and an epoch that goes back between two reads.
    const shard0 = initial.shards[0]!
    const bumped = { ...shard0, epoch: shard0.epoch + 1, replicas: [...shard0.replicas].reverse() }
    const withShard0 = (s: typeof shard0): ClusterMap =>
      new ClusterMap(
        initial.cluster,
        [...initial.nodes.values()],
        [s, ...initial.shards.slice(1)],
        initial.meta,
      )
    expect(checkMetaMap(k(), withShard0(bumped), 10)).toMatch(/never wrote/)
    const knows = k()
    const records = new Map(knows.records)
    records.set(shard0.shardId, [
      ...(records.get(shard0.shardId) ?? []),
      { epoch: bumped.epoch, replicas: bumped.replicas },
    ])
    const later: MetaKnowledge = {
      ...knows,
      records,
      reads: [
        {
          returnMs: 5,
          nodes: initial.nodes.size,
          terms: new Map(),
          epochs: new Map([[shard0.shardId, bumped.epoch]]),
        },
      ],
    }
    expect(checkMetaMap(later, withShard0(bumped), 10)).toBeNull()
    expect(checkMetaMap(later, initial, 10)).toMatch(/epoch 1, after a read that saw 2/)
  })
})

oneSeedSuite({
  only,
  name: 'sim/host sharded: one seed',
  run: (seed, sink) => runSharded(seed, sink),
  expectHealthy,
  timeoutMs,
})
