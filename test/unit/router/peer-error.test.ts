import { credentials, Metadata, status as GrpcCode, type ServiceError } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { DeadlineError, ErrorCode, KvError, isKvErrorWithCode } from '../../../src/common/index.ts'
import { NodeId } from '../../../src/common/ids.ts'
import { limits } from '../../../src/common/limits.ts'
import { ShardDescriptor } from '../../../src/gen/ringkv/v1/kv.ts'
import { descriptorFromProto, PeerClients, peerError } from '../../../src/router/index.ts'
import { kvErrorToStatus } from '../../../src/server/status.ts'

function serviceError(
  code: GrpcCode,
  details: string,
  entries: [string, string | Buffer][] = [],
): ServiceError {
  const metadata = new Metadata()
  for (const [key, value] of entries) metadata.set(key, value)
  return Object.assign(new Error(`${code} ${GrpcCode[code]}: ${details}`), { code, details, metadata })
}

const descriptor: ShardDescriptor = {
  shardId: 7,
  hashStart: '9223372036854775808',
  hashEnd: '18446744073709551616',
  replicas: [3, 1, 2],
  leaderHint: 3,
  leaderTerm: 11,
  epoch: 4,
}
const descriptorBytes = Buffer.from(ShardDescriptor.encode(descriptor).finish())

describe('router/peerError: a peer error with ringkv-code keeps its code and details', () => {
  it('NOT_LEADER with a leader hint, epoch, shard and a binary descriptor', () => {
    const err = peerError(
      serviceError(GrpcCode.FAILED_PRECONDITION, 'not the leader', [
        ['ringkv-code', 'NOT_LEADER'],
        ['ringkv-leader', '3'],
        ['ringkv-epoch', '4'],
        ['ringkv-shard', '7'],
        ['ringkv-descriptor-bin', descriptorBytes],
      ]),
      'n2:7000',
    )
    expect(err).toBeInstanceOf(KvError)
    expect(err.code).toBe(ErrorCode.NotLeader)
    expect(err.message).toBe('not the leader')
    expect(err.details).toEqual({
      leaderHint: 3,
      shardMapEpoch: 4,
      shardId: 7,
      descriptor: {
        shardId: 7,
        hashStart: 1n << 63n,
        hashEnd: 1n << 64n,
        replicas: [3, 1, 2],
        leaderHint: 3,
        leaderTerm: 11,
        epoch: 4,
      },
    })
  })

  it('the same error through the server side encoder (kvErrorToStatus) comes back unchanged', () => {
    const sent = new KvError(ErrorCode.WrongShard, 'refresh the map', {
      details: {
        shardId: 7,
        shardMapEpoch: 4,
        field: 'key',
        currentVersion: 9,
        limit: 100,
        descriptor: descriptorFromProto(descriptor),
      },
    })
    const status = kvErrorToStatus(sent)
    const got = peerError(
      Object.assign(new Error(status.details), {
        code: status.code,
        details: status.details,
        metadata: status.metadata,
      }),
      'n2:7000',
    )
    expect(got.code).toBe(sent.code)
    expect(got.message).toBe(sent.message)
    expect(got.details).toEqual(sent.details)
  })

  it('a malformed descriptor or numbers only lose those details', () => {
    const err = peerError(
      serviceError(GrpcCode.FAILED_PRECONDITION, 'x', [
        ['ringkv-code', 'WRONG_SHARD'],
        ['ringkv-shard', 'seven'],
        ['ringkv-epoch', '2'],
        ['ringkv-descriptor-bin', Buffer.from([0xff, 0xff, 0xff])],
      ]),
      'n2:7000',
    )
    expect(err.code).toBe(ErrorCode.WrongShard)
    expect(err.details).toEqual({ shardMapEpoch: 2 })
  })
})

describe('router/peerError: no ringkv-code (the peer was not reached, or not a ringkv node)', () => {
  it('DEADLINE_EXCEEDED: DEADLINE_EXCEEDED caused by a DeadlineError', () => {
    const err = peerError(serviceError(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'), 'n2:7000')
    expect(err.code).toBe(ErrorCode.DeadlineExceeded)
    expect(err.cause).toBeInstanceOf(DeadlineError)
  })

  it('CANCELLED: CANCELLED', () => {
    expect(peerError(serviceError(GrpcCode.CANCELLED, 'Cancelled'), 'n2:7000').code).toBe(ErrorCode.Cancelled)
  })

  it.each([GrpcCode.UNAVAILABLE, GrpcCode.INTERNAL, GrpcCode.UNIMPLEMENTED, GrpcCode.UNKNOWN])(
    'grpc status %i: UNAVAILABLE naming the address, with the grpc error as cause',
    (code) => {
      const sent = serviceError(code, 'connection refused')
      const err = peerError(sent, 'n2:7000')
      expect(err.code).toBe(ErrorCode.Unavailable)
      expect(err.message).toContain('n2:7000')
      expect(err.message).toContain('connection refused')
      expect(err.cause).toBe(sent)
    },
  )

  it('an unknown ringkv-code is treated as no code', () => {
    const err = peerError(
      serviceError(GrpcCode.FAILED_PRECONDITION, 'odd', [['ringkv-code', 'NOT_A_CODE']]),
      'n2:7000',
    )
    expect(err.code).toBe(ErrorCode.Unavailable)
  })
})

describe('router/PeerClients: an injected partition cuts peer calls too', () => {
  it('refuses a cut-off address UNAVAILABLE without dialling, and serves it again once healed', () => {
    let cut = new Set(['127.0.0.1:7102'])
    const clients = new PeerClients(
      NodeId(1),
      limits,
      () => credentials.createInsecure(),
      (a) => cut.has(a),
    )
    try {
      let thrown: unknown
      try {
        clients.of('127.0.0.1:7102')
      } catch (err) {
        thrown = err
      }
      expect(isKvErrorWithCode(thrown, ErrorCode.Unavailable)).toBe(true)
      expect((thrown as Error).message).toContain('cut off')
      expect(clients.of('127.0.0.1:7103').kv).toBeDefined()
      cut = new Set()
      expect(clients.of('127.0.0.1:7102').kv).toBeDefined()
    } finally {
      clients.close()
    }
  })
})
