/**
 * The client API of a real kvd process, through the generated grpc-js client: every method,
 * compare-and-set, scans resumed from their cursor, receipts, and the operator surfaces (admin
 * Status, health, reflection, /metrics, /healthz, /readyz).
 */
import { status as Grpc } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Consistency, type Receipt } from '../../../src/gen/ringkv/v1/kv.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'
import {
  adminClient,
  adminStatus,
  expectFailure,
  healthCheck,
  kv,
  kvClient,
  plainClient,
  rawStream,
  reflectionListServices,
  trailer,
} from '../helpers/grpc.ts'

const b = (s: string): Buffer => Buffer.from(s)
const writeOpts = (consistency: Consistency) => ({
  consistency,
  clientId: '',
  seq: 0,
  firstIncompleteSeq: 0,
  route: undefined,
})
const readOpts = (consistency: Consistency) => ({
  consistency,
  maxStalenessMs: 0,
  session: undefined,
  route: undefined,
})

let node: KvdHandle
let c: ReturnType<typeof kv>

beforeAll(async () => {
  node = await startKvd()
  c = kv(kvClient(node.address))
})
afterAll(async () => {
  await node?.stop()
})

function expectSaneReceipt(
  receipt: Receipt | undefined,
  delivered: Consistency,
  appliedAtLeast: number,
): void {
  expect(receipt).toBeDefined()
  expect(receipt?.nodeId).toBe(1)
  expect(receipt?.shardId).toBe(0)
  expect(receipt?.delivered).toBe(delivered)
  expect(receipt?.appliedIndex).toBeGreaterThanOrEqual(appliedAtLeast)
  expect(receipt?.stalenessMs).toBe(0)
}

