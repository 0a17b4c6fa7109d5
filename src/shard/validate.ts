/**
 * Validation of everything a caller hands the replica. The server validates first, but the shard
 * never trusts its caller: bad input is a KvError (INVALID_ARGUMENT, KEY_TOO_LARGE,
 * VALUE_TOO_LARGE), never an assertion, and nothing invalid reaches the state machine or the log.
 */
import { ErrorCode, KvError, isSafeUint, type Limits } from '../common/index.ts'
import {
  ReadLevel,
  WriteLevel,
  type BatchOp,
  type ReadOptions,
  type ScanArgs,
  type WriteOptions,
} from './api.ts'
import { tryDecodeEntry, type ClientTag, type Command, type SessionStamp } from './commands.ts'

const readLevels: ReadonlySet<unknown> = new Set(Object.values(ReadLevel))
const writeLevels: ReadonlySet<unknown> = new Set(Object.values(WriteLevel))
const encoder = new TextEncoder()

const invalid = (message: string, field: string): KvError =>
  new KvError(ErrorCode.InvalidArgument, message, { details: { field } })

export function validateKey(
  key: unknown,
  limits: Readonly<Limits>,
  field = 'key',
): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array)) throw invalid(`${field} must be bytes`, field)
  if (key.length === 0) throw invalid(`${field} must not be empty`, field)
  if (key.length > limits.keyBytesMax)
    throw new KvError(
      ErrorCode.KeyTooLarge,
      `${field} is ${key.length} bytes, more than ${limits.keyBytesMax}`,
      {
        details: { limit: limits.keyBytesMax, field },
      },
    )
}

export function validateValue(value: unknown, limits: Readonly<Limits>): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid('value must be bytes', 'value')
  if (value.length > limits.valueBytesMax)
    throw new KvError(
      ErrorCode.ValueTooLarge,
      `value is ${value.length} bytes, more than ${limits.valueBytesMax}`,
      {
        details: { limit: limits.valueBytesMax, field: 'value' },
      },
    )
}

export function validateExpectedVersion(expected: unknown): asserts expected is number | undefined {
  if (expected !== undefined && !isSafeUint(expected))
    throw invalid('expectedVersion must be a non-negative safe integer', 'expectedVersion')
}

export function validateReadOptions(opts: ReadOptions): void {
  if (!readLevels.has(opts.level)) throw invalid(`unknown read level ${String(opts.level)}`, 'level')
  if (opts.sessionIndex !== undefined && !isSafeUint(opts.sessionIndex))
    throw invalid('sessionIndex must be a non-negative safe integer', 'sessionIndex')
  if (opts.level === ReadLevel.Session && opts.sessionIndex === undefined)
    throw invalid('a session read needs sessionIndex', 'sessionIndex')
  if (
    opts.stalenessMsMax !== undefined &&
    !(Number.isFinite(opts.stalenessMsMax) && opts.stalenessMsMax >= 0)
  )
    throw invalid('stalenessMsMax must be a non-negative number', 'stalenessMsMax')
  if (opts.level === ReadLevel.Bounded && opts.stalenessMsMax === undefined)
    throw invalid('a bounded read needs stalenessMsMax', 'stalenessMsMax')
}

/** Checks the write options and returns the exactly-once tag, if any. */
export function validateWriteOptions(opts: WriteOptions, limits: Readonly<Limits>): ClientTag | undefined {
  if (!writeLevels.has(opts.level)) throw invalid(`unknown write level ${String(opts.level)}`, 'level')
  const { clientId, seq, firstIncompleteSeq } = opts
  if (clientId === undefined && seq === undefined && firstIncompleteSeq === undefined) return undefined
  if (clientId === undefined || seq === undefined || firstIncompleteSeq === undefined)
    throw invalid(
      'clientId, seq and firstIncompleteSeq come together',
      clientId === undefined ? 'clientId' : seq === undefined ? 'seq' : 'firstIncompleteSeq',
    )
  if (typeof clientId !== 'string' || clientId.length === 0)
    throw invalid('clientId must be a non-empty string', 'clientId')
  if (encoder.encode(clientId).length > limits.clientIdBytesMax)
    throw invalid(`clientId is longer than ${limits.clientIdBytesMax} bytes`, 'clientId')
  if (!isSafeUint(seq)) throw invalid('seq must be a non-negative safe integer', 'seq')
  if (!isSafeUint(firstIncompleteSeq))
    throw invalid('firstIncompleteSeq must be a non-negative safe integer', 'firstIncompleteSeq')
  if (firstIncompleteSeq > seq)
    throw invalid(
      `firstIncompleteSeq ${firstIncompleteSeq} is above seq ${seq}: a write in flight is itself incomplete`,
      'firstIncompleteSeq',
    )
  if (opts.principal === undefined) return { clientId, seq, firstIncompleteSeq }
  // The time is stamped by the replica that proposes the write (`stamped`).
  const session = { principal: opts.principal, atMs: 0 }
  validateStamp(session, limits)
  return { clientId, seq, firstIncompleteSeq, session }
}

