/**
 * Input validation for the client API: every request is checked here BEFORE anything reaches the
 * shard, and turned from its proto shape into the shard's types. A failure is a KvError with a
 * stable code and `details.field` naming the offending field (and `details.limit` for limits):
 *
 * | input                                              | code             |
 * |----------------------------------------------------|------------------|
 * | empty key (Get/Put/Delete/BatchGet/Batch)          | INVALID_ARGUMENT |
 * | key (or scan prefix) longer than keyBytesMax       | KEY_TOO_LARGE    |
 * | value longer than valueBytesMax                    | VALUE_TOO_LARGE  |
 * | unknown Consistency number                         | INVALID_ARGUMENT |
 * | a write level on a read, a read level on a write   | INVALID_ARGUMENT |
 * | session token that is not a safe integer index     | INVALID_ARGUMENT |
 * | seq without client_id; client_id > clientIdBytesMax| INVALID_ARGUMENT |
 * | first_incomplete_seq above seq, or without client_id| INVALID_ARGUMENT |
 * | no keys / no ops, more than batchOpsMax of them    | INVALID_ARGUMENT |
 * | keys and values of a batch above batchBytesMax     | INVALID_ARGUMENT |
 * | a batch op with neither put nor delete             | INVALID_ARGUMENT |
 * | a Multi: no ops, more than batchOpsMax of them     | INVALID_ARGUMENT (field ops)       |
 * | a Multi: keys and values above batchBytesMax       | INVALID_ARGUMENT (field ops.bytes) |
 * | a Multi op with neither get, put nor delete        | INVALID_ARGUMENT, that op only     |
 * | scan limit above scanLimitMax (refused, not clamped: a silently shorter scan would look
 * |   finished to a careless client)                   | INVALID_ARGUMENT |
 * | a deadline further away than requestDeadlineMsMax  | INVALID_ARGUMENT |
 *
 * UNSPECIFIED consistency means linearizable for reads and majority for writes. A session token with
 * no entry for the shard (or no token) means session index 0: nothing of that shard was seen yet.
 * Scan limit 0
 * means "up to scanLimitMax" (the stream is paged and the cursor resumes it).
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { LogIndex } from '../common/ids.ts'
import type { Limits } from '../common/limits.ts'
import {
  Consistency,
  type BatchGetRequest,
  type BatchRequest,
  type DeleteRequest,
  type GetRequest,
  type MultiRequest,
  type PutRequest,
  type RegisterSessionRequest,
  type ReadOptions as ProtoReadOptions,
  type ScanRequest,
  type WriteOptions as ProtoWriteOptions,
} from '../gen/ringkv/v1/kv.ts'
import { ReadLevel, WriteLevel, type BatchOp, type ReadOptions, type WriteOptions } from '../shard/index.ts'

/** Read options without the signal (added by the handler). */
export type ReadSpec = Omit<ReadOptions, 'signal'>
/** Write options without the signal. */
export type WriteSpec = Omit<WriteOptions, 'signal'>

function invalid(field: string, message: string, limit?: number): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, {
    details: limit === undefined ? { field } : { field, limit },
  })
}

/** A key: non-empty, at most keyBytesMax. */
export function checkKey(key: Uint8Array, limits: Readonly<Limits>, field = 'key'): Uint8Array {
  if (key.length === 0) throw invalid(field, `${field} is empty`)
  if (key.length > limits.keyBytesMax)
    throw new KvError(
      ErrorCode.KeyTooLarge,
      `${field} is ${key.length} bytes, more than ${limits.keyBytesMax}`,
      {
        details: { field, limit: limits.keyBytesMax },
      },
    )
  return key
}

export function checkValue(value: Uint8Array, limits: Readonly<Limits>, field = 'value'): Uint8Array {
  if (value.length > limits.valueBytesMax)
    throw new KvError(
      ErrorCode.ValueTooLarge,
      `${field} is ${value.length} bytes, more than ${limits.valueBytesMax}`,
      { details: { field, limit: limits.valueBytesMax } },
    )
  return value
}

