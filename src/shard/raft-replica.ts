/**
 * RaftReplica: the Replica (api.ts) of one shard on a node that runs the shard as a Raft group.
 * Request handlers call it; it never calls into the group's RawNode itself: every step that needs
 * the core (a proposal, a ReadIndex round, a wait on the applied index) is handed to the node's
 * Ready loop as a typed request through `loop` (ReplicaLoop), a bounded inbox (full: OVERLOADED).
 * A replica that does not serve (installing a snapshot, waiting for its first one, or removed)
 * refuses every request with SHARD_MOVING, so the client goes to another replica.
 *
 * Reads per level (ARCHITECTURE.md section 2):
 * - linearizable: the leader only (else NOT_LEADER with the hint); a ReadIndex round confirms
 *   leadership with a quorum (or the lease, with --lease-reads), then the read waits until that
 *   index is applied here. No quorum within two election timeouts: NO_QUORUM.
 * - session: any replica once it has applied the session index; it waits up to
 *   limits.sessionWaitMsMax, then SESSION_BEHIND (the client tries another replica).
 * - bounded: any replica whose staleness bound is within the asked one, else STALENESS_BOUND_EXCEEDED.
 * - eventual: any replica, at once; the receipt says how stale it may be.
 * Writes go to the leader (else NOT_LEADER). A write whose deadline passes after it was handed to
 * the loop ends as DEADLINE_EXCEEDED: its outcome is unknown, never reported as "not applied".
 */
import {
  ErrorCode,
  KvError,
  type Clock,
  type Limits,
  type LogIndex,
  type NodeId,
  type ShardId,
} from '../common/index.ts'
import { abortError, throwIfAborted, type Engine } from '../storage/index.ts'
import type {
  BatchOp,
  BatchOpResult,
  ReadOptions,
  Receipt,
  Replica,
  ReplicaStatus,
  ScanArgs,
  ScanEntry,
  ScanStream,
  VersionedValue,
  WriteOptions,
  RegisterSessionOptions,
} from './api.ts'
import { ReadLevel, WriteLevel } from './api.ts'
import type { Command } from './commands.ts'
import type { ApplyResult } from './dedup.ts'
import { Deferred, type RaftGroup, type WriteAnswer } from './raft-group.ts'
import type { WriteLevel as WriteLevelType } from './api.ts'
import {
  cas,
  copyOps,
  readAtView,
  readMany,
  readOne,
  reusedSeq,
  scanRange,
  shardStorageKey,
  registration,
  signalOf,
  tagged,
  validateKeys,
} from './replica-common.ts'
import {
  validateBatchOps,
  validateExpectedVersion,
  validateKey,
  validateReadOptions,
  validateScanArgs,
  validateValue,
  validateWriteOptions,
} from './validate.ts'

/**
 * The requests a replica hands to the node's Ready loop (node/host.ts), each settled through its
 * deferred by the group. Every method throws KvError OVERLOADED when the loop's inbox is full.
 */
export interface ReplicaLoop {
  propose(
    shardId: ShardId,
    command: Command,
    level: WriteLevelType,
    deferred: Deferred<WriteAnswer>,
    predicted: ((index: LogIndex) => ApplyResult) | undefined,
  ): void
  readIndex(shardId: ShardId, deferred: Deferred<LogIndex>): void
  waitApplied(shardId: ShardId, index: LogIndex, deferred: Deferred<LogIndex>): void
}

export interface RaftReplicaComponents {
  readonly engine: Engine
  readonly clock: Clock
  readonly limits: Readonly<Limits>
  readonly loop: ReplicaLoop
}

export class RaftReplica implements Replica {
  readonly nodeId
  readonly shardId
  private closed = false

  constructor(
    private readonly group: RaftGroup,
    private readonly components: RaftReplicaComponents,
  ) {
    this.nodeId = group.nodeId
    this.shardId = group.shardId
  }

  /** The node this replica believes leads its shard (null = unknown). A plain field read. */
  get leaderId(): NodeId | null {
    return this.group.leaderId
  }

  get isLeader(): boolean {
    return this.group.role === 'leader'
  }

  get term(): number {
    return this.group.term
  }

  /** The shard's epoch as this replica has applied it. */
  get epoch(): number {
    return this.group.epoch
  }

  /** False while this replica cannot serve (installing, awaiting its first snapshot, removed). */
  get serving(): boolean {
    return this.group.serving
  }

  // ---- reads ----

  async get(
    key: Uint8Array,
    opts: ReadOptions,
  ): Promise<{ readonly found: VersionedValue | null; readonly receipt: Receipt }> {
    validateKey(key, this.components.limits)
    const storageKey = this.storageKey(key)
    const generation = this.group.generation
    const gated = await this.readGate(opts)
    const view = await readAtView(this.components.engine, this.shardId, [storageKey])
    this.checkStillServing(generation)
    return { found: view.found[0] ?? null, receipt: { ...gated, appliedIndex: view.appliedIndex } }
  }

