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
import type { Hasher } from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import type { HostSimOverrides } from './host/options.ts'
import { describeHostResult, reportHostResult, runHostSeed, type HostRunResult } from './host/run.ts'
import { parseSeed } from './simulator.ts'

const seedFrom = Number(process.env['HOST_MOVES_FROM'] ?? 1)
const seedCount = Number(process.env['HOST_MOVES_SEEDS'] ?? 6)
const only = process.env['HOST_MOVES_SEED']
const timeoutMs = 120_000

/** The move suite's layout: the sharded cluster, a longer safety phase (a move takes seconds), moves on. */
const movesOverrides: HostSimOverrides = {
  placement: 'sharded',
  heartbeatMs: 200,
  safetyPhaseMs: 8_000,
  moveIntervalMsMean: 300,
}

let hasher: Hasher
beforeAll(async () => {
  hasher = await loadHasher()
})

async function runMoves(seed: number, sink?: (line: string) => void): Promise<HostRunResult> {
  return await runHostSeed({
    seed,
    hasher,
    overrides: movesOverrides,
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

function suiteIf(when: boolean, name: string, body: () => void): void {
  if (when) describe(name, body)
}

const results: HostRunResult[] = []

suiteIf(only === undefined, 'sim/host moves: seeds', () => {
  for (let seed = seedFrom; seed < seedFrom + seedCount; seed++) {
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

  it('the moves were real: done, rolled back, refused, crashed at their steps, through joint configurations', () => {
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
    if (results.length < seedCount) {
      console.log(
        `sim/host moves totals not asserted: only ${results.length} of ${seedCount} seeds ran (a -t filter)`,
      )
      return
    }
    expect(
      total((r) => r.stats.moves.done),
      summary,
    ).toBeGreaterThan(0)
    expect(
      total((r) => r.stats.moves.failed),
      summary,
    ).toBeGreaterThan(0)
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
  })
})

suiteIf(only !== undefined, 'sim/host moves: one seed', () => {
  it(
    `seed ${only ?? ''}`,
    async () => {
      const seed = parseSeed(only ?? '0')
      const lines: string[] = []
      const trace = process.env['HOST_SIM_TRACE'] === '1'
      const r = await runMoves(seed, trace ? (l: string) => lines.push(l) : undefined)
      if (trace) console.log(lines.join('\n'))
      console.log(describeHostResult(r))
      console.log(describeMoves(r))
      expectHealthy(r)
    },
    timeoutMs,
  )
})
