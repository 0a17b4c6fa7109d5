/**
 * Replica moves in the host simulator (test/sim/host/): the sharded cluster of host-sharded
 * (five real NodeHosts with their real Routers and ClusterAgents, clients on the SDK's routing)
 * under the move nemesis (host/moves.ts): moves of data shards through the real control path
 * (MoveReplica to an agent, run by the meta leader's mover: prepare, learner, catchup, transfer,
 * replace, cleanup), sometimes back again, refused ones with their codes, and leader transfers,
 * while the source, the destination, the shard's leader or the meta leader is power-cut when a
 * chosen step of a move is reached, on top of the seed's other faults (partitions, loss, slow
 * disks, crashes). Who holds a shard follows the configurations the shards applied (configs.ts).
 *
 * Checked on every 5 ms of simulated time (host/membership-rules.ts): a quorum of up-to-date
 * voters in each half of the leader's configuration, joint consensus for a replace, a learner
 * promoted only once it installed the shard and caught up, the leader never removed while it leads,
 * a replica's data dropped only after a configuration without it was applied, a removed replica
 * never back without a PrepareReplica after its removal. At the end: every move ended (done or
 * rolled back), the shard records name the shards' voters, every node holds exactly the replicas
 * its shards' configurations name (and no data of other shards), replicas converge, routing
 * converges, the history is linearizable and acknowledged writes are durable (host/run.ts).
 *
 * Replay one seed (the run is identical, trace hash included):
 *   HOST_MOVES_SEED=0x3 npx vitest run test/sim/host-moves.test.ts
 * and print its whole trace too:
 *   HOST_MOVES_SEED=0x3 HOST_SIM_TRACE=1 npx vitest run test/sim/host-moves.test.ts
 * A wider sweep: HOST_MOVES_FROM=100 HOST_MOVES_SEEDS=50 npx vitest run test/sim/host-moves.test.ts
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { NodeId, ShardId, limits, type LogIndex } from '../../src/common/index.ts'
import type { Hasher } from '../../src/hashing/index.ts'
import type { ShardView } from '../../src/node/host.ts'
import { loadHasher } from '../../src/storage/index.ts'
import type { HostCluster } from './host/cluster.ts'
import { ConfigBook } from './host/configs.ts'
import { MembershipRules } from './host/membership-rules.ts'
import type { HostSimOverrides } from './host/options.ts'
import { describeHostResult, reportHostResult, runHostSeed, type HostRunResult } from './host/run.ts'
import { oneSeedSuite, suiteIf } from './host/suites.ts'

/**
 * Seeds run by default: a few that make every kind of event happen (moves done, rolled back and
 * moved back; crashes of each role, before and after replace; every refusal code), each a run of
 * 15 to 20 s of simulated time. HOST_MOVES_FROM and HOST_MOVES_SEEDS run a range instead.
 */
const defaultSeeds = [0x4, 0x7, 0x8, 0xc]
const from = process.env['HOST_MOVES_FROM']
const seeds =
  from === undefined && process.env['HOST_MOVES_SEEDS'] === undefined
    ? defaultSeeds
    : Array.from({ length: Number(process.env['HOST_MOVES_SEEDS'] ?? 8) }, (_, i) => Number(from ?? 1) + i)
const seedCount = seeds.length
const only = process.env['HOST_MOVES_SEED']
/**
 * Seeds run only when the default ones missed a kind of event the totals need, in order, until
 * every kind was seen. What a seed does shifts with any change of timing in the code it runs (a
 * request answered at once rather than at its deadline reshuffles the rest of the run), and some
 * events are rare (a rollback needs a destination down until it is marked dead): the totals must
 * not hang on four seeds keeping their luck.
 */
const reserveSeeds = [0x1, 0x2, 0x3, 0x5, 0x6, 0x9, 0xa, 0xb, 0xd, 0xe, 0xf, 0x10]
/** Reserve seeds run at the most. */
const reserveRunsMax = reserveSeeds.length
const timeoutMs = 120_000

/** The move suite's layout: the sharded cluster, a longer safety phase (a move takes seconds), moves on. */
const movesOverrides: HostSimOverrides = {
  placement: 'sharded',
  heartbeatMs: 200,
  safetyPhaseMs: 8_000,
  moveIntervalMsMean: 300,
  // A replica a rolled-back move left on a node that was down through the rollback is dropped
  // only after the empty-replica grace: convergence may take that long (and a few rounds more).
  convergenceMsMax: limits.emptyReplicaGraceMs + 20_000,
}

