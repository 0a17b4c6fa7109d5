import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../src/common/random.ts'
import { KvClient, KvError, type KvClientInit } from '../../../src/client/index.ts'
import type { GetRequest, PutRequest, ScanRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import { FakeKvServer, FakeStore } from './fake-server.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('client/KvClient', () => {
  let server: FakeKvServer
  const clients: KvClient[] = []
  const extra: FakeKvServer[] = []
  let seed = 0
  const connect = (init: Partial<KvClientInit> = {}): KvClient => {
    // A seed per client: the client id is drawn from it, and two clients must not share one.
    const c = new KvClient(
      { endpoints: [server.address], retry: { backoffBaseMs: 1, backoffMaxMs: 5 }, ...init },
      { random: new SeededRandom(++seed) },
    )
    clients.push(c)
    return c
  }

  beforeEach(async () => {
    server = await FakeKvServer.start()
  })
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close()
    for (const s of extra.splice(0)) await s.stop()
    await server.stop()
  })

  it('puts and gets strings and bytes, with versions and receipts', async () => {
    const c = connect()
    const put = await c.put('greeting', 'hello')
    expect(put.version).toBe(1)
    expect(put.receipt).toMatchObject({ nodeId: 1, appliedIndex: 1, delivered: 'majority' })
    const got = await c.get('greeting')
    expect(got.found).toBe(true)
    expect(got.value).toEqual(text('hello'))
    expect(got.value).toBeInstanceOf(Uint8Array)
    expect(got.valueText()).toBe('hello')
    expect(got.version).toBe(1)
    expect(got.createVersion).toBe(1)
    expect(got.receipt.delivered).toBe('linearizable')

    await c.put(new Uint8Array([0xff, 0x00]), new Uint8Array([1, 2, 3]))
    expect((await c.get(new Uint8Array([0xff, 0x00]))).value).toEqual(new Uint8Array([1, 2, 3]))
  })

  it('reports a missing key as found=false, not an error', async () => {
    const got = await connect().get('nope')
    expect(got).toMatchObject({ found: false, value: null, version: 0, createVersion: 0 })
    expect(got.valueText()).toBeNull()
  })

  it('deletes, and says whether the key existed', async () => {
    const c = connect()
    await c.put('k', 'v')
    expect((await c.delete('k')).deleted).toBe(true)
    expect((await c.delete('k')).deleted).toBe(false)
    expect((await c.get('k')).found).toBe(false)
  })

  it('compare-and-set succeeds on the expected version and fails with currentVersion otherwise', async () => {
    const c = connect()
    const { version } = await c.put('k', 'v1')
    const ok = await c.cas('k', { expectedVersion: version, value: 'v2' })
    expect(ok.version).toBeGreaterThan(version)
    const err = await c.cas('k', { expectedVersion: version, value: 'v3' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KvError)
    expect(err).toMatchObject({ code: 'VERSION_MISMATCH', details: { currentVersion: ok.version } })
    // expectedVersion 0: create only if absent.
    await expect(c.cas('fresh', { expectedVersion: 0, value: 'x' })).resolves.toBeDefined()
    await expect(c.cas('fresh', { expectedVersion: 0, value: 'y' })).rejects.toMatchObject({
      code: 'VERSION_MISMATCH',
    })
    expect(server.requestsOf<PutRequest>('put')[1]?.expectedVersion).toBe(version)
    // Compare-and-delete.
    await expect(c.delete('k', { expectedVersion: 1 })).rejects.toMatchObject({ code: 'VERSION_MISMATCH' })
    await expect(c.delete('k', { expectedVersion: ok.version })).resolves.toMatchObject({ deleted: true })
  })

  it('runs batches and getMany', async () => {
    const c = connect()
    await c.put('a1', 'x')
    const res = await c.batch([
      { type: 'put', key: 'a2', value: 'two' },
      { type: 'delete', key: 'a1' },
    ])
    expect(res.results).toEqual([
      { type: 'put', version: expect.any(Number) },
      { type: 'delete', deleted: true },
    ])
    const many = await c.getMany(['a1', 'a2'])
    expect(many.results.map((r) => [r.found, r.valueText()])).toEqual([
      [false, null],
      [true, 'two'],
    ])
    expect(many.receipts.length).toBeGreaterThan(0)
    // A batch across shards is refused by the server (first key byte picks the shard here).
    await expect(
      connect({ retry: { attemptsMax: 1 } }).batch([
        { type: 'put', key: 'a', value: '1' },
        { type: 'put', key: 'b', value: '2' },
      ]),
    ).rejects.toMatchObject({ code: 'WRONG_SHARD' })
  })

  it('sends consistency levels per client and per call', async () => {
    const c = connect({ consistency: { read: 'eventual', write: 'all' } })
    await c.put('k', 'v')
    await c.put('k', 'v', { consistency: 'leader' })
    await c.get('k')
    await c.get('k', { consistency: 'linearizable' })
    await c.get('k', { maxStalenessMs: 250 })
    const puts = server.requestsOf<PutRequest>('put')
    expect(puts.map((p) => p.options?.consistency)).toEqual([
      Consistency.CONSISTENCY_ALL,
      Consistency.CONSISTENCY_LEADER,
    ])
    const gets = server.requestsOf<GetRequest>('get')
    expect(gets.map((g) => g.options?.consistency)).toEqual([
      Consistency.CONSISTENCY_EVENTUAL,
      Consistency.CONSISTENCY_LINEARIZABLE,
      Consistency.CONSISTENCY_BOUNDED,
    ])
    expect(gets[2]?.options?.maxStalenessMs).toBe(250)
    await expect(c.get('k', { consistency: 'bounded' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
  })

  it('tags every write with its client id, a seq of its own and first_incomplete_seq', async () => {
    const c = connect({ clientId: 'client-a' })
    await c.put('a', '1')
    await c.delete('a')
    await c.batch([{ type: 'put', key: 'a', value: '2' }])
    const tags = [
      ...server.requestsOf<PutRequest>('put').map((r) => r.options),
      ...server.requestsOf<PutRequest>('delete').map((r) => r.options),
      ...server.requestsOf<PutRequest>('batch').map((r) => r.options),
    ]
    // One id for every write (no per-write identities), its seq rising by one per write.
    expect(tags.map((o) => o?.clientId)).toEqual(['client-a', 'client-a', 'client-a'])
    const [first = 0, second, third] = tags.map((o) => o?.seq ?? 0)
    expect(second).toBe(first + 1)
    expect(third).toBe(first + 2)
    // One at a time: each write is the lowest one without an answer.
    expect(tags.map((o) => o?.firstIncompleteSeq)).toEqual([first, first + 1, first + 2])
    // Seqs start from the wall clock (microseconds), so a restarted client keeps rising.
    expect(first).toBeGreaterThan(Date.now() * 1000 - 60_000_000)
    expect(connect().clientId).toMatch(/^[0-9a-f]{32}$/)
  })

  it('pipelines concurrent writes under one client id, first_incomplete_seq trailing the oldest', async () => {
    const c = connect({ clientId: 'busy' })
    server.latencyMs = 20
    await Promise.all([...Array(5).keys()].map((i) => c.put(`k${i}`, 'v')))
    const burst = server.opsOf<PutRequest>('put').map((r) => r.options)
    expect(new Set(burst.map((t) => t?.clientId))).toEqual(new Set(['busy']))
    const base = burst[0]?.seq ?? 0
    expect(burst.map((t) => t?.seq)).toEqual([0, 1, 2, 3, 4].map((i) => base + i))
    // All five were in flight at once: each says the oldest of them is still unanswered.
    expect(burst.map((t) => t?.firstIncompleteSeq)).toEqual(burst.map(() => base))
    // Next burst: everything before it was answered.
    await Promise.all([...Array(3).keys()].map((i) => c.put(`k${i}`, 'w')))
    const next = server.opsOf<PutRequest>('put').slice(5)
    expect(next.map((r) => r.options?.firstIncompleteSeq)).toEqual([base + 5, base + 5, base + 5])
    expect(server.store.applies).toBe(8)
  })

  it('keeps the oldest write as first_incomplete_seq while it is retried and the others finish', async () => {
    const c = connect({ clientId: 'slow-first', retry: { backoffBaseMs: 30, backoffMaxMs: 30 } })
    // The first put to arrive fails in a way that may have applied; the SDK retries it.
    server.failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    const results = await Promise.all([...Array(4).keys()].map((i) => c.put(`o${i}`, `${i}`)))
    const puts = server.opsOf<PutRequest>('put').map((r) => r.options)
    expect(puts.length).toBe(5)
    const retried = puts[4]
    expect(puts.filter((p) => p?.seq === retried?.seq).length).toBe(2)
    // While its retry is out, the retried seq is still incomplete: first_incomplete_seq stays at or
    // below it (never past it, or the shard would refuse the retry as stale).
    expect(retried?.firstIncompleteSeq).toBeLessThanOrEqual(retried?.seq ?? -1)
    expect(retried?.firstIncompleteSeq).toBeGreaterThanOrEqual(Math.min(...puts.map((p) => p?.seq ?? 0)))
    // Applied once each: four writes, four applies, four distinct versions.
    expect(server.store.applies).toBe(4)
    expect(new Set(results.map((r) => r.version)).size).toBe(4)
    // Everything settled: the next write is its own first incomplete seq.
    await c.put('after', 'x')
    const last = server.requestsOf<PutRequest>('put').at(-1)?.options
    expect(last?.firstIncompleteSeq).toBe(last?.seq)
  })

  it('retries a write whose outcome is unknown with the same seq, and it applies once', async () => {
    const c = connect()
    // The first attempt applies, then the answer is lost (as a dropped connection looks).
    server.failNext('put', { status: 14, message: 'connection reset', afterApply: true })
    const res = await c.put('k', 'v')
    const puts = server.requestsOf<PutRequest>('put')
    expect(puts.length).toBe(2)
    expect(puts[0]?.options?.seq).toBe(puts[1]?.options?.seq)
    expect(server.store.applies).toBe(1)
    expect(res.version).toBe(1)
  })

  it('without dedup, retries only writes that certainly did not apply', async () => {
    const c = connect({ dedup: false })
    server.failNext('put', { code: 'NO_QUORUM' })
    await expect(c.put('k', 'v')).rejects.toMatchObject({ code: 'NO_QUORUM' })
    expect(server.count('put')).toBe(1)
    server.failNext('put', { code: 'OVERLOADED' }, 2)
    await expect(c.put('k', 'v')).resolves.toMatchObject({ version: 1 })
    expect(server.count('put')).toBe(4)
    expect(server.requestsOf<PutRequest>('put')[3]?.options?.clientId).toBe('')
  })

  it('retries reads on retryable codes and gives up on the others', async () => {
    const c = connect()
    server.failNext('get', { code: 'SHARD_MOVING' }, 2)
    await expect(c.get('k')).resolves.toMatchObject({ found: false })
    expect(server.count('get')).toBe(3)
    server.failNext('get', { code: 'INVALID_ARGUMENT' })
    await expect(c.get('k')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' })
    expect(server.count('get')).toBe(4)
  })

  it('gives up after attemptsMax', async () => {
    const c = connect({ retry: { attemptsMax: 3, backoffBaseMs: 1, backoffMaxMs: 1 } })
    server.failNext('get', { code: 'OVERLOADED' }, 5)
    await expect(c.get('k')).rejects.toMatchObject({ code: 'OVERLOADED' })
    expect(server.count('get')).toBe(3)
  })

  it('fails over to the next endpoint when one is unreachable', async () => {
    const dead = await FakeKvServer.start()
    const deadAddress = dead.address
    await dead.kill()
    const c = connect({ endpoints: [deadAddress, server.address] })
    await c.put('k', 'v')
    expect(c.currentEndpoint).toBe(server.address)
    expect((await c.get('k')).valueText()).toBe('v')
  })

  it('follows a leader hint to a node learned from status', async () => {
    const store = new FakeStore()
    const a = await FakeKvServer.start({ nodeId: 1, store })
    const b = await FakeKvServer.start({ nodeId: 2, store })
    extra.push(a, b)
    const c = connect({ endpoints: [a.address] })
    // b tells the client where it lives.
    await c.status({ endpoint: b.address })
    a.failNext('put', { code: 'NOT_LEADER', metadata: { 'ringkv-leader': '2' } })
    await c.put('k', 'v')
    expect(a.count('put')).toBe(1)
    expect(b.count('put')).toBe(1)
    // The hint repaired the shard's route, not the endpoint of calls without one.
    expect(c.routingTable()?.shards[0]).toMatchObject({ leaderId: 2, leaderAddress: b.address })
    expect(c.currentEndpoint).toBe(a.address)
    await c.put('k', 'w')
    expect(b.count('put')).toBe(2)
  })

  it('follows a leader hint by address when routing is off, as before sharding', async () => {
    const store = new FakeStore()
    const a = await FakeKvServer.start({ nodeId: 1, store })
    const b = await FakeKvServer.start({ nodeId: 2, store })
    extra.push(a, b)
    const c = connect({ endpoints: [a.address], routing: { enabled: false } })
    await c.status({ endpoint: b.address })
    a.failNext('put', { code: 'NOT_LEADER', metadata: { 'ringkv-leader': '2' } })
    await c.put('k', 'v')
    expect(c.currentEndpoint).toBe(b.address)
    expect(b.count('put')).toBe(1)
    expect(c.routingTable()).toBeUndefined()
    expect(a.count('status')).toBe(0)
  })

  it('sends the deadline as the gRPC deadline', async () => {
    const c = connect({ deadlineMs: 4_000 })
    await c.get('k')
    await c.get('k', { deadlineMs: 900 })
    const [first, second] = server.requests.filter((r) => r.method === 'get')
    expect(first?.deadlineInMs).toBeGreaterThan(3_000)
    expect(first?.deadlineInMs).toBeLessThanOrEqual(4_000)
    expect(second?.deadlineInMs).toBeGreaterThan(100)
    expect(second?.deadlineInMs).toBeLessThanOrEqual(900)
  })

  it('fails with DEADLINE_EXCEEDED when the server is too slow', async () => {
    server.latencyMs = 500
    const c = connect()
    await expect(c.put('k', 'v', { deadlineMs: 100 })).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' })
  })

  it('fails with CANCELLED when the caller aborts', async () => {
    server.latencyMs = 500
    const c = connect()
    const controller = new AbortController()
    const pending = c.get('k', { signal: controller.signal })
    setTimeout(() => controller.abort(), 20)
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' })
    const aborted = AbortSignal.abort()
    await expect(c.get('k', { signal: aborted })).rejects.toMatchObject({ code: 'CANCELLED' })
  })

  it('ends calls in flight with CANCELLED on close()', async () => {
    server.latencyMs = 500
    const c = connect()
    const pending = c.get('k')
    setTimeout(() => c.close(), 20)
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' })
  })

  it('refuses oversized keys and values before sending', async () => {
    const c = connect()
    await expect(c.put('x'.repeat(5000), 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' })
    await expect(c.put('k', new Uint8Array(1024 * 1024 + 1))).rejects.toMatchObject({
      code: 'VALUE_TOO_LARGE',
      details: { limit: 1024 * 1024 },
    })
    expect(server.count('put')).toBe(0)
  })

  it('returns status and remembers node addresses', async () => {
    const c = connect()
    const s = await c.status()
    expect(s).toMatchObject({ endpoint: server.address, clusterId: 'fake-cluster', node: { nodeId: 1 } })
    expect(s.node).toMatchObject({ zone: '', forwardedRequests: 0 })
    expect(s.node?.shards[0]).toMatchObject({ role: 'leader', approximateBytes: 0, epoch: 1 })
  })

  it('returns the shard map one endpoint serves, without touching the routing cache', async () => {
    const c = connect()
    const map = await c.shardMap()
    expect(map).toEqual({
      endpoint: server.address,
      clusterId: 'fake-cluster',
      servedBy: 1,
      replicaCount: 1,
      vnodesPerNode: 16,
      nodes: [
        { nodeId: 1, address: server.address, zone: '', state: 'active', lastHeartbeatMs: 0, weight: 1 },
      ],
      shards: [
        {
          shardId: 0,
          hashStart: '0',
          hashEnd: '18446744073709551616',
          replicas: [1],
          leaderId: 1,
          leaderTerm: 1,
          epoch: 1,
        },
      ],
      metaShard: null,
    })
    expect(server.count('shardMap')).toBe(1)
    expect(c.routingTable()).toBeUndefined()
    // A routed call loads the cache itself, and sends its route.
    await c.put('k', 'v')
    expect(server.count('shardMap')).toBe(2)
    expect(server.requestsOf<PutRequest>('put')[0]?.options?.route).toEqual({ shardId: 0, epoch: 1 })
  })
})

describe('client/sessions', () => {
  let leader: FakeKvServer
  let follower: FakeKvServer
  let client: KvClient
  beforeEach(async () => {
    const store = new FakeStore()
    leader = await FakeKvServer.start({ nodeId: 1, store })
    follower = await FakeKvServer.start({ nodeId: 2, store })
  })
  afterEach(async () => {
    client.close()
    await leader.stop()
    await follower.stop()
  })

  it('tracks the highest applied index per shard from receipts', async () => {
    client = new KvClient({ endpoints: [leader.address] })
    const s = client.session()
    await s.put('a', '1') // shard 'a'(97) % 4 = 1, index 1
    await s.put('b', '2') // shard 2, index 2
    await s.put('a', '3') // shard 1, index 3
    expect(s.token()).toEqual({ 1: 3, 2: 2 })
    await s.get('a')
    const sent = leader.requestsOf<GetRequest>('get')[0]?.options
    expect(sent?.consistency).toBe(Consistency.CONSISTENCY_SESSION)
    expect(sent?.session?.appliedIndexByShard).toEqual({ 1: 3, 2: 2 })
    // Sessions are independent of each other and of the client's implicit session.
    expect(client.session().token()).toEqual({})
    expect(client.sessionToken()).toEqual({})
    // A saved token resumes.
    expect(client.session({ token: s.token() }).token()).toEqual({ 1: 3, 2: 2 })
  })

  it('reads its writes: a lagging replica answers SESSION_BEHIND and the read moves on', async () => {
    client = new KvClient(
      { endpoints: [follower.address, leader.address], retry: { backoffBaseMs: 1, backoffMaxMs: 2 } },
      { random: new SeededRandom(9) },
    )
    const writer = new KvClient({ endpoints: [leader.address] })
    try {
      const s = client.session()
      follower.frozenAt = 0
      // The write goes through the leader; the session then reads from the lagging follower first.
      await writer.put('k', 'v')
      const w = await s.put('k', 'v2', {})
      expect(s.token()).toEqual({ [w.receipt.shardId]: w.receipt.appliedIndex })
      const got = await s.get('k')
      expect(got.valueText()).toBe('v2')
      expect(got.receipt.nodeId).toBe(1)
      expect(follower.count('get')).toBe(1)
      expect(leader.count('get')).toBe(1)
    } finally {
      writer.close()
    }
  })

  it('does not send a session token on non-session reads', async () => {
    client = new KvClient({ endpoints: [leader.address] })
    await client.put('k', 'v')
    await client.get('k', { consistency: 'eventual' })
    await client.get('k', { consistency: 'session' })
    const [eventual, session] = leader.requestsOf<GetRequest>('get')
    expect(eventual?.options?.session).toBeUndefined()
    expect(session?.options?.session?.appliedIndexByShard).toEqual({ 3: 1 })
  })
})

describe('client/scan', () => {
  let server: FakeKvServer
  let client: KvClient
  beforeEach(async () => {
    server = await FakeKvServer.start()
    client = new KvClient(
      { endpoints: [server.address], retry: { backoffBaseMs: 1, backoffMaxMs: 2 } },
      { random: new SeededRandom(3) },
    )
    for (let i = 0; i < 9; i++) await client.put(`user/${i}`, `v${i}`)
    await client.put('other', 'x')
  })
  afterEach(async () => {
    client.close()
    await server.stop()
  })

  it('iterates every entry under a prefix, page by page', async () => {
    const keys: string[] = []
    const scan = client.scan({ prefix: 'user/' })
    for await (const e of scan) {
      keys.push(e.keyText())
      expect(e.valueText()).toBe(`v${e.keyText().slice(5)}`)
      expect(e.version).toBeGreaterThan(0)
    }
    expect(keys.sort()).toEqual([...Array(9).keys()].map((i) => `user/${i}`))
    expect(scan.receipt?.nodeId).toBe(1)
    expect(server.count('scan')).toBe(1)
  })

  it('honours a limit', async () => {
    const entries = await client.scan({ prefix: 'user/', limit: 3 }).toArray()
    expect(entries.length).toBe(3)
    expect(server.requestsOf<ScanRequest>('scan')[0]?.limit).toBe(3)
  })

  it('resumes from the cursor after a stream breaks, delivering each entry once', async () => {
    server.scanBreaks.push(2, 1)
    const scan = client.scan({ prefix: 'user/', limit: 8 })
    const keys = (await scan.toArray()).map((e) => e.keyText())
    expect(keys.length).toBe(8)
    expect(new Set(keys).size).toBe(8)
    expect(scan.resumes).toBe(2)
    const reqs = server.requestsOf<ScanRequest>('scan')
    expect(reqs.length).toBe(3)
    // Each resume asks from the last page's cursor, for the entries still owed.
    expect(reqs[1]?.cursor.length).toBeGreaterThan(0)
    expect(reqs.map((r) => r.limit)).toEqual([8, 4, 2])
  })

  it('does not resume after a non-retryable error', async () => {
    server.failNext('scan', { code: 'INVALID_ARGUMENT', message: 'bad cursor' })
    await expect(client.scan({ prefix: 'user/' }).toArray()).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    })
  })

  it('stops the stream when the consumer breaks out', async () => {
    let n = 0
    for await (const _ of client.scan({ prefix: 'user/' })) {
      n += 1
      if (n === 3) break
    }
    expect(n).toBe(3)
    // The client is still usable.
    expect((await client.get('other')).valueText()).toBe('x')
  })
})
