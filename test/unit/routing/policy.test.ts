import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, SeededRandom } from '../../../src/common/index.ts'
import { equalHashRanges } from '../../../src/hashing/index.ts'
import { RoutePolicy, RouteTable, type NodeRoute, type ShardRoute } from '../../../src/routing/index.ts'

const node = (id: number, state: NodeRoute['state'] = 'active', zone = ''): NodeRoute => ({
  id,
  address: `n${id}:1`,
  zone,
  state,
})

/**
 * Four shards over nodes 1..6 (node 5 dead):
 *   shard 0: [1, 2, 3], hint 2 (term 3)    shard 1: [2, 3, 4], no hint
 *   shard 2: [5, 4, 3], no hint            shard 3: [3, 4, 6], hint 4 (term 1)
 */
function tableOf(over: Partial<Record<number, Partial<ShardRoute>>> = {}): RouteTable {
  const ranges = equalHashRanges(4)
  const base: [number[], number, number][] = [
    [[1, 2, 3], 2, 3],
    [[2, 3, 4], 0, 0],
    [[5, 4, 3], 0, 0],
    [[3, 4, 6], 4, 1],
  ]
  const shards = base.map(([replicas, leaderHint, leaderTerm], i) => ({
    shardId: i,
    hashStart: ranges[i]!.start,
    hashEnd: ranges[i]!.end,
    replicas,
    leaderHint,
    leaderTerm,
    epoch: 5,
    ...over[i],
  }))
  return new RouteTable(shards, [
    node(1, 'active', 'a'),
    node(2, 'active', 'b'),
    node(3, 'active', 'a'),
    node(4),
    node(5, 'dead'),
    node(6),
  ])
}

const policyOf = (self = 0, avoidMs = 1_000, zone = ''): RoutePolicy =>
  new RoutePolicy({ self, avoidMs, zone })

describe('routing/RoutePolicy: the leader as best known', () => {
  const table = tableOf()

  it.each<
    [string, (p: RoutePolicy) => void, { isLeader: boolean; leaderId: number | null } | undefined, number]
  >([
    ['the map hint', () => {}, undefined, 2],
    ['a learned leader over the hint', (p) => p.noteLeader(table, 0, 3), undefined, 3],
    ['a learned leader from an older term: the hint', (p) => p.noteLeader(table, 0, 1, 2), undefined, 2],
    [
      'the local Raft view over everything',
      (p) => p.noteLeader(table, 0, 3, 9),
      { isLeader: false, leaderId: 1 },
      1,
    ],
    ['the local leader itself', () => {}, { isLeader: true, leaderId: 7 }, 7],
    [
      'a local view without a leader: what was learned',
      (p) => p.noteLeader(table, 0, 3),
      { isLeader: false, leaderId: null },
      3,
    ],
  ])('%s', (_what, setup, local, expected) => {
    const p = policyOf(7)
    setup(p)
    expect(p.leaderOf(table, 0, local)).toBe(expected)
  })

  it('a newer map hint wins over an older note; an unknown shard has no leader', () => {
    const p = policyOf()
    p.noteLeader(table, 0, 3) // termless: takes the known term, 3
    expect(p.leaderOf(table, 0)).toBe(3)
    expect(p.leaderOf(tableOf({ 0: { leaderHint: 1, leaderTerm: 4 } }), 0)).toBe(1)
    expect(p.leaderOf(tableOf({ 0: { leaderHint: 1, leaderTerm: 3 } }), 0)).toBe(3)
    expect(p.leaderOf(table, 99)).toBe(0)
    expect(p.noteLeader(table, 99, 1)).toBe(false)
    expect(p.noteLeader(table, 0, 0)).toBe(false)
  })

  it('a note made for another range says nothing', () => {
    const p = policyOf()
    p.noteLeader(table, 0, 3, 9)
    const split = tableOf({ 0: { hashEnd: table.shard(0)!.hashEnd - 1n } })
    expect(p.leaderOf(split, 0)).toBe(2)
  })
})

