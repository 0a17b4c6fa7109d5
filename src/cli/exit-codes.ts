/**
 * kvctl exit codes, in the spirit of etcdctl's: a script can tell "try again later" (3) from
 * "don't know if it happened" (4) from "lost the race" (6) without parsing text.
 */
import { ErrorCode, isKvError } from '../common/errors.ts'

export const ExitCode = {
  /** Success. */
  Ok: 0,
  /** Any other failure (an internal error, a cancelled call). */
  Error: 1,
  /** Bad arguments: usage errors, INVALID_ARGUMENT, KEY_TOO_LARGE, VALUE_TOO_LARGE. */
  Usage: 2,
  /** No answer: no endpoint reachable, no quorum, or a read that ran out of time. */
  Unavailable: 3,
  /** A write ran out of time: it may or may not have been applied. Read the key to find out. */
  OutcomeUnknown: 4,
  /** `get`: the key does not exist. */
  NotFound: 5,
  /** Compare-and-set failed: the key's version was not --expected-version. */
  VersionMismatch: 6,
  /** A change to the cluster was refused: it breaks a rule (MOVE_REFUSED) or was planned on a stale view (STALE_EPOCH). */
  Refused: 7,
  /** Refused: no identity the node accepts (UNAUTHENTICATED), or not allowed (PERMISSION_DENIED). */
  AccessDenied: 8,
  /** `status`: every shard has a leader, but a node is down or a shard is short of replicas. */
  Degraded: 9,
  /** `cap-demo`: a consistency level broke its promise under the partition (docs/consistency.md). */
  PromiseBroken: 10,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** The exit-code section of `kvctl --help`. */
export const exitCodesHelp = `Exit codes:
  ${ExitCode.Ok}  ok
  ${ExitCode.Error}  error (internal error, cancelled, fault injection disabled)
  ${ExitCode.Usage}  bad arguments (usage error, INVALID_ARGUMENT, KEY_TOO_LARGE, VALUE_TOO_LARGE, CROSS_SHARD)
  ${ExitCode.Unavailable}  unavailable (no endpoint reachable, no quorum, read deadline exceeded)
  ${ExitCode.OutcomeUnknown}  outcome unknown (a write hit its deadline: it may or may not have applied)
  ${ExitCode.NotFound}  key not found (get)
  ${ExitCode.VersionMismatch}  version mismatch (--expected-version did not match)
  ${ExitCode.Refused}  refused (a move or replica change breaks a rule, or was planned on a stale configuration)
  ${ExitCode.AccessDenied}  access denied (UNAUTHENTICATED: no certificate or token the node accepts;
     PERMISSION_DENIED: the role may not do this)
  ${ExitCode.Degraded}  degraded (status: every shard has a leader, but a node is down or a shard is short of replicas;
     a shard without leader is ${ExitCode.Unavailable})
  ${ExitCode.PromiseBroken} promise broken (cap-demo: a consistency level did not do what docs/consistency.md promises)`

/** The exit code for an error of a read or a write command. */
export function exitCodeForError(err: unknown, kind: 'read' | 'write'): ExitCode {
  if (!isKvError(err)) return ExitCode.Error
  switch (err.code) {
    case ErrorCode.InvalidArgument:
    case ErrorCode.KeyTooLarge:
    case ErrorCode.ValueTooLarge:
    case ErrorCode.CrossShard:
      return ExitCode.Usage
    case ErrorCode.Unavailable:
    case ErrorCode.NoQuorum:
    case ErrorCode.NotLeader:
    case ErrorCode.WrongShard:
    case ErrorCode.ShardMoving:
    case ErrorCode.ProposalDropped:
    case ErrorCode.Overloaded:
    case ErrorCode.SessionBehind:
    case ErrorCode.StalenessBoundExceeded:
    case ErrorCode.ShardBusy:
      return ExitCode.Unavailable
    case ErrorCode.DeadlineExceeded:
    case ErrorCode.SessionExpired:
      return kind === 'write' ? ExitCode.OutcomeUnknown : ExitCode.Unavailable
    case ErrorCode.NotFound:
      return ExitCode.NotFound
    case ErrorCode.VersionMismatch:
      return ExitCode.VersionMismatch
    case ErrorCode.MoveRefused:
    case ErrorCode.StaleEpoch:
      return ExitCode.Refused
    case ErrorCode.Unauthenticated:
    case ErrorCode.PermissionDenied:
      return ExitCode.AccessDenied
    case ErrorCode.Cancelled:
    case ErrorCode.FaultInjectionDisabled:
    case ErrorCode.Internal:
      return ExitCode.Error
  }
}