let hasher: Hasher
beforeAll(async () => {
  hasher = await loadHasher()
})

async function runMoves(
  seed: number,
  sink?: (line: string) => void,
  overrides: HostSimOverrides = movesOverrides,
): Promise<HostRunResult> {
  return await runHostSeed({
    seed,
    hasher,
    overrides,
    ...(sink === undefined ? {} : { sink }),
  })
}

function replay(seed: number): string {
  return `replay: HOST_MOVES_SEED=0x${seed.toString(16)} HOST_SIM_TRACE=1 npx vitest run test/sim/host-moves.test.ts`
}

const report = (r: HostRunResult): string => reportHostResult(r, replay(r.seed))

/** One line of what the moves did in a run. */
function describeMoves(r: HostRunResult): string {
  const m = r.stats.moves
  const kv = (o: Record<string, number>): string =>
    Object.entries(o)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(',')
  return (
    `moves seed=0x${r.seed.toString(16)} requested=${m.requested} started=${m.started} back=${m.movesBack} done=${m.done} failed=${m.failed} ` +
    `refused={${kv(m.refused)}} unanswered=${m.unanswered} transfers=${m.transfersOk}/${m.transfers} steps={${kv(m.steps)}} ` +
    `crashes={${kv(m.crashes)}} crashesSkipped=${m.crashesSkipped} configChanges=${m.configChanges} ` +
    `rules(samples=${m.rules.samples} quorum=${m.rules.quorumChecks} joint=${m.rules.jointSeen} promotions=${m.rules.promotions} removals=${m.rules.removals} recreations=${m.rules.recreations})`
  )
}

function expectHealthy(r: HostRunResult): void {
  if (!r.ok) console.log(`FAILED seed 0x${r.seed.toString(16)}: ${replay(r.seed)}`)
  expect(r.ok, report(r)).toBe(true)
  expect(['ok', 'unknown'], report(r)).toContain(r.stats.linearizability)
  expect(r.stats.routing.probeRounds, report(r)).toBeGreaterThan(0)
  // The rules were checked while the moves ran, and every move the meta leader took ended.
  expect(r.stats.moves.rules.samples, report(r)).toBeGreaterThan(1_000)
  expect(r.stats.moves.done + r.stats.moves.failed, report(r)).toBeGreaterThanOrEqual(r.stats.moves.started)
}

/** The kinds of event the totals below need that `runs` did not show. */
function missingKinds(runs: readonly HostRunResult[]): string[] {
  const total = (f: (r: HostRunResult) => number): number => runs.reduce((s, r) => s + f(r), 0)
  const some = (f: (r: HostRunResult) => Record<string, number>, match: (k: string) => boolean): boolean =>
    runs.some((r) => Object.entries(f(r)).some(([k, v]) => match(k) && v > 0))
  const missing: string[] = []
  if (total((r) => r.stats.moves.done) === 0) missing.push('a move done')
  if (total((r) => r.stats.moves.movesBack) === 0) missing.push('a move back')
  if (total((r) => r.stats.moves.transfersOk) === 0) missing.push('a leader transfer')
  for (const code of ['MOVE_REFUSED', 'NOT_FOUND', 'SHARD_BUSY', 'STALE_EPOCH'])
    if (
      !some(
        (r) => r.stats.moves.refused,
        (k) => k === code,
      )
    )
      missing.push(code)
  for (const role of ['source', 'destination', 'shard-leader', 'meta-leader'])
    if (
      !some(
        (r) => r.stats.moves.crashes,
        (k) => k.endsWith(`/${role}`),
      )
    )
      missing.push(`a crash of the ${role}`)
  for (const step of ['catchup', 'replace'])
    if (
      !some(
        (r) => r.stats.moves.crashes,
        (k) => k.startsWith(`${step}/`),
      )
    )
      missing.push(`a crash at ${step}`)
  return missing
}

const results: HostRunResult[] = []