const readLevelOf: Partial<Record<number, ReadLevel>> = {
  [Consistency.CONSISTENCY_UNSPECIFIED]: ReadLevel.Linearizable,
  [Consistency.CONSISTENCY_LINEARIZABLE]: ReadLevel.Linearizable,
  [Consistency.CONSISTENCY_SESSION]: ReadLevel.Session,
  [Consistency.CONSISTENCY_BOUNDED]: ReadLevel.Bounded,
  [Consistency.CONSISTENCY_EVENTUAL]: ReadLevel.Eventual,
}
const writeLevelOf: Partial<Record<number, WriteLevel>> = {
  [Consistency.CONSISTENCY_UNSPECIFIED]: WriteLevel.Majority,
  [Consistency.CONSISTENCY_MAJORITY]: WriteLevel.Majority,
  [Consistency.CONSISTENCY_ALL]: WriteLevel.All,
  [Consistency.CONSISTENCY_LEADER]: WriteLevel.Leader,
}

/** The proto enum value delivered for a shard level (for receipts). */
export const consistencyOfLevel: Readonly<Record<ReadLevel | WriteLevel, Consistency>> = {
  [ReadLevel.Linearizable]: Consistency.CONSISTENCY_LINEARIZABLE,
  [ReadLevel.Session]: Consistency.CONSISTENCY_SESSION,
  [ReadLevel.Bounded]: Consistency.CONSISTENCY_BOUNDED,
  [ReadLevel.Eventual]: Consistency.CONSISTENCY_EVENTUAL,
  [WriteLevel.Majority]: Consistency.CONSISTENCY_MAJORITY,
  [WriteLevel.All]: Consistency.CONSISTENCY_ALL,
  [WriteLevel.Leader]: Consistency.CONSISTENCY_LEADER,
}

function isKnownConsistency(n: number): boolean {
  return readLevelOf[n] !== undefined || writeLevelOf[n] !== undefined
}

/** Read options of a request; `shardId` picks the session token entry that applies. */
export function checkReadOptions(options: ProtoReadOptions | undefined, shardId: number): ReadSpec {
  const consistency = options?.consistency ?? Consistency.CONSISTENCY_UNSPECIFIED
  const level = readLevelOf[consistency]
  if (level === undefined) {
    if (isKnownConsistency(consistency))
      throw invalid(
        'options.consistency',
        `consistency ${Consistency[consistency]} is a write level, not a read level`,
      )
    throw invalid('options.consistency', `unknown consistency ${consistency}`)
  }
  let spec: ReadSpec = { level }
  if (level === ReadLevel.Bounded) spec = { ...spec, stalenessMsMax: options?.maxStalenessMs ?? 0 }
  if (level === ReadLevel.Session) {
    const tokens = options?.session?.appliedIndexByShard ?? {}
    for (const [shard, index] of Object.entries(tokens))
      if (!Number.isSafeInteger(index) || index < 0)
        throw invalid('options.session', `session token of shard ${shard} is not a valid index`)
    // No entry for this shard: the session has seen nothing of it yet, so any replica will do.
    spec = { ...spec, sessionIndex: LogIndex(tokens[shardId] ?? 0) }
  }
  return spec
}

