import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadClientHasher } from '../../../src/client/hasher.ts'
import {
  RoutingCache,
  resolveRoutingConfig,
  routingDefaults,
  type RoutingCacheComponents,
  type RoutingInit,
} from '../../../src/client/routing.ts'
import type { ShardDescriptorDetail } from '../../../src/common/errors.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import type { NodeInfo, ShardDescriptor, ShardMapResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import { equalHashRanges, hashSpaceEnd, rangeIndexOf, type Hasher } from '../../../src/hashing/index.ts'
import { RouteTable, decodeShardMap } from '../../../src/routing/index.ts'
import { SimClock } from './sim-clock.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

function descriptor(
  shardId: number,
  start: bigint | string,
  end: bigint | string,
  leaderHint: number,
  replicas: number[] = [1, 2, 3],
  epoch = 1,
): ShardDescriptor {
  return {
    shardId,
    hashStart: start.toString(),
    hashEnd: end.toString(),
    replicas,
    leaderHint,
    leaderTerm: 1,
    epoch,
  }
}

function nodeInfo(nodeId: number, address: string, zone = '', state = 'active'): NodeInfo {
  return { nodeId, address, zone, state, lastHeartbeatMs: 0, weight: 1, peerAddress: '' }
}

/**
 * A ShardMap answer served by node `servedBy` for `count` equal shards (ids from 1): shard i led
 * by node (i % 3) + 1, replicas on nodes 1..3 with the leader first. Node 1 advertises a wildcard
 * address; nodes 2 and 3 advertise 10.0.0.x:7001.
 */
function mapOf(count: number, servedBy = 1, nodes: NodeInfo[] = defaultNodes()): ShardMapResponse {
  return {
    clusterId: 'c',
    nodes,
    shards: equalHashRanges(count).map((r, i) => {
      const leader = (i % 3) + 1
      return descriptor(i + 1, r.start, r.end, leader, [leader, ...[1, 2, 3].filter((n) => n !== leader)])
    }),
    replicaCount: 3,
    vnodesPerNode: 16,
    metaShard: undefined,
    servedBy,
  }
}

function defaultNodes(): NodeInfo[] {
  return [nodeInfo(1, '0.0.0.0:7001'), nodeInfo(2, '10.0.0.2:7001'), nodeInfo(3, '10.0.0.3:7001')]
}

interface Harness {
  readonly cache: RoutingCache
  readonly clock: SimClock
  readonly asked: string[]
  readonly unreachable: string[]
}

function harness(
  hasher: Hasher,
  answer: (endpoint: string) => Promise<ShardMapResponse>,
  overrides: Partial<RoutingCacheComponents> = {},
  init: RoutingInit & { zone?: string } = { refreshIntervalMsMin: 250 },
): Harness {
  const clock = new SimClock()
  const asked: string[] = []
  const unreachable: string[] = []
  const cache = new RoutingCache(resolveRoutingConfig(init, init.zone), {
    clock,
    hasher: async () => hasher,
    fetchMap: (endpoint) => {
      asked.push(endpoint)
      return answer(endpoint)
    },
    candidates: () => ['seed-a:7001', 'seed-b:7001'],
    onUnreachable: (endpoint) => unreachable.push(endpoint),
    ...overrides,
  })
  return { cache, clock, asked, unreachable }
}