describe('routing/RoutePolicy: leader targets', () => {
  it('the leader, else the replicas in preference order; never self, dead or unknown nodes', () => {
    const table = tableOf()
    const p = policyOf(3)
    expect([0, 1, 2, 3].map((s) => p.leaderTarget(table, s, 0))).toEqual([2, 2, 4, 4])
    expect(policyOf(2).leaderTarget(table, 1, 0)).toBe(3)
    expect(p.leaderTarget(table, 99, 0)).toBeUndefined()
    const allDead = new RouteTable([{ ...table.shard(2)!, replicas: [5] }], [node(5, 'dead')])
    expect(p.leaderTarget(allDead, 2, 0, { lastResort: true })).toBeUndefined()
  })

  it('a failed node is passed over for avoidMs and forgotten as leader; a hint naming it again clears that', () => {
    const table = tableOf()
    const p = policyOf(0, 1_000)
    p.noteFailed(table, 2, 100)
    expect(p.leaderOf(table, 0)).toBe(0)
    expect(p.leaderTarget(table, 0, 100)).toBe(1)
    expect(p.leaderTarget(table, 1, 100)).toBe(3)
    expect(p.isAvoided(2, 1_099)).toBe(true)
    expect(p.leaderTarget(table, 1, 1_100)).toBe(2)
    p.noteFailed(table, 2, 2_000)
    expect(p.noteLeader(table, 1, 2)).toBe(true)
    expect(p.isAvoided(2, 2_001)).toBe(false)
    expect(p.leaderTarget(table, 1, 2_001)).toBe(2)
  })

  it('when every candidate is passed over: undefined, or one of them as a last resort', () => {
    const table = tableOf()
    const p = policyOf()
    for (const id of [1, 2, 3]) p.noteFailed(table, id, 0)
    expect(p.leaderTarget(table, 0, 10)).toBeUndefined()
    expect(p.leaderTarget(table, 0, 10, { lastResort: true })).toBe(1)
  })

  it('a node that answered NOT_LEADER naming nobody is asked last for that shard only', () => {
    const table = tableOf()
    const p = policyOf()
    p.noteNotLeader(table, 0, 2)
    expect(p.leaderOf(table, 0)).toBe(0)
    expect(p.leaderTarget(table, 0, 0)).toBe(1)
    p.noteNotLeader(table, 0, 1)
    expect(p.leaderTarget(table, 0, 0)).toBe(3)
    // None knows a leader: the replicas in turn, the one refused longest ago first.
    p.noteNotLeader(table, 0, 3)
    expect(p.leaderTarget(table, 0, 0)).toBe(2)
    expect(p.leaderTarget(table, 1, 0)).toBe(2)
    p.noteLeader(table, 0, 1)
    expect(p.leaderTarget(table, 0, 0)).toBe(1)
  })

  it('a leader the local replica sees leading is alive, whatever the map says of it', () => {
    const table = tableOf({ 2: { leaderHint: 5, leaderTerm: 2 } })
    const p = policyOf(3)
    expect(p.leaderTarget(table, 2, 0)).toBe(4) // the hint names dead node 5: skipped
    expect(p.leaderTarget(table, 2, 0, { local: { isLeader: false, leaderId: 5 } })).toBe(5)
  })

  it('reachable and exclude narrow the candidates', () => {
    const table = tableOf()
    const p = policyOf()
    expect(p.leaderTarget(table, 0, 0, { reachable: (id) => id !== 2 })).toBe(1)
    expect(p.leaderTarget(table, 0, 0, { exclude: new Set([2, 1]) })).toBe(3)
    // A node the caller reaches although the table does not list it (an address learned elsewhere).
    p.noteLeader(table, 1, 9)
    expect(p.leaderTarget(table, 1, 0, { reachable: () => true })).toBe(9)
    expect(p.leaderTarget(table, 1, 0)).toBe(2)
  })

  it('property: never self, dead, excluded or unreachable; passed over only as a last resort', () => {
    const table = tableOf()
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 6 }),
        fc.subarray([1, 2, 3, 4, 5, 6]),
        fc.subarray([1, 2, 3, 4, 5, 6]),
        fc.subarray([1, 2, 3, 4, 5, 6]),
        fc.array(fc.tuple(fc.nat(3), fc.integer({ min: 1, max: 9 }), fc.nat(5))),
        fc.boolean(),
        (self, failed, excluded, unreachable, notes, lastResort) => {
          const p = policyOf(self)
          for (const [shardId, nodeId, term] of notes) p.noteLeader(table, shardId, nodeId, term)
          for (const id of failed) p.noteFailed(table, id, 0)
          for (let shardId = 0; shardId < 4; shardId++) {
            const options = {
              exclude: new Set(excluded),
              reachable: (id: number) => table.node(id) !== undefined && !unreachable.includes(id),
              lastResort,
            }
            const got = p.leaderTarget(table, shardId, 10, options)
            if (got === undefined) continue
            expect(got).not.toBe(self)
            expect(table.node(got)?.state).not.toBe('dead')
            expect(excluded).not.toContain(got)
            expect(unreachable).not.toContain(got)
            if (failed.includes(got)) {
              expect(lastResort).toBe(true)
              expect(p.leaderTarget(table, shardId, 10, { ...options, lastResort: false })).toBeUndefined()
            }
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('routing/RoutePolicy: replica targets', () => {
  const single = (zone: string, random?: SeededRandom): { p: RoutePolicy; table: RouteTable } => {
    const table = new RouteTable(
      [
        {
          shardId: 1,
          hashStart: 0n,
          hashEnd: 1n << 64n,
          replicas: [1, 2, 3, 4],
          leaderHint: 1,
          leaderTerm: 1,
          epoch: 1,
        },
      ],
      [node(1, 'active', 'z1'), node(2, 'active', 'z2'), node(3, 'active', 'z3'), node(4, 'dead', 'z2')],
    )
    return { p: new RoutePolicy({ self: 0, avoidMs: 1_000, zone }, { random }), table }
  }
  const picks = (
    p: RoutePolicy,
    table: RouteTable,
    n: number,
    exclude = new Set<number>(),
    nowMs = 0,
  ): Record<number, number> => {
    const counts: Record<number, number> = {}
    for (let i = 0; i < n; i++) {
      const id = p.replicaTarget(table, 1, nowMs, { exclude }) ?? 0
      counts[id] = (counts[id] ?? 0) + 1
    }
    return counts
  }

  it('round robin over the usable replicas from a random start; in the zone when one is there', () => {
    const spread = single('', new SeededRandom(5))
    expect(picks(spread.p, spread.table, 30)).toEqual({ 1: 10, 2: 10, 3: 10 })
    expect(picks(spread.p, spread.table, 10, new Set([1]))).toEqual({ 2: 5, 3: 5 })
    expect(spread.p.replicaTarget(spread.table, 1, 0, { exclude: new Set([1, 2, 3]) })).toBeUndefined()
    const zoned = single('z2')
    expect(picks(zoned.p, zoned.table, 5)).toEqual({ 2: 5 })
    zoned.p.noteFailed(zoned.table, 2, 0)
    expect(picks(zoned.p, zoned.table, 4, new Set(), 10)).toEqual({ 1: 2, 3: 2 })
    expect(picks(zoned.p, zoned.table, 4, new Set(), 1_000)).toEqual({ 2: 4 })
  })
})

describe('routing/RoutePolicy: what refusals teach', () => {
  it.each<[string, ErrorCode, number | undefined, string]>([
    ['NOT_LEADER naming another node', ErrorCode.NotLeader, 3, 'leader'],
    ['NOT_LEADER naming the refusing node', ErrorCode.NotLeader, 2, 'not-leader'],
    ['NOT_LEADER naming nobody', ErrorCode.NotLeader, undefined, 'not-leader'],
    ['UNAVAILABLE', ErrorCode.Unavailable, undefined, 'failed'],
    ['NO_QUORUM', ErrorCode.NoQuorum, undefined, 'failed'],
    ['DEADLINE_EXCEEDED', ErrorCode.DeadlineExceeded, undefined, 'failed'],
    ['SESSION_BEHIND', ErrorCode.SessionBehind, undefined, 'behind'],
    ['STALENESS_BOUND_EXCEEDED', ErrorCode.StalenessBoundExceeded, undefined, 'behind'],
    ['OVERLOADED', ErrorCode.Overloaded, undefined, 'wait'],
    ['PROPOSAL_DROPPED', ErrorCode.ProposalDropped, undefined, 'wait'],
    ['WRONG_SHARD without a descriptor', ErrorCode.WrongShard, undefined, 'refresh'],
  ])('%s: %s', (_what, code, leaderHint, kind) => {
    const table = tableOf()
    const lesson = policyOf().learn(table, { shardId: 0, from: 2, code, leaderHint }, 0)
    expect(lesson.kind).toBe(kind)
  })

  it('a hint for a shard the table lacks: go there, but nothing is noted', () => {
    expect(
      policyOf().learn(tableOf(), { shardId: 42, from: 1, code: ErrorCode.NotLeader, leaderHint: 3 }, 0),
    ).toEqual({
      kind: 'leader',
      nodeId: 3,
      noted: false,
    })
  })

  it('a newer descriptor replaces its entry in one step; a changed range or an unknown replica asks for a refresh', () => {
    const table = tableOf()
    const p = policyOf()
    const current = table.shard(1)!
    const same = p.learn(
      table,
      {
        shardId: 1,
        from: 2,
        code: ErrorCode.WrongShard,
        descriptor: { ...current, replicas: [3, 4, 6], epoch: 6, leaderHint: 6, leaderTerm: 2 },
        sent: { shardId: 1, epoch: 5 },
      },
      0,
    )
    expect(same.kind).toBe('descriptor')
    if (same.kind !== 'descriptor') return
    expect(same).toMatchObject({ routesPast: true, refresh: false })
    expect(same.table.shard(1)?.replicas).toEqual([3, 4, 6])
    expect(p.leaderTarget(same.table, 1, 0)).toBe(6)
    // An equal epoch again: nothing new, but a request sent with an older epoch is past it.
    expect(p.repair(same.table, { ...current, epoch: 6 }, { shardId: 1, epoch: 5 })).toMatchObject({
      applied: false,
      routesPast: true,
    })
    expect(p.repair(same.table, { ...current, epoch: 6 }, { shardId: 1, epoch: 6 })).toMatchObject({
      applied: false,
      routesPast: false,
    })
    expect(
      p.learn(
        same.table,
        {
          shardId: 1,
          from: 2,
          code: ErrorCode.WrongShard,
          descriptor: { ...current, epoch: 4 },
          sent: { shardId: 1, epoch: 6 },
        },
        0,
      ).kind,
    ).toBe('refresh')
    // A replica the caller does not know, or a new range: a full refresh as well.
    expect(p.repair(table, { ...current, replicas: [9], epoch: 6 })).toMatchObject({
      applied: true,
      refresh: true,
    })
    const moved = p.repair(table, { ...current, hashStart: current.hashStart + 1n, epoch: 6 })
    expect(moved).toMatchObject({ applied: true, refresh: true })
    expect(moved.table.shard(1)?.hashStart).toBe(current.hashStart + 1n)
  })

  it('retain forgets shards the table no longer has', () => {
    const table = tableOf()
    const p = policyOf()
    p.noteLeader(table, 3, 6)
    const without = new RouteTable(
      table.shards.filter((s) => s.shardId !== 3),
      [...table.nodes.values()],
    )
    p.retain(without)
    expect(p.leaderOf(table, 3)).toBe(4)
  })
})