export function checkWriteOptions(
  options: ProtoWriteOptions | undefined,
  limits: Readonly<Limits>,
): WriteSpec {
  const consistency = options?.consistency ?? Consistency.CONSISTENCY_UNSPECIFIED
  const level = writeLevelOf[consistency]
  if (level === undefined) {
    if (isKnownConsistency(consistency))
      throw invalid(
        'options.consistency',
        `consistency ${Consistency[consistency]} is a read level, not a write level`,
      )
    throw invalid('options.consistency', `unknown consistency ${consistency}`)
  }
  const clientId = options?.clientId ?? ''
  const seq = options?.seq ?? 0
  const firstIncompleteSeq = options?.firstIncompleteSeq ?? 0
  if (clientId === '') {
    if (seq !== 0) throw invalid('options.seq', 'seq needs a client_id')
    if (firstIncompleteSeq !== 0)
      throw invalid('options.first_incomplete_seq', 'first_incomplete_seq needs a client_id')
    return { level }
  }
  if (Buffer.byteLength(clientId, 'utf8') > limits.clientIdBytesMax)
    throw invalid(
      'options.client_id',
      `client_id is longer than ${limits.clientIdBytesMax} bytes`,
      limits.clientIdBytesMax,
    )
  if (!Number.isSafeInteger(seq) || seq < 0) throw invalid('options.seq', 'seq is not a safe integer')
  if (!Number.isSafeInteger(firstIncompleteSeq) || firstIncompleteSeq < 0)
    throw invalid('options.first_incomplete_seq', 'first_incomplete_seq is not a safe integer')
  if (firstIncompleteSeq > seq)
    throw invalid(
      'options.first_incomplete_seq',
      `first_incomplete_seq ${firstIncompleteSeq} is above seq ${seq}: a write in flight is itself incomplete`,
    )
  return { level, clientId, seq, firstIncompleteSeq }
}

function checkExpectedVersion(v: number | undefined, field: string): number | undefined {
  if (v === undefined) return undefined
  if (!Number.isSafeInteger(v) || v < 0) throw invalid(field, `${field} is not a valid version`)
  return v
}

export interface CheckedGet {
  readonly key: Uint8Array
  readonly read: ReadSpec
}
export function checkGet(req: GetRequest, limits: Readonly<Limits>, shardId: number): CheckedGet {
  return { key: checkKey(req.key, limits), read: checkReadOptions(req.options, shardId) }
}

export interface CheckedPut {
  readonly key: Uint8Array
  readonly value: Uint8Array
  readonly expectedVersion: number | undefined
  readonly write: WriteSpec
}
export function checkPut(req: PutRequest, limits: Readonly<Limits>): CheckedPut {
  return {
    key: checkKey(req.key, limits),
    value: checkValue(req.value, limits),
    expectedVersion: checkExpectedVersion(req.expectedVersion, 'expected_version'),
    write: checkWriteOptions(req.options, limits),
  }
}

export interface CheckedDelete {
  readonly key: Uint8Array
  readonly expectedVersion: number | undefined
  readonly write: WriteSpec
}
export function checkDelete(req: DeleteRequest, limits: Readonly<Limits>): CheckedDelete {
  return {
    key: checkKey(req.key, limits),
    expectedVersion: checkExpectedVersion(req.expectedVersion, 'expected_version'),
    write: checkWriteOptions(req.options, limits),
  }
}

export interface CheckedBatchGet {
  readonly keys: readonly Uint8Array[]
  readonly read: ReadSpec
}
export function checkBatchGet(
  req: BatchGetRequest,
  limits: Readonly<Limits>,
  shardId: number,
): CheckedBatchGet {
  if (req.keys.length === 0) throw invalid('keys', 'no keys')
  if (req.keys.length > limits.batchOpsMax)
    throw invalid('keys', `${req.keys.length} keys, more than ${limits.batchOpsMax}`, limits.batchOpsMax)
  req.keys.forEach((key, i) => checkKey(key, limits, `keys[${i}]`))
  return { keys: req.keys, read: checkReadOptions(req.options, shardId) }
}

