/**
 * The planner (src/planner) and a simulated executor (test/sim/rebalance.ts) at scale, without
 * processes: how many replicas each event moves against the optimum, the balance after, the
 * simulated time to converge under the executor's throttles, and the planning time (real).
 *
 * The cluster starts as a new one does (the ring placement, hashing/placement.ts) and the planner
 * first converges it (its load bounds are tighter at the bottom than the ring's). From there:
 *   join 1     one node joins          optimum: its fair share, R * S / (N + 1)
 *   join 10    ten nodes join at once  optimum: their fair share, 10 R S / (N + 10)
 *   drain 1    one node is drained     optimum: the replicas it holds
 *   dead 1     one node dies           optimum: the replicas it held
 *   dead 10    ten nodes die at once   optimum: the replicas they held (at 20 nodes or more)
 *   zone dies  every node of zone z1   optimum: the replicas they held (with --zones 2 or more)
 * and, for comparison, the ring alone (today's target placement recomputed for N + 1 nodes).
 * Then the placement table of test/bench/placement.ts (the ring placement at 3, 10, 100, 1,000
 * nodes), unless --table 0.
 *
 *   npm run bench -- rebalance-sim [--nodes 1000] [--shards 100000] [--replicas 3] [--vnodes 128]
 *     [--shard-mb 64] [--snapshot-mbps 32] [--moves-max 64] [--repair-slots 8] [--per-node 2]
 *     [--zones 0]  (nodes in zones z1..zK in turn)
 *     [--table 1] [--table-nodes 3,10,100,1000] [--table-shards 4096]
 *
 * This file measures real time with performance.now(); it is outside the determinism ban.
 */
import { movedFraction, placeShards, type Hasher } from '../../src/hashing/index.ts'
import { planMoves, type Plan, type PlanInput } from '../../src/planner/index.ts'
import { loadHasher } from '../../src/storage/index.ts'
import {
  converge,
  loads,
  newCluster,
  simulateExecutor,
  spread,
  withNode,
  type Cluster,
  type Throttles,
} from '../sim/rebalance.ts'
import { arg, placementTable, positive, table } from './placement.ts'

const mib = 1024 * 1024

