import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadClientHasher } from '../../../src/client/hasher.ts'
import {
  RoutingCache,
  parseShardTable,
  resolveRoutingConfig,
  routingDefaults,
  shardOfHash,
  type RoutingCacheComponents,
} from '../../../src/client/routing.ts'
import type { ShardStatus, StatusResponse } from '../../../src/gen/ringkv/v1/admin.ts'
import { equalHashRanges, hashSpaceEnd, rangeIndexOf, type Hasher } from '../../../src/hashing/index.ts'
import { SimClock } from './sim-clock.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

function shardStatus(
  shardId: number,
  start: bigint | string,
  end: bigint | string,
  leaderId: number,
): ShardStatus {
  return {
    shardId,
    role: 'follower',
    appliedIndex: 1,
    commitIndex: 1,
    term: 1,
    leaderId,
    voters: [1, 2, 3],
    learners: [],
    hashStart: start.toString(),
    hashEnd: end.toString(),
  }
}

/** A Status answer of node 1 for `count` equal shards (ids from 1), shard i led by node (i % 3) + 1. */
function statusOf(count: number, nodeId = 1): StatusResponse {
  return {
    clusterId: 'c',
    node: {
      nodeId,
      address: `0.0.0.0:700${nodeId}`,
      version: '',
      uptimeMs: 0,
      dataDir: '',
      requestsInFlight: 0,
      shards: equalHashRanges(count).map((r, i) => shardStatus(i + 1, r.start, r.end, (i % 3) + 1)),
    },
    peers: [1, 2, 3]
      .filter((id) => id !== nodeId)
      .map((id) => ({
        nodeId: id,
        address: `10.0.0.${id}:7001`,
        version: '',
        uptimeMs: 0,
        dataDir: '',
        requestsInFlight: 0,
        shards: [],
      })),
  }
}

interface Harness {
  readonly cache: RoutingCache
  readonly clock: SimClock
  readonly asked: string[]
  readonly unreachable: string[]
}

function harness(
  hasher: Hasher,
  answer: (endpoint: string) => Promise<StatusResponse>,
  overrides: Partial<RoutingCacheComponents> = {},
  refreshIntervalMsMin = 250,
): Harness {
  const clock = new SimClock()
  const asked: string[] = []
  const unreachable: string[] = []
  const cache = new RoutingCache(resolveRoutingConfig({ refreshIntervalMsMin }), {
    clock,
    hasher: async () => hasher,
    fetchStatus: (endpoint) => {
      asked.push(endpoint)
      return answer(endpoint)
    },
    candidates: () => ['seed-a:7001', 'seed-b:7001'],
    onUnreachable: (endpoint) => unreachable.push(endpoint),
    ...overrides,
  })
  return { cache, clock, asked, unreachable }
}