  async getMany(
    keys: readonly Uint8Array[],
    opts: ReadOptions,
  ): Promise<{ readonly found: readonly (VersionedValue | null)[]; readonly receipt: Receipt }> {
    validateKeys(keys, this.components.limits)
    const storageKeys = keys.map((key) => this.storageKey(key))
    const generation = this.group.generation
    const gated = await this.readGate(opts)
    const view = await readAtView(this.components.engine, this.shardId, storageKeys)
    this.checkStillServing(generation)
    return { found: view.found, receipt: { ...gated, appliedIndex: view.appliedIndex } }
  }

  /** The scan waits for its read level first, so the stream's view is taken after the gate. */
  scan(args: ScanArgs, opts: ReadOptions): ScanStream {
    validateScanArgs(args, this.components.limits)
    validateReadOptions(opts)
    const generation = this.group.generation
    const gate = this.readGate(opts)
    // Observed by the stream when it is iterated; a stream dropped before its first entry (a call
    // cancelled while waiting to read) must not leave the rejection unhandled.
    void gate.catch(() => undefined)
    // Consumers iterate at once; the receipt is known once the gate passed.
    let inner: ScanStream | undefined
    const receiptHolder: { receipt: Receipt } = {
      receipt: this.group.receipt(opts.level, this.group.durableApplied, this.group.stalenessMs()),
    }
    const engine = this.components.engine
    const range = this.group.dataRange
    const stillServing = (): void => this.checkStillServing(generation)
    const covering = (r: Receipt): Receipt => this.covering(r)
    async function* stream(): AsyncGenerator<ScanEntry> {
      // scanRange takes its view at once (no await between this check and the view): it is
      // trusted only if the replica served throughout since the gate, and the receipt covers it.
      const receipt = covering(await gate)
      receiptHolder.receipt = receipt
      stillServing()
      inner = scanRange(engine, range, args, opts, receipt)
      yield* inner
    }
    const iterable = stream()
    return {
      get receipt() {
        return receiptHolder.receipt
      },
      [Symbol.asyncIterator]: () => iterable,
    }
  }

  /**
   * The receipt of a scan whose engine view was taken now: its applied index covers everything the
   * view can show. Applied entries are visible in the engine before their batch is durable, so the
   * durable applied index the gate named can be below a version the read returned; a session token
   * that low let a session read elsewhere go back in time (chaos: pause and lease-isolate runs).
   * It may name one batch more than the view shows (a batch in flight while the view was taken);
   * point reads name their view exactly (readAtView).
   */
  private covering(receipt: Receipt): Receipt {
    const applied = this.group.stateMachine.appliedIndex
    return applied > receipt.appliedIndex ? { ...receipt, appliedIndex: applied } : receipt
  }

  /** Waits until a read at `opts.level` may be served here; the receipt of that read. */
  async readGate(opts: ReadOptions): Promise<Receipt> {
    validateReadOptions(opts)
    throwIfAborted(opts.signal)
    this.checkOpen()
    const group = this.group
    switch (opts.level) {
      case ReadLevel.Linearizable: {
        if (group.role !== 'leader') throw group.notLeader()
        const d = new Deferred<LogIndex>()
        this.components.loop.readIndex(this.shardId, d)
        const index = await this.until(d, opts.signal)
        return group.receipt(opts.level, index, 0)
      }
      case ReadLevel.Session: {
        const need = (opts.sessionIndex ?? 0) as LogIndex
        if (group.durableApplied < need) {
          const d = new Deferred<LogIndex>()
          const timer = this.components.clock.setTimer(this.components.limits.sessionWaitMsMax, () =>
            d.reject(
              new KvError(ErrorCode.SessionBehind, 'replica has not applied the session index yet', {
                details: { shardId: this.shardId },
              }),
            ),
          )
          try {
            this.components.loop.waitApplied(this.shardId, need, d)
            await this.until(d, opts.signal)
          } finally {
            timer.cancel()
          }
        }
        return group.receipt(opts.level, group.durableApplied, group.stalenessMs())
      }
      case ReadLevel.Bounded: {
        const staleness = group.stalenessMs()
        const bound = opts.stalenessMsMax ?? 0
        if (staleness > bound)
          throw new KvError(
            ErrorCode.StalenessBoundExceeded,
            `replica may be ${staleness} ms behind, more than the bound of ${bound} ms`,
            { details: { shardId: this.shardId } },
          )
        return group.receipt(opts.level, group.durableApplied, staleness)
      }
      case ReadLevel.Eventual:
        return group.receipt(opts.level, group.durableApplied, group.stalenessMs())
    }
  }

  status(): ReplicaStatus {
    return {
      appliedIndex: this.group.durableApplied,
      role: this.group.role,
      queuedWrites: this.group.pendingProposals,
    }
  }

  // ---- writes ----

  async put(
    key: Uint8Array,
    value: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly version: LogIndex; readonly receipt: Receipt }> {
    validateKey(key, this.components.limits)
    validateValue(value, this.components.limits)
    validateExpectedVersion(opts.expectedVersion)
    const tag = validateWriteOptions(opts, this.components.limits)
    this.storageKey(key)
    const command: Command = {
      kind: 'put',
      key: key.slice(),
      value: value.slice(),
      ...cas(opts.expectedVersion),
      ...tagged(tag, this.components.clock.wallMs()),
    }
    const predicted = (index: LogIndex): ApplyResult => ({ kind: 'put', version: index })
    const { result, receipt } = await this.write(command, opts, predicted)
    if (result.kind !== 'put') throw reusedSeq()
    return { version: result.version, receipt }
  }