export async function main(argv: readonly string[]): Promise<void> {
  const nodeCount = positive(argv, '--nodes', 1000)
  const shardCount = positive(argv, '--shards', 100_000)
  const replicaCount = positive(argv, '--replicas', 3)
  const vnodesPerNode = positive(argv, '--vnodes', 128)
  const perNode = positive(argv, '--per-node', 2)
  const zones = Number(arg(argv, '--zones', '0'))
  if (!Number.isSafeInteger(zones) || zones < 0) throw new Error('bad --zones')
  // Newcomers take the zones in turn, as the first nodes did.
  const zoneOf = (id: number): string => (zones > 0 ? `z${((id - 1) % zones) + 1}` : '')
  const throttles: Throttles = {
    movesMax: positive(argv, '--moves-max', 64),
    repairSlots: positive(argv, '--repair-slots', 8),
    movesPerNodeIn: perNode,
    movesPerNodeOut: perNode,
    snapshotBytesPerSecond: positive(argv, '--snapshot-mbps', 32) * mib,
    shardBytes: positive(argv, '--shard-mb', 64) * mib,
  }
  const out = (s: string): void => void process.stdout.write(`${s}\n`)
  const hasher: Hasher = await loadHasher()

  // As the executor will: the ring placement of the last plan is passed back (it is recomputed
  // only when the active nodes change).
  let planMs: number[] = []
  let last: Plan | undefined
  const planner = (input: PlanInput): Plan => {
    const start = performance.now()
    const plan = planMoves(input, hasher, last?.ring)
    planMs.push(performance.now() - start)
    last = plan
    return plan
  }

  out(
    `rebalance-sim: nodes=${nodeCount} shards=${shardCount} replicas=${replicaCount} vnodes=${vnodesPerNode} zones=${zones} ` +
      `shard=${throttles.shardBytes / mib} MiB snapshot=${throttles.snapshotBytesPerSecond / mib} MiB/s per node ` +
      `moves<=${throttles.movesMax} (repair-only ${throttles.repairSlots}) per node in/out<=${perNode}`,
  )
  const start = performance.now()
  const fresh = newCluster(hasher, nodeCount, shardCount, { replicaCount, vnodesPerNode, zones })
  const ringMs = performance.now() - start
  const before = spread(fresh)
  planMs = []
  const first = converge(fresh, planner)
  const base = first.cluster
  const after = spread(base)
  out(
    `  ring placement ${ringMs.toFixed(0)} ms: max/mean ${before.maxOverMean.toFixed(3)} min/mean ${before.minOverMean.toFixed(3)}; ` +
      `the planner's first convergence: ${first.moves} moves (${((100 * first.moves) / (replicaCount * shardCount)).toFixed(2)}% of replicas) ` +
      `in ${first.rounds} plans (${planMs.map((ms) => ms.toFixed(0)).join('+')} ms) -> max/mean ${after.maxOverMean.toFixed(3)} min/mean ${after.minOverMean.toFixed(3)}`,
  )

  const held = (c: Cluster, ids: readonly number[]): number => {
    const counts = loads(c)
    return ids.reduce((a, id) => a + counts.get(id)!, 0)
  }
  const spreadIds = (k: number): number[] =>
    Array.from({ length: k }, (_, i) => 1 + Math.floor(((2 * i + 1) * nodeCount) / (2 * k)))
  const newIds = (k: number): number[] => Array.from({ length: k }, (_, i) => nodeCount + 1 + i)
  const fairShare = (k: number): number => (replicaCount * shardCount * k) / (nodeCount + k)
  const scenarios: { name: string; cluster: Cluster; optimum: number }[] = [
    {
      name: 'join 1',
      cluster: withNode(base, nodeCount + 1, 'active', 1, zoneOf(nodeCount + 1)),
      optimum: fairShare(1),
    },
    {
      name: 'join 10',
      cluster: newIds(10).reduce((c, id) => withNode(c, id, 'active', 1, zoneOf(id)), base),
      optimum: fairShare(10),
    },
    {
      name: 'drain 1',
      cluster: withNode(base, spreadIds(1)[0]!, 'draining'),
      optimum: held(base, spreadIds(1)),
    },
    { name: 'dead 1', cluster: withNode(base, spreadIds(1)[0]!, 'dead'), optimum: held(base, spreadIds(1)) },
  ]
  if (zones >= 2) {
    const lost = base.nodes.filter((n) => n.zone === 'z1').map((n) => n.id as number)
    scenarios.push({
      name: 'zone dies',
      cluster: lost.reduce((c, id) => withNode(c, id, 'dead'), base),
      optimum: held(base, lost),
    })
  }
  if (nodeCount >= 20)
    scenarios.push({
      name: 'dead 10',
      cluster: spreadIds(10).reduce((c, id) => withNode(c, id, 'dead'), base),
      optimum: held(base, spreadIds(10)),
    })
  const rows: string[][] = [
    [
      'event',
      'moves',
      'optimum',
      'ratio',
      'repair/drain/balance',
      'max/mean',
      'min/mean',
      'blocked',
      'plans',
      'sim time',
      'concurrent',
      'plan ms',
    ],
  ]
  for (const s of scenarios) {
    planMs = []
    const run = simulateExecutor(s.cluster, planner, throttles)
    const end = spread(run.cluster)
    rows.push([
      s.name,
      String(run.moves),
      s.optimum.toFixed(0),
      (run.moves / s.optimum).toFixed(3),
      `${run.byReason.repair}/${run.byReason.drain}/${run.byReason.balance}`,
      end.maxOverMean.toFixed(3),
      end.minOverMean.toFixed(3),
      `${run.blocked}${run.safeMode ? ' (safe mode)' : ''}`,
      String(run.plans),
      duration(run.seconds),
      String(run.concurrencyMax),
      planMs.map((ms) => ms.toFixed(0)).join('+'),
    ])
  }
  for (const line of table(rows)) out(`  ${line}`)
  out('  (ratio = moves / optimum; blocked = shards left without a move, e.g. no live quorum;')
  out('   sim time = simulated time until the last move ended; plan ms = each plan asked, real time:')
  out('   the first of an event places the ring for the new set of nodes, later ones reuse it)')

  // Today's target alone: the ring placement recomputed for one more node, against the optimum.
  const ringNodes = Array.from({ length: nodeCount + 1 }, (_, i) => {
    const zone = zoneOf(i + 1)
    return { id: i + 1, ...(zone === '' ? {} : { zone }) }
  })
  const ringAfter = placeShards({ nodes: ringNodes, shardCount, replicaCount, vnodesPerNode }, hasher)
  const ringBefore = fresh.shards.map((s) => s.replicas)
  const ringMoved = movedFraction(ringBefore, ringAfter) * replicaCount * shardCount
  out(
    `  the ring alone on join 1: ${ringMoved.toFixed(0)} moves, ${(ringMoved / fairShare(1)).toFixed(3)}x the optimum`,
  )

  if (arg(argv, '--table', '1') === '0') return
  out('')
  placementTable(
    hasher,
    {
      counts: arg(argv, '--table-nodes', '3,10,100,1000').split(',').map(Number),
      shardCount: positive(argv, '--table-shards', 4096),
      vnodesPerNode,
      replicaCount,
      joins: 5,
      runs: 3,
    },
    out,
  )
}

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds.toFixed(0)} s`
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`
  return `${(seconds / 3600).toFixed(1)} h`
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0'))
  await main(process.argv.slice(2))
