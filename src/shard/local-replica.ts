/**
 * A single-node replica: the KV state machine with a local log in place of a Raft group.
 *
 * Write path: a call validates its input, checks its signal, and joins a bounded queue (full:
 * OVERLOADED). One loop at its own pace (STYLE.md 7.1) takes every queued write (up to
 * `groupCommitCommandsMax` / `groupCommitBytesMax`), assigns consecutive indexes, prefetches the
 * keys they read, applies them all into ONE WriteBatch, writes it with ONE fsync (group commit),
 * then answers each caller. With Raft, the loop's "assign index" becomes "propose" and the apply
 * half runs on committed entries; `KvStateMachine.apply` stays exactly the same.
 *
 * Read path: on one node every acknowledged write is applied before it is acknowledged, so a read
 * of the engine is linearizable, and every read level is served from local state with staleness 0.
 * A receipt's appliedIndex is taken before the read, so the answer reflects at least that index.
 *
 * A failed engine write is fail-stop (STYLE.md 7.4): the replica logs at fatal, fails every
 * waiting write with INTERNAL, refuses further work, and calls `onFatal` so the host can exit.
 */
import {
  ErrorCode,
  KvError,
  limits as defaultLimits,
  type Clock,
  type Limits,
  type LogIndex,
  type Logger,
  type NodeId,
  type ShardId,
} from '../common/index.ts'
import { AssertionError, assert } from '../common/assert.ts'
import { hashSpaceEnd, type Hasher } from '../hashing/index.ts'
import {
  closedError,
  dataRangeForHashRange,
  dedupRange,
  raftAppliedIndexKey,
  throwIfAborted,
  bytesKey,
  type Engine,
  type Entry,
  type KeyRange,
} from '../storage/index.ts'
import {
  ReadLevel,
  type BatchOp,
  type BatchOpResult,
  type ReadOptions,
  type Receipt,
  type Replica,
  type ReplicaStatus,
  type ScanArgs,
  type ScanStream,
  type VersionedValue,
  WriteLevel,
  type RegisterSessionOptions,
  type WriteOptions,
} from './api.ts'
import {
  cas,
  copyOps,
  readMany,
  readOne,
  resultOfOutcome,
  reusedSeq,
  shardStorageKey,
  scanRange,
  registration,
  signalOf,
  tagged,
  validateKeys,
} from './replica-common.ts'
import { approxCommandBytes, type Command } from './commands.ts'
import type { ApplyResult } from './dedup.ts'
import { ApplyOverlay, KvStateMachine, decodeAppliedIndex, type ApplyOutcome } from './state-machine.ts'
import {
  validateBatchOps,
  validateExpectedVersion,
  validateKey,
  validateReadOptions,
  validateScanArgs,
  validateValue,
  validateWriteOptions,
} from './validate.ts'

export interface LocalReplicaInit {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  /** The shard's part of the ring, [start, end); default the whole ring. Keys outside: WRONG_SHARD. */
  readonly hashRange?: { readonly start: bigint; readonly end: bigint }
}

export interface LocalReplicaComponents {
  /** Owned by the caller: the replica never closes it. */
  readonly engine: Engine
  readonly hasher: Hasher
  readonly clock: Clock
  readonly logger: Logger
  readonly limits?: Readonly<Limits>
  /** Called once if a storage write fails (fail-stop); the host should log and exit. */
  readonly onFatal?: (err: unknown) => void
}

interface PendingWrite {
  readonly command: Command
  readonly bytes: number
  readonly level: WriteLevel
  readonly resolve: (answer: { readonly outcome: ApplyOutcome; readonly receipt: Receipt }) => void
  readonly reject: (err: unknown) => void
}