describe('client/routing table', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadClientHasher()
  })

  it('places a key in the shard whose [hash_start, hash_end) holds its xxh64', async () => {
    for (const count of [1, 3, 8, 64]) {
      const { cache } = harness(hasher, async () => statusOf(count))
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
    const { shards } = parseShardTable(statusOf(8))
    for (const [i, r] of ranges.entries()) {
      expect(shardOfHash(shards, r.start)?.shardId).toBe(i + 1)
      expect(shardOfHash(shards, r.end - 1n)?.shardId).toBe(i + 1)
    }
    expect(shardOfHash(shards, hashSpaceEnd - 1n)?.shardId).toBe(8)
    expect(shardOfHash(shards, 0n)?.shardId).toBe(1)
  })

  it('reads ranges defensively: bad, empty and overlapping ones are skipped; end 0 is the end of the ring', () => {
    const res = statusOf(1)
    const node = res.node as NonNullable<StatusResponse['node']>
    const parsed = parseShardTable({
      ...res,
      node: {
        ...node,
        shards: [
          shardStatus(7, '9223372036854775808', '0', 2), // upper half, end 0 = 2^64
          shardStatus(3, '0', '9223372036854775808', 0), // lower half, leader unknown
          shardStatus(4, '10', '20', 1), // overlaps shard 3: skipped
          shardStatus(5, 'x', '20', 1), // does not parse
          shardStatus(6, '30', '30', 1), // empty
          shardStatus(8, '0', '18446744073709551617', 1), // beyond 2^64
        ],
      },
    })
    expect(parsed.shards.map((s) => [s.shardId, s.hashStart, s.hashEnd])).toEqual([
      [3, 0n, 1n << 63n],
      [7, 1n << 63n, hashSpaceEnd],
    ])
    expect([...parsed.leaders]).toEqual([
      [7, 2],
      [3, 0],
    ])
    // A node that says it leads (role leader/single) without naming itself is the leader.
    const single = parseShardTable({
      ...res,
      node: { ...node, nodeId: 9, shards: [{ ...shardStatus(0, '0', hashSpaceEnd, 0), role: 'single' }] },
    })
    expect(single.leaders.get(0)).toBe(9)
  })

  it('has no route before a table, for a Status without shards, or with routing off', async () => {
    const { cache } = harness(hasher, async () => ({
      ...statusOf(4),
      node: { ...statusOf(4).node!, shards: [] },
    }))
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
      fetchStatus: () => Promise.reject(new Error('must not be asked')),
      candidates: () => ['a:1'],
    })
    await off.refresh()
    await off.ready(new AbortController().signal)
    expect(off.refreshes).toBe(0)
    expect(off.shardOf(text('k'))).toBeUndefined()
  })

  it('maps the answering node to the endpoint it answered on, peers to their advertised addresses', async () => {
    const { cache } = harness(hasher, async () => statusOf(3))
    await cache.refresh()
    // Node 1 advertises 0.0.0.0 (a wildcard listen address): the endpoint that answered is used.
    expect(cache.snapshot()?.nodes).toEqual({ 1: 'seed-a:7001', 2: '10.0.0.2:7001', 3: '10.0.0.3:7001' })
    expect(cache.leaderAddress(1)).toBe('seed-a:7001')
    expect(cache.leaderAddress(2)).toBe('10.0.0.2:7001')
    // A peer's advertisement does not override where a node answered us itself.
    cache.learnAddress(1, '10.0.0.1:7001')
    expect(cache.addressOf(1)).toBe('seed-a:7001')
    cache.learnAddress(4, '0.0.0.0:7004')
    expect(cache.addressOf(4)).toBeUndefined()
  })

  it('repairs one shard from a hint, and forgets the leaders of a node that does not answer', async () => {
    const { cache } = harness(hasher, async () => statusOf(6))
    await cache.refresh()
    expect([1, 2, 3, 4, 5, 6].map((s) => cache.leaderOf(s))).toEqual([1, 2, 3, 1, 2, 3])
    expect(cache.noteLeader(2, 1)).toBe(true)
    expect(cache.leaderOf(2)).toBe(1)
    expect(cache.leaderAddress(2)).toBe('seed-a:7001')
    // Unknown shards are not invented.
    expect(cache.noteLeader(99, 1)).toBe(false)
    expect(cache.noteLeader(3, 0)).toBe(false)
    // Node 2 stops answering: shard 5 loses its leader, nobody else does.
    cache.forgetLeadersAt('10.0.0.2:7001')
    expect([1, 2, 3, 4, 5, 6].map((s) => cache.leaderOf(s))).toEqual([1, 1, 3, 1, 0, 3])
    // NOT_LEADER from node 1 without a hint: only if it is still the one we think leads.
    cache.forgetLeader(6, 1)
    expect(cache.leaderOf(6)).toBe(3)
    cache.forgetLeader(6, 3)
    expect(cache.leaderOf(6)).toBe(0)
    expect(cache.nextShard(1)?.shardId).toBe(2)
    expect(cache.nextShard(6)).toBeUndefined()
    expect(cache.firstShard()?.shardId).toBe(1)
  })

  it('coalesces refreshes into one in flight and starts at most one per interval', async () => {
    const { cache, clock, asked } = harness(hasher, () => Promise.resolve().then(() => statusOf(4)), {}, 250)
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

  it('asks candidates in order until one answers, then the addresses it learned', async () => {
    const { cache, asked, unreachable } = harness(hasher, async (endpoint) => {
      if (endpoint === 'seed-b:7001') return statusOf(2, 2)
      throw new Error(`${endpoint} is down`)
    })
    await cache.ready(new AbortController().signal)
    expect(asked).toEqual(['seed-a:7001', 'seed-b:7001'])
    expect(unreachable).toEqual(['seed-a:7001'])
    expect(cache.addressOf(2)).toBe('seed-b:7001')
    expect(cache.routable).toBe(true)

    // Nobody answers: no table, no route, and calls go on without one.
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
      fetchStatus: () => new Promise<StatusResponse>(() => undefined),
      candidates: () => ['slow:1'],
    })
    await cache.ready(new AbortController().signal)
    expect(clock.nowMs()).toBe(300)
    expect(cache.routable).toBe(false)
    cache.close()
  })

  it('validates its settings', () => {
    expect(resolveRoutingConfig(undefined)).toEqual(routingDefaults)
    expect(() => resolveRoutingConfig({ refreshIntervalMsMin: -1 })).toThrow(RangeError)
    expect(() => resolveRoutingConfig({ statusTimeoutMs: 0 })).toThrow(RangeError)
  })
})
