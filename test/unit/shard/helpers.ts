/**
 * Test doubles for the shard tests: a counting (and optionally gated) Engine, a still clock, and
 * a replica of one shard on a real one-node NodeHost (one voter: it leads at once, every write
 * commits through the node's one Ready loop and group commit, exactly as in kvd).
 */
import {
  NodeId,
  SeededRandom,
  ShardId,
  limits as defaultLimits,
  silentLogger,
  type Clock,
  type Limits,
  type LogIndex,
} from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { hashSpaceEnd, type Hasher } from '../../../src/hashing/index.ts'
import { NodeHost } from '../../../src/node/host.ts'
import type { PeerTransport } from '../../../src/node/transport.ts'
import { newTransportCounters } from '../../../src/node/transport-grpc.ts'
import type { RegisterSessionOptions } from '../../../src/shard/api.ts'
import type {
  BatchOp,
  RaftReplica,
  ReadOptions,
  Replica,
  ReplicaStatus,
  ScanArgs,
  ScanStream,
  WriteOptions,
} from '../../../src/shard/index.ts'
import {
  loadHasher,
  MemoryEngine,
  type DeleteRangeChunkOptions,
  type DeleteRangeChunkResult,
  type Engine,
  type EngineWriteOptions,
  type Entry,
  type ExportOptions,
  type ImportOptions,
  type ImportStats,
  type IterateOptions,
  type KeyRange,
  type WriteBatch,
} from '../../../src/storage/index.ts'

/** Wraps an Engine, counting writes and fsyncs; `hold()` parks writes until `release()`. */
export class CountingEngine implements Engine {
  writes = 0
  syncs = 0
  batchSizes: number[] = []
  failNextWrite: Error | undefined
  private gate: Promise<void> | undefined
  private open: (() => void) | undefined

  constructor(readonly inner: Engine) {}

  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve))
  }

  release(): void {
    this.open?.()
    this.gate = undefined
  }

  get(key: Uint8Array): Promise<Uint8Array | null> {
    return this.inner.get(key)
  }
  multiGet(keys: readonly Uint8Array[]): Promise<(Uint8Array | null)[]> {
    return this.inner.multiGet(keys)
  }
  iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    return this.inner.iterate(options)
  }
  batch(): WriteBatch {
    return this.inner.batch()
  }
  async write(batch: WriteBatch, options: EngineWriteOptions): Promise<void> {
    if (this.gate !== undefined) await this.gate
    if (this.failNextWrite !== undefined) {
      const err = this.failNextWrite
      this.failNextWrite = undefined
      throw err
    }
    this.writes++
    if (options.sync) this.syncs++
    this.batchSizes.push(batch.length)
    return this.inner.write(batch, options)
  }
  approximateBytes(range: KeyRange): Promise<number> {
    return this.inner.approximateBytes(range)
  }

  exportRange(range: KeyRange, options?: ExportOptions): AsyncIterableIterator<readonly Entry[]> {
    return this.inner.exportRange(range, options)
  }
  importRange(
    range: KeyRange,
    chunks: AsyncIterable<readonly Entry[]>,
    options: ImportOptions,
  ): Promise<ImportStats> {
    return this.inner.importRange(range, chunks, options)
  }
  deleteRangeChunk(range: KeyRange, options: DeleteRangeChunkOptions): Promise<DeleteRangeChunkResult> {
    return this.inner.deleteRangeChunk(range, options)
  }
  close(): Promise<void> {
    return this.inner.close()
  }
}

export const stillClock: Clock = {
  nowMs: () => 1000,
  wallMs: () => 1_700_000_000_000,
  setTimer: () => ({ cancel: () => {} }),
}

let hasherPromise: Promise<Hasher> | undefined
export const testHasher = (): Promise<Hasher> => (hasherPromise ??= loadHasher())

export const nodeId = NodeId(1)
export const shardId = ShardId(3)

/** A transport to nobody: a one-node host never sends. */
const noPeers: PeerTransport = {
  start: () => {},
  send: () => {},
  sendSnapshot: () => Promise.reject(new Error('a one-node host has no peers')),
  setPeers: () => {},
  setFault: () => {},
  faults: () => new Map(),
  stats: () => ({ ...newTransportCounters(), peers: [] }),
  close: () => Promise.resolve(),
}

/**
 * The replica of one shard on a one-node NodeHost: `replica` is the host's RaftReplica, and
 * closing it closes the host (its loop, then its replicas; never the engine, which the caller owns).
 * `base` is the applied index once it leads: the index the first write of a test follows.
 */