/** Opens the replica of `init.shardId` on `components.engine`, recovering its applied index and dedup table. */
export async function openLocalReplica(
  init: LocalReplicaInit,
  components: LocalReplicaComponents,
): Promise<Replica> {
  const limits = components.limits ?? defaultLimits
  const { engine } = components
  const appliedRaw = await engine.get(raftAppliedIndexKey(init.shardId))
  const appliedIndex = appliedRaw === null ? (0 as LogIndex) : decodeAppliedIndex(appliedRaw)
  const dedupRecords: Entry[] = []
  for await (const entry of engine.iterate(dedupRange(init.shardId))) dedupRecords.push(entry)
  const machine = new KvStateMachine(
    {
      shardId: init.shardId,
      appliedIndex,
      dedupRecords,
      dedupClientsMax: limits.dedupClientsMax,
      dedupResultsPerClientMax: limits.dedupResultsPerClientMax,
      sessionsPerPrincipalMax: limits.sessionsPerPrincipalMax,
      sessionIdleMsMax: limits.sessionIdleMsMax,
    },
    { hasher: components.hasher },
  )
  return new LocalReplica(init, components, limits, machine)
}

class LocalReplica implements Replica {
  readonly nodeId: NodeId
  readonly shardId: ShardId
  private readonly engine: Engine
  private readonly hasher: Hasher
  private readonly clock: Clock
  private readonly log: Logger
  private readonly limits: Readonly<Limits>
  private readonly onFatal: ((err: unknown) => void) | undefined
  private readonly shard: { readonly shardId: ShardId; readonly hashStart: bigint; readonly hashEnd: bigint }
  private readonly range: KeyRange
  private readonly machine: KvStateMachine

  // Invariant: queue.length <= limits.replicaWriteQueueMax.
  private queue: PendingWrite[] = []
  private running = false
  private closing = false
  private closed = false
  private closePromise: Promise<void> | undefined
  private failed: unknown = undefined
  private drained: (() => void) | undefined

  constructor(
    init: LocalReplicaInit,
    components: LocalReplicaComponents,
    limits: Readonly<Limits>,
    machine: KvStateMachine,
  ) {
    this.nodeId = init.nodeId
    this.shardId = init.shardId
    this.engine = components.engine
    this.hasher = components.hasher
    this.clock = components.clock
    this.limits = limits
    this.onFatal = components.onFatal
    this.machine = machine
    this.shard = {
      shardId: init.shardId,
      hashStart: init.hashRange?.start ?? 0n,
      hashEnd: init.hashRange?.end ?? hashSpaceEnd,
    }
    this.range = dataRangeForHashRange(this.shard.hashStart, this.shard.hashEnd)
    this.log = components.logger.child({ component: 'replica', shard: init.shardId })
    this.log.info(
      { appliedIndex: machine.appliedIndex, dedupClients: machine.dedupClients },
      'replica opened',
    )
  }

  // ---- reads ----

  async get(
    key: Uint8Array,
    opts: ReadOptions,
  ): Promise<{ readonly found: VersionedValue | null; readonly receipt: Receipt }> {
    validateKey(key, this.limits)
    const receipt = this.readReceipt(opts)
    return { found: await readOne(this.engine, this.storageKey(key)), receipt }
  }

  async getMany(
    keys: readonly Uint8Array[],
    opts: ReadOptions,
  ): Promise<{ readonly found: readonly (VersionedValue | null)[]; readonly receipt: Receipt }> {
    validateKeys(keys, this.limits)
    const receipt = this.readReceipt(opts)
    return {
      found: await readMany(
        this.engine,
        keys.map((key) => this.storageKey(key)),
      ),
      receipt,
    }
  }

  scan(args: ScanArgs, opts: ReadOptions): ScanStream {
    validateScanArgs(args, this.limits)
    return scanRange(this.engine, this.range, args, opts, this.readReceipt(opts))
  }

  status(): ReplicaStatus {
    return { appliedIndex: this.machine.appliedIndex, role: 'single', queuedWrites: this.queue.length }
  }

  // ---- writes ----

  async put(
    key: Uint8Array,
    value: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly version: LogIndex; readonly receipt: Receipt }> {
    validateKey(key, this.limits)
    validateValue(value, this.limits)
    validateExpectedVersion(opts.expectedVersion)
    const tag = validateWriteOptions(opts, this.limits)
    this.storageKey(key) // WRONG_SHARD check
    const command: Command = {
      kind: 'put',
      key: key.slice(),
      value: value.slice(),
      ...cas(opts.expectedVersion),
      ...tagged(tag, this.clock.wallMs()),
    }
    const { result, receipt } = await this.submit(command, opts)
    if (result.kind !== 'put') throw reusedSeq()
    return { version: result.version, receipt }
  }

