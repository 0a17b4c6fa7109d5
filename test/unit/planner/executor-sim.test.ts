import { beforeAll, describe, expect, it } from 'vitest'
import type { Hasher } from '../../../src/hashing/index.ts'
import { planMoves } from '../../../src/planner/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import {
  converge,
  defaultThrottles,
  inputOf,
  newCluster,
  simulateExecutor,
  withNode,
  type Planner,
} from '../../sim/rebalance.ts'

// The simulated executor behind `npm run bench -- rebalance-sim`: it must run every planned move,
// keep its throttles, and report simulated time the throttles explain.
describe('rebalance simulation: the executor model', () => {
  let planner: Planner
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
    planner = (input) => planMoves(input, hasher)
  })

  it('a join is bound by the newcomer’s receive throttle: moves x shard bytes / rate', () => {
    const base = converge(newCluster(hasher, 10, 256), planner).cluster
    const joined = withNode(base, 11)
    const planned = planner(inputOf(joined)).moves.length
    const run = simulateExecutor(joined, planner, defaultThrottles)
    expect(run.moves).toBe(planned)
    expect(run.byReason).toEqual({ repair: 0, drain: 0, balance: planned })
    expect(run.plans).toBe(2) // the second plans nothing
    expect(planner(inputOf(run.cluster)).moves).toEqual([])
    // One receiver, two moves at a time sharing its 32 MiB/s: each 64 MiB move takes 4 s, two at once.
    expect(run.concurrencyMax).toBe(defaultThrottles.movesPerNodeIn)
    const bound = (planned * defaultThrottles.shardBytes) / defaultThrottles.snapshotBytesPerSecond
    expect(run.seconds).toBeCloseTo(bound, 6)
  })

  it('repairs of a dead node run up to the cluster-wide limit, balance never takes the repair slots', () => {
    const base = converge(newCluster(hasher, 40, 512), planner).cluster
    const throttles = { ...defaultThrottles, movesMax: 6, repairSlots: 2 }
    const dead = simulateExecutor(withNode(base, 5, 'dead'), planner, throttles)
    expect(dead.byReason.repair).toBeGreaterThan(6)
    expect(dead.concurrencyMax).toBe(6)
    const joined = simulateExecutor(
      [41, 42, 43, 44].reduce((c, id) => withNode(c, id), base),
      planner,
      throttles,
    )
    expect(joined.byReason.balance).toBeGreaterThan(6)
    expect(joined.concurrencyMax).toBe(4)
  })
})
