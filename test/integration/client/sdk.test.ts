/**
 * The SDK against a real kvd on loopback: every operation, the consistency dial as seen in
 * receipts, compare-and-set, sessions, scans, failover and restarts, and exactly-once writes from
 * one pipelining client whose answers get lost.
 */
import { InterceptingCall, Metadata, status, type ChannelOptions, type Interceptor } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient, KvError } from '../../../src/client/index.ts'
import { loadClientHasher } from '../../../src/client/hasher.ts'
import type { PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'

/**
 * Keys `${prefix}${i}` grouped by the shard they map to (from the client's routing table and the
 * same xxh64 placement), until one shard has `count` of them and every shard has at least one.
 */
async function keysByShard(c: KvClient, prefix: string, count: number): Promise<Map<number, string[]>> {
  const table = c.routingTable() ?? (await c.refreshRouting())
  if (table === undefined || table.shards.length === 0) throw new Error('no routing table')
  const hasher = await loadClientHasher()
  const byShard = new Map<number, string[]>(table.shards.map((s) => [s.shardId, []]))
  for (let i = 0; ; i++) {
    const key = `${prefix}${i}`
    const hash = hasher.hash64(new TextEncoder().encode(key))
    const shard = table.shards.find((s) => hash >= BigInt(s.hashStart) && hash < BigInt(s.hashEnd))
    if (shard !== undefined) byShard.get(shard.shardId)?.push(key)
    const lists = [...byShard.values()]
    if (lists.every((l) => l.length > 0) && lists.some((l) => l.length >= count)) return byShard
  }
}

/**
 * A grpc-js client interceptor that lets a Put reach kvd and be applied, then drops its answer
 * (replacing it by UNAVAILABLE, as a connection reset looks) on the FIRST attempt of every seq
 * `drop` picks. It records the tag of every Put attempt sent.
 */
function dropFirstAnswers(drop: (seq: number) => boolean): {
  readonly interceptor: Interceptor
  readonly attempts: { seq: number; firstIncompleteSeq: number; clientId: string }[]
  readonly dropped: Set<number>
} {
  const attempts: { seq: number; firstIncompleteSeq: number; clientId: string }[] = []
  const dropped = new Set<number>()
  const interceptor: Interceptor = (options, nextCall) => {
    if (!options.method_definition.path.endsWith('/Put')) return new InterceptingCall(nextCall(options))
    let dropThis = false
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        // The answer still passes through (grpc-js waits for every message it hands a listener);
        // a non-OK status is what makes the unary call fail.
        next(metadata, {
          onReceiveStatus(received, nextStatus) {
            if (dropThis && received.code === status.OK)
              nextStatus({
                code: status.UNAVAILABLE,
                details: 'answer dropped (test)',
                metadata: new Metadata(),
              })
            else nextStatus(received)
          },
        })
      },
      sendMessage(message, next) {
        const tag = (message as PutRequest).options
        const seq = tag?.seq ?? 0
        attempts.push({
          seq,
          firstIncompleteSeq: tag?.firstIncompleteSeq ?? 0,
          clientId: tag?.clientId ?? '',
        })
        if (drop(seq) && !dropped.has(seq)) {
          dropped.add(seq)
          dropThis = true
        }
        next(message)
      },
    })
  }
  return { interceptor, attempts, dropped }
}