  async delete(
    key: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly deleted: boolean; readonly receipt: Receipt }> {
    validateKey(key, this.limits)
    validateExpectedVersion(opts.expectedVersion)
    const tag = validateWriteOptions(opts, this.limits)
    this.storageKey(key)
    const command: Command = {
      kind: 'delete',
      key: key.slice(),
      ...cas(opts.expectedVersion),
      ...tagged(tag, this.clock.wallMs()),
    }
    const { result, receipt } = await this.submit(command, opts)
    if (result.kind !== 'delete') throw reusedSeq()
    return { deleted: result.deleted, receipt }
  }

  async batch(
    ops: readonly BatchOp[],
    opts: WriteOptions,
  ): Promise<{ readonly results: readonly BatchOpResult[]; readonly receipt: Receipt }> {
    validateBatchOps(ops, this.limits)
    const tag = validateWriteOptions(opts, this.limits)
    for (const op of ops) this.storageKey(op.key)
    const copied = copyOps(ops)
    const { result, receipt } = await this.submit(
      { kind: 'batch', ops: copied, ...tagged(tag, this.clock.wallMs()) },
      opts,
    )
    if (result.kind !== 'batch') throw reusedSeq()
    return { results: result.results, receipt }
  }

  async registerSession(
    clientId: string,
    opts: RegisterSessionOptions,
  ): Promise<{ readonly receipt: Receipt }> {
    const command = registration(clientId, opts, this.clock.wallMs(), this.limits)
    const { receipt } = await this.submit(command, { level: WriteLevel.Majority, ...signalOf(opts) })
    return { receipt }
  }

  close(): Promise<void> {
    this.closePromise ??= this.closeOnce()
    return this.closePromise
  }

  private async closeOnce(): Promise<void> {
    this.closing = true
    if (this.running || this.queue.length > 0) {
      await new Promise<void>((resolve) => {
        this.drained = resolve
      })
    }
    this.closed = true
    this.log.info({ appliedIndex: this.machine.appliedIndex }, 'replica closed')
  }

  // ---- the write loop ----

  /** Queues a validated command and waits for its outcome; CAS mismatches become VERSION_MISMATCH. */
  private async submit(
    command: Command,
    opts: WriteOptions,
  ): Promise<{ readonly result: ApplyResult; readonly receipt: Receipt }> {
    throwIfAborted(opts.signal)
    if (this.failed !== undefined)
      throw new KvError(ErrorCode.Internal, 'replica stopped after a storage failure', { cause: this.failed })
    if (this.closing) throw closedError('replica')
    if (this.queue.length >= this.limits.replicaWriteQueueMax)
      throw new KvError(ErrorCode.Overloaded, 'write queue is full', {
        details: { limit: this.limits.replicaWriteQueueMax, shardId: this.shardId },
      })
    const answer = await new Promise<{ readonly outcome: ApplyOutcome; readonly receipt: Receipt }>(
      (resolve, reject) => {
        this.queue.push({ command, bytes: approxCommandBytes(command), level: opts.level, resolve, reject })
        this.kick()
      },
    )
    return { result: resultOfOutcome(answer.outcome, command, this.shardId), receipt: answer.receipt }
  }

  private kick(): void {
    if (this.running || this.failed !== undefined) return
    this.running = true
    this.run().catch((err: unknown) => this.fail(err))
  }

  private async run(): Promise<void> {
    // Let every write issued in the current turn join the first group.
    await Promise.resolve()
    while (this.queue.length > 0 && this.failed === undefined) {
      const group = this.takeGroup()
      await this.commitGroup(group)
    }
    this.running = false
    if (this.closing && this.queue.length === 0) this.drained?.()
  }

  private takeGroup(): PendingWrite[] {
    let bytes = 0
    let n = 0
    while (n < this.queue.length && n < this.limits.groupCommitCommandsMax) {
      const next = this.queue[n] as PendingWrite
      if (n > 0 && bytes + next.bytes > this.limits.groupCommitBytesMax) break
      bytes += next.bytes
      n++
    }
    return this.queue.splice(0, n)
  }