suiteIf(only === undefined, 'sim/host moves: seeds', () => {
  for (const seed of seeds) {
    it(
      `seed 0x${seed.toString(16)}: moves with crashes at their steps: rules hold, moves end, placement follows the configurations`,
      async () => {
        const r = await runMoves(seed)
        results.push(r)
        console.log(describeHostResult(r))
        console.log(describeMoves(r))
        expectHealthy(r)
      },
      timeoutMs,
    )
  }

  it(
    'the moves were real: done, rolled back, refused, crashed at their steps, through joint configurations',
    async () => {
      if (results.length > 0 && results.length === seedCount && from === undefined) {
        for (const seed of reserveSeeds.slice(0, reserveRunsMax)) {
          const missing = missingKinds(results)
          if (missing.length === 0) break
          console.log(
            `sim/host moves: ${missing.join(', ')} not seen yet: reserve seed 0x${seed.toString(16)}`,
          )
          const r = await runMoves(seed)
          console.log(describeMoves(r))
          expectHealthy(r)
          results.push(r)
        }
      }
      const total = (f: (r: HostRunResult) => number): number => results.reduce((s, r) => s + f(r), 0)
      const sum = (f: (r: HostRunResult) => Record<string, number>): Record<string, number> => {
        const out: Record<string, number> = {}
        for (const r of results) for (const [k, v] of Object.entries(f(r))) out[k] = (out[k] ?? 0) + v
        return out
      }
      const crashes = sum((r) => r.stats.moves.crashes)
      const refused = sum((r) => r.stats.moves.refused)
      const summary = [
        `seeds=${results.length}`,
        `started=${total((r) => r.stats.moves.started)}`,
        `done=${total((r) => r.stats.moves.done)}`,
        `failed=${total((r) => r.stats.moves.failed)}`,
        `back=${total((r) => r.stats.moves.movesBack)}`,
        `refused=${JSON.stringify(refused)}`,
        `crashes=${JSON.stringify(crashes)}`,
        `joint=${total((r) => r.stats.moves.rules.jointSeen)}`,
        `promotions=${total((r) => r.stats.moves.rules.promotions)}`,
        `removals=${total((r) => r.stats.moves.rules.removals)}`,
        `recreations=${total((r) => r.stats.moves.rules.recreations)}`,
        `transfers=${total((r) => r.stats.moves.transfersOk)}/${total((r) => r.stats.moves.transfers)}`,
      ].join(' ')
      console.log(`sim/host moves: ${summary}`)
      if (results.length === 0 || results.length < seedCount) {
        console.log(
          `sim/host moves totals not asserted: only ${results.length} of ${seedCount} seeds ran (a -t filter)`,
        )
        return
      }
      expect(
        total((r) => r.stats.moves.done),
        summary,
      ).toBeGreaterThan(0)
      // Rollbacks are not required here: the ones the first sweeps saw came from requests left
      // waiting in a closed host's inbox (FINDINGS H5, fixed), and no nemesis keeps a destination
      // down through catch-up for longer than the stall bound yet. The mover's rollbacks are
      // covered by test/unit/cluster/mover.test.ts.
      if (total((r) => r.stats.moves.failed) === 0)
        console.log('sim/host moves: no move rolled back in these seeds (not required, see above)')
      expect(
        total((r) => r.stats.moves.movesBack),
        summary,
      ).toBeGreaterThan(0)
      expect(
        total((r) => r.stats.moves.rules.jointSeen),
        summary,
      ).toBeGreaterThan(0)
      expect(
        total((r) => r.stats.moves.rules.promotions),
        summary,
      ).toBeGreaterThan(0)
      expect(
        total((r) => r.stats.moves.rules.removals),
        summary,
      ).toBeGreaterThan(0)
      expect(
        total((r) => r.stats.moves.transfersOk),
        summary,
      ).toBeGreaterThan(0)
      for (const code of ['MOVE_REFUSED', 'NOT_FOUND', 'SHARD_BUSY', 'STALE_EPOCH'])
        expect(refused[code] ?? 0, `${code}: ${summary}`).toBeGreaterThan(0)
      // Crashes hit every role, and moves at several steps (before and after replace).
      for (const role of ['source', 'destination', 'shard-leader', 'meta-leader'])
        expect(
          Object.entries(crashes)
            .filter(([k]) => k.endsWith(`/${role}`))
            .reduce((s, [, v]) => s + v, 0),
          `${role}: ${summary}`,
        ).toBeGreaterThan(0)
      for (const step of ['catchup', 'replace'])
        expect(
          Object.entries(crashes)
            .filter(([k]) => k.startsWith(`${step}/`))
            .reduce((s, [, v]) => s + v, 0),
          `${step}: ${summary}`,
        ).toBeGreaterThan(0)
    },
    reserveRunsMax * timeoutMs,
  )
})

