/**
 * The outward error boundary (STYLE.md 7.4): THE only server file that knows gRPC status codes.
 *
 * A KvError becomes the gRPC status of its code in `errorCodeTable`, with the message as status
 * details and trailing metadata that the SDK (client/status.ts) maps back:
 *
 * | metadata key             | from                         |
 * |--------------------------|------------------------------|
 * | `ringkv-code`            | `err.code` (always)          |
 * | `ringkv-leader`          | `details.leaderHint`         |
 * | `ringkv-epoch`           | `details.shardMapEpoch`      |
 * | `ringkv-shard`           | `details.shardId`            |
 * | `ringkv-current-version` | `details.currentVersion`     |
 * | `ringkv-limit`           | `details.limit`              |
 * | `ringkv-field`           | `details.field`              |
 * | `ringkv-descriptor-bin`  | `details.descriptor` (binary ShardDescriptor) |
 *
 * The ops of a Multi call fail one by one: each op's error becomes an OpError (toOpError) with the
 * same code, message and details, as fields of the answer instead of status and trailers.
 *
 * An AssertionError is a bug and is rethrown (the caller makes it fatal). A DeadlineError (the
 * abort reason of common/clock.ts `deadlineSignal`) is DEADLINE_EXCEEDED and an AbortError is
 * CANCELLED. Anything else is INTERNAL: logged with a fresh error id, and only that id goes to
 * the client (never the message of an unknown error, which may carry user data).
 */
import { randomBytes } from 'node:crypto'
import type { status as GrpcCode } from '@grpc/grpc-js'
import { Metadata, type StatusObject } from '@grpc/grpc-js'
import { AssertionError } from '../common/assert.ts'
import {
  ErrorCode,
  KvError,
  errorCodeTable,
  errorMetadataKeys,
  isKvError,
  type ErrorDetails,
} from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { ShardDescriptor, type OpError } from '../gen/ringkv/v1/kv.ts'
import { shardToProto } from '../router/map-proto.ts'

export const metadataKeys = errorMetadataKeys

const detailKeys: readonly (readonly [Exclude<keyof ErrorDetails, 'descriptor'>, string])[] = [
  ['leaderHint', metadataKeys.leader],
  ['shardMapEpoch', metadataKeys.epoch],
  ['shardId', metadataKeys.shard],
  ['currentVersion', metadataKeys.currentVersion],
  ['limit', metadataKeys.limit],
  ['field', metadataKeys.field],
]

/** The status of a KvError: table code, message, ringkv-* trailers. */
export function kvErrorToStatus(err: KvError): StatusObject {
  const metadata = new Metadata()
  metadata.set(metadataKeys.code, err.code)
  for (const [detail, key] of detailKeys) {
    const value = err.details?.[detail]
    if (value !== undefined) metadata.set(key, String(value))
  }
  const descriptor = err.details?.descriptor
  if (descriptor !== undefined)
    metadata.set(
      metadataKeys.descriptor,
      Buffer.from(ShardDescriptor.encode(descriptorToProto(descriptor)).finish()),
    )
  return { code: errorCodeTable[err.code].status as number as GrpcCode, details: err.message, metadata }
}

/**
 * Any thrown value -> the status to send. Rethrows AssertionError. `log` receives unknown errors
 * (at error level, with the id the client sees).
 */
export function toStatus(err: unknown, log: Logger): StatusObject {
  return kvErrorToStatus(toKvError(err, log))
}

/**
 * Any thrown value -> the KvError the client is told about: itself, DEADLINE_EXCEEDED, CANCELLED,
 * or INTERNAL with a fresh error id (the unknown error is logged with it). Rethrows AssertionError.
 */
export function toKvError(err: unknown, log: Logger): KvError {
  if (err instanceof AssertionError) throw err
  const kvError = asKvError(err)
  if (kvError !== undefined) return kvError
  const errorId = randomBytes(8).toString('hex')
  log.error({ err, errorId }, 'internal error')
  return new KvError(ErrorCode.Internal, `internal error (id ${errorId})`)
}

/**
 * The error of one op of a Multi call: the same code, message and details a whole call failing
 * with `err` sends as its status and `ringkv-*` trailers (toStatus), as OpError fields, plus the
 * status number of the code. Rethrows AssertionError.
 */
export function toOpError(err: unknown, log: Logger): OpError {
  const kvError = toKvError(err, log)
  const details = kvError.details
  const opError: OpError = {
    code: kvError.code,
    status: errorCodeTable[kvError.code].status,
    message: kvError.message,
    descriptor: undefined,
  }
  for (const [detail] of detailKeys) {
    const value = details?.[detail]
    if (value === undefined) continue
    if (detail === 'field') opError.field = String(value)
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) opError[detail] = value
  }
  if (details?.descriptor !== undefined) opError.descriptor = descriptorToProto(details.descriptor)
  return opError
}

/** A shard descriptor on the wire (kv.proto ShardDescriptor). */
export const descriptorToProto = shardToProto

/** The operating-error reading of `err`, or undefined when it is not one. */
export function asKvError(err: unknown): KvError | undefined {
  if (isKvError(err)) return err
  if (err instanceof Error && err.name === 'DeadlineError')
    return new KvError(ErrorCode.DeadlineExceeded, 'deadline exceeded', { cause: err })
  if (err instanceof Error && err.name === 'AbortError')
    return new KvError(ErrorCode.Cancelled, 'cancelled', { cause: err })
  return undefined
}

/** The status sent for a call that hit a broken invariant, just before the process stops. */
export function internalStatus(): StatusObject {
  return kvErrorToStatus(new KvError(ErrorCode.Internal, 'internal error'))
}

/** Status code of a successful call, for metrics labels. */
export const okCode = 'OK'
