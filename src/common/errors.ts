/**
 * Operating errors with stable codes (STYLE.md 7.4). Codes never change; messages may. Callers
 * and tests match on `code` (or on `name === 'KvError'` across package boundaries), never on text.
 * The mapping to gRPC status lives in server/status.ts (outward) and client/status.ts (inward),
 * both driven by the one table `errorCodeTable` below.
 */
export const ErrorCode = {
  NotLeader: 'NOT_LEADER',
  WrongShard: 'WRONG_SHARD',
  CrossShard: 'CROSS_SHARD',
  NoQuorum: 'NO_QUORUM',
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  Overloaded: 'OVERLOADED',
  ProposalDropped: 'PROPOSAL_DROPPED',
  ShardMoving: 'SHARD_MOVING',
  StalenessBoundExceeded: 'STALENESS_BOUND_EXCEEDED',
  SessionBehind: 'SESSION_BEHIND',
  VersionMismatch: 'VERSION_MISMATCH',
  InvalidArgument: 'INVALID_ARGUMENT',
  KeyTooLarge: 'KEY_TOO_LARGE',
  ValueTooLarge: 'VALUE_TOO_LARGE',
  NotFound: 'NOT_FOUND',
  Cancelled: 'CANCELLED',
  Unavailable: 'UNAVAILABLE',
  /**
   * A write's exactly-once session is not registered on its shard (expired by age, given up under
   * its client's quota, never registered, or another client's): this attempt was NOT applied. The SDK
   * registers a new session for later writes; this one is not retried (it may have applied before
   * the session was lost, so only the application can tell whether to repeat it).
   */
  SessionExpired: 'SESSION_EXPIRED',
  /** The admin call that injects faults, on a node started without --allow-fault-injection. */
  FaultInjectionDisabled: 'FAULT_INJECTION_DISABLED',
  /** A change to a shard's replicas planned against an older configuration (epoch) of the shard. */
  StaleEpoch: 'STALE_EPOCH',
  /** Another change to the shard's replicas is in progress; try again once it is done. */
  ShardBusy: 'SHARD_BUSY',
  /** A move or replica change that would break a rule (details.field names the argument). */
  MoveRefused: 'MOVE_REFUSED',
  /** The call carried no identity this node accepts (no client certificate, no valid token). */
  Unauthenticated: 'UNAUTHENTICATED',
  /** The caller's identity may not make this call (its role, or a claim its certificate does not back). */
  PermissionDenied: 'PERMISSION_DENIED',
  Internal: 'INTERNAL',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

const errorCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode))
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && errorCodes.has(s)
}

/** gRPC status numbers (grpc-js constants.ts `Status`), repeated here so common/ stays free of grpc. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus]

/** What a client may do with an error: retry after refreshing its route, retry with backoff, or not at all. */
export const RetryPolicy = {
  RefreshRoute: 'refresh-route',
  Backoff: 'backoff',
  OtherReplica: 'other-replica',
  Never: 'never',
} as const
export type RetryPolicy = (typeof RetryPolicy)[keyof typeof RetryPolicy]

/**
 * The one table (STYLE.md 7.4): code -> gRPC status and retry policy. `safeForWrites` says
 * whether a write that failed with this code certainly did not happen, so that a retry cannot
 * apply it twice even without the dedup table.
 */
export const errorCodeTable: Readonly<
  Record<
    ErrorCode,
    { readonly status: GrpcStatus; readonly retry: RetryPolicy; readonly writeNotApplied: boolean }
  >