  async delete(
    key: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ readonly deleted: boolean; readonly receipt: Receipt }> {
    validateKey(key, this.components.limits)
    validateExpectedVersion(opts.expectedVersion)
    const tag = validateWriteOptions(opts, this.components.limits)
    const storageKey = this.storageKey(key)
    const command: Command = {
      kind: 'delete',
      key: key.slice(),
      ...cas(opts.expectedVersion),
      ...tagged(tag, this.components.clock.wallMs()),
    }
    let predicted: ((index: LogIndex) => ApplyResult) | undefined
    if (opts.level === WriteLevel.Leader) {
      const existed = (await readOne(this.components.engine, storageKey)) !== null
      predicted = () => ({ kind: 'delete', deleted: existed })
    }
    const { result, receipt } = await this.write(command, opts, predicted)
    if (result.kind !== 'delete') throw reusedSeq()
    return { deleted: result.deleted, receipt }
  }

  async batch(
    ops: readonly BatchOp[],
    opts: WriteOptions,
  ): Promise<{ readonly results: readonly BatchOpResult[]; readonly receipt: Receipt }> {
    validateBatchOps(ops, this.components.limits)
    const tag = validateWriteOptions(opts, this.components.limits)
    const storageKeys = ops.map((op) => this.storageKey(op.key))
    const copied = copyOps(ops)
    let predicted: ((index: LogIndex) => ApplyResult) | undefined
    if (opts.level === WriteLevel.Leader) {
      const before = await readMany(this.components.engine, storageKeys)
      predicted = (index) => ({
        kind: 'batch',
        results: copied.map((op, i) =>
          op.kind === 'put'
            ? { kind: 'put', version: index }
            : { kind: 'delete', deleted: before[i] !== null },
        ),
      })
    }
    const { result, receipt } = await this.write(
      { kind: 'batch', ops: copied, ...tagged(tag, this.components.clock.wallMs()) },
      opts,
      predicted,
    )
    if (result.kind !== 'batch') throw reusedSeq()
    return { results: result.results, receipt }
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }

  // ---- helpers ----

  async registerSession(
    clientId: string,
    opts: RegisterSessionOptions,
  ): Promise<{ readonly receipt: Receipt }> {
    const command = registration(clientId, opts, this.components.clock.wallMs(), this.components.limits)
    const { receipt } = await this.write(
      command,
      { level: WriteLevel.Majority, ...signalOf(opts) },
      undefined,
    )
    return { receipt }
  }

  private async write(
    command: Command,
    opts: WriteOptions,
    predicted: ((index: LogIndex) => ApplyResult) | undefined,
  ): Promise<WriteAnswer> {
    throwIfAborted(opts.signal)
    this.checkOpen()
    if (opts.level === WriteLevel.Leader && hasCas(command))
      throw new KvError(
        ErrorCode.InvalidArgument,
        'compare-and-set needs a quorum: use write level majority or all, not leader',
        { details: { field: 'level' } },
      )
    if (this.group.role !== 'leader') throw this.group.writeNotLeader()
    const d = new Deferred<WriteAnswer>()
    this.components.loop.propose(this.shardId, command, opts.level, d, predicted)
    return await this.until(d, opts.signal)
  }

  /** The deferred's value, or the signal's error (DEADLINE_EXCEEDED / CANCELLED) if it fires first. */
  private async until<T>(d: Deferred<T>, signal: AbortSignal | undefined): Promise<T> {
    if (signal === undefined) return await d.promise
    const onAbort = (): void => d.reject(abortError(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      return await d.promise
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** After a read: SHARD_MOVING when the replica stopped (or started) serving while it ran. */
  private checkStillServing(generation: number): void {
    if (this.group.generation !== generation || !this.group.serving)
      throw new KvError(
        ErrorCode.ShardMoving,
        `the replica of shard ${this.shardId} changed during the read`,
        {
          details: { shardId: this.shardId },
        },
      )
  }

  private checkOpen(): void {
    if (this.closed) throw new KvError(ErrorCode.Unavailable, 'replica is closed')
    if (!this.group.serving)
      throw new KvError(
        ErrorCode.ShardMoving,
        `node ${this.nodeId} holds no servable replica of shard ${this.shardId} right now`,
        { details: { shardId: this.shardId } },
      )
  }

  /** The storage key of `key`, or WRONG_SHARD when its hash is outside this shard's range. */
  private storageKey(key: Uint8Array): Uint8Array {
    return shardStorageKey(this.group.stateMachine, key, this.group)
  }
}

function hasCas(command: Command): boolean {
  if (command.kind === 'register') return false
  if (command.kind === 'batch') return command.ops.some((op) => op.expectedVersion !== undefined)
  return command.expectedVersion !== undefined
}
