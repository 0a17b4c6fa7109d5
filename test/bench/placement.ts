/**
 * Replica placement quality and cost: src/hashing/placement.ts (consistent hashing with bounded
 * loads, solved by deferred acceptance) against the baseline measured in the same run, plain
 * consistent hashing (each shard takes the first distinct nodes clockwise from its range start).
 *
 * For each node count N (equal weights, no zones) it reports:
 *   - balance: the busiest node's replicas over the mean (1 is perfect);
 *   - movement on one join: the fraction of (shard, node) memberships after the join that were not
 *     there before, the median over `--joins` different joining node ids, against the optimum
 *     1/(N+1) (the newcomer's fair share and nothing else);
 *   - movement on one leave, the same way, against the optimum 1/N (0 when N <= replicas);
 *   - placement time: placeShards from the node list (ring build included), median of `--runs`.
 * Then, near 1,000 nodes, movement over consecutive joins for each capacity rounding (see
 * nodeCapacities): 'demand' (the default), 'draw', and 'step', one integer capacity for all equal
 * nodes, whose cliff shows where that integer drops (1,039 -> 1,040 nodes).
 *
 *   node dist/test/bench/placement.js [--nodes 3,10,100,1000] [--shards 4096] [--vnodes 128]
 *     [--replicas 3] [--joins 5] [--runs 3] [--sweep 1032,1047]  (--sweep 0 skips the sweep)
 *
 * This file measures real time with performance.now(); it is outside the determinism ban.
 */
import {
  loadRatio,
  movedFraction,
  placeShards,
  placeShardsPlain,
  type Hasher,
  type PlacementInput,
  type PlacementTuning,
  type RingNode,
} from '../../src/hashing/index.ts'
import { loadHasher } from '../../src/storage/index.ts'

type Place = (input: PlacementInput) => number[][]

interface Row {
  readonly balance: number
  readonly joinMoved: number
  readonly leaveMoved: number
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

export function arg(argv: readonly string[], name: string, dflt: string): string {
  const i = argv.indexOf(name)
  return i < 0 ? dflt : (argv[i + 1] ?? dflt)
}

export function positive(argv: readonly string[], name: string, dflt: number): number {
  const v = Number(arg(argv, name, String(dflt)))
  if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`bad ${name}`)
  return v
}

const nodesOf = (count: number): RingNode[] => Array.from({ length: count }, (_, i) => ({ id: i + 1 }))

/** Balance, and median movement over `joins` joins and leaves of different nodes. */
function measure(place: Place, input: PlacementInput, joins: number): Row {
  const before = place(input)
  const n = input.nodes.length
  const joined: number[] = []
  const left: number[] = []
  for (let k = 0; k < joins; k++) {
    const newcomer = { id: 1_000_000 + 7919 * k }
    joined.push(movedFraction(before, place({ ...input, nodes: [...input.nodes, newcomer] })))
    if (n > 1) {
      const leaver = input.nodes[Math.floor((k * n) / joins)]!.id
      left.push(movedFraction(before, place({ ...input, nodes: input.nodes.filter((x) => x.id !== leaver) })))
    }
  }
  return {
    balance: loadRatio(before, input.nodes),
    joinMoved: median(joined),
    leaveMoved: n > 1 ? median(left) : 0,
  }
}

function timeMs(fn: () => unknown, runs: number): number {
  const times: number[] = []
  for (let i = 0; i < runs; i++) {
    const start = performance.now()
    fn()
    times.push(performance.now() - start)
  }
  return median(times)
}

const pct = (x: number): string => `${(100 * x).toFixed(3)}%`
const ratio = (x: number, optimum: number): string => (optimum === 0 ? '-' : (x / optimum).toFixed(2))

export function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  return rows.map((r) => r.map((cell, c) => cell.padStart(widths[c]!)).join('  '))
}

/** What the placement table measures (see the file comment). */
export interface PlacementTableOptions {
  readonly counts: readonly number[]
  readonly shardCount: number
  readonly vnodesPerNode: number
  readonly replicaCount: number
  readonly joins: number
  readonly runs: number
}

