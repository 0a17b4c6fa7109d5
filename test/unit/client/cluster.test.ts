/**
 * The SDK against a fake sharded, replicated cluster (fake-cluster.ts: 3 nodes in zones z1..z3, 4
 * shards, every node a replica of every shard): routing by the shard map (writes to the leader,
 * weaker reads to a nearby replica), route hints and WRONG_SHARD repairs, leader hints and
 * receipts, split getMany, cross-shard batches, per-shard session tokens across nodes, and write
 * outcomes across redirects.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
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
    // Leaders: shard 1 -> node 1, 2 -> 2, 3 -> 3, 4 -> 1; replicas everywhere, the leader first.
    for (const n of cluster.nodes) n.zone = `z${n.nodeId}`
  })
  const mapCalls = (): number => Object.values(cluster.counts('shardMap')).reduce((a, b) => a + b, 0)
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    await cluster.stop()
  })

  it('loads the map on first use and sends a put straight to its shard leader (zero redirects)', async () => {
    const c = connect()
    // Cold: the first write loads the map from one ShardMap, then goes to the leader directly.
    const [first] = cluster.keysOn(3, 'cold/')
    const res = await c.put(first as string, 'v')
    expect(res.receipt).toMatchObject({ nodeId: 3, shardId: 3, delivered: 'majority' })
    expect(cluster.counts('shardMap')).toEqual({ 1: 1, 2: 0, 3: 0 })
    expect(cluster.counts('status')).toEqual({ 1: 0, 2: 0, 3: 0 })
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 0, 3: 1 })
    // The write carried the route its map gave it.
    expect(cluster.node(3).requestsOf<PutRequest>('put')[0]?.options?.route).toEqual({ shardId: 3, epoch: 1 })
    const table = c.routingTable()
    expect(table?.shards.map((s) => [s.shardId, s.leaderId, s.epoch, s.replicas])).toEqual([
      [1, 1, 1, [1, 2, 3]],
      [2, 2, 1, [2, 3, 1]],
      [3, 3, 1, [3, 1, 2]],
      [4, 1, 1, [1, 2, 3]],
    ])
    expect(table?.members.map((m) => [m.nodeId, m.zone, m.state])).toEqual([
      [1, 'z1', 'active'],
      [2, 'z2', 'active'],
      [3, 'z3', 'active'],
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
    expect(cluster.counts('shardMap')).toEqual({ 1: 0, 2: 0, 3: 0 })
    // Linearizable reads and deletes route the same way.
    const [k2] = cluster.keysOn(2, 'warm/')
    expect((await c.get(k2 as string)).receipt.nodeId).toBe(2)
    expect((await c.delete(k2 as string)).receipt.nodeId).toBe(2)
    expect(cluster.node(2).requestsOf<GetRequest>('get')[0]?.options?.route).toEqual({ shardId: 2, epoch: 1 })
  })

  it('sends eventual reads to a replica: spread over the live replicas, or in the client zone', async () => {
    const [key] = cluster.keysOn(2, 'near/')
    await connect().put(key as string, 'v')
    // No zone: each read to the next replica of shard 2 in turn.
    const spread = connect()
    cluster.clearRequests()
    for (let i = 0; i < 9; i++) {
      const got = await spread.get(key as string, { consistency: 'eventual' })
      expect(got.valueText()).toBe('v')
      expect(got.receipt).toMatchObject({ shardId: 2, delivered: 'eventual' })
    }
    expect(cluster.counts('get')).toEqual({ 1: 3, 2: 3, 3: 3 })
    for (const n of cluster.nodes) {
      for (const req of n.requestsOf<GetRequest>('get'))
        expect(req.options?.route).toEqual({ shardId: 2, epoch: 1 })
    }
    // Zone z3: every shard's reads on node 3, whichever node leads it; session and bounded too.
    const near = connect({ zone: 'z3' })
    cluster.clearRequests()
    for (const shard of cluster.shards) {
      const [k] = cluster.keysOn(shard.shardId, 'near/')
      expect((await near.get(k as string, { consistency: 'eventual' })).receipt.nodeId).toBe(3)
    }
    expect((await near.get(key as string, { consistency: 'session' })).receipt.nodeId).toBe(3)
    expect((await near.get(key as string, { maxStalenessMs: 100 })).receipt.nodeId).toBe(3)
    expect(cluster.counts('get')).toEqual({ 1: 0, 2: 0, 3: 6 })
    // Writes from that client still go to the leader.
    expect((await near.put(key as string, 'w')).receipt.nodeId).toBe(2)
  })

  it('skips replicas the map says are dead', async () => {
    cluster.node(1).state = 'dead'
    const c = connect({ endpoints: [cluster.node(2).address] })
    const [key] = cluster.keysOn(1, 'dead/')
    for (let i = 0; i < 6; i++) await c.get(key as string, { consistency: 'eventual' })
    expect(cluster.counts('get')).toEqual({ 1: 0, 2: 3, 3: 3 })
    // The write goes to the first live replica of shard 1 (its preferred leader, node 1, is dead),
    // which names node 1 as leader: node 1 still answers, so the hint is followed.
    cluster.leaders.set(1, 2)
    expect((await c.put(key as string, 'v')).receipt.nodeId).toBe(2)
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 0 })
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

  it('fans a getMany out over 16 shards without a listener-leak warning on the attempt signal', async () => {
    await cluster.stop()
    cluster = await FakeCluster.start({ nodes: 3, shards: 16 })
    const c = connect()
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'wide/', 1))
    const warnings: string[] = []
    const onWarning = (w: Error): void => {
      warnings.push(w.name)
    }
    process.on('warning', onWarning)
    try {
      const many = await c.getMany(keys)
      expect(many.results).toHaveLength(16)
      expect(cluster.counts('batchGet')).toEqual({ 1: 6, 2: 5, 3: 5 })
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r))
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).not.toContain('MaxListenersExceededWarning')
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
    // One BatchGet per shard, to its leader, with that shard's route: node 1 leads shards 1 and 4.
    expect(cluster.counts('batchGet')).toEqual({ 1: 2, 2: 1, 3: 1 })
    for (const node of cluster.nodes) {
      for (const req of node.requestsOf<BatchGetRequest>('batchGet')) {
        const shards = new Set(req.keys.map((key) => cluster.shardOf(key).shardId))
        expect(shards.size).toBe(1)
        const [shardId] = [...shards]
        expect(req.options?.route).toEqual({ shardId, epoch: 1 })
        expect(cluster.leaders.get(shardId as number)).toBe(node.nodeId)
      }
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
    // Node 1 served shard 1's part and refused shard 4's, naming node 2; only that part went again.
    expect(cluster.counts('batchGet')).toEqual({ 1: 2, 2: 2, 3: 1 })
    const retried = cluster.node(2).requestsOf<BatchGetRequest>('batchGet')
    expect(retried.map((r) => r.options?.route?.shardId).sort()).toEqual([2, 4])
    expect(many.receipts.find((r) => r.shardId === 4)?.nodeId).toBe(2)
  })

  it('splits a getMany below linearizable by shard, each part to a replica (in the client zone)', async () => {
    const c = connect({ zone: 'z2' })
    const keys = cluster.shards.flatMap((s) => cluster.keysOn(s.shardId, 'weak/', 2))
    for (const k of keys) await c.put(k, k)
    cluster.clearRequests()
    const many = await c.getMany(keys, { consistency: 'eventual' })
    expect(many.results.map((r) => r.valueText())).toEqual(keys)
    expect(cluster.counts('batchGet')).toEqual({ 1: 0, 2: 4, 3: 0 })
    expect(
      cluster
        .node(2)
        .requestsOf<BatchGetRequest>('batchGet')
        .map((r) => r.options?.route?.shardId)
        .sort(),
    ).toEqual([1, 2, 3, 4])
    expect(many.receipts.map((r) => [r.shardId, r.nodeId]).sort()).toEqual([
      [1, 2],
      [2, 2],
      [3, 2],
      [4, 2],
    ])
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
    // In zone z1: session reads try node 1 first.
    const c = connect({ endpoints: cluster.nodes.map((n) => n.address), zone: 'z1' })
    const s = c.session()
    const [k1] = cluster.keysOn(1, 'sess/')
    const [k2] = cluster.keysOn(2, 'sess/')
    await s.put(k1 as string, 'a') // shard 1 on node 1
    await s.put(k2 as string, 'b') // shard 2 on node 2
    await s.put(k2 as string, 'b2')
    const token = s.token()
    expect(token).toEqual({ 1: 1, 2: 2 })

    // Node 1 (the replica in the client's zone) lags on shard 2: the read moves to another replica.
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
    const other = connect({ endpoints: [cluster.node(3).address], zone: 'z3' })
    const resumed = other.session({ token: s.token() })
    expect((await resumed.get(k2 as string)).valueText()).toBe('b2')
    const sent = cluster.node(3).requestsOf<GetRequest>('get').at(-1)?.options?.session
    expect(sent?.appliedIndexByShard).toEqual({ 1: 1, 2: 2 })
  })

  it('scans every shard in hash order, each stream on its leader at linearizable', async () => {
    const c = connect({ zone: 'z1' })
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
    // Each stream carried the route of the shard it was opened for.
    expect(
      cluster.nodes
        .flatMap((n) => n.requestsOf<ScanRequest>('scan').map((r) => r.options?.route?.shardId))
        .sort(),
    ).toEqual([1, 2, 3, 4])

    // Eventual: every stream on the replica in the client's zone. With a limit, the total is
    // honoured across shards.
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
    // and attempt 2 goes to shard 2's next replica, node 3, which does not lead it and says so.
    // Out of attempts.
    cluster.node(2).failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    const err = await c.put(key as string, 'v').catch((e: unknown) => e)
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 1 })
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

  it('falls back to the first endpoint and leader hints when the map lists no shards', async () => {
    cluster.mapWithoutShards = true
    const c = connect()
    const [key] = cluster.keysOn(2, 'fallback/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(2)
    // Node 1 said NOT_LEADER, naming node 2, whose address came with the map's nodes. No route
    // hint without a shard.
    expect(cluster.counts('put')).toEqual({ 1: 1, 2: 1, 3: 0 })
    expect(cluster.node(1).requestsOf<PutRequest>('put')[0]?.options?.route).toBeUndefined()
    expect(c.routingTable()?.shards).toEqual([])
    expect(c.currentEndpoint).toBe(cluster.node(2).address)
  })

  it('routes with keys given as bytes exactly like the same keys as strings', async () => {
    const c = connect()
    const [key] = cluster.keysOn(3, 'bytes/')
    await c.put(text(key as string), 'v')
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 0, 3: 1 })
  })

  it('repairs a shard from a WRONG_SHARD descriptor in one step: the retry goes right, without a refresh', async () => {
    const random = new CountingRandom(11)
    const c = connect({ clientId: 'moved' }, random)
    await c.refreshRouting()
    // Shard 2 moves to nodes 3 and 1, led by node 3 (epoch 2); the client's map still says epoch 1.
    cluster.moveShard(2, [3, 1], 3)
    const drawsBefore = random.draws
    const [key] = cluster.keysOn(2, 'moved/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt).toMatchObject({ nodeId: 3, shardId: 2 })
    // Node 2 refused it (WRONG_SHARD with the descriptor); the retry went at once to node 3 with
    // the new epoch, with the same exactly-once tag.
    expect(random.draws).toBe(drawsBefore)
    const [refused] = cluster.node(2).requestsOf<PutRequest>('put')
    const [served] = cluster.node(3).requestsOf<PutRequest>('put')
    expect(refused?.options?.route).toEqual({ shardId: 2, epoch: 1 })
    expect(served?.options?.route).toEqual({ shardId: 2, epoch: 2 })
    expect(served?.options?.seq).toBe(refused?.options?.seq)
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 1 })
    const table = c.routingTable()
    expect(table?.shards[1]).toMatchObject({ shardId: 2, replicas: [3, 1], leaderId: 3, epoch: 2 })
    expect(table?.descriptorRepairs).toBe(1)
    // The range did not change: no full refresh, now or later.
    await new Promise((r) => setTimeout(r, 350))
    expect(mapCalls()).toBe(1)
    expect(c.routingTable()?.refreshes).toBe(1)
    // Reads of the shard now go to its new replicas only.
    cluster.clearRequests()
    for (let i = 0; i < 4; i++) await c.get(key as string, { consistency: 'eventual' })
    expect(cluster.counts('get')).toEqual({ 1: 2, 2: 0, 3: 2 })
  })

  it('inserts the new shard of a split from the descriptor, then refreshes the whole map', async () => {
    const c = connect({ routing: { refreshIntervalMsMin: 50 } })
    await c.refreshRouting()
    cluster.split(2, 5)
    const [upper] = cluster.keysOn(5, 'split/')
    const res = await c.put(upper as string, 'v')
    expect(res.receipt).toMatchObject({ nodeId: 2, shardId: 5 })
    const puts = cluster.node(2).requestsOf<PutRequest>('put')
    expect(puts.map((p) => p.options?.route)).toEqual([
      { shardId: 2, epoch: 1 },
      { shardId: 5, epoch: 1 },
    ])
    expect(c.routingTable()?.descriptorRepairs).toBe(1)
    // The range moved: the rest of the map is reloaded (shard 2's lower half comes back, epoch 2).
    await vi.waitFor(() => expect(mapCalls()).toBe(2), { timeout: 2_000 })
    await vi.waitFor(() =>
      expect(c.routingTable()?.shards.map((s) => [s.shardId, s.epoch])).toEqual([
        [1, 1],
        [2, 2],
        [5, 1],
        [3, 1],
        [4, 1],
      ]),
    )
    const [lower] = cluster.keysOn(2, 'split/')
    cluster.clearRequests()
    await c.put(lower as string, 'w')
    expect(cluster.node(2).requestsOf<PutRequest>('put')[0]?.options?.route).toEqual({ shardId: 2, epoch: 2 })
  })

  it('refreshes the whole map after WRONG_SHARD without a descriptor', async () => {
    const c = connect({ routing: { refreshIntervalMsMin: 50 } })
    await c.refreshRouting()
    cluster.descriptors = false
    cluster.moveShard(2, [3, 1], 3)
    const [key] = cluster.keysOn(2, 'nodesc/')
    const res = await c.put(key as string, 'v')
    expect(res.receipt.nodeId).toBe(3)
    expect(mapCalls()).toBe(2)
    expect(c.routingTable()?.descriptorRepairs).toBe(0)
    expect(c.routingTable()?.shards[1]).toMatchObject({ epoch: 2, leaderId: 3 })
  })

  it('repairs the leader from a receipt naming another node (the request was forwarded)', async () => {
    cluster.forward = true
    const c = connect()
    const near = connect({ zone: 'z1' })
    await Promise.all([c.refreshRouting(), near.refreshRouting()])
    cluster.leaders.set(2, 3) // leadership moved within the same epoch; the clients' maps are stale
    const [key] = cluster.keysOn(2, 'fwd/')
    const res = await c.put(key as string, 'v')
    // Sent to node 2, which forwarded it to node 3: no error, one hop, the receipt names node 3.
    expect(res.receipt.nodeId).toBe(3)
    expect(cluster.node(2).count('put')).toBe(1)
    expect(cluster.node(2).forwarded).toBe(1)
    expect(c.routingTable()?.shards[1]).toMatchObject({ shardId: 2, leaderId: 3 })
    // The next write goes to node 3 itself.
    await c.put(key as string, 'w')
    expect(cluster.counts('put')).toEqual({ 1: 0, 2: 1, 3: 1 })
    expect(cluster.node(2).forwarded).toBe(1)
    // An eventual read's receipt (node 1, in the client's zone) says nothing about the leader.
    expect((await near.get(key as string, { consistency: 'eventual' })).receipt.nodeId).toBe(1)
    expect(near.routingTable()?.shards[1]?.leaderId).toBe(2)
    expect((await near.get(key as string)).receipt.nodeId).toBe(3)
    expect(near.routingTable()?.shards[1]?.leaderId).toBe(3)
    expect(cluster.node(2).forwarded).toBe(2)
  })
})
