import { describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../../src/common/index.ts'
import {
  decodeJob,
  encodeJob,
  registryKey,
  steer,
  step,
  type JobRecord,
  type StepInput,
} from '../../../../src/cluster/executor/index.ts'
import type { MoveReason, Plan, PlannedMove } from '../../../../src/planner/index.ts'

function mv(
  shard: number,
  from: number | undefined,
  to: number,
  reason: MoveReason = 'balance',
): PlannedMove {
  return {
    shardId: ShardId(shard),
    ...(from === undefined ? {} : { from: NodeId(from) }),
    to: NodeId(to),
    reason,
    epoch: 1,
  }
}

function planOf(moves: PlannedMove[], extra: Partial<Plan> = {}): Plan {
  return { moves, placement: [], blocked: [], pending: 0, ring: { key: '', placement: [] }, ...extra }
}

const throttles = { movesMax: 4, repairSlots: 1, inPerNodeMax: 2, outPerNodeMax: 2 }

function input(over: Partial<StepInput>): StepInput {
  return {
    job: undefined,
    plan: planOf([]),
    running: [],
    replicasOf: () => [],
    bytesOf: () => 0,
    down: new Set(),
    registry: 'r1',
    autoRebalance: true,
    throttles,
    nowMs: 1000,
    listedMax: 256,
    ...over,
  }
}

const n = (i: number): NodeId => NodeId(i)
const started = (out: { start: readonly PlannedMove[] }): number[] => out.start.map((m) => m.shardId)

describe('cluster/executor step: jobs', () => {
  it('no runnable move: no job', () => {
    const out = step(input({ autoRebalance: false, plan: planOf([mv(1, 1, 4)]) }))
    expect(out.job).toBeUndefined()
    expect(out.start).toEqual([])
    expect(step(input({ plan: planOf([]) })).job).toBeUndefined()
  })

  it('a plan with moves opens a job named after its first move, and starts moves under the throttles', () => {
    const out = step(input({ plan: planOf([mv(1, 1, 4), mv(2, 2, 4), mv(3, 3, 5)]) }))
    expect(out.job).toMatchObject({
      id: 1,
      trigger: 'balance',
      state: 'running',
      createdMs: 1000,
      started: 3,
    })
    expect(started(out)).toEqual([1, 2, 3])
    expect(out.job!.moves.map((m) => [m.shardId, m.state])).toEqual([
      [1, 'running'],
      [2, 'running'],
      [3, 'running'],
    ])
  })

  it('auto-rebalance off: balance is planned only; repairs and drains still run', () => {
    const balanceOnly = step(input({ autoRebalance: false, plan: planOf([mv(1, 1, 4)]) }))
    expect(balanceOnly.job).toBeUndefined()
    const out = step(
      input({
        autoRebalance: false,
        plan: planOf([mv(1, 9, 4, 'repair'), mv(2, 3, 4, 'drain'), mv(3, 1, 5)]),
      }),
    )
    expect(out.job).toMatchObject({ trigger: 'repair' })
    expect(started(out)).toEqual([1, 2])
    expect(out.job!.reason).toContain('auto-rebalance is off')
  })

  it('the job ends done once nothing runs and nothing is left; it stays open, saying why, while shards are blocked', () => {
    const first = step(input({ plan: planOf([mv(1, 1, 4)]) }))
    // The move ended: shard 1 now lists node 4 and not node 1.
    const after = step(
      input({
        job: first.job,
        plan: planOf([]),
        replicasOf: () => [NodeId(2), NodeId(3), NodeId(4)],
        nowMs: 5000,
      }),
    )
    expect(after.job).toMatchObject({ state: 'done', done: 1, failed: 0, finishedMs: 5000, moves: [] })
    const blocked = step(
      input({
        job: first.job,
        plan: planOf([], { blocked: [{ shardId: ShardId(7), reason: 'no-quorum' }] }),
        replicasOf: () => [NodeId(1), NodeId(2), NodeId(3)],
      }),
    )
    expect(blocked.job).toMatchObject({ state: 'running', done: 0, failed: 1 })
    expect(blocked.job!.reason).toContain('1 shards blocked (1 without a quorum')
  })

  it('a done job is followed by a new one when the plan has work again', () => {
    const done: JobRecord = { ...step(input({ plan: planOf([mv(1, 1, 4)]) })).job!, state: 'done', moves: [] }
    const out = step(input({ job: done, plan: planOf([mv(2, 9, 4, 'repair')]) }))
    expect(out.job).toMatchObject({ id: 2, trigger: 'repair', state: 'running', done: 0, started: 1 })
  })

  it('nothing changed: the same job object (no write)', () => {
    const first = step(input({ plan: planOf([mv(1, 1, 4), mv(2, 1, 5), mv(3, 1, 6)]) }))
    const running = first.start.map((m) => ({ shardId: m.shardId, from: m.from!, to: m.to }))
    const again = step(input({ job: first.job, plan: planOf([mv(3, 1, 6)]), running, nowMs: 9999 }))
    expect(again.start).toEqual([])
    expect(again.waiting.get(ShardId(3))).toBe('source-busy')
    expect(again.job).toBe(first.job)
  })

  it('the record survives encoding', () => {
    const job = step(input({ plan: planOf([mv(1, 1, 4), mv(2, 2, 5, 'drain')]) })).job!
    expect(decodeJob(encodeJob(job))).toEqual(job)
  })
})

describe('cluster/executor step: throttles', () => {
  it('a cluster-wide cap; moves into and out of each node', () => {
    const out = step(
      input({
        plan: planOf([
          mv(1, 1, 4),
          mv(2, 1, 4),
          mv(3, 1, 4),
          mv(4, 1, 5),
          mv(5, 2, 4),
          mv(6, 2, 5),
          mv(7, 3, 6),
        ]),
      }),
    )
    // Balance may take 3 of 4 slots (one is for repairs); node 4 takes 2 in, node 1 gives 2 out.
    expect(started(out)).toEqual([1, 2, 6])
    expect(out.waiting.get(ShardId(3))).toBe('destination-busy')
    expect(out.waiting.get(ShardId(4))).toBe('source-busy')
    expect(out.waiting.get(ShardId(7))).toBe('repair-slots-reserved')
  })

  it('the repair slot: balance never takes it, repairs take every slot', () => {
    const running = [
      { shardId: ShardId(10), from: NodeId(1), to: NodeId(4) },
      { shardId: ShardId(11), from: NodeId(2), to: NodeId(5) },
      { shardId: ShardId(12), from: NodeId(3), to: NodeId(6) },
    ]
    const balance = step(input({ plan: planOf([mv(1, 7, 8)]), running }))
    expect(balance.start).toEqual([])
    expect(balance.waiting.get(ShardId(1))).toBe('repair-slots-reserved')
    const repair = step(input({ plan: planOf([mv(1, 9, 8, 'repair'), mv(2, 9, 7, 'repair')]), running }))
    expect(started(repair)).toEqual([1])
    expect(repair.waiting.get(ShardId(2))).toBe('cluster-limit')
  })

  it('a dead source sends nothing: no outgoing limit for it', () => {
    const moves = [mv(1, 9, 4, 'repair'), mv(2, 9, 5, 'repair'), mv(3, 9, 6, 'repair')]
    expect(started(step(input({ plan: planOf(moves) })))).toEqual([1, 2])
    expect(started(step(input({ plan: planOf(moves), down: new Set([9]) })))).toEqual([1, 2, 3])
  })

  it('a move that adds a replica (no source) is a repair: it runs, and counts against its destination only', () => {
    const out = step(input({ plan: planOf([mv(1, undefined, 4, 'repair'), mv(2, 9, 4, 'repair')]) }))
    expect(started(out)).toEqual([1, 2])
    expect(out.job).toMatchObject({ trigger: 'repair', reason: '' })
    expect(out.job!.moves[0]).toMatchObject({ shardId: 1, from: 0, to: 4, state: 'running' })
    // The destination is busy with both; a third repair into it waits.
    const busy = step(
      input({
        plan: planOf([mv(3, undefined, 4, 'repair')]),
        running: [
          { shardId: ShardId(1), to: NodeId(4) },
          { shardId: ShardId(2), from: NodeId(9), to: NodeId(4) },
        ],
      }),
    )
    expect(busy.waiting.get(ShardId(3))).toBe('destination-busy')
    // Ended: done when the shard's replicas now hold the destination.
    const ended = step(
      input({
        job: out.job!,
        plan: planOf([]),
        replicasOf: (id) => (id === 1 ? [n(1), n(2), n(4)] : [n(9)]),
      }),
    )
    expect(ended.job).toMatchObject({ done: 1, failed: 1, state: 'done' })
  })
})

describe('cluster/executor step: pause, resume, cancel', () => {
  const open = (): JobRecord => step(input({ plan: planOf([mv(1, 1, 4)]) })).job!

  it('paused: nothing starts, running moves are still followed; resumed: starts again', () => {
    const paused = steer(open(), 'pause', 2000)!
    expect(paused).toMatchObject({ state: 'paused', updatedMs: 2000 })
    const out = step(
      input({
        job: paused,
        plan: planOf([mv(2, 2, 5)]),
        running: [{ shardId: ShardId(1), from: NodeId(1), to: NodeId(4) }],
      }),
    )
    expect(out.start).toEqual([])
    expect(out.waiting.get(ShardId(2))).toBe('paused')
    expect(out.job).toMatchObject({ state: 'paused' })
    expect(out.job!.reason).toContain('paused')
    const resumed = steer(out.job, 'resume', 3000)!
    const again = step(
      input({
        job: resumed,
        plan: planOf([mv(2, 2, 5)]),
        running: [{ shardId: ShardId(1), from: NodeId(1), to: NodeId(4) }],
      }),
    )
    expect(started(again)).toEqual([2])
  })

  it('cancelled: ends the job, running moves still counted when they end; no new job until the registry changes', () => {
    const cancelled = steer(open(), 'cancel', 2000)!
    expect(cancelled).toMatchObject({ state: 'cancelled', finishedMs: 2000 })
    expect(steer(cancelled, 'resume', 2500)).toBeUndefined()
    const out = step(
      input({
        job: cancelled,
        plan: planOf([mv(2, 2, 5)]),
        replicasOf: () => [NodeId(4), NodeId(2), NodeId(3)],
      }),
    )
    expect(out.start).toEqual([])
    expect(out.job).toMatchObject({ id: 1, state: 'cancelled', done: 1 })
    const changed = step(input({ job: out.job, plan: planOf([mv(2, 2, 5)]), registry: 'r2' }))
    expect(changed.job).toMatchObject({ id: 2, state: 'running' })
    expect(started(changed)).toEqual([2])
  })

  it('steering without an open job: undefined', () => {
    expect(steer(undefined, 'pause', 1)).toBeUndefined()
    expect(steer({ ...open(), state: 'done' }, 'cancel', 1)).toBeUndefined()
  })
})

describe('cluster/executor step: a new meta leader replays', () => {
  it('a step replayed from the same record counts nothing twice', () => {
    const first = step(input({ plan: planOf([mv(1, 1, 4), mv(2, 2, 5)]) })).job!
    const ended = input({
      job: first,
      plan: planOf([]),
      replicasOf: (id) => (id === 1 ? [NodeId(4), NodeId(2), NodeId(3)] : [NodeId(1), NodeId(5), NodeId(3)]),
      bytesOf: (id) => (id === 1 ? 100 : 200),
    })
    const a = step(ended).job!
    expect(a).toMatchObject({ done: 2, failed: 0, bytes: 300, state: 'done' })
    // The old leader died before writing: the new one replays from the same record: same result.
    expect(step({ ...ended, bytesOf: () => 0 }).job).toMatchObject({ done: 2, bytes: 0, state: 'done' })
    // It wrote: replaying from the written record counts nothing more.
    const b = step({ ...ended, job: a }).job!
    expect(b).toBe(a)
  })

  it('a move recorded with the mover whose job was not written is adopted, not started again', () => {
    const first = step(input({ plan: planOf([mv(1, 1, 4), mv(2, 1, 5), mv(3, 1, 6)]) }))
    // The job as written before the start of shard 3 (listed as planned).
    const before: JobRecord = {
      ...first.job!,
      started: 2,
      moves: first.job!.moves.map((m) => (m.shardId === 3 ? { ...m, state: 'planned' as const } : m)),
    }
    const running = [1, 2, 3].map((s) => ({ shardId: ShardId(s), from: NodeId(1), to: NodeId(s + 3) }))
    const out = step(input({ job: before, plan: planOf([]), running }))
    expect(out.start).toEqual([])
    expect(out.job).toMatchObject({ started: 3, state: 'running' })
    expect(out.job!.moves.every((m) => m.state === 'running')).toBe(true)
  })

  it('the moves to start are first written as planned: a leader that dies before writing the job after them leaves one that adopts them', () => {
    const plan = planOf([mv(1, 1, 4), mv(2, 1, 5), mv(3, 1, 6)])
    const out = step(input({ plan }))
    expect(started(out)).toEqual([1, 2])
    // The intent: a new job, the moves to start listed first as planned, nothing counted yet.
    expect(out.intent).toMatchObject({ id: 1, state: 'running', started: 0 })
    expect(out.intent!.moves.map((m) => [m.shardId, m.state])).toEqual([
      [1, 'planned'],
      [2, 'planned'],
      [3, 'planned'],
    ])
    // The mover recorded both, the leader died before writing the job: the next one adopts them
    // from the intent it finds and starts neither again (no move without a job that counts it).
    const running = [1, 2].map((s) => ({ shardId: ShardId(s), from: NodeId(1), to: NodeId(s + 3) }))
    const next = step(input({ job: out.intent, plan: planOf([mv(3, 1, 6)]), running }))
    expect(next.start).toEqual([])
    expect(next.intent).toBeUndefined()
    expect(next.job).toMatchObject({ id: 1, started: 2 })
    expect(next.job!.moves.map((m) => [m.shardId, m.state])).toEqual([
      [1, 'running'],
      [2, 'running'],
      [3, 'planned'],
    ])
    // A job that lists the moves to start as planned already needs no write before them.
    const again = step(input({ job: out.intent, plan, nowMs: 2000 }))
    expect(started(again)).toEqual([1, 2])
    expect(again.intent).toBe(out.intent)
  })

  it('registryKey does not depend on order', () => {
    const a = { id: 1, state: 'active', zone: 'a', weight: 1 }
    const b = { id: 2, state: 'dead', zone: 'b', weight: 2 }
    expect(registryKey([a, b])).toBe(registryKey([b, a]))
    expect(registryKey([a, b])).not.toBe(registryKey([a, { ...b, state: 'active' }]))
  })
})
