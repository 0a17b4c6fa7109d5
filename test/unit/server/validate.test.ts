import { describe, expect, it } from 'vitest'
import { ErrorCode, type ErrorCode as Code } from '../../../src/common/errors.ts'
import { limits, tightenLimits } from '../../../src/common/limits.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import {
  checkBatch,
  checkBatchGet,
  checkDelete,
  checkGet,
  checkMulti,
  checkPut,
  checkReadOptions,
  checkScan,
  checkWriteOptions,
} from '../../../src/server/validate.ts'
import { checkDeadline } from '../../../src/net/index.ts'

const b = (s: string | number): Buffer => (typeof s === 'number' ? Buffer.alloc(s, 0x61) : Buffer.from(s))

function codeOf(fn: () => unknown): { code: Code; field: string | undefined; limit: number | undefined } {
  try {
    fn()
  } catch (err) {
    const e = err as { code: Code; details?: { field?: string; limit?: number } }
    return { code: e.code, field: e.details?.field, limit: e.details?.limit }
  }
  throw new Error('did not throw')
}

const read = (consistency: number) => ({
  consistency,
  maxStalenessMs: 0,
  session: undefined,
  route: undefined,
})
const write = (consistency: number, clientId = '', seq = 0, firstIncompleteSeq = 0) => ({
  consistency,
  clientId,
  seq,
  firstIncompleteSeq,
  route: undefined,
})

