/**
 * The inward boundary of the error table (STYLE.md 7.4): a gRPC ServiceError plus its trailing
 * metadata becomes a KvError with a stable code and structured details. It mirrors
 * server/status.ts, which maps outward from the same `errorCodeTable`.
 *
 * - A status carrying `ringkv-code` is the server speaking: the code is taken as given, and the
 *   `ringkv-*` metadata becomes `details`.
 * - An op of a Multi call fails with an OpError: the same code and details as fields
 *   (`kvErrorFromOpError`).
 * - WRONG_SHARD carries the current ShardDescriptor, binary, in `ringkv-descriptor-bin` (a Multi
 *   op: `OpError.descriptor`); it becomes `details.descriptor`, checked like every wire input (a
 *   malformed one is dropped, and the error still says WRONG_SHARD).
 * - A bare status comes from the transport or grpc-js itself: UNAVAILABLE (no connection, the
 *   connection dropped) -> UNAVAILABLE, DEADLINE_EXCEEDED -> DEADLINE_EXCEEDED, and so on.
 */
import type { Metadata, ServiceError } from '@grpc/grpc-js'
import { DeadlineError } from '../common/clock.ts'
import {
  errorMetadataKeys,
  ErrorCode,
  GrpcStatus,
  KvError,
  isErrorCode,
  isKvError,
  type ErrorDetails,
  type ShardDescriptorDetail,
} from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import { ShardDescriptor, type OpError } from '../gen/ringkv/v1/kv.ts'
import { decodeDescriptor } from '../routing/index.ts'

/** Trailing metadata keys of the wire contract (kv.proto header). */
export const MetadataKey = errorMetadataKeys

/** The code a bare gRPC status (one without `ringkv-code`) stands for. */
function codeForBareStatus(status: number): ErrorCode {
  switch (status) {
    case GrpcStatus.UNAVAILABLE:
      return ErrorCode.Unavailable
    case GrpcStatus.DEADLINE_EXCEEDED:
      return ErrorCode.DeadlineExceeded
    case GrpcStatus.CANCELLED:
      return ErrorCode.Cancelled
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
    // grpc-js answers RESOURCE_EXHAUSTED by itself for a message above the size limit; a server
    // that is overloaded says so with ringkv-code OVERLOADED.
    // falls through
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return ErrorCode.InvalidArgument
    case GrpcStatus.NOT_FOUND:
      return ErrorCode.NotFound
    // A proxy or a server that refuses before ringkv's own checks run.
    case GrpcStatus.UNAUTHENTICATED:
      return ErrorCode.Unauthenticated
    case GrpcStatus.PERMISSION_DENIED:
      return ErrorCode.PermissionDenied
    default:
      return ErrorCode.Internal
  }
}

function firstString(metadata: Metadata | undefined, key: string): string | undefined {
  const values = metadata?.get(key)
  const first = values?.[0]
  if (first === undefined) return undefined
  return typeof first === 'string' ? first : first.toString('utf8')
}

function uintFrom(metadata: Metadata | undefined, key: string): number | undefined {
  const text = firstString(metadata, key)
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined
  const n = Number(text)
  return isSafeUint(n) ? n : undefined
}

/** The binary ShardDescriptor of `ringkv-descriptor-bin`, decoded and checked. */
function descriptorFrom(metadata: Metadata | undefined): ShardDescriptorDetail | undefined {
  const value = metadata?.get(MetadataKey.descriptor)[0]
  if (value === undefined || typeof value === 'string') return undefined
  try {
    const decoded = decodeDescriptor(ShardDescriptor.decode(value))
    return decoded.ok ? decoded.value : undefined
  } catch {
    // Not a descriptor (or a uint64 above 2^53): the error stands without it.
    return undefined
  }
}

