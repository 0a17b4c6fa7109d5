/**
 * Bytes and time of planned moves (cluster/executor/estimate.ts), and the ETA kvctl derives from
 * them (cli/commands/rebalance.ts progressOf): sizes summed, unknown sizes counted apart, the time
 * bound by the busiest sender and by the moves at once; the ETA from the observed rate once bytes
 * were counted, from the estimate before.
 */
import { describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../../src/common/index.ts'
import { estimatePlan } from '../../../../src/cluster/executor/index.ts'
import type { PlannedMove } from '../../../../src/planner/index.ts'
import { progressOf } from '../../../../src/cli/commands/rebalance.ts'
import type { RebalanceResponse } from '../../../../src/client/admin-rebalance.ts'

const MiB = 1024 * 1024
const mv = (shard: number, from: number, to: number): PlannedMove => ({
  shardId: ShardId(shard),
  from: NodeId(from),
  to: NodeId(to),
  reason: 'balance',
  epoch: 1,
})

describe('cluster/executor estimatePlan', () => {
  const sizes = new Map<number, number>([
    [0, 64 * MiB],
    [1, 64 * MiB],
    [2, 32 * MiB],
  ])
  const bytesOf = (id: ShardId): number | undefined => sizes.get(id)

  it('sums the known sizes and counts the unknown apart', () => {
    const out = estimatePlan({
      moves: [mv(0, 1, 4), mv(1, 2, 4), mv(2, 3, 4), mv(7, 3, 4)],
      bytesOf,
      senderOf: (m) => m.from,
      rateBps: 32 * MiB,
      movesMax: 4,
    })
    expect(out).toEqual({ bytes: 160 * MiB, ms: 2000, unsized: 1 })
  })

  it('one sender streams at its throttle: its bytes bound the time', () => {
    const out = estimatePlan({
      moves: [mv(0, 1, 4), mv(1, 1, 5), mv(2, 1, 6)],
      bytesOf,
      senderOf: () => NodeId(1),
      rateBps: 32 * MiB,
      movesMax: 4,
    })
    expect(out.ms).toBe(5000)
  })

  it('many senders: the moves at once bound the time', () => {
    const moves = Array.from({ length: 8 }, (_, i) => mv(i % 2, i + 1, 20))
    const out = estimatePlan({ moves, bytesOf, senderOf: (m) => m.from, rateBps: 32 * MiB, movesMax: 2 })
    expect(out.bytes).toBe(8 * 64 * MiB)
    expect(out.ms).toBe(8000) // 512 MiB over 2 lanes of 32 MiB/s
  })

  it('no rate or no known size: no time', () => {
    expect(
      estimatePlan({ moves: [mv(0, 1, 4)], bytesOf, senderOf: (m) => m.from, rateBps: 0, movesMax: 4 }),
    ).toEqual({ bytes: 64 * MiB, ms: 0, unsized: 0 })
    expect(
      estimatePlan({ moves: [mv(9, 1, 4)], bytesOf, senderOf: (m) => m.from, rateBps: MiB, movesMax: 4 }),
    ).toEqual({ bytes: 0, ms: 0, unsized: 1 })
  })
})

describe('kvctl rebalance: the ETA', () => {
  const base: RebalanceResponse = {
    job: undefined,
    running: [],
    planned: [],
    plannedTotal: 4,
    safeMode: '',
    blocked: 0,
    underReplicated: 0,
    autoRebalance: true,
    plannedBytes: 256 * MiB,
    plannedMs: 8000,
    plannedUnsized: 0,
    snapshotRateBps: 32 * MiB,
  }
  const job = {
    id: 1,
    trigger: 'balance',
    state: 'running',
    createdMs: 0,
    updatedMs: 0,
    finishedMs: 0,
    started: 2,
    done: 2,
    failed: 0,
    bytes: 0,
    reason: '',
  }

  it('before any byte was counted: the estimate at the throttle', () => {
    expect(progressOf(base, 10_000).etaS).toBe(8)
    expect(progressOf({ ...base, job }, 10_000)).toMatchObject({ etaS: 8, bytesLeft: 256 * MiB })
  })

  it('once bytes were counted: the bytes left at the observed rate', () => {
    // 128 MiB in 8 s: 16 MiB/s; 256 MiB planned left: 16 s.
    const p = progressOf({ ...base, job: { ...job, bytes: 128 * MiB } }, 8_000)
    expect(p.rateBps).toBe(16 * MiB)
    expect(p.etaS).toBe(16)
  })

  it('sizes unknown: the time a move took so far times the moves left', () => {
    const p = progressOf({ ...base, plannedUnsized: 4, plannedBytes: 0, plannedMs: 0, job }, 10_000)
    expect(p.etaS).toBe(20) // 2 moves in 10 s, 4 left
    expect(
      progressOf({ ...base, job: { ...job, state: 'done', finishedMs: 10_000 } }, 10_000).etaS,
    ).toBeNull()
  })
})
