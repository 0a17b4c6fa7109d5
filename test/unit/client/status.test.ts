import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DeadlineError } from '../../../src/common/clock.ts'
import {
  ErrorCode,
  GrpcStatus,
  KvError,
  errorCodeTable,
  type ErrorCode as Code,
} from '../../../src/common/errors.ts'
import { KvClient } from '../../../src/client/index.ts'
import {
  abortError,
  detailsFromMetadata,
  kvErrorFromGrpc,
  kvErrorFromOpError,
} from '../../../src/client/status.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import { ShardDescriptor } from '../../../src/gen/ringkv/v1/kv.ts'
import { toOpError, toStatus } from '../../../src/server/status.ts'
import { FakeKvServer } from './fake-server.ts'

function serviceError(code: number, details: string, md: Record<string, string> = {}): ServiceError {
  const metadata = new Metadata()
  for (const [k, v] of Object.entries(md)) metadata.set(k, v)
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata })
}

describe('client/status mapping', () => {
  it('takes the code from ringkv-code for every code in the table', () => {
    for (const code of Object.values(ErrorCode) as Code[]) {
      const err = kvErrorFromGrpc(serviceError(errorCodeTable[code].status, 'msg', { 'ringkv-code': code }))
      expect(err).toBeInstanceOf(KvError)
      expect(err.code).toBe(code)
      expect(err.message).toBe('msg')
    }
  })

  it('turns ringkv-* metadata into details', () => {
    const err = kvErrorFromGrpc(
      serviceError(GrpcStatus.FAILED_PRECONDITION, 'not leader', {
        'ringkv-code': 'NOT_LEADER',
        'ringkv-leader': '3',
        'ringkv-epoch': '17',
        'ringkv-shard': '5',
      }),
    )
    expect(err.code).toBe('NOT_LEADER')
    expect(err.details).toEqual({ leaderHint: 3, shardMapEpoch: 17, shardId: 5 })
    const cas = kvErrorFromGrpc(
      serviceError(GrpcStatus.ABORTED, 'mismatch', {
        'ringkv-code': 'VERSION_MISMATCH',
        'ringkv-current-version': '42',
      }),
    )
    expect(cas.details).toEqual({ currentVersion: 42 })
    const big = kvErrorFromGrpc(
      serviceError(GrpcStatus.INVALID_ARGUMENT, 'too big', {
        'ringkv-code': 'VALUE_TOO_LARGE',
        'ringkv-limit': '1048576',
        'ringkv-field': 'value',
      }),
    )
    expect(big.details).toEqual({ limit: 1048576, field: 'value' })
  })

  it('ignores malformed metadata values instead of failing', () => {
    const md = new Metadata()
    md.set('ringkv-leader', 'abc')
    md.set('ringkv-epoch', '-1')
    md.set('ringkv-current-version', '99999999999999999999')
    expect(detailsFromMetadata(md)).toEqual({})
  })

  it('maps bare transport statuses', () => {
    expect(kvErrorFromGrpc(serviceError(GrpcStatus.UNAVAILABLE, 'No connection established')).code).toBe(
      'UNAVAILABLE',
    )
    expect(kvErrorFromGrpc(serviceError(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded')).code).toBe(
      'DEADLINE_EXCEEDED',
    )
    expect(kvErrorFromGrpc(serviceError(GrpcStatus.CANCELLED, 'Cancelled on client')).code).toBe('CANCELLED')
    // A CANCELLED the call's own signal did not cause: the node or the connection dropped it.
    expect(
      kvErrorFromGrpc(serviceError(GrpcStatus.CANCELLED, 'Call cancelled'), new AbortController().signal)
        .code,
    ).toBe('UNAVAILABLE')
    expect(kvErrorFromGrpc(serviceError(GrpcStatus.UNIMPLEMENTED, 'nope')).code).toBe('INTERNAL')
    expect(kvErrorFromGrpc(serviceError(GrpcStatus.RESOURCE_EXHAUSTED, 'larger than max')).code).toBe(
      'INVALID_ARGUMENT',
    )
    // An unknown ringkv-code falls back to the status.
    expect(
      kvErrorFromGrpc(serviceError(GrpcStatus.UNAVAILABLE, 'x', { 'ringkv-code': 'NEW_CODE' })).code,
    ).toBe('UNAVAILABLE')
  })

  it('maps a call we aborted by the abort reason', () => {
    const deadline = new AbortController()
    deadline.abort(new DeadlineError())
    expect(abortError(deadline.signal).code).toBe('DEADLINE_EXCEEDED')
    const caller = new AbortController()
    caller.abort()
    expect(abortError(caller.signal).code).toBe('CANCELLED')
    expect(
      kvErrorFromGrpc(serviceError(GrpcStatus.CANCELLED, 'Cancelled on client'), deadline.signal).code,
    ).toBe('DEADLINE_EXCEEDED')
  })

  it('decodes the WRONG_SHARD descriptor of ringkv-descriptor-bin, and drops a malformed one', () => {
    const wire: ShardDescriptor = {
      shardId: 4,
      hashStart: '4611686018427387904',
      hashEnd: '18446744073709551616',
      replicas: [3, 1, 2],
      leaderHint: 3,
      leaderTerm: 6,
      epoch: 11,
    }
    const withDescriptor = (d: ShardDescriptor | Buffer): ServiceError => {
      const err = serviceError(GrpcStatus.FAILED_PRECONDITION, 'wrong shard', {
        'ringkv-code': 'WRONG_SHARD',
        'ringkv-shard': '4',
        'ringkv-epoch': '11',
      })
      err.metadata.set(
        'ringkv-descriptor-bin',
        Buffer.isBuffer(d) ? d : Buffer.from(ShardDescriptor.encode(d).finish()),
      )
      return err
    }
    const err = kvErrorFromGrpc(withDescriptor(wire))
    expect(err.details).toEqual({
      shardId: 4,
      shardMapEpoch: 11,
      descriptor: {
        shardId: 4,
        hashStart: 1n << 62n,
        hashEnd: 1n << 64n,
        replicas: [3, 1, 2],
        leaderHint: 3,
        leaderTerm: 6,
        epoch: 11,
      },
    })
    // As an OpError of a Multi: the same.
    expect(
      kvErrorFromOpError({ code: 'WRONG_SHARD', status: 9, message: 'x', shardId: 4, descriptor: wire })
        .details?.descriptor,
    ).toEqual(err.details?.descriptor)
    // An empty range, or bytes that are no descriptor: the error stands without one.
    for (const bad of [{ ...wire, hashEnd: wire.hashStart }, Buffer.from([0xff, 0xff, 0xff])]) {
      const e = kvErrorFromGrpc(withDescriptor(bad))
      expect(e.code).toBe('WRONG_SHARD')
      expect(e.details?.descriptor).toBeUndefined()
      expect(e.details?.shardId).toBe(4)
    }
  })

  it('reads a Multi op error exactly as the same error failing a whole call', () => {
    const full = {
      leaderHint: 3,
      shardMapEpoch: 9,
      shardId: 0,
      currentVersion: 0,
      limit: 7,
      field: 'key',
      descriptor: {
        shardId: 2,
        hashStart: 5n,
        hashEnd: 1n << 64n,
        replicas: [2, 1],
        leaderHint: 2,
        leaderTerm: 4,
        epoch: 3,
      },
    }
    for (const code of Object.values(ErrorCode) as Code[]) {
      for (const details of [undefined, full, { currentVersion: 12 }]) {
        const sent = new KvError(code, `m ${code}`, details === undefined ? {} : { details })
        const status = toStatus(sent, silentLogger)
        // The whole call as the SDK receives it: the status with its ringkv-* trailers.
        const viaCall = kvErrorFromGrpc(Object.assign(new Error('x'), { ...status }))
        const viaOp = kvErrorFromOpError(toOpError(sent, silentLogger))
        expect(viaOp).toBeInstanceOf(KvError)
        expect({ code: viaOp.code, message: viaOp.message, details: viaOp.details ?? {} }).toEqual({
          code: viaCall.code,
          message: viaCall.message,
          details: viaCall.details ?? {},
        })
      }
    }
    // A code this SDK does not know falls back on the status number, as for a bare status.
    expect(
      kvErrorFromOpError({
        code: 'NEW_CODE',
        status: GrpcStatus.UNAVAILABLE,
        message: 'x',
        descriptor: undefined,
      }).code,
    ).toBe('UNAVAILABLE')
    // A leader hint of 0 names nobody.
    expect(
      kvErrorFromOpError({
        code: 'NOT_LEADER',
        status: 9,
        message: 'x',
        leaderHint: 0,
        shardId: 2,
        descriptor: undefined,
      }).details,
    ).toEqual({ shardId: 2 })
  })

  it('keeps the ServiceError as cause and non-gRPC errors become INTERNAL', () => {
    const cause = serviceError(GrpcStatus.UNAVAILABLE, 'x')
    expect(kvErrorFromGrpc(cause).cause).toBe(cause)
    expect(kvErrorFromGrpc(new Error('Value is larger than Number.MAX_SAFE_INTEGER')).code).toBe('INTERNAL')
  })
})

describe('client/status over the wire', () => {
  let server: FakeKvServer
  let client: KvClient
  beforeAll(async () => {
    server = await FakeKvServer.start()
    client = new KvClient({ endpoints: [server.address], retry: { attemptsMax: 1 } })
  })
  afterAll(async () => {
    client.close()
    await server.stop()
  })

  it('delivers code and details sent as trailing metadata', async () => {
    server.failNext('get', {
      code: 'STALENESS_BOUND_EXCEEDED',
      metadata: { 'ringkv-shard': '2', 'ringkv-limit': '500' },
    })
    const err = await client
      .get('k', { consistency: 'bounded', maxStalenessMs: 500 })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KvError)
    expect(err).toMatchObject({
      name: 'KvError',
      code: 'STALENESS_BOUND_EXCEEDED',
      details: { shardId: 2, limit: 500 },
    })
  })

  it('reports an unreachable endpoint as UNAVAILABLE', async () => {
    const dead = await FakeKvServer.start()
    const address = dead.address
    await dead.kill()
    const c = new KvClient({ endpoints: [address], retry: { attemptsMax: 1 } })
    try {
      await expect(c.get('k')).rejects.toMatchObject({ code: 'UNAVAILABLE' })
    } finally {
      c.close()
    }
  })
})