export interface CheckedBatch {
  readonly ops: readonly BatchOp[]
  readonly write: WriteSpec
}
export function checkBatch(req: BatchRequest, limits: Readonly<Limits>): CheckedBatch {
  if (req.ops.length === 0) throw invalid('ops', 'no operations')
  if (req.ops.length > limits.batchOpsMax)
    throw invalid('ops', `${req.ops.length} operations, more than ${limits.batchOpsMax}`, limits.batchOpsMax)
  let bytes = 0
  const ops = req.ops.map((o, i): BatchOp => {
    const op = o.op
    if (op === undefined) throw invalid(`ops[${i}]`, `ops[${i}] is neither put nor delete`)
    if (op.$case === 'put') {
      const key = checkKey(op.put.key, limits, `ops[${i}].key`)
      const value = checkValue(op.put.value, limits, `ops[${i}].value`)
      bytes += key.length + value.length
      const expectedVersion = checkExpectedVersion(op.put.expectedVersion, `ops[${i}].expected_version`)
      return expectedVersion === undefined
        ? { kind: 'put', key, value }
        : { kind: 'put', key, value, expectedVersion }
    }
    const key = checkKey(op.delete.key, limits, `ops[${i}].key`)
    bytes += key.length
    const expectedVersion = checkExpectedVersion(op.delete.expectedVersion, `ops[${i}].expected_version`)
    return expectedVersion === undefined ? { kind: 'delete', key } : { kind: 'delete', key, expectedVersion }
  })
  if (bytes > limits.batchBytesMax)
    throw invalid(
      'ops',
      `batch holds ${bytes} bytes, more than ${limits.batchBytesMax}`,
      limits.batchBytesMax,
    )
  return { ops, write: checkWriteOptions(req.options, limits) }
}

/**
 * The bounds of a Multi call as a whole: 1..batchOpsMax ops holding at most batchBytesMax bytes of
 * keys and values. Each op is checked on its own (checkGet/checkPut/checkDelete) when it runs, and
 * a bad op fails alone.
 */
export function checkMulti(req: MultiRequest, limits: Readonly<Limits>): void {
  if (req.ops.length === 0) throw invalid('ops', 'no operations')
  if (req.ops.length > limits.batchOpsMax)
    throw invalid('ops', `${req.ops.length} operations, more than ${limits.batchOpsMax}`, limits.batchOpsMax)
  let bytes = 0
  for (const { op } of req.ops) {
    if (op === undefined) continue
    if (op.$case === 'get') bytes += op.get.key.length
    else if (op.$case === 'put') bytes += op.put.key.length + op.put.value.length
    else bytes += op.delete.key.length
  }
  if (bytes > limits.batchBytesMax)
    throw invalid(
      'ops.bytes',
      `the operations hold ${bytes} bytes, more than ${limits.batchBytesMax}`,
      limits.batchBytesMax,
    )
}

export interface CheckedScan {
  readonly prefix: Uint8Array
  /** Entries in total, 1..scanLimitMax. */
  readonly limit: number
  readonly read: ReadSpec
}
/** The cursor is decoded separately (cursor.ts), since it needs the cluster id. */
export function checkScan(req: ScanRequest, limits: Readonly<Limits>, shardId: number): CheckedScan {
  if (req.prefix.length > limits.keyBytesMax)
    throw new KvError(
      ErrorCode.KeyTooLarge,
      `prefix is ${req.prefix.length} bytes, more than ${limits.keyBytesMax}`,
      {
        details: { field: 'prefix', limit: limits.keyBytesMax },
      },
    )
  if (req.limit > limits.scanLimitMax)
    throw invalid('limit', `scan limit ${req.limit} is more than ${limits.scanLimitMax}`, limits.scanLimitMax)
  return {
    prefix: req.prefix,
    limit: req.limit === 0 ? limits.scanLimitMax : req.limit,
    read: checkReadOptions(req.options, shardId),
  }
}

export interface CheckedRegisterSession {
  readonly clientId: string
  readonly key: Uint8Array
  readonly floor: number
}
export function checkRegisterSession(
  req: RegisterSessionRequest,
  limits: Readonly<Limits>,
): CheckedRegisterSession {
  const clientId = req.clientId
  if (clientId === '' || Buffer.byteLength(clientId, 'utf8') > limits.clientIdBytesMax)
    throw invalid(
      'client_id',
      `client_id must be 1..${limits.clientIdBytesMax} bytes`,
      limits.clientIdBytesMax,
    )
  if (!Number.isSafeInteger(req.floor) || req.floor < 0) throw invalid('floor', 'floor is not a safe integer')
  return { clientId, key: checkKey(req.key, limits), floor: req.floor }
}