> = {
  NOT_LEADER: {
    status: GrpcStatus.FAILED_PRECONDITION,
    retry: RetryPolicy.RefreshRoute,
    writeNotApplied: true,
  },
  WRONG_SHARD: {
    status: GrpcStatus.FAILED_PRECONDITION,
    retry: RetryPolicy.RefreshRoute,
    writeNotApplied: true,
  },
  CROSS_SHARD: { status: GrpcStatus.INVALID_ARGUMENT, retry: RetryPolicy.Never, writeNotApplied: true },
  NO_QUORUM: { status: GrpcStatus.UNAVAILABLE, retry: RetryPolicy.Backoff, writeNotApplied: false },
  PROPOSAL_DROPPED: { status: GrpcStatus.UNAVAILABLE, retry: RetryPolicy.Backoff, writeNotApplied: false },
  SHARD_MOVING: { status: GrpcStatus.UNAVAILABLE, retry: RetryPolicy.Backoff, writeNotApplied: true },
  UNAVAILABLE: { status: GrpcStatus.UNAVAILABLE, retry: RetryPolicy.Backoff, writeNotApplied: false },
  SESSION_BEHIND: { status: GrpcStatus.UNAVAILABLE, retry: RetryPolicy.OtherReplica, writeNotApplied: true },
  STALENESS_BOUND_EXCEEDED: {
    status: GrpcStatus.UNAVAILABLE,
    retry: RetryPolicy.OtherReplica,
    writeNotApplied: true,
  },
  OVERLOADED: { status: GrpcStatus.RESOURCE_EXHAUSTED, retry: RetryPolicy.Backoff, writeNotApplied: true },
  DEADLINE_EXCEEDED: {
    status: GrpcStatus.DEADLINE_EXCEEDED,
    retry: RetryPolicy.Never,
    writeNotApplied: false,
  },
  CANCELLED: { status: GrpcStatus.CANCELLED, retry: RetryPolicy.Never, writeNotApplied: false },
  VERSION_MISMATCH: { status: GrpcStatus.ABORTED, retry: RetryPolicy.Never, writeNotApplied: true },
  INVALID_ARGUMENT: { status: GrpcStatus.INVALID_ARGUMENT, retry: RetryPolicy.Never, writeNotApplied: true },
  KEY_TOO_LARGE: { status: GrpcStatus.INVALID_ARGUMENT, retry: RetryPolicy.Never, writeNotApplied: true },
  VALUE_TOO_LARGE: { status: GrpcStatus.INVALID_ARGUMENT, retry: RetryPolicy.Never, writeNotApplied: true },
  NOT_FOUND: { status: GrpcStatus.NOT_FOUND, retry: RetryPolicy.Never, writeNotApplied: true },
  // This attempt was not applied, but an earlier attempt of the same write may have been.
  SESSION_EXPIRED: {
    status: GrpcStatus.FAILED_PRECONDITION,
    retry: RetryPolicy.Never,
    writeNotApplied: false,
  },
  FAULT_INJECTION_DISABLED: {
    status: GrpcStatus.FAILED_PRECONDITION,
    retry: RetryPolicy.Never,
    writeNotApplied: true,
  },
  STALE_EPOCH: { status: GrpcStatus.FAILED_PRECONDITION, retry: RetryPolicy.Never, writeNotApplied: true },
  SHARD_BUSY: { status: GrpcStatus.FAILED_PRECONDITION, retry: RetryPolicy.Backoff, writeNotApplied: true },
  MOVE_REFUSED: { status: GrpcStatus.FAILED_PRECONDITION, retry: RetryPolicy.Never, writeNotApplied: true },
  UNAUTHENTICATED: { status: GrpcStatus.UNAUTHENTICATED, retry: RetryPolicy.Never, writeNotApplied: true },
  PERMISSION_DENIED: {
    status: GrpcStatus.PERMISSION_DENIED,
    retry: RetryPolicy.Never,
    writeNotApplied: true,
  },
  INTERNAL: { status: GrpcStatus.INTERNAL, retry: RetryPolicy.Never, writeNotApplied: false },
}

/**
 * Trailing metadata keys that carry an error across gRPC (the wire contract, kv.proto header):
 * the stable code, and the ErrorDetails fields. server/status.ts writes them, client/status.ts
 * reads them.
 */
export const errorMetadataKeys = {
  code: 'ringkv-code',
  leader: 'ringkv-leader',
  epoch: 'ringkv-epoch',
  shard: 'ringkv-shard',
  currentVersion: 'ringkv-current-version',
  limit: 'ringkv-limit',
  field: 'ringkv-field',
  /** With WRONG_SHARD: the current ShardDescriptor (kv.proto), binary. */
  descriptor: 'ringkv-descriptor-bin',
} as const

/**
 * The current descriptor of a shard, as a WRONG_SHARD error carries it so a client repairs its
 * shard map in one step (kv.proto ShardDescriptor).
 */
export interface ShardDescriptorDetail {
  readonly shardId: number
  /** [hashStart, hashEnd) of the 64-bit ring; hashEnd may be 2^64. */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** Preference order; the first is the preferred leader. */
  readonly replicas: readonly number[]
  /** 0 = unknown. */
  readonly leaderHint: number
  readonly leaderTerm: number
  readonly epoch: number
}

/** Structured details that travel with an error (as gRPC trailing metadata `ringkv-*`). */
export interface ErrorDetails {
  readonly leaderHint?: number
  readonly shardMapEpoch?: number
  readonly shardId?: number
  readonly currentVersion?: number
  readonly limit?: number
  readonly field?: string
  readonly descriptor?: ShardDescriptorDetail
}

export interface KvErrorOptions extends ErrorOptions {
  readonly details?: ErrorDetails
}

export class KvError extends Error {
  override readonly name = 'KvError'
  readonly code: ErrorCode
  readonly details: ErrorDetails | undefined

  constructor(code: ErrorCode, message: string, options?: KvErrorOptions) {
    super(message, options)
    this.code = code
    this.details = options?.details
  }
}

export function isKvError(err: unknown): err is KvError {
  return (
    err instanceof KvError ||
    (err instanceof Error && err.name === 'KvError' && isErrorCode((err as KvError).code))
  )
}

export function isKvErrorWithCode(err: unknown, code: ErrorCode): err is KvError {
  return isKvError(err) && err.code === code
}