/** Prints the placement table: balance, movement per join and leave, and time, against plain hashing. */
export function placementTable(hasher: Hasher, o: PlacementTableOptions, out: (line: string) => void): void {
  const { shardCount, vnodesPerNode, replicaCount, joins, runs } = o
  const ours =
    (tuning: PlacementTuning = {}): Place =>
    (input) =>
      placeShards(input, hasher, tuning)
  const plain: Place = (input) => placeShardsPlain(input, hasher)
  out(
    `replica placement: shards=${shardCount} vnodes=${vnodesPerNode} replicas=${replicaCount} joins=${joins} (median) runs=${runs}`,
  )
  const rows: string[][] = [
    [
      'nodes',
      'max/mean',
      'plain',
      'join moved',
      'optimum',
      'ratio',
      'plain moved',
      'plain ratio',
      'leave ratio',
      'plain leave',
      'ms',
      'plain ms',
    ],
  ]
  for (const count of o.counts) {
    if (!Number.isSafeInteger(count) || count < 1) throw new Error('bad --nodes')
    const input: PlacementInput = { nodes: nodesOf(count), shardCount, replicaCount, vnodesPerNode }
    ours()(input) // warm-up
    const a = measure(ours(), input, joins)
    const b = measure(plain, input, joins)
    const joinOptimum = 1 / (count + 1)
    const leaveOptimum = count - 1 >= replicaCount ? 1 / count : 0
    rows.push([
      String(count),
      a.balance.toFixed(3),
      b.balance.toFixed(3),
      pct(a.joinMoved),
      pct(joinOptimum),
      ratio(a.joinMoved, joinOptimum),
      pct(b.joinMoved),
      ratio(b.joinMoved, joinOptimum),
      ratio(a.leaveMoved, leaveOptimum),
      ratio(b.leaveMoved, leaveOptimum),
      timeMs(() => ours()(input), runs).toFixed(0),
      timeMs(() => plain(input), runs).toFixed(0),
    ])
  }
  for (const line of table(rows)) out(`  ${line}`)
  out('  (ratio = moved / optimum; leave optimum is 1/N; plain = consistent hashing without load bounds)')
}

export async function main(argv: readonly string[]): Promise<void> {
  const counts = arg(argv, '--nodes', '3,10,100,1000').split(',').map(Number)
  const shardCount = positive(argv, '--shards', 4096)
  const vnodesPerNode = positive(argv, '--vnodes', 128)
  const replicaCount = positive(argv, '--replicas', 3)
  const joins = positive(argv, '--joins', 5)
  const runs = positive(argv, '--runs', 3)
  const sweep = arg(argv, '--sweep', '1032,1047').split(',').map(Number)
  const out = (s: string): void => void process.stdout.write(`${s}\n`)
  const hasher: Hasher = await loadHasher()
  const ours =
    (tuning: PlacementTuning = {}): Place =>
    (input) =>
      placeShards(input, hasher, tuning)
  placementTable(hasher, { counts, shardCount, vnodesPerNode, replicaCount, joins, runs }, out)

  const [from, to] = sweep
  if (from === undefined || to === undefined || from <= 0 || to <= from) return
  out(`capacity rounding, one join at a time from ${from} to ${to} nodes: moved / optimum`)
  for (const capacityRounding of ['demand', 'draw', 'step'] as const) {
    const place = ours({ capacityRounding })
    const ratios: number[] = []
    let before = place({ nodes: nodesOf(from), shardCount, replicaCount, vnodesPerNode })
    for (let n = from + 1; n <= to; n++) {
      const after = place({ nodes: nodesOf(n), shardCount, replicaCount, vnodesPerNode })
      ratios.push(movedFraction(before, after) * n)
      before = after
    }
    const mean = ratios.reduce((x, y) => x + y, 0) / ratios.length
    out(
      `  ${capacityRounding.padEnd(6)}  median ${median(ratios).toFixed(2)}  mean ${mean.toFixed(2)}  max ${Math.max(...ratios).toFixed(2)}`,
    )
  }
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '\0'))
  await main(process.argv.slice(2))