export class OneNodeReplica implements Replica {
  constructor(
    readonly host: NodeHost,
    readonly replica: RaftReplica,
    readonly base: LogIndex,
  ) {}
  get nodeId(): NodeId {
    return this.replica.nodeId
  }
  get shardId(): ShardId {
    return this.replica.shardId
  }
  get(key: Uint8Array, opts: ReadOptions): ReturnType<Replica['get']> {
    return this.replica.get(key, opts)
  }
  getMany(keys: readonly Uint8Array[], opts: ReadOptions): ReturnType<Replica['getMany']> {
    return this.replica.getMany(keys, opts)
  }
  put(
    key: Uint8Array,
    value: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): ReturnType<Replica['put']> {
    return this.replica.put(key, value, opts)
  }
  delete(
    key: Uint8Array,
    opts: WriteOptions & { readonly expectedVersion?: number },
  ): ReturnType<Replica['delete']> {
    return this.replica.delete(key, opts)
  }
  batch(ops: readonly BatchOp[], opts: WriteOptions): ReturnType<Replica['batch']> {
    return this.replica.batch(ops, opts)
  }
  scan(args: ScanArgs, opts: ReadOptions): ScanStream {
    return this.replica.scan(args, opts)
  }
  registerSession(clientId: string, opts: RegisterSessionOptions): ReturnType<Replica['registerSession']> {
    return this.replica.registerSession(clientId, opts)
  }
  status(): ReplicaStatus {
    return this.replica.status()
  }
  close(): Promise<void> {
    return this.host.close()
  }
}

/** Waits until `done()` holds, for at most about 10 s (a one-node host elects itself at once). */
async function settle(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000 && !done(); i++)
    await new Promise((resolve) => (i < 100 ? setImmediate(resolve) : setTimeout(resolve, 5)))
  if (!done()) throw new Error(`${what}: not settled`)
}

export interface TestReplicaExtra {
  readonly limits?: Readonly<Limits>
  readonly onFatal?: (err: unknown) => void
  readonly hashRange?: { start: bigint; end: bigint }
  /** Default: the system clock (the host ticks every 10 ms). */
  readonly clock?: Clock
  /** The shard's id and kind (default: data shard `shardId`). */
  readonly shard?: { readonly shardId: ShardId; readonly kind: 'data' | 'meta' }
}

/**
 * Opens (or reopens, on an engine that holds it) the replica of one shard on a one-node NodeHost
 * over `engine`, started, and leading. The shard covers `hashRange` (default the whole ring).
 */
export async function openTestReplica(
  engine: Engine = new MemoryEngine(),
  extra: TestReplicaExtra = {},
): Promise<OneNodeReplica> {
  const shard = extra.shard ?? { shardId, kind: 'data' as const }
  const range = extra.hashRange ?? { start: 0n, end: hashSpaceEnd }
  const host = await NodeHost.open(
    {
      nodeId,
      bootstrap: [
        {
          shardId: shard.shardId,
          kind: shard.kind,
          hashStart: range.start,
          hashEnd: range.end,
          voters: [nodeId],
        },
      ],
      shardCount: 1,
      tickMs: 10,
      leaseReads: false,
    },
    {
      engine,
      hasher: await testHasher(),
      // Real time: a single voter confirms a linearizable read at its next tick (see the report).
      clock: extra.clock ?? new SystemClock(),
      random: new SeededRandom(1),
      logger: silentLogger,
      limits: extra.limits ?? defaultLimits,
      transport: noPeers,
      onFatal: extra.onFatal ?? (() => {}),
    },
  )
  host.start()
  const replica = host.replica(shard.shardId)!
  await settle(() => replica.isLeader, 'the one-node replica leading')
  // A linearizable read returns once the leader's first entry of its term has applied (Raft
  // thesis 6.4): from then on the applied index moves only with the test's own writes.
  const hasher = await testHasher()
  let key = new Uint8Array()
  for (let i = 0; ; i++) {
    key = new TextEncoder().encode(`warm-up-${i}`)
    const h = hasher.hash64(key)
    if (h >= range.start && h < range.end) break
  }
  await replica.get(key, { level: 'linearizable' })
  return new OneNodeReplica(host, replica, replica.status().appliedIndex)
}

export const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)
export const text = (b: Uint8Array): string => new TextDecoder().decode(b)
