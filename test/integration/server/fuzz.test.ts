/**
 * Fuzzing a live kvd with malformed requests (fast-check): random bytes, truncated and bit-flipped
 * valid messages, unknown enum numbers and oversized fields, sent as raw bytes to every method of
 * the client and admin APIs. Every answer must be a success or an error of the server's own making
 * (a `ringkv-code` trailer, never INTERNAL/UNKNOWN), and afterwards the node must
 * still serve and the data written before must be intact.
 */
import { status as Grpc, type Client, type ServiceError } from '@grpc/grpc-js'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../../src/common/limits.ts'
import {
  BatchGetRequest,
  BatchRequest,
  DeleteRequest,
  GetRequest,
  PutRequest,
  ScanRequest,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'
import { healthCheck, kv, kvClient, plainClient, rawStream, rawUnary } from '../helpers/grpc.ts'

const runs = 1200

const methods = {
  Get: '/ringkv.v1.KvService/Get',
  Put: '/ringkv.v1.KvService/Put',
  Delete: '/ringkv.v1.KvService/Delete',
  BatchGet: '/ringkv.v1.KvService/BatchGet',
  Batch: '/ringkv.v1.KvService/Batch',
  Scan: '/ringkv.v1.KvService/Scan',
  Status: '/ringkv.v1.AdminService/Status',
} as const
type Method = keyof typeof methods

/** Keys the fuzzer may touch; the data under keep/ must survive. */
const fuzzKey = fc
  .oneof(
    { weight: 8, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 24 }) },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: limits.keyBytesMax - 2, max: limits.keyBytesMax + 64 })
        .map((n) => new Uint8Array(n)),
    },
  )
  .map((rest) => Buffer.concat([Buffer.from('fz/'), rest]))
const value = fc.oneof(
  { weight: 10, arbitrary: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)) },
  { weight: 1, arbitrary: fc.constant(Buffer.alloc(limits.valueBytesMax + 1, 1)) },
)
/** Mostly wrong or unknown consistency numbers (int32 on the wire). */
const consistency = fc.oneof(
  fc.integer({ min: 0, max: 9 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
)
const version = fc.option(fc.oneof(fc.nat(50), fc.maxSafeNat()), { nil: undefined })
const readOptions = fc.option(
  fc.record({
    consistency,
    maxStalenessMs: fc.maxSafeNat(),
    session: fc.option(
      fc.record({ appliedIndexByShard: fc.dictionary(fc.nat(3).map(String), fc.maxSafeNat()) }),
      {
        nil: undefined,
      },
    ),
  }),
  { nil: undefined },
)
const writeOptions = fc.option(
  fc.record({
    consistency,
    clientId: fc.string({ maxLength: 8 }),
    seq: fc.nat(1000),
    firstIncompleteSeq: fc.nat(1000),
  }),
  { nil: undefined },
)

/** A well-formed (if often invalid) request of some method, encoded. */
const validMessage: fc.Arbitrary<{ method: Method; bytes: Buffer }> = fc.oneof(
  fc.record({ key: fuzzKey, options: readOptions }).map((r) => ({
    method: 'Get' as const,
    bytes: Buffer.from(GetRequest.encode(r as GetRequest).finish()),
  })),
  fc.record({ key: fuzzKey, value, expectedVersion: version, options: writeOptions }).map((r) => ({
    method: 'Put' as const,
    bytes: Buffer.from(PutRequest.encode(r as PutRequest).finish()),
  })),
  fc.record({ key: fuzzKey, expectedVersion: version, options: writeOptions }).map((r) => ({
    method: 'Delete' as const,
    bytes: Buffer.from(DeleteRequest.encode(r as DeleteRequest).finish()),
  })),
  fc.record({ keys: fc.array(fuzzKey, { maxLength: 5 }), options: readOptions }).map((r) => ({
    method: 'BatchGet' as const,
    bytes: Buffer.from(BatchGetRequest.encode(r as BatchGetRequest).finish()),
  })),
  fc
    .record({
      ops: fc.array(
        fc.oneof(
          fc
            .record({ key: fuzzKey, value, expectedVersion: version })
            .map((put) => ({ op: { $case: 'put' as const, put } })),
          fc
            .record({ key: fuzzKey, expectedVersion: version })
            .map((del) => ({ op: { $case: 'delete' as const, delete: del } })),
          fc.constant({ op: undefined }),
        ),
        { maxLength: 4 },
      ),
      options: writeOptions,
    })
    .map((r) => ({
      method: 'Batch' as const,
      bytes: Buffer.from(BatchRequest.encode(r as BatchRequest).finish()),
    })),
  fc
    .record({
      prefix: fuzzKey,
      cursor: fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u)),
      limit: fc.oneof(fc.nat(20), fc.constant(limits.scanLimitMax + 1), fc.nat(2 ** 32 - 1)),
      options: readOptions,
    })
    .map((r) => ({
      method: 'Scan' as const,
      bytes: Buffer.from(ScanRequest.encode(r as ScanRequest).finish()),
    })),
)