describe('server/validate', () => {
  it('refuses an empty key with INVALID_ARGUMENT naming the field', () => {
    expect(codeOf(() => checkGet({ key: b(''), options: undefined }, limits, 0))).toMatchObject({
      code: ErrorCode.InvalidArgument,
      field: 'key',
    })
    expect(codeOf(() => checkPut({ key: b(''), value: b('v'), options: undefined }, limits)).code).toBe(
      'INVALID_ARGUMENT',
    )
    expect(codeOf(() => checkDelete({ key: b(''), options: undefined }, limits)).code).toBe(
      'INVALID_ARGUMENT',
    )
  })

  it('accepts a key of exactly keyBytesMax and refuses one byte more with KEY_TOO_LARGE', () => {
    expect(checkGet({ key: b(limits.keyBytesMax), options: undefined }, limits, 0).key).toHaveLength(
      limits.keyBytesMax,
    )
    expect(codeOf(() => checkGet({ key: b(limits.keyBytesMax + 1), options: undefined }, limits, 0))).toEqual(
      {
        code: ErrorCode.KeyTooLarge,
        field: 'key',
        limit: limits.keyBytesMax,
      },
    )
  })

  it('refuses a value over valueBytesMax with VALUE_TOO_LARGE and allows an empty value', () => {
    const small = tightenLimits({ valueBytesMax: 10 })
    expect(checkPut({ key: b('k'), value: b(''), options: undefined }, small).value).toHaveLength(0)
    expect(checkPut({ key: b('k'), value: b(10), options: undefined }, small).value).toHaveLength(10)
    expect(codeOf(() => checkPut({ key: b('k'), value: b(11), options: undefined }, small))).toEqual({
      code: ErrorCode.ValueTooLarge,
      field: 'value',
      limit: 10,
    })
  })

  it('reads: UNSPECIFIED is linearizable, read levels pass, write levels and unknown numbers do not', () => {
    expect(checkReadOptions(undefined, 0).level).toBe('linearizable')
    expect(checkReadOptions(read(Consistency.CONSISTENCY_UNSPECIFIED), 0).level).toBe('linearizable')
    expect(checkReadOptions(read(Consistency.CONSISTENCY_LINEARIZABLE), 0).level).toBe('linearizable')
    expect(checkReadOptions(read(Consistency.CONSISTENCY_EVENTUAL), 0).level).toBe('eventual')
    for (const c of [5, 6, 7, 8, 99, -1, 2 ** 31 - 1])
      expect(codeOf(() => checkReadOptions(read(c), 0))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        field: 'options.consistency',
      })
  })

  it('writes: UNSPECIFIED is majority, write levels pass, read levels and unknown numbers do not', () => {
    expect(checkWriteOptions(undefined, limits).level).toBe('majority')
    expect(checkWriteOptions(write(Consistency.CONSISTENCY_ALL), limits).level).toBe('all')
    expect(checkWriteOptions(write(Consistency.CONSISTENCY_LEADER), limits).level).toBe('leader')
    for (const c of [1, 2, 3, 4, 8, -1])
      expect(codeOf(() => checkWriteOptions(write(c), limits)).code).toBe('INVALID_ARGUMENT')
  })

  it('passes bounded staleness and the session index of the shard asked about', () => {
    expect(
      checkReadOptions({ consistency: 3, maxStalenessMs: 250, session: undefined, route: undefined }, 0),
    ).toEqual({
      level: 'bounded',
      stalenessMsMax: 250,
    })
    const session = { appliedIndexByShard: { 0: 17, 4: 99 } }
    expect(checkReadOptions({ consistency: 2, maxStalenessMs: 0, session, route: undefined }, 0)).toEqual({
      level: 'session',
      sessionIndex: 17,
    })
    // No entry for the shard (or no token at all): the session has seen nothing there, index 0.
    expect(checkReadOptions({ consistency: 2, maxStalenessMs: 0, session, route: undefined }, 1)).toEqual({
      level: 'session',
      sessionIndex: 0,
    })
    expect(
      checkReadOptions({ consistency: 2, maxStalenessMs: 0, session: undefined, route: undefined }, 1),
    ).toEqual({
      level: 'session',
      sessionIndex: 0,
    })
  })

  it('needs a client_id for a seq, and passes the whole tag for dedup', () => {
    expect(codeOf(() => checkWriteOptions(write(0, '', 5), limits)).field).toBe('options.seq')
    expect(codeOf(() => checkWriteOptions(write(0, '', 0, 3), limits)).field).toBe(
      'options.first_incomplete_seq',
    )
    expect(checkWriteOptions(write(0, 'c1', 5, 3), limits)).toEqual({
      level: 'majority',
      clientId: 'c1',
      seq: 5,
      firstIncompleteSeq: 3,
    })
    // 0 (the proto default) means nothing acknowledged yet.
    expect(checkWriteOptions(write(0, 'c1', 5), limits)).toMatchObject({ firstIncompleteSeq: 0 })
    // A write in flight is itself incomplete.
    expect(codeOf(() => checkWriteOptions(write(0, 'c1', 5, 6), limits))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'options.first_incomplete_seq',
    })
    const long = 'é'.repeat(limits.clientIdBytesMax / 2 + 1)
    expect(codeOf(() => checkWriteOptions(write(0, long, 1), limits))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'options.client_id',
      limit: limits.clientIdBytesMax,
    })
  })

  it('checks every key and value of a batch, by index', () => {
    const ops = [
      { op: { $case: 'put' as const, put: { key: b('a'), value: b('1') } } },
      { op: { $case: 'delete' as const, delete: { key: b(limits.keyBytesMax + 1) } } },
    ]
    expect(codeOf(() => checkBatch({ ops, options: undefined }, limits))).toMatchObject({
      code: 'KEY_TOO_LARGE',
      field: 'ops[1].key',
    })
    expect(codeOf(() => checkBatch({ ops: [{ op: undefined }], options: undefined }, limits)).field).toBe(
      'ops[0]',
    )
    expect(codeOf(() => checkBatch({ ops: [], options: undefined }, limits)).field).toBe('ops')
    const ok = checkBatch(
      {
        ops: [ops[0]!, { op: { $case: 'delete', delete: { key: b('b'), expectedVersion: 3 } } }],
        options: undefined,
      },
      limits,
    )
    expect(ok.ops).toEqual([
      { kind: 'put', key: b('a'), value: b('1') },
      { kind: 'delete', key: b('b'), expectedVersion: 3 },
    ])
  })

  it('bounds a batch by count and by bytes', () => {
    const small = tightenLimits({ batchOpsMax: 2, batchBytesMax: 10 })
    const put = (k: string, v: number) => ({ op: { $case: 'put' as const, put: { key: b(k), value: b(v) } } })
    expect(
      codeOf(() => checkBatch({ ops: [put('a', 1), put('b', 1), put('c', 1)], options: undefined }, small)),
    ).toEqual({ code: 'INVALID_ARGUMENT', field: 'ops', limit: 2 })
    expect(codeOf(() => checkBatch({ ops: [put('a', 5), put('b', 5)], options: undefined }, small))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'ops',
      limit: 10,
    })
    expect(checkBatch({ ops: [put('a', 4), put('b', 4)], options: undefined }, small).ops).toHaveLength(2)
  })

  it('bounds a Multi by count and by the bytes of keys and values, and leaves each op to itself', () => {
    const small = tightenLimits({ batchOpsMax: 3, batchBytesMax: 10 })
    const get = (k: string) => ({ op: { $case: 'get' as const, get: { key: b(k), options: undefined } } })
    const put = (k: string, v: number) => ({
      op: { $case: 'put' as const, put: { key: b(k), value: b(v), options: undefined } },
    })
    const del = (k: string) => ({
      op: { $case: 'delete' as const, delete: { key: b(k), options: undefined } },
    })
    expect(codeOf(() => checkMulti({ ops: [] }, small))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'ops',
      limit: undefined,
    })
    expect(codeOf(() => checkMulti({ ops: [get('a'), get('b'), get('c'), get('d')] }, small))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'ops',
      limit: 3,
    })
    expect(codeOf(() => checkMulti({ ops: [get('aaaa'), put('b', 5), del('cc')] }, small))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'ops.bytes',
      limit: 10,
    })
    // Exactly at both limits; an empty key or an empty op fails that op alone, later.
    expect(() => checkMulti({ ops: [get('aaa'), put('b', 5), del('c')] }, small)).not.toThrow()
    expect(() => checkMulti({ ops: [get(''), { op: undefined }] }, small)).not.toThrow()
  })

  it('bounds BatchGet keys', () => {
    const small = tightenLimits({ batchOpsMax: 2 })
    expect(codeOf(() => checkBatchGet({ keys: [], options: undefined }, small, 0)).field).toBe('keys')
    expect(
      codeOf(() => checkBatchGet({ keys: [b('a'), b('b'), b('c')], options: undefined }, small, 0)).limit,
    ).toBe(2)
    expect(codeOf(() => checkBatchGet({ keys: [b('a'), b('')], options: undefined }, small, 0)).field).toBe(
      'keys[1]',
    )
  })

  it('refuses a scan limit above scanLimitMax rather than clamping; 0 means the maximum', () => {
    const req = (limit: number) => ({ prefix: b(''), cursor: b(''), limit, options: undefined })
    expect(checkScan(req(0), limits, 0).limit).toBe(limits.scanLimitMax)
    expect(checkScan(req(limits.scanLimitMax), limits, 0).limit).toBe(limits.scanLimitMax)
    expect(codeOf(() => checkScan(req(limits.scanLimitMax + 1), limits, 0))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'limit',
      limit: limits.scanLimitMax,
    })
    expect(codeOf(() => checkScan({ ...req(1), prefix: b(limits.keyBytesMax + 1) }, limits, 0)).code).toBe(
      'KEY_TOO_LARGE',
    )
    expect(
      checkScan({ ...req(1), options: read(Consistency.CONSISTENCY_EVENTUAL) }, limits, 0).read.level,
    ).toBe('eventual')
  })

  it('refuses a deadline further than requestDeadlineMsMax; no deadline gets the maximum', () => {
    expect(checkDeadline(Infinity, limits)).toBe(limits.requestDeadlineMsMax)
    expect(checkDeadline(1000, limits)).toBe(1000)
    expect(checkDeadline(-5, limits)).toBe(0)
    expect(codeOf(() => checkDeadline(limits.requestDeadlineMsMax + 1, limits))).toEqual({
      code: 'INVALID_ARGUMENT',
      field: 'deadline',
      limit: limits.requestDeadlineMsMax,
    })
  })
})