/** Lets a few turns of the event loop run (a background refresh, the SimClock's pump). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

describe('client/routing map', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadClientHasher()
  })

  it('places a key in the shard whose [hash_start, hash_end) holds its xxh64', async () => {
    for (const count of [1, 3, 8, 64]) {
      const { cache } = harness(hasher, async () => mapOf(count))
      await cache.refresh()
      const ranges = equalHashRanges(count)
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 40 }), (key) => {
          const expected = rangeIndexOf(ranges, hasher.hash64(key)) + 1
          expect(cache.shardOf(key)?.shardId).toBe(expected)
        }),
        { numRuns: 200 },
      )
    }
  })

  it('agrees with the hash at every range boundary', () => {
    const ranges = equalHashRanges(8)
    const table = new RouteTable(decodeShardMap(mapOf(8)).shards, [])
    for (const [i, r] of ranges.entries()) {
      expect(table.shardOfHash(r.start)?.shardId).toBe(i + 1)
      expect(table.shardOfHash(r.end - 1n)?.shardId).toBe(i + 1)
    }
    expect(table.shardOfHash(hashSpaceEnd - 1n)?.shardId).toBe(8)
    expect(table.shardOfHash(0n)?.shardId).toBe(1)
  })

  it('reads the map defensively: bad, empty, overlapping and repeated shards and bad nodes are left out', async () => {
    const { cache } = harness(hasher, async () => ({
      ...mapOf(1),
      nodes: [nodeInfo(1, '0.0.0.0:7001', 'z1'), nodeInfo(0, 'x:1'), nodeInfo(2, 'b:1', '', 'dead')],
      shards: [
        descriptor(7, '9223372036854775808', '18446744073709551616', 2, [2, 1], 4), // upper half
        descriptor(3, '0', '9223372036854775808', 0), // lower half, leader unknown
        descriptor(4, '10', '20', 1), // overlaps shard 3: left out
        descriptor(5, 'x', '20', 1), // does not parse
        descriptor(6, '30', '30', 1), // empty
        descriptor(8, '0', '18446744073709551617', 1), // beyond 2^64
        descriptor(9, '0', '0', 1), // an end of 0 is no end of the ring (kv.proto: 2^64 is written out)
        descriptor(3, '18446744073709551615', '18446744073709551616', 1), // shard 3 again
      ],
    }))
    await cache.refresh()
    expect(cache.snapshot()?.shards).toEqual([
      {
        shardId: 3,
        hashStart: '0',
        hashEnd: String(1n << 63n),
        leaderId: 0,
        leaderAddress: null,
        replicas: [1, 2, 3],
        epoch: 1,
      },
      {
        shardId: 7,
        hashStart: String(1n << 63n),
        hashEnd: String(hashSpaceEnd),
        leaderId: 2,
        leaderAddress: 'b:1',
        replicas: [2, 1],
        epoch: 4,
      },
    ])
    expect(cache.snapshot()?.members).toEqual([
      { nodeId: 1, address: '', zone: 'z1', state: 'active' },
      { nodeId: 2, address: 'b:1', zone: '', state: 'dead' },
    ])
  })

  it('has no route before a map, for a map without shards, or with routing off', async () => {
    const { cache } = harness(hasher, async () => ({ ...mapOf(4), shards: [] }))
    expect(cache.shardOf(text('k'))).toBeUndefined()
    expect(cache.routable).toBe(false)
    await cache.refresh()
    expect(cache.isLoaded).toBe(true)
    expect(cache.routable).toBe(false)
    expect(cache.shardOf(text('k'))).toBeUndefined()
    expect(cache.snapshot()?.shards).toEqual([])

    const off = new RoutingCache(resolveRoutingConfig({ enabled: false }), {
      clock: new SimClock(),
      hasher: async () => hasher,
      fetchMap: () => Promise.reject(new Error('must not be asked')),
      candidates: () => ['a:1'],
    })
    await off.refresh()
    await off.ready(new AbortController().signal)
    expect(off.refreshes).toBe(0)
    expect(off.shardOf(text('k'))).toBeUndefined()
    expect(off.applyDescriptor(detail(mapOf(1).shards[0] as ShardDescriptor))).toBe(false)
  })

  it('maps the answering node to the endpoint it answered on, the others to their advertised addresses', async () => {
    const { cache } = harness(hasher, async () => mapOf(3))
    await cache.refresh()
    // Node 1 advertises 0.0.0.0 (a wildcard listen address): the endpoint that answered is used.
    expect(cache.snapshot()?.nodes).toEqual({ 1: 'seed-a:7001', 2: '10.0.0.2:7001', 3: '10.0.0.3:7001' })
    expect(cache.leaderAddress(1)).toBe('seed-a:7001')
    expect(cache.leaderAddress(2)).toBe('10.0.0.2:7001')
    // An advertisement does not override where a node answered us itself.
    cache.learnAddress(1, '10.0.0.1:7001')
    expect(cache.addressOf(1)).toBe('seed-a:7001')
    cache.learnAddress(4, '0.0.0.0:7004')
    expect(cache.addressOf(4)).toBeUndefined()
    expect(cache.snapshot()?.members.map((m) => m.nodeId)).toEqual([1, 2, 3])
  })

  it('sends leader traffic to the hint, else the first usable replica, skipping dead and unreachable nodes', async () => {
    const nodes = [...defaultNodes(), nodeInfo(4, '10.0.0.4:7001', '', 'dead')]
    const map = mapOf(6, 1, nodes)
    ;(map.shards[5] as ShardDescriptor).replicas = [4, 2, 3] // shard 6: preferred leader dead
    ;(map.shards[5] as ShardDescriptor).leaderHint = 0
    ;(map.shards[4] as ShardDescriptor).leaderHint = 0 // shard 5: replicas [2, 1, 3], no hint
    const { cache, clock } = harness(hasher, async () => map, {}, { unreachableMs: 1_000 })
    await cache.refresh()
    const target = (s: number): number | undefined => cache.leaderTarget(s)?.nodeId
    expect([1, 2, 3, 4, 5, 6].map(target)).toEqual([1, 2, 3, 1, 2, 2])
    expect([1, 2, 3, 4, 5, 6].map((s) => cache.leaderOf(s))).toEqual([1, 2, 3, 1, 0, 0])
    // A hint repairs one shard; unknown shards and node 0 are not invented.
    expect(cache.noteLeader(2, 1)).toBe(true)
    expect(cache.leaderTarget(2)).toEqual({ nodeId: 1, address: 'seed-a:7001' })
    expect(cache.noteLeader(99, 1)).toBe(false)
    expect(cache.noteLeader(3, 0)).toBe(false)
    // A receipt from an older term than we know does not undo a newer note.
    expect(cache.noteLeader(1, 3, 5)).toBe(true)
    expect(cache.noteLeader(1, 1, 4)).toBe(false)
    expect(cache.leaderOf(1)).toBe(3)
    // Node 2 stops answering: it loses its leaderships and is passed over, for a while.
    cache.markUnreachable('10.0.0.2:7001')
    expect([1, 2, 3, 4, 5, 6].map((s) => cache.leaderOf(s))).toEqual([3, 1, 3, 1, 0, 0])
    expect([5, 6].map(target)).toEqual([1, 3])
    expect(cache.replicaTarget(5, new Set())?.nodeId).not.toBe(2)
    clock.advance(1_000)
    expect([5, 6].map(target)).toEqual([2, 2])
    // Named as leader again: no longer passed over.
    cache.markUnreachable('10.0.0.2:7001')
    cache.noteLeader(5, 2)
    expect(target(5)).toBe(2)
    // NOT_LEADER from node 1 without a hint: only if it is still the one we think leads.
    cache.forgetLeader(4, 3)
    expect(cache.leaderOf(4)).toBe(1)
    cache.forgetLeader(4, 1)
    expect(cache.leaderOf(4)).toBe(0)
    // The first replica said it does not lead and named nobody: it is asked last (routing/policy.ts).
    expect(target(4)).toBe(2)
    cache.noteLeader(4, 3)
    expect(target(4)).toBe(3)
    expect(cache.nextShard(1)?.shardId).toBe(2)
    expect(cache.nextShard(6)).toBeUndefined()
    expect(cache.firstShard()?.shardId).toBe(1)
  })

  it('spreads replica reads over the usable replicas, or keeps them in the client zone', async () => {
    const nodes = [
      nodeInfo(1, 'a:1', 'z1'),
      nodeInfo(2, 'b:1', 'z2'),
      nodeInfo(3, 'c:1', 'z3'),
      nodeInfo(4, 'd:1', 'z2', 'dead'),
    ]
    const map = { ...mapOf(1, 1, nodes) }
    map.shards = [descriptor(1, 0n, hashSpaceEnd, 1, [1, 2, 3, 4])]
    const picks = (cache: RoutingCache, n: number, avoid = new Set<number>()): Record<number, number> => {
      const counts: Record<number, number> = {}
      for (let i = 0; i < n; i++) {
        const id = cache.replicaTarget(1, avoid)?.nodeId ?? 0
        counts[id] = (counts[id] ?? 0) + 1
      }
      return counts
    }
    // No zone: round robin over the three live replicas (node 4 is dead), from a random start.
    const spread = harness(hasher, async () => map, { random: new SeededRandom(5) })
    await spread.cache.refresh()
    expect(picks(spread.cache, 30)).toEqual({ 1: 10, 2: 10, 3: 10 })
    expect(picks(spread.cache, 10, new Set([1]))).toEqual({ 2: 5, 3: 5 })
    expect(spread.cache.replicaTarget(1, new Set([1, 2, 3]))).toBeUndefined()
    // Zone z2: node 2 only (node 4, also in z2, is dead); once node 2 is passed over, the others.
    const zoned = harness(hasher, async () => map, {}, { zone: 'z2' })
    await zoned.cache.refresh()
    expect(picks(zoned.cache, 5)).toEqual({ 2: 5 })
    expect(picks(zoned.cache, 4, new Set([2]))).toEqual({ 1: 2, 3: 2 })
    zoned.cache.markUnreachable('b:1')
    expect(Object.keys(picks(zoned.cache, 4)).sort()).toEqual(['1', '3'])
    // A zone no replica is in: no preference.
    const elsewhere = harness(hasher, async () => map, {}, { zone: 'z9' })
    await elsewhere.cache.refresh()
    expect(picks(elsewhere.cache, 6)).toEqual({ 1: 2, 2: 2, 3: 2 })
  })

  it('replaces one entry from a newer descriptor in one step, without a refresh when the range is the same', async () => {
    const { cache, clock, asked } = harness(hasher, async () => mapOf(4))
    await cache.refresh()
    const before = cache.shard(2)
    const d: ShardDescriptorDetail = {
      shardId: 2,
      hashStart: before?.hashStart ?? 0n,
      hashEnd: before?.hashEnd ?? 0n,
      replicas: [3, 1],
      leaderHint: 3,
      leaderTerm: 2,
      epoch: 2,
    }
    expect(cache.applyDescriptor(d)).toBe(true)
    expect(cache.shard(2)).toMatchObject({ replicas: [3, 1], epoch: 2 })
    expect(cache.leaderTarget(2)?.nodeId).toBe(3)
    expect(cache.snapshot()?.descriptorRepairs).toBe(1)
    expect(cache.snapshot()?.shards.map((s) => s.shardId)).toEqual([1, 2, 3, 4])
    // The same epoch again, or an older one: not newer, nothing changes. It still counts as
    // repaired for a request that carried the old epoch (another op of its Multi brought it).
    expect(cache.applyDescriptor({ ...d, replicas: [1], epoch: 2 })).toBe(false)
    expect(cache.applyDescriptor({ ...d, epoch: 1 })).toBe(false)
    expect(cache.applyDescriptor(d, { shardId: 2, epoch: 2 })).toBe(false)
    expect(cache.applyDescriptor(d, { shardId: 2, epoch: 1 })).toBe(true)
    expect(cache.applyDescriptor(d, { shardId: 1, epoch: 1 })).toBe(true)
    expect(cache.shard(2)?.replicas).toEqual([3, 1])
    expect(cache.snapshot()?.descriptorRepairs).toBe(1)
    clock.advance(10_000)
    await settle()
    expect(asked.length).toBe(1)
    expect(cache.refreshes).toBe(1)
  })

  it('drops the entries a descriptor with a new range overlaps, and schedules a full refresh', async () => {
    const { cache, asked } = harness(hasher, async () => mapOf(4))
    await cache.refresh()
    const two = cache.shard(2)
    const three = cache.shard(3)
    if (two === undefined || three === undefined) throw new Error('no shards')
    // Shard 5 now holds the upper half of shard 2 and the lower half of shard 3.
    const middle2 = (two.hashStart + two.hashEnd) / 2n
    const middle3 = (three.hashStart + three.hashEnd) / 2n
    const d: ShardDescriptorDetail = {
      shardId: 5,
      hashStart: middle2,
      hashEnd: middle3,
      replicas: [2, 3],
      leaderHint: 0,
      leaderTerm: 0,
      epoch: 1,
    }
    expect(cache.applyDescriptor(d)).toBe(true)
    expect(cache.snapshot()?.shards.map((s) => s.shardId)).toEqual([1, 5, 4])
    expect(new RouteTable([cache.shard(5)!], []).shardOfHash(middle2)?.shardId).toBe(5)
    expect(cache.shard(2)).toBeUndefined()
    expect(cache.firstShard()?.shardId).toBe(1)
    expect(cache.nextShard(1)).toBeUndefined() // a gap until the refresh
    expect(cache.leaderTarget(5)?.nodeId).toBe(2)
    // The refresh is deferred to the end of the rate-limit interval, then the map is whole again.
    await cache.ready(new AbortController().signal, true)
    expect(asked.length).toBe(2)
    expect(cache.snapshot()?.shards.map((s) => s.shardId)).toEqual([1, 2, 3, 4])
  })

  it('schedules a refresh for a descriptor naming a replica at an unknown address', async () => {
    const { cache, asked } = harness(hasher, async () => mapOf(2), {}, { refreshIntervalMsMin: 0 })
    await cache.refresh()
    const one = cache.shard(1)!
    expect(
      cache.applyDescriptor({
        shardId: 1,
        hashStart: one.hashStart,
        hashEnd: one.hashEnd,
        replicas: [9, 1],
        leaderHint: 9,
        leaderTerm: 3,
        epoch: 5,
      }),
    ).toBe(true)
    await settle()
    expect(asked.length).toBe(2)
  })

  it('reloads the map when a node it says is dead serves a request (it came back)', async () => {
    const nodes = [...defaultNodes().slice(0, 2), nodeInfo(3, '10.0.0.3:7001', '', 'dead')]
    let state = 'dead'
    const { cache, asked } = harness(
      hasher,
      async () => mapOf(3, 1, [...nodes.slice(0, 2), nodeInfo(3, '10.0.0.3:7001', '', state)]),
      {},
      { refreshIntervalMsMin: 0 },
    )
    await cache.refresh()
    // Shard 3 is led by node 3, which the map says is dead: its leader traffic goes elsewhere.
    expect(cache.leaderTarget(3)?.nodeId).toBe(1)
    cache.noteServed(2) // alive and said so: nothing to learn
    await settle()
    expect(asked.length).toBe(1)
    state = 'active'
    cache.noteServed(3)
    await settle()
    expect(asked.length).toBe(2)
    expect(cache.leaderTarget(3)?.nodeId).toBe(3)
  })

  it('coalesces refreshes into one in flight and starts at most one per interval', async () => {
    const { cache, clock, asked } = harness(hasher, () => Promise.resolve().then(() => mapOf(4)))
    // Three callers at once share one load.
    await Promise.all([cache.refresh(), cache.refresh(), cache.ready(new AbortController().signal)])
    expect(asked.length).toBe(1)
    expect(cache.refreshes).toBe(1)
    expect(clock.nowMs()).toBe(0)

    // Right after: deferred to the end of the interval (one deferred refresh, shared), not dropped.
    const deferred = [cache.refresh(), cache.refresh()]
    expect(asked.length).toBe(1)
    await Promise.all(deferred)
    expect(asked.length).toBe(2)
    expect(clock.nowMs()).toBe(250)

    // Nothing pending: a caller whose route failed does not wait.
    await cache.ready(new AbortController().signal, true)
    expect(clock.nowMs()).toBe(250)
    // A refresh deferred by the rate limit: the caller whose route failed waits for it, others do not.
    void cache.refresh()
    await cache.ready(new AbortController().signal)
    expect(clock.nowMs()).toBe(250)
    await cache.ready(new AbortController().signal, true)
    expect(clock.nowMs()).toBe(500)
    expect(asked.length).toBe(3)
    expect(cache.refreshes).toBe(3)
  })

  it('asks candidates in order until one answers', async () => {
    const { cache, asked, unreachable } = harness(hasher, async (endpoint) => {
      if (endpoint === 'seed-b:7001') return mapOf(2, 2)
      throw new Error(`${endpoint} is down`)
    })
    await cache.ready(new AbortController().signal)
    expect(asked).toEqual(['seed-a:7001', 'seed-b:7001'])
    expect(unreachable).toEqual(['seed-a:7001'])
    expect(cache.addressOf(2)).toBe('seed-b:7001')
    expect(cache.routable).toBe(true)

    // Nobody answers: no map, no route, and calls go on without one.
    const dead = harness(hasher, () => Promise.reject(new Error('down')))
    await dead.cache.ready(new AbortController().signal)
    expect(dead.asked).toEqual(['seed-a:7001', 'seed-b:7001'])
    expect(dead.cache.isLoaded).toBe(false)
    expect(dead.cache.shardOf(text('k'))).toBeUndefined()
  })

  it('gives up waiting for a slow first load after statusTimeoutMs and goes on without a route', async () => {
    const clock = new SimClock()
    const cache = new RoutingCache(resolveRoutingConfig({ statusTimeoutMs: 300 }), {
      clock,
      hasher: async () => hasher,
      fetchMap: () => new Promise<ShardMapResponse>(() => undefined),
      candidates: () => ['slow:1'],
    })
    await cache.ready(new AbortController().signal)
    expect(clock.nowMs()).toBe(300)
    expect(cache.routable).toBe(false)
    cache.close()
  })

  it('validates its settings', () => {
    expect(resolveRoutingConfig(undefined)).toEqual(routingDefaults)
    expect(resolveRoutingConfig(undefined, 'eu-1').zone).toBe('eu-1')
    expect(() => resolveRoutingConfig({ refreshIntervalMsMin: -1 })).toThrow(RangeError)
    expect(() => resolveRoutingConfig({ statusTimeoutMs: 0 })).toThrow(RangeError)
    expect(() => resolveRoutingConfig({ unreachableMs: -5 })).toThrow(RangeError)
  })
})

function detail(d: ShardDescriptor): ShardDescriptorDetail {
  return {
    shardId: d.shardId,
    hashStart: BigInt(d.hashStart),
    hashEnd: BigInt(d.hashEnd),
    replicas: d.replicas,
    leaderHint: d.leaderHint,
    leaderTerm: d.leaderTerm,
    epoch: d.epoch + 1,
  }
}
