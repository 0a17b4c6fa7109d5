/**
 * The SDK against a fake sharded, replicated cluster (fake-cluster.ts: 3 nodes, 4 shards, every
 * node a replica of every shard): shard routing, leader hints, split getMany, cross-shard batches,
 * per-shard session tokens across nodes, and write outcomes across redirects.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { KvClient, type KvClientInit } from '../../../src/client/index.ts'
import { SeededRandom, type Random } from '../../../src/common/random.ts'
import type { BatchGetRequest, GetRequest, PutRequest, ScanRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { FakeCluster } from './fake-cluster.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** A Random that counts its draws (a backoff is a draw) and can be told to always draw the maximum. */
class CountingRandom implements Random {
  draws = 0
  private readonly inner: Random
  constructor(
    seed: number,
    private readonly maximal = false,
  ) {
    this.inner = new SeededRandom(seed)
  }
  int(maxExclusive: number): number {
    this.draws += 1
    return this.maximal ? maxExclusive - 1 : this.inner.int(maxExclusive)
  }
  chance(numerator: number, denominator: number): boolean {
    return this.int(denominator) < numerator
  }
  fork(): Random {
    return this
  }
}

describe('client/routing against a sharded cluster', () => {
  let cluster: FakeCluster
  const clients: KvClient[] = []
  let seed = 100
  const connect = (init: Partial<KvClientInit> = {}, random: Random = new SeededRandom(++seed)): KvClient => {
    const c = new KvClient(
      {
        endpoints: [cluster.node(1).address],
        retry: { backoffBaseMs: 1, backoffMaxMs: 5 },
        ...init,
      },
      { random },
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

  it('loads the table on first use and sends a put straight to its shard leader (zero redirects)', async () => {
    const c = connect()
    // Cold: the first write loads the table from one Status, then goes to the leader directly.
    const [first] = cluster.keysOn(3, 'cold/')
    const res = await c.put(first as string, 'v')
    expect(res.receipt).toMatchObject({ nodeId: 3, shardId: 3, delivered: 'majority' })
    expect(cluster.counts('status')).toEqual({ 1: 1, 2: 0, 3: 0 })
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 0, 3: 1 })
    expect(c.routingTable()?.shards.map((s) => [s.shardId, s.leaderId])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 1],
    ])

    // Warm: one put per shard, each lands on its leader only.
    cluster.clearRequests()
    for (const shard of cluster.shards) {
      const [key] = cluster.keysOn(shard.shardId, 'warm/')
      const put = await c.put(key as string, `on ${shard.shardId}`)
      expect(put.receipt.shardId).toBe(shard.shardId)
      expect(put.receipt.nodeId).toBe(cluster.leaders.get(shard.shardId))
    }
    expect(cluster.counts('put')).toEqual({ 1: 2, 2: 1, 3: 1 })
    expect(cluster.counts('status')).toEqual({ 1: 0, 2: 0, 3: 0 })
    // Linearizable reads and deletes route the same way; weaker reads go to the first endpoint.
    const [k2] = cluster.keysOn(2, 'warm/')
    expect((await c.get(k2 as string)).receipt.nodeId).toBe(2)
    expect((await c.get(k2 as string, { consistency: 'eventual' })).receipt.nodeId).toBe(1)
    expect((await c.delete(k2 as string)).receipt.nodeId).toBe(2)
  })

  it('follows a NOT_LEADER hint at once, with the same exactly-once tag, and remembers it', async () => {
    const random = new CountingRandom(7)
    const c = connect({ clientId: 'hinted' }, random)
    await c.refreshRouting()
    cluster.leaders.set(2, 3) // shard 2's leadership moved from node 2 to node 3; the table is stale
    const drawsBefore = random.draws
    const [key] = cluster.keysOn(2, 'moved/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(3)
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 1 })
    // No backoff was drawn: the redirect went at once.
    expect(random.draws).toBe(drawsBefore)
    const tags = [cluster.node(2), cluster.node(3)].map((n) => n.requestsOf<PutRequest>('put')[0]?.options)
    expect(tags[0]?.clientId).toBe('hinted')
    expect(tags[1]).toEqual(tags[0])
    expect(c.routingTable()?.shards[1]).toMatchObject({
      shardId: 2,
      leaderId: 3,
      leaderAddress: cluster.node(3).address,
    })
    // The next write to shard 2 goes straight to node 3.
    await c.put(key as string, 'w')
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 2 })
    expect(cluster.shards[1]?.applies).toBe(2)
  })

  it('refreshes the table (rate-limited) after NOT_LEADER without a hint', async () => {
    const c = connect({ routing: { refreshIntervalMsMin: 100 } })
    await c.refreshRouting()
    cluster.hints = false
    cluster.leaders.set(2, 3)
    const [key] = cluster.keysOn(2, 'nohint/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(3)
    expect(cluster.node(2).count('put')).toBe(1)
    expect(cluster.node(3).count('put')).toBe(1)
    expect(c.routingTable()?.refreshes).toBe(2)
    expect(c.routingTable()?.shards[1]?.leaderId).toBe(3)
  })

  it('moves a write off a leader that cannot be reached, onto the new leader', async () => {
    const c = connect({
      endpoints: cluster.nodes.map((n) => n.address),
      routing: { refreshIntervalMsMin: 50 },
    })
    await c.refreshRouting()
    await cluster.node(2).kill()
    cluster.leaders.set(2, 3)
    const [key] = cluster.keysOn(2, 'dead/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(3)
    expect(cluster.shards[1]?.applies).toBe(1)
    expect(c.routingTable()?.shards[1]?.leaderId).toBe(3)
  })

  it('splits getMany by shard leader, runs the parts in parallel and reassembles them in order', async () => {
    const c = connect()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'many/', 3))
    // Interleave shards, and ask for one key that does not exist.
    const asked = [...keys].sort().concat(['many/absent'])
    for (const k of keys) await c.put(k, `value of ${k}`)
    cluster.clearRequests()
    const many = await c.getMany(asked)
    expect(many.results.map((r) => new TextDecoder().decode(r.key))).toEqual(asked)
    expect(many.results.map((r) => r.valueText())).toEqual(
      asked.map((k) => (k === 'many/absent' ? null : `value of ${k}`)),
    )
    // One BatchGet per leader: node 1 leads shards 1 and 4 and gets both in one call.
    expect(cluster.counts('batchGet')).toEqual({ 1: 1, 2: 1, 3: 1 })
    for (const node of cluster.nodes) {
      const req = node.requestsOf<BatchGetRequest>('batchGet')[0]
      for (const key of req?.keys ?? [])
        expect(cluster.leaders.get(cluster.shardOf(key).shardId)).toBe(node.nodeId)
    }
    expect(many.receipts.map((r) => r.shardId).sort()).toEqual([1, 2, 3, 4])
    for (const r of many.receipts) expect(r.nodeId).toBe(cluster.leaders.get(r.shardId))
    // Every receipt went into the session.
    expect(Object.keys(c.sessionToken()).map(Number).sort()).toEqual([1, 2, 3, 4])
  })

  it('re-splits the part of a getMany whose leader moved, keeping the parts that succeeded', async () => {
    const c = connect()
    await c.refreshRouting()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'resplit/', 2))
    for (const k of keys) await c.put(k, k)
    cluster.leaders.set(4, 2) // node 1 no longer leads shard 4
    cluster.clearRequests()
    const many = await c.getMany(keys)
    expect(many.results.map((r) => r.valueText())).toEqual(keys)
    // Node 1 refused its part (shards 1 + 4) naming node 2 for shard 4; the retry split it.
    expect(cluster.counts('batchGet')).toEqual({ 1: 2, 2: 2, 3: 1 })
    expect(many.receipts.find((r) => r.shardId === 4)?.nodeId).toBe(2)
  })

  it('sends a getMany below linearizable to one replica in one call', async () => {
    const c = connect()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'weak/', 1))
    for (const k of keys) await c.put(k, k)
    cluster.clearRequests()
    const many = await c.getMany(keys, { consistency: 'eventual' })
    expect(many.results.map((r) => r.valueText())).toEqual(keys)
    expect(cluster.counts('batchGet')).toEqual({ 1: 1, 2: 0, 3: 0 })
    expect(many.receipts.length).toBe(4)
  })

  it('refuses a batch across shards with CROSS_SHARD before any RPC; a one-shard batch goes to its leader', async () => {
    const c = connect()
    await c.refreshRouting()
    cluster.clearRequests()
    const [a] = cluster.keysOn(1, 'batch/')
    const [b] = cluster.keysOn(2, 'batch/')
    const err = await c
      .batch([
        { type: 'put', key: a as string, value: '1' },
        { type: 'put', key: b as string, value: '2' },
      ])
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ name: 'KvError', code: 'CROSS_SHARD', details: { field: 'ops' } })
    expect(cluster.nodes.map((n) => n.requests.length)).toEqual([0, 0, 0])

    const same = cluster.keysOn(3, 'batch/', 2)
    const res = await c.batch(same.map((key) => ({ type: 'put' as const, key, value: 'x' })))
    expect(res.receipt).toMatchObject({ nodeId: 3, shardId: 3 })
    expect(cluster.counts('batch')).toEqual({ 1: 0, 2: 0, 3: 1 })
  })

  it('keeps per-shard session tokens across a switch of node', async () => {
    const c = connect({ endpoints: cluster.nodes.map((n) => n.address) })
    const s = c.session()
    const [k1] = cluster.keysOn(1, 'sess/')
    const [k2] = cluster.keysOn(2, 'sess/')
    await s.put(k1 as string, 'a') // shard 1 on node 1
    await s.put(k2 as string, 'b') // shard 2 on node 2
    await s.put(k2 as string, 'b2')
    const token = s.token()
    expect(token).toEqual({ 1: 1, 2: 2 })

    // Node 1 (the first endpoint) lags on shard 2: the session read moves to another replica.
    cluster.node(1).lag.set(2, 0)
    const got = await s.get(k2 as string)
    expect(got.valueText()).toBe('b2')
    expect(got.receipt.nodeId).not.toBe(1)
    expect(got.receipt.appliedIndex).toBeGreaterThanOrEqual(2)
    const refused = cluster.node(1).requestsOf<GetRequest>('get')[0]
    expect(refused?.options?.session?.appliedIndexByShard).toEqual({ 1: 1, 2: 2 })

    // Node 1 goes away entirely; reads of both shards keep their guarantees elsewhere.
    await cluster.node(1).kill()
    const again = await s.get(k1 as string)
    expect(again.valueText()).toBe('a')
    expect(again.receipt.nodeId).not.toBe(1)
    expect(s.token()).toEqual(token)

    // A token saved from this session resumes in another client that knows only node 3.
    const other = connect({ endpoints: [cluster.node(3).address] })
    const resumed = other.session({ token: s.token() })
    expect((await resumed.get(k2 as string)).valueText()).toBe('b2')
    const sent = cluster.node(3).requestsOf<GetRequest>('get').at(-1)?.options?.session
    expect(sent?.appliedIndexByShard).toEqual({ 1: 1, 2: 2 })
  })

  it('scans every shard in hash order, each stream on its leader at linearizable', async () => {
    const c = connect()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'scan/', 3))
    for (const k of keys) await c.put(k, k)
    await c.put('other', 'x')
    cluster.clearRequests()
    const scan = c.scan({ prefix: 'scan/' })
    const seen = (await scan.toArray()).map((e) => e.keyText())
    expect([...seen].sort()).toEqual([...keys].sort())
    expect(scan.receipts.map((r) => [r.shardId, r.nodeId])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 1],
    ])
    expect(cluster.counts('scan')).toEqual({ 1: 2, 2: 1, 3: 1 })
    expect(scan.resumes).toBe(0)

    // Eventual: every stream on the first endpoint. With a limit, the total is honoured across shards.
    cluster.clearRequests()
    const weak = await c.scan({ prefix: 'scan/', consistency: 'eventual', limit: 7 }).toArray()
    expect(weak.length).toBe(7)
    expect(cluster.counts('scan')).toEqual({ 1: 3, 2: 0, 3: 0 })
    const limits = cluster
      .node(1)
      .requestsOf<ScanRequest>('scan')
      .map((r) => r.limit)
    expect(limits).toEqual([7, 4, 1])
  })

  it('follows a redirect in the middle of a linearizable scan', async () => {
    const c = connect()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'scan2/', 2))
    for (const k of keys) await c.put(k, k)
    cluster.leaders.set(3, 1) // the table says node 3 leads shard 3; it no longer does
    const scan = c.scan({ prefix: 'scan2/' })
    const seen = (await scan.toArray()).map((e) => e.keyText())
    expect([...seen].sort()).toEqual([...keys].sort())
    expect(scan.receipts.find((r) => r.shardId === 3)?.nodeId).toBe(1)
  })

  it('reports a write that may have applied and then met NOT_LEADER by its unknown outcome, not NOT_LEADER', async () => {
    const c = connect({ retry: { attemptsMax: 2, backoffBaseMs: 1, backoffMaxMs: 1 } })
    await c.refreshRouting()
    const [key] = cluster.keysOn(2, 'unknown/')
    // Attempt 1 applies on node 2, and its answer is lost; the client then takes node 2 for gone,
    // and attempt 2 goes to node 1, which does not lead shard 2 and says so. Out of attempts.
    cluster.node(2).failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    const err = await c.put(key as string, 'v').catch((e: unknown) => e)
    expect(cluster.counts('put')).toEqual({ 1: 1, 2: 1, 3: 0 })
    expect(err).toMatchObject({ name: 'KvError', code: 'UNAVAILABLE' })
    expect((err as Error).message).toMatch(/may or may not have applied/)
    expect(cluster.shards[1]?.applies).toBe(1)
  })

  it('reports DEADLINE_EXCEEDED when the deadline passes after a write was sent', async () => {
    // Every backoff is the longest possible, and longer than the deadline.
    const c = connect(
      { retry: { attemptsMax: 4, backoffBaseMs: 5_000, backoffMaxMs: 5_000 } },
      new CountingRandom(3, true),
    )
    await c.refreshRouting()
    const [key] = cluster.keysOn(3, 'late/')
    cluster.node(3).failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    await expect(c.put(key as string, 'v', { deadlineMs: 1_000 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    })
    // A write that certainly did not apply keeps its own error.
    cluster.node(3).failNext('put', { code: 'OVERLOADED' })
    await expect(c.put(key as string, 'v', { deadlineMs: 1_000 })).rejects.toMatchObject({
      code: 'OVERLOADED',
    })
    expect(cluster.shards[2]?.applies).toBe(1)
  })

  it('retries a write whose answer was lost on the same leader with the same tag: applied once', async () => {
    const c = connect()
    await c.refreshRouting()
    const [key] = cluster.keysOn(4, 'lost/')
    cluster.node(1).failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    const res = await c.put(key as string, 'v')
    const puts = cluster.node(1).requestsOf<PutRequest>('put')
    expect(puts.length).toBe(2)
    expect(puts[1]?.options?.seq).toBe(puts[0]?.options?.seq)
    expect(cluster.shards[3]?.applies).toBe(1)
    expect(res.version).toBe(1)
  })

  it('falls back to the first endpoint and leader hints when Status lists no shards', async () => {
    cluster.statusWithoutShards = true
    const c = connect()
    const [key] = cluster.keysOn(2, 'fallback/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(2)
    // Node 1 said NOT_LEADER, naming node 2, whose address came with the Status peers.
    expect(cluster.counts('put')).toEqual({ 1: 1, 2: 1, 3: 0 })
    expect(c.routingTable()?.shards).toEqual([])
    expect(c.currentEndpoint).toBe(cluster.node(2).address)
  })

  it('routes with keys given as bytes exactly like the same keys as strings', async () => {
    const c = connect()
    const [key] = cluster.keysOn(3, 'bytes/')
    await c.put(text(key as string), 'v')
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 0, 3: 1 })
  })
})
