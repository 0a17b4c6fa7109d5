/**
 * Every bad input of the client API gets its stable code, and NOTHING is written: after each
 * refused request the node's applied index and the whole key space are exactly as before.
 */
import { credentials, Metadata, status as Grpc, type ServiceError } from '@grpc/grpc-js'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../../src/common/limits.ts'
import {
  BatchRequest,
  Consistency,
  GetRequest,
  KvServiceClient,
  PutRequest,
  ScanRequest,
  type BatchOp,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'
import {
  adminClient,
  adminStatus,
  expectFailure,
  kv,
  kvClient,
  plainClient,
  rawStream,
  rawUnary,
  trailer,
} from '../helpers/grpc.ts'

const b = (s: string): Buffer => Buffer.from(s)
const filled = (n: number): Buffer => Buffer.alloc(n, 0x61)
const writeOpts = (consistency: number) => ({
  consistency,
  clientId: '',
  seq: 0,
  firstIncompleteSeq: 0,
  route: undefined,
})
const readOpts = (consistency: number) => ({
  consistency,
  maxStalenessMs: 0,
  session: undefined,
  route: undefined,
})

let node: KvdHandle
let other: KvdHandle
let c: ReturnType<typeof kv>

async function snapshot(): Promise<{ applied: number; data: string[] }> {
  const status = await adminStatus(adminClient(node.address))
  const pages = await c.scan({})
  return {
    applied: status.node?.shards[0]?.appliedIndex ?? -1,
    data: pages
      .flatMap((p) =>
        p.entries.map((e) => `${e.key.toString('hex')}=${e.value.toString('hex')}@${e.version}`),
      )
      .sort(),
  }
}

let before: Awaited<ReturnType<typeof snapshot>>

beforeAll(async () => {
  ;[node, other] = await Promise.all([startKvd(), startKvd()])
  c = kv(kvClient(node.address))
  for (let i = 0; i < 20; i++) await c.put({ key: b(`keep/${i}`), value: b(`value ${i}`) })
  before = await snapshot()
  expect(before.data).toHaveLength(20)
})
afterAll(async () => {
  await Promise.all([node?.stop(), other?.stop()])
})
afterEach(async () => {
  // The contract of this file: a refused request writes nothing.
  expect(await snapshot()).toEqual(before)
})

describe('kvd refuses bad input with a stable code and writes nothing', () => {
  it('empty key: INVALID_ARGUMENT', async () => {
    for (const call of [
      c.put({ key: b(''), value: b('v') }),
      c.get({ key: b('') }),
      c.delete({ key: b('') }),
    ]) {
      const err = await expectFailure(call, Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
      expect(trailer(err, 'ringkv-field')).toBe('key')
    }
  })

  it('key over keyBytesMax: KEY_TOO_LARGE with the limit', async () => {
    const big = filled(limits.keyBytesMax + 1)
    for (const call of [c.put({ key: big, value: b('v') }), c.get({ key: big }), c.delete({ key: big })]) {
      const err = await expectFailure(call, Grpc.INVALID_ARGUMENT, 'KEY_TOO_LARGE')
      expect(trailer(err, 'ringkv-limit')).toBe(String(limits.keyBytesMax))
    }
  })

  it('value over valueBytesMax: VALUE_TOO_LARGE', async () => {
    const err = await expectFailure(
      c.put({ key: b('big-value'), value: filled(limits.valueBytesMax + 1) }),
      Grpc.INVALID_ARGUMENT,
      'VALUE_TOO_LARGE',
    )
    expect(trailer(err, 'ringkv-limit')).toBe(String(limits.valueBytesMax))
  })

  it('a message over grpcMessageBytesMax: RESOURCE_EXHAUSTED from gRPC itself', async () => {
    await expectFailure(
      c.put({ key: b('huge'), value: filled(limits.grpcMessageBytesMax + 1) }),
      Grpc.RESOURCE_EXHAUSTED,
    )
  })

  it('read level on a write, write level on a read, unknown level: INVALID_ARGUMENT', async () => {
    for (const level of [Consistency.CONSISTENCY_LINEARIZABLE, Consistency.CONSISTENCY_EVENTUAL, 8, 99, -3]) {
      const err = await expectFailure(
        c.put({ key: b('lvl'), value: b('v'), options: writeOpts(level) }),
        Grpc.INVALID_ARGUMENT,
        'INVALID_ARGUMENT',
      )
      expect(trailer(err, 'ringkv-field')).toBe('options.consistency')
      await expectFailure(
        c.batch({
          ops: [{ op: { $case: 'put', put: { key: b('lvl'), value: b('v') } } }],
          options: writeOpts(level),
        }),
        Grpc.INVALID_ARGUMENT,
        'INVALID_ARGUMENT',
      )
    }
    for (const level of [Consistency.CONSISTENCY_MAJORITY, Consistency.CONSISTENCY_ALL, 8, 1000])
      await expectFailure(
        c.get({ key: b('keep/1'), options: readOpts(level) }),
        Grpc.INVALID_ARGUMENT,
        'INVALID_ARGUMENT',
      )
    await expectFailure(
      c.delete({ key: b('keep/1'), options: writeOpts(Consistency.CONSISTENCY_SESSION) }),
      3,
    )
  })

  it('a batch with one bad op writes none of its good ops', async () => {
    const ops: BatchOp[] = [
      { op: { $case: 'put', put: { key: b('batch-good'), value: b('1') } } },
      { op: { $case: 'delete', delete: { key: b('keep/3') } } },
      { op: { $case: 'put', put: { key: filled(limits.keyBytesMax + 1), value: b('1') } } },
    ]
    const err = await expectFailure(c.batch({ ops }), Grpc.INVALID_ARGUMENT, 'KEY_TOO_LARGE')
    expect(trailer(err, 'ringkv-field')).toBe('ops[2].key')
    await expectFailure(c.batch({ ops: [...ops.slice(0, 2), { op: undefined }] }), Grpc.INVALID_ARGUMENT)
    await expectFailure(c.batch({ ops: [] }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
  })

  it('batch over batchOpsMax or batchBytesMax: INVALID_ARGUMENT with the limit', async () => {
    const many = Array.from({ length: limits.batchOpsMax + 1 }, (_, i) => ({
      op: { $case: 'put' as const, put: { key: b(`many/${i}`), value: b('v') } },
    }))
    const count = await expectFailure(c.batch({ ops: many }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    expect(trailer(count, 'ringkv-limit')).toBe(String(limits.batchOpsMax))
    const each = Math.ceil((limits.batchBytesMax + 1000) / 4)
    const heavy = Array.from({ length: 4 }, (_, i) => ({
      op: { $case: 'put' as const, put: { key: b(`heavy/${i}`), value: filled(each) } },
    }))
    const bytes = await expectFailure(c.batch({ ops: heavy }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    expect(trailer(bytes, 'ringkv-limit')).toBe(String(limits.batchBytesMax))
    const keys = Array.from({ length: limits.batchOpsMax + 1 }, (_, i) => b(`k${i}`))
    await expectFailure(c.batchGet({ keys }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
    await expectFailure(c.batchGet({ keys: [b('a'), b('')] }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
  })

  it('seq without client_id, first_incomplete_seq above seq, and a deadline beyond requestDeadlineMsMax: INVALID_ARGUMENT', async () => {
    await expectFailure(
      c.put({
        key: b('seq'),
        value: b('v'),
        options: { consistency: 0, clientId: '', seq: 4, firstIncompleteSeq: 0, route: undefined },
      }),
      Grpc.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    const badTag = await expectFailure(
      c.put({
        key: b('seq'),
        value: b('v'),
        options: { consistency: 0, clientId: 'c', seq: 4, firstIncompleteSeq: 5, route: undefined },
      }),
      Grpc.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    expect(trailer(badTag, 'ringkv-field')).toBe('options.first_incomplete_seq')
    const far = kv(kvClient(node.address), limits.requestDeadlineMsMax + 60_000)
    const err = await expectFailure(
      far.put({ key: b('far'), value: b('v') }),
      Grpc.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    expect(trailer(err, 'ringkv-field')).toBe('deadline')
  })

  it('scan: limit over scanLimitMax, oversized prefix, corrupt, truncated and foreign cursors', async () => {
    const tooMany = await expectFailure(
      c.scan({ limit: limits.scanLimitMax + 1 }),
      Grpc.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    expect(trailer(tooMany, 'ringkv-limit')).toBe(String(limits.scanLimitMax))
    await expectFailure(
      c.scan({ prefix: filled(limits.keyBytesMax + 1) }),
      Grpc.INVALID_ARGUMENT,
      'KEY_TOO_LARGE',
    )
    await expectFailure(c.scan({ options: readOpts(Consistency.CONSISTENCY_LEADER) }), Grpc.INVALID_ARGUMENT)

    const page = await c.scan({ limit: 3 })
    const cursor = page.at(-1)?.cursor ?? Buffer.alloc(0)
    expect(cursor.length).toBeGreaterThan(0)
    expect((await c.scan({ cursor })).flatMap((p) => p.entries)).toHaveLength(17)

    const corrupt = Buffer.from(cursor)
    corrupt[corrupt.length >> 1]! ^= 0x40
    for (const bad of [corrupt, cursor.subarray(0, cursor.length - 1), cursor.subarray(0, 5), b('garbage')]) {
      const err = await expectFailure(c.scan({ cursor: bad }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
      expect(trailer(err, 'ringkv-field')).toBe('cursor')
    }

    // A cursor minted by another cluster (another kvd with its own data dir) is refused.
    const o = kv(kvClient(other.address))
    await o.put({ key: b('keep/x'), value: b('x') })
    await o.put({ key: b('keep/y'), value: b('y') })
    const foreign = (await o.scan({ limit: 1 })).at(-1)?.cursor ?? Buffer.alloc(0)
    expect(foreign.length).toBeGreaterThan(0)
    await expectFailure(c.scan({ cursor: foreign }), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
  })

  it('malformed and truncated protobuf bytes: INVALID_ARGUMENT, and the server keeps serving', async () => {
    const raw = plainClient(node.address)
    const put = Buffer.from(
      PutRequest.encode({
        key: b('trunc'),
        value: b('some value that gets cut'),
        options: writeOpts(0),
      }).finish(),
    )
    const cases: [string, Buffer][] = [
      ['/ringkv.v1.KvService/Put', put.subarray(0, put.length - 3)], // cut inside the value
      ['/ringkv.v1.KvService/Put', put.subarray(0, 4)], // cut inside the key
      ['/ringkv.v1.KvService/Put', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])], // length past the end
      [
        '/ringkv.v1.KvService/Put',
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      ],
      ['/ringkv.v1.KvService/Delete', Buffer.from([0x0f])], // wire type 7 does not exist
      ['/ringkv.v1.KvService/Get', Buffer.from([0x12, 0x03, 0x08])], // options cut short
      [
        '/ringkv.v1.KvService/Batch',
        Buffer.from(
          BatchRequest.encode({
            ops: [{ op: { $case: 'put', put: { key: b('k'), value: b('v') } } }],
            options: undefined,
          }).finish(),
        ).subarray(0, 6),
      ],
      // a uint64 beyond 2^53 cannot be a safe number: refused, not rounded
      [
        '/ringkv.v1.KvService/Put',
        Buffer.concat([
          Buffer.from(PutRequest.encode({ key: b('k'), value: b('v'), options: undefined }).finish()),
          Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        ]),
      ],
    ]
    for (const [path, bytes] of cases) {
      const err = await expectFailure(rawUnary(raw, path, bytes), Grpc.INVALID_ARGUMENT, 'INVALID_ARGUMENT')
      expect(trailer(err, 'ringkv-field')).toBe('request')
    }
    const scan = Buffer.from(
      ScanRequest.encode({
        prefix: b('keep/'),
        cursor: Buffer.alloc(0),
        limit: 5,
        options: undefined,
      }).finish(),
    )
    await expectFailure(
      rawStream(raw, '/ringkv.v1.KvService/Scan', scan.subarray(0, 3)),
      Grpc.INVALID_ARGUMENT,
      'INVALID_ARGUMENT',
    )
    // An unknown method is UNIMPLEMENTED (gRPC's own answer).
    await expectFailure(rawUnary(raw, '/ringkv.v1.KvService/Nope', Buffer.alloc(0)), Grpc.UNIMPLEMENTED)
    // And the node still serves, on the same connection.
    const ok = await rawUnary(
      raw,
      '/ringkv.v1.KvService/Get',
      Buffer.from(GetRequest.encode({ key: b('keep/1'), options: undefined }).finish()),
    )
    expect(ok.length).toBeGreaterThan(0)
    expect((await c.get({ key: b('keep/1') })).value.toString()).toBe('value 1')
  })

  it('a wrong endpoint: the client sees UNAVAILABLE', async () => {
    const port = await freePort()
    const nowhere = new KvServiceClient(`127.0.0.1:${port}`, credentials.createInsecure())
    const err = await new Promise<ServiceError>((resolve) =>
      nowhere.get({ key: b('k'), options: undefined }, new Metadata(), { deadline: Date.now() + 5000 }, (e) =>
        resolve(e as ServiceError),
      ),
    )
    expect(err.code).toBe(Grpc.UNAVAILABLE)
    nowhere.close()
  })
})
