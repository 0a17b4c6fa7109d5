/**
 * SDK call batching (src/client/batcher.ts) against the fake servers: concurrent single-key calls
 * bound for one node travel as one Multi, each op answered, retried and redirected on its own;
 * UNIMPLEMENTED (a node from before Multi) falls back to unary calls.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { KvClient, KvError, type KvClientInit } from '../../../src/client/index.ts'
import { resolveBatchingConfig } from '../../../src/client/batcher.ts'
import { limits } from '../../../src/common/limits.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import type { MultiRequest, PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { FakeCluster } from './fake-cluster.ts'
import { FakeKvServer } from './fake-server.ts'

const range = (n: number): number[] => [...Array(n).keys()]

describe('client/batching on one node', () => {
  let server: FakeKvServer
  const clients: KvClient[] = []
  let seed = 500
  const connect = (init: Partial<KvClientInit> = {}): KvClient => {
    const c = new KvClient(
      { endpoints: [server.address], retry: { backoffBaseMs: 1, backoffMaxMs: 5 }, ...init },
      { random: new SeededRandom(++seed) },
    )
    clients.push(c)
    return c
  }
  const multis = (): MultiRequest[] => server.requestsOf<MultiRequest>('multi')

  beforeEach(async () => {
    server = await FakeKvServer.start()
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await server.stop()
  })

  it('sends N concurrent puts as one Multi, each caller getting its own answer, applied once', async () => {
    const c = connect({ clientId: 'many' })
    await c.refreshRouting()
    const results = await Promise.all(range(50).map((i) => c.put(`k${i}`, `v${i}`)))
    expect(server.count('multi')).toBe(1)
    expect(server.count('put')).toBe(0)
    expect(multis()[0]?.ops).toHaveLength(50)
    expect(server.store.applies).toBe(50)
    // Each caller got the answer of its own op: the version that wrote its key.
    for (const [i, r] of results.entries()) {
      expect(server.store.rows.get(Buffer.from(`k${i}`).toString('hex'))?.version).toBe(r.version)
      expect(r.receipt).toMatchObject({ nodeId: 1, appliedIndex: r.version, delivered: 'majority' })
    }
    // Every op carries its own exactly-once tag: one client id, distinct seqs, all in flight at once.
    const tags = server.opsOf<PutRequest>('put').map((p) => p.options)
    expect(new Set(tags.map((t) => t?.clientId))).toEqual(new Set(['many']))
    const seqs = tags.map((t) => t?.seq ?? 0)
    expect(new Set(seqs).size).toBe(50)
    expect(tags.map((t) => t?.firstIncompleteSeq)).toEqual(tags.map(() => Math.min(...seqs)))
    // Reads coalesce too, whatever their level, and see the writes.
    const got = await Promise.all(range(50).map((i) => c.get(`k${i}`, { consistency: 'eventual' })))
    expect(got.map((g) => g.valueText())).toEqual(range(50).map((i) => `v${i}`))
    expect(server.count('multi')).toBe(2)
    expect(server.count('get')).toBe(0)
  })

  it('sends a lone call as its plain unary RPC', async () => {
    const c = connect()
    await c.put('alone', 'v')
    await c.get('alone')
    await c.delete('alone')
    expect([server.count('put'), server.count('get'), server.count('delete')]).toEqual([1, 1, 1])
    expect(server.count('multi')).toBe(0)
  })

  it('delivers each op its own error: a compare-and-set mismatch fails only its caller', async () => {
    const c = connect()
    const { version } = await c.put('cas', 'v1')
    const settled = await Promise.allSettled([
      c.cas('cas', { expectedVersion: version + 100, value: 'no' }),
      c.put('other', 'x'),
      c.get('cas'),
      c.delete('cas', { expectedVersion: 0 }),
      c.cas('fresh', { expectedVersion: 0, value: 'yes' }),
    ])
    expect(server.count('multi')).toBe(1)
    expect(settled.map((s) => s.status)).toEqual([
      'rejected',
      'fulfilled',
      'fulfilled',
      'rejected',
      'fulfilled',
    ])
    const [bad, , got, badDelete] = settled
    expect(bad).toMatchObject({
      reason: { name: 'KvError', code: 'VERSION_MISMATCH', details: { currentVersion: version } },
    })
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(KvError)
    expect(badDelete).toMatchObject({ reason: { code: 'VERSION_MISMATCH' } })
    expect(got).toMatchObject({ value: { found: true, version } })
    expect(server.store.rows.has(Buffer.from('fresh').toString('hex'))).toBe(true)
  })

  it('retries an op that failed alone, and leaves the others answered', async () => {
    const c = connect()
    await c.refreshRouting()
    // The first put op of the Multi is overloaded; its retry goes alone, the others are done.
    server.failNext('put', { code: 'OVERLOADED' })
    const results = await Promise.all(range(5).map((i) => c.put(`r${i}`, 'v')))
    expect(results).toHaveLength(5)
    expect(server.count('multi')).toBe(1)
    expect(server.count('put')).toBe(1)
    expect(server.store.applies).toBe(5)
  })

  it('retries every op of a Multi lost in transit with the same tags, each applied once', async () => {
    const c = connect()
    await c.refreshRouting()
    // The first Multi dies on the wire (as a reset connection); every op retries on its own
    // (jittered backoff), coalescing with the others that retry in the same turn.
    server.failNext('multi', { status: 14, message: 'connection reset' })
    await Promise.all(range(8).map((i) => c.put(`t${i}`, 'v')))
    const seqs = server.opsOf<PutRequest>('put').map((p) => p.options?.seq)
    expect(seqs).toHaveLength(16)
    expect(new Set(seqs.slice(8))).toEqual(new Set(seqs.slice(0, 8)))
    expect(server.store.applies).toBe(8)
  })

  it('falls back to unary calls on a node that answers Multi UNIMPLEMENTED, and remembers it', async () => {
    server.multi = false
    const c = connect()
    await c.refreshRouting()
    const results = await Promise.all(range(10).map((i) => c.put(`u${i}`, `${i}`)))
    expect(new Set(results.map((r) => r.version)).size).toBe(10)
    expect(server.count('multi')).toBe(1)
    expect(server.count('put')).toBe(10)
    expect(server.store.applies).toBe(10)
    await Promise.all(range(10).map((i) => c.get(`u${i}`)))
    expect(server.count('multi')).toBe(1)
    expect(server.count('get')).toBe(10)
  })

  it('splits a queue at maxOps, and sends one RPC per call with batching off', async () => {
    const c = connect({ batching: { maxOps: 4 } })
    await c.refreshRouting()
    await Promise.all(range(10).map((i) => c.put(`s${i}`, 'v')))
    expect(multis().map((m) => m.ops.length)).toEqual([4, 4, 2])
    const off = connect({ batching: { enabled: false } })
    await off.refreshRouting()
    await Promise.all(range(10).map((i) => off.put(`s${i}`, 'w')))
    expect(server.count('multi')).toBe(3)
    expect(server.count('put')).toBe(10)
  })

  it('keeps a batch within limits.batchBytesMax', async () => {
    const c = connect()
    await c.refreshRouting()
    const big = new Uint8Array(limits.batchBytesMax / 4)
    await Promise.all(range(6).map((i) => c.put(`b${i}`, big)))
    const sizes = multis().map((m) =>
      m.ops.reduce(
        (n, o) => n + (o.op?.$case === 'put' ? o.op.put.key.length + o.op.put.value.length : 0),
        0,
      ),
    )
    expect(sizes.every((n) => n <= limits.batchBytesMax)).toBe(true)
    expect(multis().reduce((n, m) => n + m.ops.length, 0) + server.count('put')).toBe(6)
    expect(server.store.applies).toBe(6)
  })

  it("obeys a node's tighter limits: the refused Multi is sent again in smaller ones", async () => {
    const c = connect()
    await c.refreshRouting()
    server.failNext('multi', {
      code: 'INVALID_ARGUMENT',
      metadata: { 'ringkv-field': 'ops', 'ringkv-limit': '3' },
    })
    await Promise.all(range(7).map((i) => c.put(`l${i}`, 'v')))
    expect(multis().map((m) => m.ops.length)).toEqual([7, 3, 3])
    expect(server.count('put')).toBe(1)
    expect(server.store.applies).toBe(7)
  })

  it('lets one caller abort its op while the rest of its Multi completes', async () => {
    const c = connect()
    await c.refreshRouting()
    server.latencyMs = 100
    const abort = new AbortController()
    const calls = range(4).map((i) => c.put(`a${i}`, 'v', i === 2 ? { signal: abort.signal } : {}))
    setTimeout(() => abort.abort(), 20)
    const settled = await Promise.allSettled(calls)
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled'])
    expect(settled[2]).toMatchObject({ reason: { code: 'CANCELLED' } })
    expect(server.count('multi')).toBe(1)
  })

  it('waits up to maxDelayMs for more calls', async () => {
    const c = connect({ batching: { maxDelayMs: 300 } })
    await c.refreshRouting()
    const first = c.put('d1', 'v')
    await new Promise((r) => setTimeout(r, 20))
    await Promise.all([first, c.put('d2', 'v')])
    expect(multis().map((m) => m.ops.length)).toEqual([2])
  })

  it('refuses bad settings', () => {
    expect(() => resolveBatchingConfig({ maxOps: 0 })).toThrow(RangeError)
    expect(() => resolveBatchingConfig({ maxOps: limits.batchOpsMax + 1 })).toThrow(RangeError)
    expect(() => resolveBatchingConfig({ maxDelayMs: -1 })).toThrow(RangeError)
    expect(() => resolveBatchingConfig({ maxDelayMs: 0.5 })).toThrow(RangeError)
    expect(resolveBatchingConfig(undefined)).toEqual({
      enabled: true,
      maxOps: limits.batchOpsMax,
      maxDelayMs: 0,
    })
  })
})

describe('client/batching across a sharded cluster', () => {
  let cluster: FakeCluster
  const clients: KvClient[] = []
  let seed = 900
  const connect = (init: Partial<KvClientInit> = {}): KvClient => {
    const c = new KvClient(
      { endpoints: [cluster.node(1).address], retry: { backoffBaseMs: 1, backoffMaxMs: 5 }, ...init },
      { random: new SeededRandom(++seed) },
    )
    clients.push(c)
    return c
  }

  beforeEach(async () => {
    cluster = await FakeCluster.start({ nodes: 3, shards: 4 })
    // Leaders: shard 1 -> node 1, 2 -> 2, 3 -> 3, 4 -> 1.
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await cluster.stop()
  })

  it('coalesces per leader: one Multi per node, each op on its own shard leader', async () => {
    const c = connect()
    await c.refreshRouting()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'p/', 5))
    const results = await Promise.all(keys.map((k) => c.put(k, k)))
    expect(cluster.counts('multi')).toEqual({ 1: 1, 2: 1, 3: 1 })
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 0, 3: 0 })
    for (const [i, k] of keys.entries()) {
      const shardId = cluster.shardOf(new TextEncoder().encode(k)).shardId
      expect(results[i]?.receipt).toMatchObject({ shardId, nodeId: cluster.leaders.get(shardId) })
    }
    expect(cluster.node(1).requestsOf<MultiRequest>('multi')[0]?.ops).toHaveLength(10)
    // Every op carries its own route: the shard of its key (node 1's Multi mixes shards 1 and 4).
    for (const node of cluster.nodes) {
      for (const put of node.opsOf<PutRequest>('put')) {
        expect(put.options?.route).toEqual({ shardId: cluster.shardOf(put.key).shardId, epoch: 1 })
      }
    }
    const routes = cluster
      .node(1)
      .opsOf<PutRequest>('put')
      .map((p) => p.options?.route?.shardId)
    expect(new Set(routes)).toEqual(new Set([1, 4]))
  })

  it('repairs each op of a Multi from its WRONG_SHARD descriptor; the moved ops go on together', async () => {
    const c = connect({ clientId: 'resharded' })
    await c.refreshRouting()
    cluster.moveShard(2, [3, 1], 3) // shard 2 moved to nodes 3 and 1 (epoch 2); the map is stale
    const moved = cluster.keysOn(2, 'w/', 4)
    const stay = cluster.keysOn(3, 'w/', 2)
    const results = await Promise.all([...moved, ...stay].map((k) => c.put(k, 'v')))
    expect(results.map((r) => r.receipt.nodeId)).toEqual([3, 3, 3, 3, 3, 3])
    // Node 2 refused the four ops of its Multi, each with the descriptor; they went on together to
    // node 3 in one Multi with the new epoch, keeping their tags. One repair, no map refresh.
    expect(cluster.counts('multi')).toEqual({ 1: 0, 2: 1, 3: 2 })
    const refused = cluster.node(2).opsOf<PutRequest>('put')
    expect(refused.map((p) => p.options?.route)).toEqual(moved.map(() => ({ shardId: 2, epoch: 1 })))
    const again = cluster
      .node(3)
      .opsOf<PutRequest>('put')
      .filter((p) => p.options?.route?.shardId === 2)
    expect(again.map((p) => p.options?.route?.epoch)).toEqual([2, 2, 2, 2])
    expect(new Set(again.map((p) => p.options?.seq))).toEqual(new Set(refused.map((p) => p.options?.seq)))
    expect(cluster.shard(2).applies).toBe(4)
    expect(c.routingTable()?.descriptorRepairs).toBe(1)
    expect(c.routingTable()?.refreshes).toBe(1)
  })

  it("follows a NOT_LEADER hint per op: the moved shard's ops go on together to the new leader", async () => {
    const c = connect({ clientId: 'redirected' })
    await c.refreshRouting()
    cluster.leaders.set(2, 3) // shard 2 moved from node 2 to node 3; the table is stale
    const moved = cluster.keysOn(2, 'm/', 4)
    const stay = cluster.keysOn(1, 'm/', 2)
    const results = await Promise.all([...moved, ...stay].map((k) => c.put(k, 'v')))
    // Node 2 refused all four (one Multi); the four went on to node 3 in one more Multi.
    expect(cluster.counts('multi')).toEqual({ 1: 1, 2: 1, 3: 1 })
    expect(results.map((r) => r.receipt.nodeId)).toEqual([3, 3, 3, 3, 1, 1])
    // Each op kept its exactly-once tag across the redirect, and applied once.
    const refused = cluster.node(2).opsOf<PutRequest>('put')
    const served = cluster.node(3).opsOf<PutRequest>('put')
    expect(served.map((p) => p.options)).toEqual(refused.map((p) => p.options))
    expect(new Set(served.map((p) => p.options?.clientId))).toEqual(new Set(['redirected']))
    expect(cluster.shards[1]?.applies).toBe(4)
    expect(c.routingTable()?.shards[1]).toMatchObject({ shardId: 2, leaderId: 3 })
  })

  it('reports a write of a Multi that may have applied and then met NOT_LEADER by its unknown outcome', async () => {
    // No backoff: both retries go in the same turn, whatever the jitter would have drawn.
    const c = connect({ retry: { attemptsMax: 2, backoffBaseMs: 0, backoffMaxMs: 0 } })
    await c.refreshRouting()
    const [a, b] = cluster.keysOn(2, 'unknown/', 2)
    // The Multi to node 2 dies on the wire (for all the client knows, after applying); node 2 is
    // then taken for gone, and the retries go together to shard 2's next replica, node 3, which
    // does not lead it and says so. Out of attempts: each write reports its unknown outcome, not
    // NOT_LEADER.
    cluster.node(2).failNext('multi', { status: 14, message: 'connection reset' })
    const settled = await Promise.allSettled([c.put(a as string, 'v'), c.put(b as string, 'v')])
    expect(cluster.counts('multi')).toEqual({ 1: 0, 2: 1, 3: 1 })
    for (const s of settled) {
      expect(s).toMatchObject({ status: 'rejected', reason: { name: 'KvError', code: 'UNAVAILABLE' } })
      expect((s as PromiseRejectedResult).reason.message).toMatch(/may or may not have applied/)
    }
  })
})
