/**
 * A small in-memory Replica for in-process server tests (Kvd's `openReplica` seam): versions are a
 * counter, scans go in (hash, key) order, CAS and signals behave like the contract in
 * src/shard/api.ts. Not a model of durability; the real replica is tested by its own room.
 * `gate` lets a test hold writes to observe in-flight behaviour (OVERLOADED, drain).
 */
import { ErrorCode, KvError, LogIndex, NodeId, ShardId } from '../../../src/common/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
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
} from '../../../src/shard/index.ts'

interface Stored {
  readonly key: Uint8Array
  readonly hash: bigint
  readonly value: VersionedValue
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

export class FakeReplica implements Replica {
  readonly nodeId: NodeId
  readonly shardId = ShardId(0)
  private readonly data = new Map<string, Stored>()
  private index = 0
  private closed = false
  private readonly hasher: Hasher
  /** When set, every write waits for it first. */
  gate: Promise<void> | undefined
  writes = 0
  /** Entries handed out by scans so far (to observe backpressure). */
  scanYielded = 0

  constructor(nodeId: number, hasher: Hasher) {
    this.nodeId = NodeId(nodeId)
    this.hasher = hasher
  }

  private receipt(level: Receipt['level']): Receipt {
    return {
      nodeId: this.nodeId,
      shardId: this.shardId,
      appliedIndex: LogIndex(this.index),
      level,
      stalenessMs: 0,
    }
  }

  private check(signal: AbortSignal | undefined): void {
    if (this.closed) throw new KvError(ErrorCode.Unavailable, 'closed')
    if (signal?.aborted) throw signal.reason
  }

  get(key: Uint8Array, opts: ReadOptions): Promise<{ found: VersionedValue | null; receipt: Receipt }> {
    this.check(opts.signal)
    return Promise.resolve({
      found: this.data.get(hex(key))?.value ?? null,
      receipt: this.receipt(opts.level),
    })
  }

  getMany(
    keys: readonly Uint8Array[],
    opts: ReadOptions,
  ): Promise<{ found: (VersionedValue | null)[]; receipt: Receipt }> {
    this.check(opts.signal)
    return Promise.resolve({
      found: keys.map((k) => this.data.get(hex(k))?.value ?? null),
      receipt: this.receipt(opts.level),
    })
  }

  private casCheck(key: Uint8Array, expected: number | undefined): void {
    if (expected === undefined) return
    const current = this.data.get(hex(key))?.value.version ?? 0
    if (current !== expected)
      throw new KvError(ErrorCode.VersionMismatch, 'version mismatch', {
        details: { currentVersion: current },
      })
  }

  private async writeGate(opts: WriteOptions): Promise<void> {
    this.check(opts.signal)
    if (this.gate !== undefined) await this.gate
    this.check(opts.signal)
  }

  private apply(op: BatchOp, index: number): BatchOpResult {
    const k = hex(op.key)
    if (op.kind === 'put') {
      const old = this.data.get(k)
      const value = {
        value: op.value.slice(),
        version: LogIndex(index),
        createVersion: old?.value.createVersion ?? LogIndex(index),
      }
      this.data.set(k, { key: op.key.slice(), hash: this.hasher.hash64(op.key), value })
      return { kind: 'put', version: LogIndex(index) }
    }
    return { kind: 'delete', deleted: this.data.delete(k) }
  }

  async put(
    key: Uint8Array,
    value: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ version: LogIndex; receipt: Receipt }> {
    await this.writeGate(opts)
    this.casCheck(key, opts.expectedVersion)
    this.writes++
    const r = this.apply({ kind: 'put', key, value }, ++this.index)
    return { version: (r as { version: LogIndex }).version, receipt: this.receipt(opts.level) }
  }

  async delete(
    key: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): Promise<{ deleted: boolean; receipt: Receipt }> {
    await this.writeGate(opts)
    this.casCheck(key, opts.expectedVersion)
    this.writes++
    const r = this.apply({ kind: 'delete', key }, ++this.index)
    return { deleted: (r as { deleted: boolean }).deleted, receipt: this.receipt(opts.level) }
  }

  registerSession(): Promise<{ readonly receipt: Receipt }> {
    this.check(undefined)
    return Promise.resolve({ receipt: this.receipt('majority') })
  }

  async batch(
    ops: readonly BatchOp[],
    opts: WriteOptions,
  ): Promise<{ results: BatchOpResult[]; receipt: Receipt }> {
    await this.writeGate(opts)
    for (const op of ops) this.casCheck(op.key, op.expectedVersion)
    this.writes++
    const index = ++this.index
    return { results: ops.map((op) => this.apply(op, index)), receipt: this.receipt(opts.level) }
  }

  scan(args: ScanArgs, opts: ReadOptions): ScanStream {
    this.check(opts.signal)
    const after = args.after
    const rows = [...this.data.values()]
      .filter((s) => Buffer.from(s.key).subarray(0, args.prefix.length).equals(Buffer.from(args.prefix)))
      .sort((a, b) => (a.hash !== b.hash ? (a.hash < b.hash ? -1 : 1) : Buffer.compare(a.key, b.key)))
      .filter(
        (s) =>
          after === undefined ||
          s.hash > after.hash ||
          (s.hash === after.hash && Buffer.compare(s.key, after.key) > 0),
      )
      .slice(0, args.limit)
    const signal = opts.signal
    const check = (): void => this.check(signal)
    const counted = (): void => {
      this.scanYielded++
    }
    return {
      receipt: this.receipt(opts.level),
      async *[Symbol.asyncIterator](): AsyncGenerator<ScanEntry> {
        for (const s of rows) {
          check()
          await Promise.resolve()
          counted()
          yield { key: s.key, value: s.value, position: { hash: s.hash, key: s.key } }
        }
      },
    }
  }

  status(): ReplicaStatus {
    return { appliedIndex: LogIndex(this.index), role: 'single' }
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }
}