  private async commitGroup(group: PendingWrite[]): Promise<void> {
    assert(group.length > 0, 'empty group')
    const startMs = this.clock.nowMs()
    const readKeys = new Map<string, Uint8Array>()
    for (const w of group)
      for (const key of this.machine.readKeys(w.command)) readKeys.set(bytesKey(key), key)
    const keys = [...readKeys.values()]
    const batch = this.engine.batch()
    let values: (Uint8Array | null)[]
    try {
      values = await this.engine.multiGet(keys)
    } catch (err) {
      this.fail(err, group)
      return
    }
    // Apply is synchronous and deterministic; an exception from it is a bug (an assertion), which
    // run()'s catch turns into fail-stop.
    const overlay = new ApplyOverlay(
      batch,
      keys.map((key, i) => [key, values[i] ?? null] as const),
    )
    const first = this.machine.appliedIndex + 1
    const outcomes = group.map((w, i) =>
      this.machine.apply((first + i) as LogIndex, w.command, overlay, overlay),
    )
    try {
      await this.engine.write(batch, { sync: true })
    } catch (err) {
      this.fail(err, group)
      return
    }
    const appliedIndex = this.machine.appliedIndex
    this.log.debug(
      {
        commands: group.length,
        bytes: batch.byteLength,
        appliedIndex,
        writeMs: this.clock.nowMs() - startMs,
      },
      'group committed',
    )
    for (const [i, w] of group.entries()) {
      const outcome = outcomes[i] as ApplyOutcome
      if (outcome.kind !== 'applied' || outcome.result.kind === 'versionMismatch')
        this.logOutcome(w.command, outcome)
      w.resolve({ outcome, receipt: this.receipt(appliedIndex, w.level) })
    }
  }

  private logOutcome(command: Command, outcome: ApplyOutcome): void {
    const key = command.kind === 'batch' || command.kind === 'register' ? undefined : command.key
    const fields = {
      index: outcome.index,
      outcome: outcome.kind,
      ...(key === undefined ? {} : { keyHash: this.hasher.hash64(key).toString(16), keyBytes: key.length }),
      ...(command.tag === undefined
        ? {}
        : {
            clientId: command.tag.clientId,
            seq: command.tag.seq,
            firstIncompleteSeq: command.tag.firstIncompleteSeq,
          }),
    }
    this.log.debug(fields, 'write not applied as asked')
  }

  private fail(err: unknown, group: readonly PendingWrite[] = []): void {
    if (this.failed === undefined) {
      this.failed = err
      this.log.fatal(
        { err, appliedIndex: this.machine.appliedIndex },
        'storage write failed, replica stopped',
      )
      this.onFatal?.(err)
    }
    const error = new KvError(ErrorCode.Internal, 'storage write failed', { cause: err })
    for (const w of [...group, ...this.queue.splice(0)]) w.reject(error)
    this.running = false
    this.drained?.()
    // A bug must not be swallowed: rethrow assertions outside the promise chain (crash).
    if (err instanceof AssertionError)
      queueMicrotask(() => {
        throw err
      })
  }

  // ---- helpers ----

  /** The storage key of `key`, or WRONG_SHARD when its hash is outside this shard's range. */
  private storageKey(key: Uint8Array): Uint8Array {
    return shardStorageKey(this.machine, key, this.shard)
  }

  private readReceipt(opts: ReadOptions): Receipt {
    validateReadOptions(opts)
    throwIfAborted(opts.signal)
    if (this.failed !== undefined)
      throw new KvError(ErrorCode.Internal, 'replica stopped after a storage failure', { cause: this.failed })
    if (this.closed) throw closedError('replica')
    const applied = this.machine.appliedIndex
    if (opts.level === ReadLevel.Session && (opts.sessionIndex ?? 0) > applied)
      throw new KvError(ErrorCode.SessionBehind, 'replica has not applied the session index yet', {
        details: { shardId: this.shardId },
      })
    return this.receipt(applied, opts.level)
  }

  private receipt(appliedIndex: LogIndex, level: ReadOptions['level'] | WriteLevel): Receipt {
    return { nodeId: this.nodeId, shardId: this.shardId, appliedIndex, level, stalenessMs: 0 }
  }
}
