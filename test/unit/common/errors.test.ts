import { describe, expect, it } from 'vitest'
import {
  ErrorCode,
  GrpcStatus,
  KvError,
  errorCodeTable,
  isErrorCode,
  isKvError,
  isKvErrorWithCode,
} from '../../../src/common/index.ts'

describe('common/errors', () => {
  it('maps every error code to a gRPC status and a retry policy', () => {
    for (const code of Object.values(ErrorCode)) {
      const row = errorCodeTable[code]
      expect(row, code).toBeDefined()
      expect(Object.values(GrpcStatus)).toContain(row.status)
    }
    expect(Object.keys(errorCodeTable).sort()).toEqual(Object.values(ErrorCode).sort())
  })

  it('follows the STYLE.md 7.4 table for the codes the SDK retries on', () => {
    expect(errorCodeTable.NOT_LEADER.status).toBe(GrpcStatus.FAILED_PRECONDITION)
    expect(errorCodeTable.WRONG_SHARD.status).toBe(GrpcStatus.FAILED_PRECONDITION)
    expect(errorCodeTable.NO_QUORUM.status).toBe(GrpcStatus.UNAVAILABLE)
    expect(errorCodeTable.OVERLOADED.status).toBe(GrpcStatus.RESOURCE_EXHAUSTED)
    expect(errorCodeTable.VERSION_MISMATCH.status).toBe(GrpcStatus.ABORTED)
    expect(errorCodeTable.KEY_TOO_LARGE.status).toBe(GrpcStatus.INVALID_ARGUMENT)
    expect(errorCodeTable.INTERNAL.status).toBe(GrpcStatus.INTERNAL)
    expect(errorCodeTable.DEADLINE_EXCEEDED.retry).toBe('never')
  })

  it('marks as possibly-applied exactly the codes where a write outcome is unknown', () => {
    const unknown = Object.values(ErrorCode).filter((c) => !errorCodeTable[c].writeNotApplied)
    expect(unknown.sort()).toEqual(
      [
        'CANCELLED',
        'DEADLINE_EXCEEDED',
        'INTERNAL',
        'NO_QUORUM',
        'PROPOSAL_DROPPED',
        'SESSION_EXPIRED',
        'UNAVAILABLE',
      ].sort(),
    )
  })

  it('keeps code, details and cause on a KvError and recognises it by name across realms', () => {
    const cause = new Error('root')
    const err = new KvError(ErrorCode.NotLeader, 'not the leader', { details: { leaderHint: 3 }, cause })
    expect(err.code).toBe('NOT_LEADER')
    expect(err.details?.leaderHint).toBe(3)
    expect(err.cause).toBe(cause)
    expect(isKvError(err)).toBe(true)
    expect(isKvErrorWithCode(err, ErrorCode.NotLeader)).toBe(true)
    expect(isKvErrorWithCode(err, ErrorCode.WrongShard)).toBe(false)
    const foreign = Object.assign(new Error('x'), { name: 'KvError', code: 'OVERLOADED' })
    expect(isKvError(foreign)).toBe(true)
    expect(isKvError(Object.assign(new Error('x'), { name: 'KvError', code: 'NOPE' }))).toBe(false)
    expect(isErrorCode('NOT_FOUND')).toBe(true)
    expect(isErrorCode(42)).toBe(false)
  })
})
