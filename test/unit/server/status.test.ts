import type { Metadata } from '@grpc/grpc-js'
import { status as GrpcCode } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { AssertionError } from '../../../src/common/assert.ts'
import { DeadlineError } from '../../../src/common/clock.ts'
import { ErrorCode, KvError, errorCodeTable, type ErrorDetails } from '../../../src/common/errors.ts'
import { silentLogger, type Logger } from '../../../src/common/logger.ts'
import { ShardDescriptor } from '../../../src/gen/ringkv/v1/kv.ts'
import {
  descriptorToProto,
  internalStatus,
  kvErrorToStatus,
  metadataKeys,
  toOpError,
  toStatus,
} from '../../../src/server/status.ts'

const one = (md: Metadata | undefined, key: string): string | undefined =>
  md?.get(key)[0] as string | undefined

describe('server/status', () => {
  it.each(Object.values(ErrorCode))('maps %s to its table status with ringkv-code', (code) => {
    const status = kvErrorToStatus(new KvError(code, `message of ${code}`))
    expect(status.code as number).toBe(errorCodeTable[code].status)
    expect(status.details).toBe(`message of ${code}`)
    expect(one(status.metadata, 'ringkv-code')).toBe(code)
  })

  it('uses the grpc-js numbers of the table', () => {
    // common/ repeats the numbers to stay free of grpc; this keeps them honest.
    expect(errorCodeTable.NOT_LEADER.status as number).toBe(GrpcCode.FAILED_PRECONDITION)
    expect(errorCodeTable.OVERLOADED.status as number).toBe(GrpcCode.RESOURCE_EXHAUSTED)
    expect(errorCodeTable.VERSION_MISMATCH.status as number).toBe(GrpcCode.ABORTED)
    expect(errorCodeTable.UNAVAILABLE.status as number).toBe(GrpcCode.UNAVAILABLE)
    expect(errorCodeTable.INTERNAL.status as number).toBe(GrpcCode.INTERNAL)
  })

  it('carries every detail as its ringkv-* trailer (the SDK contract)', () => {
    const details: Required<ErrorDetails> = {
      leaderHint: 3,
      shardMapEpoch: 7,
      shardId: 2,
      currentVersion: 42,
      limit: 4096,
      field: 'ops[1].key',
      descriptor: {
        shardId: 2,
        hashStart: 0n,
        hashEnd: 1n << 64n,
        replicas: [1, 2, 3],
        leaderHint: 3,
        leaderTerm: 5,
        epoch: 7,
      },
    }
    const md = kvErrorToStatus(new KvError(ErrorCode.NotLeader, 'x', { details })).metadata
    expect(metadataKeys).toEqual({
      code: 'ringkv-code',
      leader: 'ringkv-leader',
      epoch: 'ringkv-epoch',
      shard: 'ringkv-shard',
      currentVersion: 'ringkv-current-version',
      limit: 'ringkv-limit',
      field: 'ringkv-field',
      descriptor: 'ringkv-descriptor-bin',
    })
    expect(ShardDescriptor.decode(md.get('ringkv-descriptor-bin')[0] as Buffer)).toEqual({
      shardId: 2,
      hashStart: '0',
      hashEnd: '18446744073709551616',
      replicas: [1, 2, 3],
      leaderHint: 3,
      leaderTerm: 5,
      epoch: 7,
    })
    expect(one(md, 'ringkv-leader')).toBe('3')
    expect(one(md, 'ringkv-epoch')).toBe('7')
    expect(one(md, 'ringkv-shard')).toBe('2')
    expect(one(md, 'ringkv-current-version')).toBe('42')
    expect(one(md, 'ringkv-limit')).toBe('4096')
    expect(one(md, 'ringkv-field')).toBe('ops[1].key')
  })

  it('sends currentVersion 0 (CAS on an absent key) rather than dropping it', () => {
    const md = kvErrorToStatus(
      new KvError(ErrorCode.VersionMismatch, 'x', { details: { currentVersion: 0 } }),
    ).metadata
    expect(one(md, 'ringkv-current-version')).toBe('0')
    expect(one(md, 'ringkv-leader')).toBeUndefined()
  })

  it('recognises a KvError from another copy of the module by name and code', () => {
    const foreign = Object.assign(new Error('m'), { name: 'KvError', code: 'NOT_FOUND' })
    expect(toStatus(foreign, silentLogger).code).toBe(GrpcCode.NOT_FOUND)
  })

  it('maps a DeadlineError to DEADLINE_EXCEEDED and an AbortError to CANCELLED', () => {
    expect(one(toStatus(new DeadlineError(), silentLogger).metadata, 'ringkv-code')).toBe('DEADLINE_EXCEEDED')
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' })
    expect(toStatus(abort, silentLogger).code).toBe(GrpcCode.CANCELLED)
  })

  it('rethrows an AssertionError (a bug is fatal, not a status)', () => {
    expect(() => toStatus(new AssertionError('broken'), silentLogger)).toThrow(AssertionError)
  })

  it('hides an unknown error behind INTERNAL with a logged error id', () => {
    const logged: Record<string, unknown>[] = []
    const logger: Logger = { ...silentLogger, error: (fields) => logged.push(fields) }
    const status = toStatus(new TypeError('secret user data'), logger)
    expect(status.code).toBe(GrpcCode.INTERNAL)
    expect(one(status.metadata, 'ringkv-code')).toBe('INTERNAL')
    expect(status.details).not.toContain('secret')
    expect(logged).toHaveLength(1)
    const errorId = logged[0]?.['errorId'] as string
    expect(errorId).toMatch(/^[0-9a-f]{16}$/)
    expect(status.details).toContain(errorId)
    expect(toStatus('a string', logger).code).toBe(GrpcCode.INTERNAL)
  })

  it.each(Object.values(ErrorCode))(
    'gives a Multi op failing with %s the code, status and message of a whole call',
    (code) => {
      const err = new KvError(code, `message of ${code}`)
      const status = toStatus(err, silentLogger)
      expect(toOpError(err, silentLogger)).toEqual({
        code: one(status.metadata, 'ringkv-code'),
        status: status.code,
        message: status.details,
      })
    },
  )

  it('carries every detail of a Multi op error as the field of its ringkv-* trailer', () => {
    const details: Required<ErrorDetails> = {
      leaderHint: 3,
      shardMapEpoch: 7,
      shardId: 0,
      currentVersion: 0,
      limit: 4096,
      field: 'key',
      descriptor: {
        shardId: 2,
        hashStart: 0n,
        hashEnd: 1n << 64n,
        replicas: [1, 2, 3],
        leaderHint: 3,
        leaderTerm: 5,
        epoch: 7,
      },
    }
    const err = new KvError(ErrorCode.NotLeader, 'x', { details })
    expect(toOpError(err, silentLogger)).toEqual({
      code: 'NOT_LEADER',
      status: GrpcCode.FAILED_PRECONDITION,
      message: 'x',
      ...details,
      descriptor: descriptorToProto(details.descriptor),
    })
    // Absent details stay absent (not 0: currentVersion 0 means "the key is absent").
    expect(toOpError(new KvError(ErrorCode.VersionMismatch, 'y'), silentLogger)).toEqual({
      code: 'VERSION_MISMATCH',
      status: GrpcCode.ABORTED,
      message: 'y',
      descriptor: undefined,
    })
  })

  it('maps a Multi op failure like a whole call: deadline, abort, unknown errors, and assertions', () => {
    expect(toOpError(new DeadlineError(), silentLogger).code).toBe('DEADLINE_EXCEEDED')
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' })
    expect(toOpError(abort, silentLogger)).toMatchObject({ code: 'CANCELLED', status: GrpcCode.CANCELLED })
    const logged: Record<string, unknown>[] = []
    const logger: Logger = { ...silentLogger, error: (fields) => logged.push(fields) }
    const internal = toOpError(new TypeError('secret user data'), logger)
    expect(internal).toMatchObject({ code: 'INTERNAL', status: GrpcCode.INTERNAL })
    expect(internal.message).not.toContain('secret')
    expect(internal.message).toContain(logged[0]?.['errorId'] as string)
    expect(() => toOpError(new AssertionError('broken'), silentLogger)).toThrow(AssertionError)
  })

  it('has INTERNAL for fatal calls', () => {
    expect(internalStatus().code).toBe(GrpcCode.INTERNAL)
  })
})