const anyMethod = fc.constantFrom(...(Object.keys(methods) as Method[]))

/** The malformed request: one of four families. */
const malformed = fc.oneof(
  fc.record({
    method: anyMethod,
    bytes: fc.uint8Array({ minLength: 1, maxLength: 256 }).map((u) => Buffer.from(u)),
  }),
  validMessage.chain(({ method, bytes }) =>
    fc.nat(Math.max(0, bytes.length - 1)).map((cut) => ({ method, bytes: bytes.subarray(0, cut) })),
  ),
  validMessage.chain(({ method, bytes }) =>
    fc.array(fc.nat(Math.max(0, bytes.length * 8 - 1)), { minLength: 1, maxLength: 3 }).map((bits) => {
      const flipped = Buffer.from(bytes)
      if (flipped.length > 0) for (const bit of bits) flipped[bit >> 3]! ^= 1 << (bit & 7)
      return { method, bytes: flipped }
    }),
  ),
  validMessage,
)

let node: KvdHandle
let raw: Client
let c: ReturnType<typeof kv>
const kept = new Map<string, { value: string; version: number }>()

beforeAll(async () => {
  node = await startKvd()
  raw = plainClient(node.address)
  c = kv(kvClient(node.address))
  for (let i = 0; i < 50; i++) {
    const key = `keep/${i}`
    const { version } = await c.put({ key: Buffer.from(key), value: Buffer.from(`value ${i}`) })
    kept.set(key, { value: `value ${i}`, version })
  }
})
afterAll(async () => {
  await node?.stop()
})

// UNAVAILABLE is fine only with a ringkv-code (e.g. SESSION_BEHIND for a session token from the
// future), never as a transport failure.
const unacceptable = new Set<number>([Grpc.INTERNAL, Grpc.UNKNOWN, Grpc.UNIMPLEMENTED, Grpc.DATA_LOSS])

describe('kvd under malformed requests', () => {
  it(`answers ${runs} malformed requests with its own codes, keeps serving and keeps the data`, async () => {
    const seen = new Map<string, number>()
    await fc.assert(
      fc.asyncProperty(malformed, async ({ method, bytes }) => {
        let outcome = 'OK'
        try {
          if (method === 'Scan') await rawStream(raw, methods[method], bytes, 10_000)
          else await rawUnary(raw, methods[method], bytes, 10_000)
        } catch (err) {
          const e = err as ServiceError
          expect(unacceptable.has(e.code), `${method} got ${e.code} ${e.details}`).toBe(false)
          const code = e.metadata?.get('ringkv-code')[0]
          expect(code).not.toBe('INTERNAL')
          // Frames over grpcMessageBytesMax are refused by gRPC itself, without our trailer.
          if (e.code !== Grpc.RESOURCE_EXHAUSTED || code !== undefined)
            expect(code, `${method} ${e.code} ${e.details}`).toBeTypeOf('string')
          outcome = String(code ?? e.code)
        }
        seen.set(outcome, (seen.get(outcome) ?? 0) + 1)
      }),
      { numRuns: runs },
    )
    const total = [...seen.values()].reduce((a, n) => a + n, 0)
    expect(total).toBeGreaterThanOrEqual(1000)
    // Most of the traffic must really be refused, not accidentally valid.
    expect(total - (seen.get('OK') ?? 0)).toBeGreaterThan(total / 2)

    // Still alive and serving...
    expect(node.pid).toBeGreaterThan(0)
    expect(await healthCheck(node.address, 'ringkv.v1.KvService')).toBe('SERVING')
    const after = await c.put({ key: Buffer.from('after-fuzz'), value: Buffer.from('ok') })
    expect((await c.get({ key: Buffer.from('after-fuzz') })).version).toBe(after.version)
    // ...and what was written before is intact, value and version.
    for (const [key, want] of kept) {
      const got = await c.get({ key: Buffer.from(key) })
      expect({ key, value: got.value.toString(), version: got.version }).toEqual({ key, ...want })
    }
    const metrics = await (await fetch(`http://${node.httpAddress}/metrics`)).text()
    expect(metrics).not.toMatch(/code="INTERNAL"/)
    expect(node.logs()).not.toMatch(/"level":"(error|fatal)"/)
  })
})