describe('client/sdk against kvd', () => {
  let kvd: KvdHandle
  let client: KvClient

  beforeAll(async () => {
    kvd = await startKvd()
    client = new KvClient({ endpoints: [kvd.address] })
  })
  afterAll(async () => {
    client?.close()
    await kvd?.stop()
  })

  it('puts, gets and deletes, with receipts', async () => {
    const put = await client.put('sdk/greeting', 'hello')
    expect(put.version).toBeGreaterThan(0)
    expect(put.receipt).toMatchObject({ appliedIndex: put.version, delivered: 'majority', stalenessMs: 0 })
    expect(put.receipt.nodeId).toBeGreaterThan(0)
    const got = await client.get('sdk/greeting')
    expect(got).toMatchObject({ found: true, version: put.version, createVersion: put.version })
    expect(got.valueText()).toBe('hello')
    expect(got.receipt.delivered).toBe('linearizable')
    expect(got.receipt.appliedIndex).toBeGreaterThanOrEqual(put.version)
    expect(await client.delete('sdk/greeting')).toMatchObject({ deleted: true })
    expect(await client.delete('sdk/greeting')).toMatchObject({ deleted: false })
    expect(await client.get('sdk/greeting')).toMatchObject({ found: false, value: null })
  })

  it('stores bytes exactly', async () => {
    const value = new Uint8Array(256).map((_, i) => i)
    const key = new Uint8Array([0x73, 0x00, 0xff])
    await client.put(key, value)
    expect((await client.get(key)).value).toEqual(value)
  })

  it('serves every read level and says what it delivered', async () => {
    await client.put('sdk/levels', 'x')
    for (const level of ['linearizable', 'session', 'eventual'] as const) {
      const got = await client.get('sdk/levels', { consistency: level })
      expect(got.valueText(), level).toBe('x')
      expect(got.receipt.delivered, level).toBe(level)
    }
    const bounded = await client.get('sdk/levels', { maxStalenessMs: 5_000 })
    expect(bounded.receipt.delivered).toBe('bounded')
    expect(bounded.receipt.stalenessMs).toBeLessThanOrEqual(5_000)
    for (const level of ['majority', 'all', 'leader'] as const) {
      const put = await client.put('sdk/levels', level, { consistency: level })
      expect(put.receipt.delivered, level).toBe(level)
    }
  })

  it('compare-and-set: succeeds on the version, fails with the current one', async () => {
    const { version } = await client.put('sdk/cas', 'v1')
    const second = await client.cas('sdk/cas', { expectedVersion: version, value: 'v2' })
    const err = await client
      .cas('sdk/cas', { expectedVersion: version, value: 'v3' })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KvError)
    expect(err).toMatchObject({ code: 'VERSION_MISMATCH', details: { currentVersion: second.version } })
    expect((await client.get('sdk/cas')).valueText()).toBe('v2')
    await expect(client.cas('sdk/cas-new', { expectedVersion: 0, value: 'first' })).resolves.toBeDefined()
    await expect(client.cas('sdk/cas-new', { expectedVersion: 0, value: 'again' })).rejects.toMatchObject({
      code: 'VERSION_MISMATCH',
    })
    await expect(client.delete('sdk/cas', { expectedVersion: version })).rejects.toMatchObject({
      code: 'VERSION_MISMATCH',
    })
    await expect(client.delete('sdk/cas', { expectedVersion: second.version })).resolves.toMatchObject({
      deleted: true,
    })
  })

  it('applies a batch atomically and reads many keys at once', async () => {
    // A batch is atomic within one shard: take three keys of one shard.
    const byShard = await keysByShard(client, 'sdk/b/', 3)
    const [k1, k2, k3] = [...byShard.values()].find((keys) => keys.length >= 3) as [string, string, string]
    await client.put(k1, 'one')
    const res = await client.batch([
      { type: 'put', key: k2, value: 'two' },
      { type: 'put', key: k3, value: 'three' },
      { type: 'delete', key: k1 },
    ])
    expect(res.results.map((r) => r.type)).toEqual(['put', 'put', 'delete'])
    expect(res.results[2]).toEqual({ type: 'delete', deleted: true })
    const many = await client.getMany([k1, k2, k3])
    expect(many.results.map((r) => r.valueText())).toEqual([null, 'two', 'three'])
    expect(many.receipts.length).toBeGreaterThan(0)
    // A failed compare fails the whole batch.
    const v2 = many.results[1]?.version ?? 0
    await expect(
      client.batch([
        { type: 'put', key: k2, value: 'changed', expectedVersion: v2 },
        { type: 'put', key: k3, value: 'changed', expectedVersion: 1 },
      ]),
    ).rejects.toMatchObject({ code: 'VERSION_MISMATCH' })
    expect((await client.getMany([k2, k3])).results.map((r) => r.valueText())).toEqual(['two', 'three'])
    // Keys of two shards: refused before anything is sent.
    const firsts = [...byShard.values()].map((keys) => keys[0] as string)
    if (firsts.length > 1) {
      await expect(
        client.batch(firsts.slice(0, 2).map((key) => ({ type: 'put' as const, key, value: 'x' }))),
      ).rejects.toMatchObject({ code: 'CROSS_SHARD' })
      // And a getMany across every shard reassembles in order.
      const across = await client.getMany(firsts)
      expect(across.results.map((r) => new TextDecoder().decode(r.key))).toEqual(firsts)
    }
  })

  it('scans a prefix across pages, and honours a limit', async () => {
    const n = 600 // more than one page (limits.scanPageEntriesMax = 256)
    await Promise.all([...Array(n).keys()].map((i) => client.put(`sdk/scan/${i}`, `v${i}`)))
    await client.put('sdk/scanx', 'outside')
    const keys = new Set<string>()
    const scan = client.scan({ prefix: 'sdk/scan/' })
    for await (const e of scan) {
      keys.add(e.keyText())
      expect(e.valueText()).toBe(`v${e.keyText().slice('sdk/scan/'.length)}`)
    }
    expect(keys.size).toBe(n)
    expect(scan.receipt?.delivered).toBe('linearizable')
    expect((await client.scan({ prefix: 'sdk/scan/', limit: 300 }).toArray()).length).toBe(300)
  })

  it('sessions track receipts and read their writes', async () => {
    const session = client.session()
    const w = await session.put('sdk/session', 'mine')
    expect(session.token()).toEqual({ [w.receipt.shardId]: w.receipt.appliedIndex })
    const r = await session.get('sdk/session')
    expect(r.valueText()).toBe('mine')
    expect(r.receipt.delivered).toBe('session')
    expect(r.receipt.appliedIndex).toBeGreaterThanOrEqual(w.receipt.appliedIndex)
    // A resumed session keeps its position.
    const resumed = client.session({ token: session.token() })
    expect((await resumed.get('sdk/session')).valueText()).toBe('mine')
  })

  it('refuses a bounded read with no bound and a key over the limit', async () => {
    await expect(client.get('k', { consistency: 'bounded' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    })
    await expect(client.put('k'.repeat(5000), 'v')).rejects.toMatchObject({ code: 'KEY_TOO_LARGE' })
  })

  it('reports status and node addresses', async () => {
    const s = await client.status()
    expect(s.endpoint).toBe(kvd.address)
    expect(s.clusterId).not.toBe('')
    expect(s.node?.shards.length).toBeGreaterThan(0)
  })

  it('fails over past a dead endpoint and survives a restart', async () => {
    const c = new KvClient({ endpoints: ['127.0.0.1:1', kvd.address] })
    try {
      const { version } = await c.put('sdk/failover', 'before')
      expect(c.currentEndpoint).toBe(kvd.address)
      await kvd.restart()
      const got = await c.get('sdk/failover')
      expect(got).toMatchObject({ found: true, version })
      await c.put('sdk/failover', 'after')
      expect((await c.get('sdk/failover')).valueText()).toBe('after')
    } finally {
      c.close()
    }
  })

  it('writes concurrently with exactly-once tags without losing any', async () => {
    const c = new KvClient({ endpoints: [kvd.address] })
    try {
      const n = 300
      const results = await Promise.all(
        [...Array(n).keys()].map((i) => c.put(`sdk/conc/${i % 50}/${i}`, `${i}`)),
      )
      // Every write is there once: its value, at the version its answer named, created by it (a
      // second apply would have raised the version above createVersion). Versions are log indexes
      // of the key's shard, shared by the writes one Raft entry carries, so they need not differ.
      const many = await c.getMany([...Array(n).keys()].map((i) => `sdk/conc/${i % 50}/${i}`))
      many.results.forEach((r, i) => {
        expect(r).toMatchObject({
          found: true,
          version: results[i]?.version,
          createVersion: results[i]?.version,
        })
        expect(r.valueText()).toBe(`${i}`)
      })
    } finally {
      c.close()
    }
  })

  it('applies 64 concurrent writes of one client exactly once when first answers are lost', async () => {
    const lossy = dropFirstAnswers((seq) => seq % 3 === 0)
    const c = new KvClient(
      {
        endpoints: [kvd.address],
        retry: { backoffBaseMs: 5, backoffMaxMs: 20 },
        channelOptions: { interceptors: [lossy.interceptor] } as ChannelOptions,
        // One Put RPC per write, whose answers the interceptor drops (batching.test.ts loses the
        // answer of a whole Multi call instead).
        batching: { enabled: false },
      },
      {},
    )
    try {
      // One fence key per shard: each shard has its own log, and its own fences.
      const fences = [...(await keysByShard(client, 'sdk/eo/fence/', 1)).values()].map((k) => k[0] as string)
      const before = await Promise.all(fences.map((k) => client.put(k, 'before')))
      const n = 64
      const results = await Promise.all([...Array(n).keys()].map((i) => c.put(`sdk/eo/${i}`, `v${i}`)))
      const after = await Promise.all(fences.map((k) => client.put(k, 'after')))

      // Some first answers were really lost, and those writes were retried with the same tag.
      expect(lossy.dropped.size).toBeGreaterThan(10)
      expect(lossy.attempts.length).toBe(n + lossy.dropped.size)
      for (const seq of lossy.dropped) expect(lossy.attempts.filter((a) => a.seq === seq).length).toBe(2)
      // One client id, one seq per write, many in flight at once (first_incomplete_seq trailing).
      expect(new Set(lossy.attempts.map((a) => a.clientId))).toEqual(new Set([c.clientId]))
      expect(new Set(lossy.attempts.map((a) => a.seq)).size).toBe(n)
      expect(lossy.attempts.some((a) => a.firstIncompleteSeq < a.seq)).toBe(true)
      for (const a of lossy.attempts) expect(a.firstIncompleteSeq).toBeLessThanOrEqual(a.seq)

      // Exactly once: each key was written once (a second apply would have raised its version
      // above its createVersion; a retry never shares an entry with its first attempt, since one
      // entry never carries two writes of a key), and the logs between the two fences of every
      // shard hold at most one entry per attempt that reached the shard (n writes plus one retry
      // per lost answer, plus the registration of the client's session on each shard it wrote
      // to): fewer when one loop turn's writes of the client share an entry.
      const between = after.reduce((sum, a, i) => sum + a.version - (before[i]?.version ?? 0) - 1, 0)
      const registrations = new Set(results.map((r) => r.receipt.shardId)).size
      expect(between).toBeGreaterThanOrEqual(registrations + 1)
      expect(between).toBeLessThanOrEqual(n + lossy.dropped.size + registrations)
      const many = await c.getMany([...Array(n).keys()].map((i) => `sdk/eo/${i}`))
      many.results.forEach((r, i) => {
        expect(r).toMatchObject({
          found: true,
          version: results[i]?.version,
          createVersion: results[i]?.version,
        })
        expect(r.valueText()).toBe(`v${i}`)
      })
    } finally {
      c.close()
    }
  })
})