export function validateBatchOps(ops: readonly BatchOp[], limits: Readonly<Limits>): void {
  if (!Array.isArray(ops)) throw invalid('ops must be an array', 'ops')
  if (ops.length === 0) throw invalid('a batch needs at least one operation', 'ops')
  if (ops.length > limits.batchOpsMax)
    throw new KvError(ErrorCode.InvalidArgument, `a batch holds at most ${limits.batchOpsMax} operations`, {
      details: { limit: limits.batchOpsMax, field: 'ops' },
    })
  let bytes = 0
  for (const op of ops) {
    validateKey(op.key, limits)
    validateExpectedVersion(op.expectedVersion)
    if (op.kind === 'put') {
      validateValue(op.value, limits)
      bytes += op.value.length
    } else if (op.kind !== 'delete')
      throw invalid(`unknown batch operation ${String((op as BatchOp).kind)}`, 'ops')
    bytes += op.key.length
  }
  if (bytes > limits.batchBytesMax)
    throw new KvError(ErrorCode.InvalidArgument, `a batch holds at most ${limits.batchBytesMax} bytes`, {
      details: { limit: limits.batchBytesMax, field: 'ops' },
    })
}

export function validateScanArgs(args: ScanArgs, limits: Readonly<Limits>): void {
  if (!(args.prefix instanceof Uint8Array)) throw invalid('prefix must be bytes', 'prefix')
  if (args.prefix.length > limits.keyBytesMax)
    throw new KvError(ErrorCode.KeyTooLarge, 'prefix is longer than the largest key', {
      details: { limit: limits.keyBytesMax, field: 'prefix' },
    })
  if (!(Number.isSafeInteger(args.limit) && args.limit >= 1 && args.limit <= limits.scanLimitMax))
    throw new KvError(ErrorCode.InvalidArgument, `limit must be 1..${limits.scanLimitMax}`, {
      details: { limit: limits.scanLimitMax, field: 'limit' },
    })
  if (args.after !== undefined) {
    if (typeof args.after.hash !== 'bigint' || args.after.hash < 0n || args.after.hash >= 1n << 64n)
      throw invalid('after.hash must be a uint64', 'after')
    // An empty key is a position before every key of its hash: where a scan enters a shard.
    if (args.after.key.length > 0) validateKey(args.after.key, limits, 'after.key')
    else if (!(args.after.key instanceof Uint8Array)) throw invalid('after.key must be bytes', 'after')
  }
}

function validateStamp(stamp: SessionStamp, limits: Readonly<Limits>): void {
  if (
    typeof stamp.principal !== 'string' ||
    encoder.encode(stamp.principal).length > limits.principalBytesMax
  )
    throw invalid(`principal is longer than ${limits.principalBytesMax} bytes`, 'principal')
  if (!isSafeUint(stamp.atMs)) throw invalid('session time must be a non-negative safe integer', 'atMs')
}

/** Validates a whole command (what the write path checks before queueing). */
export function validateCommand(command: Command, limits: Readonly<Limits>): void {
  if (command.kind === 'register') {
    validateWriteOptions(
      { level: WriteLevel.Majority, clientId: command.clientId, seq: command.floor, firstIncompleteSeq: 0 },
      limits,
    )
    validateStamp(command.session, limits)
    return
  }
  if (command.tag?.session !== undefined) validateStamp(command.tag.session, limits)
  if (command.kind === 'batch') validateBatchOps(command.ops, limits)
  else validateBatchOps([command], limits)
}

/**
 * Whether `data` is a command this replica can apply: it decodes, and it holds what the write path
 * would have let through (keys, values, batch bounds, the exactly-once tag). A follower checks each
 * normal entry of an append with this before appending it (RaftComponents.entryAcceptable), so an
 * entry from a buggy or hostile leader can never stop a replica at apply time. Never throws.
 */
export function commandAcceptable(data: Uint8Array, limits: Readonly<Limits>): boolean {
  return acceptableCommands(data, limits) !== null
}

/**
 * `commandAcceptable`, answering with the decoded commands (null when not acceptable), so that a
 * caller that checks an entry can keep what it decoded for the apply instead of decoding it twice.
 */
export function acceptableCommands(data: Uint8Array, limits: Readonly<Limits>): readonly Command[] | null {
  const commands = tryDecodeEntry(data)
  if (commands === null) return null
  try {
    for (const command of commands) {
      validateCommand(command, limits)
      if (command.tag !== undefined)
        validateWriteOptions({ level: WriteLevel.Majority, ...command.tag }, limits)
    }
    return commands
  } catch (err) {
    if (err instanceof KvError) return null
    throw err
  }
}
