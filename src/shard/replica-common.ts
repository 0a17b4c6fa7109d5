/**
 * The replica's building blocks apart from Raft: turning an apply outcome into an answer or a
 * typed error, building commands from validated input, and the read paths over the engine (point
 * reads and the scan of a shard's hash range). raft-replica.ts adds how a command gets its index
 * and when a read may be served.
 */
import { ErrorCode, KvError, type Limits, type LogIndex, type ShardId } from '../common/index.ts'
import {
  compareBytes,
  dataKeyAfter,
  decodeDataKey,
  decodeValueRecord,
  raftAppliedIndexKey,
  startsWith,
  type Engine,
  type KeyRange,
  type ValueRecord,
} from '../storage/index.ts'
import { WriteLevel } from './api.ts'
import type {
  BatchOp,
  ReadOptions,
  RegisterSessionOptions,
  ScanArgs,
  ScanEntry,
  ScanStream,
  Receipt,
  VersionedValue,
} from './api.ts'
import type { ClientTag, Command } from './commands.ts'
import type { ApplyResult } from './dedup.ts'
import { decodeAppliedIndex, type ApplyOutcome, type KvStateMachine } from './state-machine.ts'
import { validateKey, validateWriteOptions } from './validate.ts'

export function versioned(record: ValueRecord): VersionedValue {
  return { value: record.value, version: record.version, createVersion: record.createVersion }
}

export const cas = (expectedVersion: number | undefined): { expectedVersion?: number } =>
  expectedVersion === undefined ? {} : { expectedVersion }

/** The tag of a command, its session stamped with `nowMs` (the proposing replica's wall time). */
export const tagged = (tag: ClientTag | undefined, nowMs: number): { tag?: ClientTag } =>
  tag === undefined
    ? {}
    : { tag: tag.session === undefined ? tag : { ...tag, session: { ...tag.session, atMs: stampMs(nowMs) } } }

/** A wall time as a session stamp: whole non-negative milliseconds. */
export const stampMs = (nowMs: number): number => Math.max(0, Math.floor(nowMs))

export const reusedSeq = (): KvError =>
  new KvError(ErrorCode.InvalidArgument, 'seq was already used by a different kind of write', {
    details: { field: 'seq' },
  })

/** Copies validated batch ops (the caller may reuse its buffers once the call returns). */
export function copyOps(ops: readonly BatchOp[]): BatchOp[] {
  return ops.map((op): BatchOp =>
    op.kind === 'put'
      ? { kind: 'put', key: op.key.slice(), value: op.value.slice(), ...cas(op.expectedVersion) }
      : { kind: 'delete', key: op.key.slice(), ...cas(op.expectedVersion) },
  )
}

/** The result of an applied (or replayed) write, or the typed error its outcome means. */
export function resultOfOutcome(outcome: ApplyOutcome, command: Command, shardId: ShardId): ApplyResult {
  switch (outcome.kind) {
    case 'staleSeq':
      throw new KvError(
        ErrorCode.InvalidArgument,
        `stale seq: ${command.tag?.seq} is below first_incomplete_seq ${outcome.watermark} already ` +
          'sent by this client id, so it was answered before and its result is gone (a retry after ' +
          'the client moved on, or a client id shared by two clients)',
        { details: { field: 'seq', shardId } },
      )
    case 'resultsFull':
      throw new KvError(
        ErrorCode.Overloaded,
        `client has ${outcome.limit} unacknowledged write results on this shard: retry once ` +
          'first_incomplete_seq advances',
        { details: { field: 'first_incomplete_seq', limit: outcome.limit, shardId } },
      )
    case 'sessionUnknown':
      throw new KvError(
        ErrorCode.SessionExpired,
        `the exactly-once session ${command.tag?.clientId ?? ''} is not registered on this shard ` +
          '(expired, given up under its quota, or never registered): this attempt was not applied',
        { details: { field: 'client_id', shardId } },
      )
    case 'sessionConflict':
      throw new KvError(ErrorCode.InvalidArgument, 'this client id is registered to another client', {
        details: { field: 'client_id', shardId },
      })
    case 'sessionsFull':
      throw new KvError(
        ErrorCode.Overloaded,
        `this shard holds ${outcome.limit} live exactly-once sessions: register again later`,
        { details: { field: 'client_id', limit: outcome.limit, shardId } },
      )
    case 'registered':
      // A registration has no result of its own; its callers read only the receipt.
      return { kind: 'batch', results: [] }
    case 'applied':
    case 'duplicate':
      if (outcome.result.kind === 'versionMismatch')
        throw new KvError(ErrorCode.VersionMismatch, 'version mismatch', {
          details: { currentVersion: outcome.result.currentVersion, shardId },
        })
      return outcome.result
  }
}