suiteIf(only === undefined, 'sim/host moves: determinism', () => {
  it(
    'replays a seed with moves and crashes at their steps exactly: same trace hash, same stats',
    async () => {
      // A shorter safety phase: a move or two, with their crash plans, is enough to compare.
      const overrides = { ...movesOverrides, safetyPhaseMs: 3_000 }
      const a = await runMoves(0x4, undefined, overrides)
      const b = await runMoves(0x4, undefined, overrides)
      console.log(describeMoves(a))
      expect(b.traceHash, describeHostResult(a)).toBe(a.traceHash)
      expect(b.stats).toEqual(a.stats)
      expect(a.stats.moves.started, describeMoves(a)).toBeGreaterThan(0)
    },
    2 * timeoutMs,
  )
})

oneSeedSuite({
  only,
  name: 'sim/host moves: one seed',
  run: (seed, sink) => runMoves(seed, sink),
  describe: describeMoves,
  expectHealthy,
  timeoutMs,
})

/**
 * The membership rules have teeth: each one, fed host views that break it (a fake cluster of
 * hand-made status() answers), fails the run with its property; the same views without the break
 * pass.
 */
interface FakeReplica {
  view: ShardView
  lastIndex: number
  progress: { nodeId: NodeId; match: number }[]
}

class FakeCluster {
  readonly shardIds = [ShardId(0)]
  readonly configs = new ConfigBook(new Map([[ShardId(0), [NodeId(1), NodeId(2), NodeId(3)]]]))
  readonly prepared = new Map<string, number>()
  readonly sim = { nowMs: 0 }
  readonly replicas = new Map<NodeId, FakeReplica>()
  failure: { property: string; detail: string } | null = null
  get slots(): { id: NodeId; host: unknown }[] {
    return [...this.replicas.entries()].map(([id, r]) => ({
      id,
      host: {
        status: () => [r.view],
        replicaView: () => ({
          ...r.view,
          lastIndex: r.lastIndex,
          progress: r.progress.map((p) => ({
            ...p,
            isLearner: false,
            recentActive: true,
            snapshotBytesSent: 0,
          })),
          installBytes: 0,
        }),
      },
    }))
  }
  fail(property: string, detail: string): void {
    this.failure ??= { property, detail }
  }
  observeConfigs(): void {
    for (const r of this.replicas.values())
      if (r.view.state === 'active') this.configs.note(r.view.shardId, r.view)
  }
}

function fakeView(over: Partial<ShardView>): ShardView {
  return {
    shardId: ShardId(0),
    kind: 'data',
    range: { start: 0n, end: 1n },
    state: 'active',
    role: 'follower',
    leaderId: null,
    term: 7,
    appliedIndex: 100 as LogIndex,
    commitIndex: 100 as LogIndex,
    voters: [NodeId(1), NodeId(2), NodeId(3)],
    learners: [],
    votersOutgoing: [],
    epoch: 2,
    ...over,
  }
}

/** Three voters at index 100, node 1 leading (epoch 2). */
function healthy(): { cluster: FakeCluster; rules: MembershipRules; sample(): void } {
  const cluster = new FakeCluster()
  for (const id of [1, 2, 3])
    cluster.replicas.set(NodeId(id), {
      view: fakeView(id === 1 ? { role: 'leader', leaderId: NodeId(1) } : { leaderId: NodeId(1) }),
      lastIndex: 100,
      progress: id === 1 ? [2, 3].map((p) => ({ nodeId: NodeId(p), match: 100 })) : [],
    })
  const rules = new MembershipRules(cluster as unknown as HostCluster)
  return { cluster, rules, sample: () => rules.sample() }
}

const replicaOf = (c: FakeCluster, id: number): FakeReplica => c.replicas.get(NodeId(id))!