/** The `ringkv-*` details carried by `metadata` (absent fields stay absent). */
export function detailsFromMetadata(metadata: Metadata | undefined): ErrorDetails {
  const descriptor = descriptorFrom(metadata)
  const leaderHint = uintFrom(metadata, MetadataKey.leader)
  const shardMapEpoch = uintFrom(metadata, MetadataKey.epoch)
  const shardId = uintFrom(metadata, MetadataKey.shard)
  const currentVersion = uintFrom(metadata, MetadataKey.currentVersion)
  const limit = uintFrom(metadata, MetadataKey.limit)
  const field = firstString(metadata, MetadataKey.field)
  return {
    ...(leaderHint !== undefined && leaderHint > 0 ? { leaderHint } : {}),
    ...(shardMapEpoch !== undefined ? { shardMapEpoch } : {}),
    ...(shardId !== undefined ? { shardId } : {}),
    ...(currentVersion !== undefined ? { currentVersion } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(field !== undefined ? { field } : {}),
    ...(descriptor !== undefined ? { descriptor } : {}),
  }
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === 'number'
}

/**
 * Turns whatever a gRPC call failed with into a KvError. `signal` is the call's abort signal: a
 * call we cancelled ourselves reports CANCELLED from grpc-js, and the signal's reason tells
 * whether it was the deadline (DEADLINE_EXCEEDED) or the caller (CANCELLED). A bare CANCELLED
 * while `signal` is live was not ours: the node or the connection dropped the call (a node shut
 * down under an open connection resets its streams so), which is UNAVAILABLE: the node is gone,
 * and a write may or may not have applied.
 */
export function kvErrorFromGrpc(err: unknown, signal?: AbortSignal): KvError {
  if (signal?.aborted === true) return abortError(signal, err)
  if (isKvError(err)) return err
  if (!isServiceError(err)) {
    const message = err instanceof Error ? err.message : String(err)
    return new KvError(ErrorCode.Internal, `client: ${message}`, { cause: err })
  }
  // grpc-js appends an empty "Resolution note:" to connection errors; it says nothing.
  const message = (err.details !== '' ? err.details : err.message).replace(/\s*Resolution note:\s*$/, '')
  const wireCode = firstString(err.metadata, MetadataKey.code)
  const code = isErrorCode(wireCode)
    ? wireCode
    : err.code === GrpcStatus.CANCELLED && signal !== undefined
      ? ErrorCode.Unavailable
      : codeForBareStatus(err.code)
  const details = detailsFromMetadata(err.metadata)
  return new KvError(
    code,
    message,
    Object.keys(details).length > 0 ? { details, cause: err } : { cause: err },
  )
}

/**
 * The KvError of one failed op of a Multi call: the OpError fields are the same code, message and
 * details a whole call carries as status and `ringkv-*` trailers, read the same way (a code this
 * SDK does not know falls back on the status number, as for a bare status).
 */
export function kvErrorFromOpError(wire: OpError): KvError {
  const code = isErrorCode(wire.code) ? wire.code : codeForBareStatus(wire.status)
  const uint = (n: number | undefined): number | undefined =>
    n !== undefined && isSafeUint(n) ? n : undefined
  const leaderHint = uint(wire.leaderHint)
  const shardMapEpoch = uint(wire.shardMapEpoch)
  const shardId = uint(wire.shardId)
  const currentVersion = uint(wire.currentVersion)
  const limit = uint(wire.limit)
  const decoded = wire.descriptor === undefined ? undefined : decodeDescriptor(wire.descriptor)
  const descriptor = decoded?.ok === true ? decoded.value : undefined
  const details: ErrorDetails = {
    ...(leaderHint !== undefined && leaderHint > 0 ? { leaderHint } : {}),
    ...(shardMapEpoch !== undefined ? { shardMapEpoch } : {}),
    ...(shardId !== undefined ? { shardId } : {}),
    ...(currentVersion !== undefined ? { currentVersion } : {}),
    ...(limit !== undefined ? { limit } : {}),
    ...(wire.field !== undefined ? { field: wire.field } : {}),
    ...(descriptor !== undefined ? { descriptor } : {}),
  }
  return new KvError(code, wire.message, Object.keys(details).length > 0 ? { details } : {})
}

/** The KvError for a call stopped by `signal`: DEADLINE_EXCEEDED for our deadline, else CANCELLED. */
export function abortError(signal: AbortSignal, cause?: unknown): KvError {
  if (signal.reason instanceof DeadlineError) {
    return new KvError(ErrorCode.DeadlineExceeded, 'deadline exceeded', { cause })
  }
  if (isKvError(signal.reason)) return signal.reason
  return new KvError(ErrorCode.Cancelled, 'cancelled by the caller', { cause: signal.reason ?? cause })
}