describe('kvd client API', () => {
  it('puts, gets and deletes with versions and receipts', async () => {
    const put = await c.put({ key: b('alpha'), value: b('one') })
    expect(put.version).toBeGreaterThan(0)
    expectSaneReceipt(put.receipt, Consistency.CONSISTENCY_MAJORITY, put.version)

    const got = await c.get({ key: b('alpha') })
    expect(got.found).toBe(true)
    expect(got.value.toString()).toBe('one')
    expect(got.version).toBe(put.version)
    expect(got.createVersion).toBe(put.version)
    expectSaneReceipt(got.receipt, Consistency.CONSISTENCY_LINEARIZABLE, put.version)

    const again = await c.put({
      key: b('alpha'),
      value: b('two'),
      options: writeOpts(Consistency.CONSISTENCY_LEADER),
    })
    expect(again.version).toBeGreaterThan(put.version)
    expect(again.receipt?.delivered).toBe(Consistency.CONSISTENCY_LEADER)
    // A `leader` write is answered once durable on the leader, possibly before it is applied
    // (that needs a quorum); a session read with its receipt as the token waits until it is.
    const got2 = await c.get({
      key: b('alpha'),
      options: {
        ...readOpts(Consistency.CONSISTENCY_SESSION),
        session: { appliedIndexByShard: { 0: again.receipt?.appliedIndex ?? 0 } },
      },
    })
    expect(got2).toMatchObject({ found: true, version: again.version, createVersion: put.version })
    expect(got2.receipt?.delivered).toBe(Consistency.CONSISTENCY_SESSION)

    const del = await c.delete({ key: b('alpha') })
    expect(del.deleted).toBe(true)
    expectSaneReceipt(del.receipt, Consistency.CONSISTENCY_MAJORITY, again.version)
    expect((await c.delete({ key: b('alpha') })).deleted).toBe(false)
    const gone = await c.get({ key: b('alpha') })
    expect(gone).toMatchObject({ found: false, version: 0 })
    expect(gone.value).toHaveLength(0)
  })

  it('stores binary keys and empty values', async () => {
    const key = Buffer.from([0, 255, 1, 254, 0])
    await c.put({ key, value: Buffer.alloc(0) })
    const got = await c.get({ key })
    expect(got.found).toBe(true)
    expect(got.value).toHaveLength(0)
  })

  it('compare-and-sets: 0 means absent, a stale version is VERSION_MISMATCH with the current one', async () => {
    const created = await c.put({ key: b('cas'), value: b('v1'), expectedVersion: 0 })
    const err = await expectFailure(
      c.put({ key: b('cas'), value: b('x'), expectedVersion: 0 }),
      Grpc.ABORTED,
      'VERSION_MISMATCH',
    )
    expect(trailer(err, 'ringkv-current-version')).toBe(String(created.version))
    const updated = await c.put({ key: b('cas'), value: b('v2'), expectedVersion: created.version })
    expect(updated.version).toBeGreaterThan(created.version)
    await expectFailure(
      c.delete({ key: b('cas'), expectedVersion: created.version }),
      Grpc.ABORTED,
      'VERSION_MISMATCH',
    )
    expect((await c.delete({ key: b('cas'), expectedVersion: updated.version })).deleted).toBe(true)
    const absent = await expectFailure(
      c.put({ key: b('cas'), value: b('x'), expectedVersion: 5 }),
      Grpc.ABORTED,
      'VERSION_MISMATCH',
    )
    expect(trailer(absent, 'ringkv-current-version')).toBe('0')
  })

  it('serves session reads whose token has no entry for the shard (index 0), and refuses ones ahead', async () => {
    await c.put({ key: b('session'), value: b('s') })
    const session = (appliedIndexByShard: Record<number, number> | undefined) => ({
      consistency: Consistency.CONSISTENCY_SESSION,
      maxStalenessMs: 0,
      session: appliedIndexByShard === undefined ? undefined : { appliedIndexByShard },
      route: undefined,
    })
    for (const token of [undefined, {}, { 7: 123_456 }]) {
      const got = await c.get({ key: b('session'), options: session(token) })
      expect(got).toMatchObject({ found: true })
      expect(got.receipt?.delivered).toBe(Consistency.CONSISTENCY_SESSION)
    }
    await expectFailure(
      c.get({ key: b('session'), options: session({ 0: 1_000_000_000 }) }),
      Grpc.UNAVAILABLE,
      'SESSION_BEHIND',
    )
  })

  it('applies a batch atomically and reads many keys in request order', async () => {
    const res = await c.batch({
      ops: [
        { op: { $case: 'put', put: { key: b('b1'), value: b('1') } } },
        { op: { $case: 'put', put: { key: b('b2'), value: b('2') } } },
        { op: { $case: 'delete', delete: { key: b('b-none') } } },
      ],
    })
    expect(res.results).toHaveLength(3)
    const [r1, , r3] = res.results
    expect(r1?.result?.$case).toBe('put')
    expect(r3?.result).toEqual({ $case: 'delete', delete: { deleted: false, receipt: undefined } })
    expectSaneReceipt(res.receipt, Consistency.CONSISTENCY_MAJORITY, 1)

    // A CAS mismatch in any op fails the whole batch and writes nothing.
    await expectFailure(
      c.batch({
        ops: [
          { op: { $case: 'put', put: { key: b('b3'), value: b('3') } } },
          { op: { $case: 'put', put: { key: b('b1'), value: b('x'), expectedVersion: 0 } } },
        ],
      }),
      Grpc.ABORTED,
      'VERSION_MISMATCH',
    )
    const many = await c.batchGet({ keys: [b('b2'), b('b3'), b('b1')] })
    expect(many.results.map((r) => [r.key.toString(), r.found, r.value.toString()])).toEqual([
      ['b2', true, '2'],
      ['b3', false, ''],
      ['b1', true, '1'],
    ])
    expect(many.receipts).toHaveLength(1)
    expectSaneReceipt(many.receipts[0], Consistency.CONSISTENCY_LINEARIZABLE, 1)
  })

  it('scans by prefix in pages and resumes from a cursor without gaps or repeats', async () => {
    const n = 700
    for (let start = 0; start < n; start += 100)
      await c.batch({
        ops: Array.from({ length: 100 }, (_, i) => ({
          op: { $case: 'put' as const, put: { key: b(`scan/${start + i}`), value: b(`v${start + i}`) } },
        })),
      })
    await c.put({ key: b('scam'), value: b('not in the prefix') })

    const whole = await c.scan({ prefix: b('scan/') })
    for (const m of whole) expect(m.entries.length).toBeLessThanOrEqual(256)
    expect(whole.at(-1)?.done).toBe(true)
    const wholeKeys = whole.flatMap((m) => m.entries.map((e) => e.key.toString()))
    expect(new Set(wholeKeys).size).toBe(n)
    expect(wholeKeys.every((k) => k.startsWith('scan/'))).toBe(true)
    expectSaneReceipt(whole[0]?.receipt, Consistency.CONSISTENCY_LINEARIZABLE, 1)

    // Walk it in steps of 150 through the cursor.
    const walked: string[] = []
    let cursor: Buffer = Buffer.alloc(0)
    for (let steps = 0; steps < 20; steps++) {
      const part = await c.scan({ prefix: b('scan/'), cursor, limit: 150 })
      walked.push(...part.flatMap((m) => m.entries.map((e) => e.key.toString())))
      const last = part.at(-1)
      expect(last).toBeDefined()
      if (last?.done) break
      cursor = last?.cursor ?? Buffer.alloc(0)
    }
    expect(walked).toEqual(wholeKeys)
    const entry = whole[0]?.entries[0]
    expect(entry?.version).toBeGreaterThan(0)
    expect(entry?.value.toString()).toBe(`v${entry?.key.toString().slice('scan/'.length)}`)
  })

  it('answers admin Status with node, shard, uptime, version and cluster id', async () => {
    const status = await adminStatus(adminClient(node.address))
    expect(status.clusterId).toMatch(/^[0-9a-f]{32}$/)
    expect(status.node).toMatchObject({ nodeId: 1, address: node.address, dataDir: node.dataDir })
    expect(status.node?.version).toMatch(/^\d+\.\d+\.\d+/)
    expect(status.node?.uptimeMs).toBeGreaterThan(0)
    // The one data shard over the whole ring, and the meta shard (node registry and shard map).
    expect(status.node?.shards.map((s) => s.shardId).sort((a, b) => a - b)).toEqual([0, 0xffff_fff0])
    const data = status.node?.shards.find((s) => s.shardId === 0)
    expect(data).toMatchObject({ shardId: 0, hashStart: '0', hashEnd: (2n ** 64n).toString(), epoch: 1 })
    expect(data?.appliedIndex).toBeGreaterThan(0)
  })

  it('answers health checks and reflection', async () => {
    expect(await healthCheck(node.address, '')).toBe('SERVING')
    expect(await healthCheck(node.address, 'ringkv.v1.KvService')).toBe('SERVING')
    const services = await reflectionListServices(node.address)
    expect(services).toEqual(
      expect.arrayContaining([
        'ringkv.v1.KvService',
        'ringkv.v1.AdminService',
        'ringkv.v1.RaftTransportService',
      ]),
    )
  })

  it('serves /healthz, /readyz and /metrics with request histograms', async () => {
    expect((await fetch(`http://${node.httpAddress}/healthz`)).status).toBe(200)
    expect((await fetch(`http://${node.httpAddress}/readyz`)).status).toBe(200)
    expect((await fetch(`http://${node.httpAddress}/nope`)).status).toBe(404)
    await c.get({ key: b('metrics-probe') })
    await expectFailure(c.get({ key: b('') }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    const text = await (await fetch(`http://${node.httpAddress}/metrics`)).text()
    expect(text).toContain('# TYPE ringkv_request_duration_seconds histogram')
    expect(text).toMatch(
      /ringkv_request_duration_seconds_bucket\{le="[^"]+",method="Get",consistency="linearizable",code="OK"\}/,
    )
    expect(text).toMatch(
      /ringkv_requests_total\{method="Get",consistency="none",code="INVALID_ARGUMENT"\} [1-9]/,
    )
    expect(text).toContain('ringkv_requests_in_flight')
    expect(text).toContain('process_cpu_user_seconds_total')
  })

  it('refuses a peer stream that does not say which node it comes from and is meant for', async () => {
    await expectFailure(
      rawStream(plainClient(node.peerAddress), '/ringkv.v1.RaftTransportService/Stream', Buffer.alloc(0)),
      Grpc.INVALID_ARGUMENT,
    )
  })

  it('serves peer traffic on the peer listener only', async () => {
    await expectFailure(
      rawStream(plainClient(node.address), '/ringkv.v1.RaftTransportService/Stream', Buffer.alloc(0)),
      Grpc.UNIMPLEMENTED,
    )
  })
})