/** The storage key of user key `key`, or WRONG_SHARD when its hash is outside [hashStart, hashEnd). */
export function shardStorageKey(
  machine: KvStateMachine,
  key: Uint8Array,
  shard: { readonly shardId: ShardId; readonly hashStart: bigint; readonly hashEnd: bigint },
): Uint8Array {
  const { storageKey, hash } = machine.locate(key)
  if (hash < shard.hashStart || hash >= shard.hashEnd)
    throw new KvError(ErrorCode.WrongShard, 'key does not belong to this shard', {
      details: { shardId: shard.shardId },
    })
  return storageKey
}

/** Validates the keys of a getMany (array, count) and each key. */
export function validateKeys(keys: readonly Uint8Array[], limits: Readonly<Limits>): void {
  if (!Array.isArray(keys))
    throw new KvError(ErrorCode.InvalidArgument, 'keys must be an array', { details: { field: 'keys' } })
  if (keys.length > limits.batchOpsMax)
    throw new KvError(ErrorCode.InvalidArgument, `at most ${limits.batchOpsMax} keys per call`, {
      details: { limit: limits.batchOpsMax, field: 'keys' },
    })
  for (const key of keys) validateKey(key, limits)
}

export async function readOne(engine: Engine, storageKey: Uint8Array): Promise<VersionedValue | null> {
  const raw = await engine.get(storageKey)
  return raw === null ? null : versioned(decodeValueRecord(raw))
}

export async function readMany(
  engine: Engine,
  storageKeys: readonly Uint8Array[],
): Promise<(VersionedValue | null)[]> {
  const raws = await engine.multiGet(storageKeys)
  return raws.map((raw) => (raw === null ? null : versioned(decodeValueRecord(raw))))
}

/**
 * Reads `storageKeys` of shard `shardId` together with the shard's applied index, in one engine
 * view (multiGet reads every key from one snapshot): `appliedIndex` is exactly the state the
 * values show. Applied entries become visible when their batch is written, which may be during a
 * read; the machine's applied index runs ahead of the engine (staged, not yet written) and the
 * durable one behind it, so neither names the view. A receipt from this is neither below what the
 * read shows (a session token must not let a later read go back) nor above it (a read must not
 * claim a state it does not show).
 */
export async function readAtView(
  engine: Engine,
  shardId: ShardId,
  storageKeys: readonly Uint8Array[],
): Promise<{ readonly found: (VersionedValue | null)[]; readonly appliedIndex: LogIndex }> {
  const raws = await engine.multiGet([...storageKeys, raftAppliedIndexKey(shardId)])
  const applied = raws.pop()
  return {
    found: raws.map((raw) => (raw === null ? null : versioned(decodeValueRecord(raw)))),
    appliedIndex: applied === null || applied === undefined ? (0 as LogIndex) : decodeAppliedIndex(applied),
  }
}

/**
 * The scan of one shard's data `range` for `args`, from the engine's view at call time (so
 * `receipt`, taken by the caller just before, describes it).
 */
export function scanRange(
  engine: Engine,
  range: KeyRange,
  args: ScanArgs,
  opts: ReadOptions,
  receipt: Receipt,
): ScanStream {
  let gte = range.gte
  if (args.after !== undefined) {
    const resume = dataKeyAfter(args.after.hash, args.after.key)
    if (compareBytes(resume, gte) > 0) gte = resume
  }
  const lt = range.lt
  const prefix = args.prefix.slice()
  const limit = args.limit
  const entries =
    compareBytes(gte, lt) < 0
      ? engine.iterate(opts.signal === undefined ? { gte, lt } : { gte, lt, signal: opts.signal })
      : undefined
  async function* stream(): AsyncGenerator<ScanEntry> {
    if (entries === undefined) return
    let count = 0
    try {
      for await (const [storageKey, raw] of entries) {
        const { hash, key } = decodeDataKey(storageKey)
        if (!startsWith(key, prefix)) continue
        yield { key, value: versioned(decodeValueRecord(raw)), position: { hash, key } }
        if (++count >= limit) return
      }
    } finally {
      await entries.return?.()
    }
  }
  const iterable = stream()
  return { receipt, [Symbol.asyncIterator]: () => iterable }
}

/** The command registering session `clientId` (validated as a write's tag would be). */
export function registration(
  clientId: string,
  opts: RegisterSessionOptions,
  nowMs: number,
  limits: Readonly<Limits>,
): Command {
  const tag = validateWriteOptions(
    {
      level: WriteLevel.Majority,
      clientId,
      seq: opts.floor,
      firstIncompleteSeq: 0,
      principal: opts.principal,
    },
    limits,
  )
  if (tag?.session === undefined) throw new KvError(ErrorCode.InvalidArgument, 'a session needs a client id')
  return { kind: 'register', clientId, floor: opts.floor, session: { ...tag.session, atMs: stampMs(nowMs) } }
}

/** `{ signal }` when there is one (exactOptionalPropertyTypes). */
export const signalOf = (opts: { readonly signal?: AbortSignal }): { signal?: AbortSignal } =>
  opts.signal === undefined ? {} : { signal: opts.signal }