describe('sim/host moves: membership rules have teeth', () => {
  it('healthy views pass every rule', () => {
    const h = healthy()
    h.sample()
    h.sample()
    h.rules.finish()
    expect(h.cluster.failure).toBeNull()
    expect(h.rules.stats.quorumChecks).toBe(2)
  })

  it('a leader with fewer than a quorum of up-to-date voters (an empty voter, a lagging one)', () => {
    const h = healthy()
    h.sample()
    replicaOf(h.cluster, 1).view = fakeView({
      role: 'leader',
      voters: [NodeId(1), NodeId(2), NodeId(4)],
      votersOutgoing: [NodeId(1), NodeId(2), NodeId(3)],
      epoch: 3,
    })
    replicaOf(h.cluster, 2).lastIndex = 10
    replicaOf(h.cluster, 1).progress = [{ nodeId: NodeId(2), match: 10 }]
    h.sample()
    expect(h.cluster.failure?.property).toBe('membership-quorum')
  })

  it('a replace without the joint configuration', () => {
    const h = healthy()
    h.sample()
    replicaOf(h.cluster, 2).view = fakeView({ voters: [NodeId(1), NodeId(2), NodeId(4)], epoch: 3 })
    h.sample()
    expect(h.cluster.failure?.property).toBe('membership-joint')
  })

  it('the same replace through a joint configuration passes', () => {
    const h = healthy()
    h.sample()
    const voters = [NodeId(1), NodeId(2), NodeId(4)]
    replicaOf(h.cluster, 2).view = fakeView({
      voters,
      votersOutgoing: [NodeId(1), NodeId(2), NodeId(3)],
      epoch: 3,
    })
    h.sample()
    replicaOf(h.cluster, 2).view = fakeView({ voters, epoch: 4 })
    h.sample()
    h.rules.finish()
    expect(h.cluster.failure).toBeNull()
    expect(h.rules.stats.jointSeen).toBe(1)
  })

  it('a voter promoted while its replica is still empty', () => {
    const h = healthy()
    h.cluster.replicas.set(NodeId(4), {
      view: fakeView({ state: 'empty', voters: [] }),
      lastIndex: 0,
      progress: [],
    })
    h.sample()
    replicaOf(h.cluster, 1).view = fakeView({
      role: 'leader',
      voters: [NodeId(1), NodeId(2), NodeId(3), NodeId(4)],
      epoch: 3,
    })
    h.sample()
    expect(h.cluster.failure?.property).toBe('membership-promote')
  })

  it('a leader outside the configuration it applied', () => {
    const h = healthy()
    replicaOf(h.cluster, 1).view = fakeView({ role: 'leader', voters: [NodeId(2), NodeId(3), NodeId(4)] })
    h.sample()
    expect(h.cluster.failure?.property).toBe('membership-leader')
  })

  it('a replica dropped with no applied configuration leaving it out', () => {
    const h = healthy()
    h.sample()
    replicaOf(h.cluster, 3).view = fakeView({ state: 'tombstone', voters: [], epoch: 3 })
    h.sample()
    expect(h.cluster.failure).toBeNull()
    h.rules.finish()
    expect(h.cluster.failure?.property).toBe('membership-delete')
  })

  it('a removed replica back without a PrepareReplica planned at its removal epoch or later', () => {
    const h = healthy()
    h.sample()
    replicaOf(h.cluster, 3).view = fakeView({ state: 'tombstone', voters: [], epoch: 3 })
    h.sample()
    replicaOf(h.cluster, 3).view = fakeView({ state: 'empty', voters: [], epoch: 0 })
    h.cluster.prepared.set('3:0', 2)
    h.sample()
    expect(h.cluster.failure?.property).toBe('membership-resurrection')
    const ok = healthy()
    ok.sample()
    replicaOf(ok.cluster, 3).view = fakeView({ state: 'tombstone', voters: [], epoch: 3 })
    ok.sample()
    ok.cluster.prepared.set('3:0', 3)
    replicaOf(ok.cluster, 3).view = fakeView({ state: 'empty', voters: [], epoch: 0 })
    ok.sample()
    expect(ok.cluster.failure).toBeNull()
    expect(ok.rules.stats.recreations).toBe(1)
  })

  it('two configurations at one epoch', () => {
    const h = healthy()
    h.sample()
    replicaOf(h.cluster, 2).view = fakeView({ learners: [NodeId(5)] })
    expect(h.cluster.configs.note(ShardId(0), replicaOf(h.cluster, 2).view)).toMatch(
      /two configurations at one epoch/,
    )
  })
})
