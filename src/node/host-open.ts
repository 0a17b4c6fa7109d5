/**
 * Opening a node's replicas from its data directory (NodeHost.open), and the pieces a replica's
 * group is built from.
 *
 * - A new data directory records its format and shard count, and creates the replicas of a new
 *   cluster (`bootstrap`): each starts from a snapshot at (bootstrapIndex, bootstrapTerm) holding
 *   its first configuration. Starting above index 0 means every log lacks the entries before it,
 *   so a replica added later, whose log is empty, can only be caught up by a snapshot, which
 *   carries the configuration: it never replays a history whose first configuration it lacks.
 * - A directory of an older format is refused with one line (it must be re-created).
 * - A new cluster restored from a backup (`init.restore`, kvd --restore): each data replica of
 *   `bootstrap` is seeded from its shard's backup file (its user data and exactly-once table) and
 *   starts from a snapshot point at the shard's backup applied index instead of bootstrapIndex, so
 *   key versions and the log keep rising from where the backup left them. Refused with one line
 *   when the directory already holds replicas (unless it was seeded from this same backup: then it
 *   starts as it is) or the backup has another shard count or ranges. A restore cut short leaves no
 *   replica records, and the next start with --restore clears each range before seeding it again.
 * - Each replica record (replica-record.ts) is resumed: `installing` (a crash cut an install short:
 *   the ranges are garbage) is reset to `empty`; an `active` replica whose stored configuration
 *   no longer has this node was removed while the node was down and becomes `removing`.
 */
import type { ShardId } from '../common/index.ts'
import { ErrorCode, KvError, type LogIndex, type Logger, type Term } from '../common/index.ts'
import { restoreEntries, shardOf, type RestoreSource } from '../backup/index.ts'
import type { ConfState } from '../raft/index.ts'
import {
  KvStateMachine,
  decodeAppliedIndex,
  decodeDescriptor,
  encodeAppliedIndex,
  firstDescriptor,
  membersOf,
  type GroupLogStore,
  type ShardDescriptorRecord,
} from '../shard/index.ts'
import {
  ByteReader,
  ByteWriter,
  dedupRange,
  hashEnd,
  metaKey,
  raftAppliedIndexKey,
  shardDataKey,
  shardDescriptorKey,
  type Engine,
  type Entry as KvEntry,
} from '../storage/index.ts'
import type { HostedShard, NodeHostComponents, NodeHostInit, ReplicaSpec } from './host.ts'
import { ShardLogStore } from './log-store.ts'
import {
  decodeReplicaRecord,
  encodeReplicaRecord,
  replicaRecordKey,
  replicaRecordRange,
  replicatedRanges,
  type ReplicaRecord,
} from './replica-record.ts'

/** Where every group's log starts (see the file comment). */
export const bootstrapIndex = 5 as LogIndex
export const bootstrapTerm = 5 as Term

/** The data directory format this version writes; others are refused. */
const formatVersion = 2
const formatKey = metaKey('format')
/** Written by format 1 (one list of replicas); its presence without a format key means format 1. */
const legacyHostedKey = metaKey('hosted-shards')

/** What a group is built from. */
export interface GroupParts {
  readonly store: GroupLogStore
  readonly machine: KvStateMachine
  readonly descriptor: ShardDescriptorRecord
}

export interface HostState {
  readonly records: ReplicaRecord[]
  /** For the empty and active replicas. */
  readonly parts: Map<ShardId, GroupParts>
}

type Components = Pick<NodeHostComponents, 'engine' | 'hasher' | 'limits' | 'logger'>

export async function openHostState(
  init: NodeHostInit,
  components: NodeHostComponents,
  shardCountKey: Uint8Array,
): Promise<HostState> {
  const { engine } = components
  const log = components.logger.child({ component: 'host' })
  await checkFormat(engine, init, shardCountKey)
  let records = await loadRecords(engine)
  const bootstrapped = (await engine.get(bootstrappedKey)) !== null
  if (init.restore !== undefined)
    await checkRestore(engine, init, init.restore, records.length > 0 || bootstrapped, log)
  if (records.length === 0 && init.bootstrap.length > 0 && !bootstrapped) {
    records = await bootstrap(engine, init, log, components.limits.replicaDropChunkKeys)
    log.info({ replicas: records.length }, 'replicas created')
  }
  const parts = new Map<ShardId, GroupParts>()
  for (const [i, record] of records.entries()) {
    let r = record
    if (r.state === 'installing') {
      r = await resetInstall(engine, r, components)
      log.warn({ shard: r.shardId }, 'a snapshot install was cut short: replica reset, waiting for a new one')
    }
    if (r.state !== 'empty' && r.state !== 'active') {
      records[i] = r
      continue
    }
    const store = await ShardLogStore.open(engine, r.shardId)
    if (r.state === 'active' && !membersOf(store.confState()).has(init.nodeId)) {
      r = { ...r, state: 'removing' }
      await writeRecord(engine, r)
      log.info({ shard: r.shardId }, 'removed from the shard while down: dropping the replica')
      records[i] = r
      continue
    }
    records[i] = r
    if (r.state === 'empty') {
      parts.set(r.shardId, {
        store,
        machine: newMachine(r, 0 as LogIndex, [], components),
        descriptor: firstDescriptor,
      })
      continue
    }
    const { machine, descriptor } = await loadMachineAt(engine, r, undefined, components)
    parts.set(r.shardId, { store, machine, descriptor })
  }
  return { records, parts }
}

/** Why `spec` is not a replica this node could hold, or undefined. */
export function replicaSpecError(spec: ReplicaSpec): string | undefined {
  if (!Number.isSafeInteger(spec.shardId) || spec.shardId < 0 || spec.shardId > 0xffff_ffff)
    return 'shard id out of range'
  if (spec.kind !== 'data' && spec.kind !== 'meta') return 'kind must be data or meta'
  if (spec.hashStart < 0n || spec.hashStart >= spec.hashEnd || spec.hashEnd > hashEnd) return 'bad hash range'
  if (!Number.isSafeInteger(spec.epoch) || spec.epoch < 1) return 'epoch must be a positive integer'
  return undefined
}

/** The parts of a replica that holds nothing yet (its store read nothing: nothing is stored). */
export function emptyParts(record: ReplicaRecord, components: Components): GroupParts {
  return {
    store: ShardLogStore.empty(record.shardId),
    machine: newMachine(record, 0 as LogIndex, [], components),
    descriptor: firstDescriptor,
  }
}

/**
 * The state machine and descriptor of a replica's data as stored: at `appliedIndex` when given
 * (a snapshot just written in place, whose applied index is not stored yet), else at the stored
 * applied index.
 */
export async function loadMachineAt(
  engine: Engine,
  record: ReplicaRecord,
  appliedIndex: LogIndex | undefined,
  components: Components,
): Promise<{ machine: KvStateMachine; descriptor: ShardDescriptorRecord }> {
  let applied = appliedIndex
  if (applied === undefined) {
    const raw = await engine.get(raftAppliedIndexKey(record.shardId))
    applied = raw === null ? (0 as LogIndex) : decodeAppliedIndex(raw)
  }
  const records: KvEntry[] = []
  for await (const entry of engine.iterate(dedupRange(record.shardId))) records.push(entry)
  const rawDescriptor = await engine.get(shardDescriptorKey(record.shardId))
  let descriptor = firstDescriptor
  if (rawDescriptor !== null) {
    try {
      descriptor = decodeDescriptor(rawDescriptor)
    } catch (err) {
      throw new KvError(ErrorCode.Internal, `shard ${record.shardId}: corrupt descriptor`, {
        cause: err,
        details: { shardId: record.shardId },
      })
    }
  }
  return { machine: newMachine(record, applied, records, components), descriptor }
}

export function newMachine(
  record: Pick<ReplicaRecord, 'shardId' | 'kind'>,
  appliedIndex: LogIndex,
  dedupRecords: readonly KvEntry[],
  components: Components,
): KvStateMachine {
  const shardId = record.shardId
  return new KvStateMachine(
    {
      shardId,
      appliedIndex,
      dedupRecords,
      dedupClientsMax: components.limits.dedupClientsMax,
      dedupResultsPerClientMax: components.limits.dedupResultsPerClientMax,
      sessionsPerPrincipalMax: components.limits.sessionsPerPrincipalMax,
      sessionIdleMsMax: components.limits.sessionIdleMsMax,
      // The meta shard keeps its records under its shard id, outside the user hash space.
      ...(record.kind === 'meta'
        ? { storageKeyOf: (_hash: bigint, key: Uint8Array) => shardDataKey(shardId, key) }
        : {}),
    },
    { hasher: components.hasher },
  )
}

// ---- internals ----

/** Set once the bootstrap replicas were written: a node that later drops them all is not re-bootstrapped. */
const bootstrappedKey = metaKey('bootstrapped')

async function checkFormat(engine: Engine, init: NodeHostInit, shardCountKey: Uint8Array): Promise<void> {
  const [format, count, legacy] = await engine.multiGet([formatKey, shardCountKey, legacyHostedKey])
  if (format === null || format === undefined) {
    if ((legacy !== null && legacy !== undefined) || (count !== null && count !== undefined))
      throw new KvError(
        ErrorCode.InvalidArgument,
        'the data directory was written by an older ringkv (format 1); this version needs a new one: move it away and start again',
        { details: { field: 'dataDir' } },
      )
    const batch = engine.batch()
    batch.put(formatKey, new ByteWriter(4).uvarint(formatVersion).finish())
    batch.put(shardCountKey, new ByteWriter(10).uvarint(init.shardCount).finish())
    await engine.write(batch, { sync: true })
    return
  }
  const version = new ByteReader(format, 0, 'format').uvarint()
  if (version !== formatVersion)
    throw new KvError(
      ErrorCode.InvalidArgument,
      `the data directory has format ${version}; this ringkv reads format ${formatVersion}`,
      { details: { field: 'dataDir' } },
    )
  if (count !== null && count !== undefined) {
    const stored = new ByteReader(count, 0, 'shard count').uvarint()
    if (stored !== init.shardCount)
      throw new KvError(
        ErrorCode.InvalidArgument,
        `the data directory holds a cluster of ${stored} shards; --shards ${init.shardCount} cannot change it`,
        { details: { field: 'shardCount' } },
      )
  }
}

async function loadRecords(engine: Engine): Promise<ReplicaRecord[]> {
  const out: ReplicaRecord[] = []
  for await (const [key, value] of engine.iterate(replicaRecordRange()))
    out.push(decodeReplicaRecord(key, value))
  return out
}

/** Set once a restore's replicas were written: the SHA-256 of the backup's manifest. */
const restoredKey = metaKey('restored-from')

/** Refuses a restore into a directory holding replicas, or of a backup this cluster cannot take. */
async function checkRestore(
  engine: Engine,
  init: NodeHostInit,
  source: RestoreSource,
  holdsData: boolean,
  log: Logger,
): Promise<void> {
  const refuse = (why: string): never => {
    throw new KvError(ErrorCode.InvalidArgument, `--restore ${source.dir}: ${why}`, {
      details: { field: 'restore' },
    })
  }
  if (holdsData) {
    const restored = await engine.get(restoredKey)
    if (restored !== null && new TextDecoder().decode(restored) === source.id) {
      log.info(
        { backup: source.dir },
        'the data directory was restored from this backup before: starting as it is',
      )
      return
    }
    refuse(
      'the data directory already holds data; a restore seeds a new, empty one (start without --restore to use it)',
    )
  }
  const count = source.manifest.shardCount
  if (count !== init.shardCount)
    refuse(
      `the backup holds ${count} shards; this cluster has ${init.shardCount} (start it with --shards ${count})`,
    )
  for (const h of init.bootstrap) {
    if (h.kind !== 'data') continue
    const shard = shardOf(source, h.shardId)
    if (BigInt(shard.hashStart) !== h.hashStart || BigInt(shard.hashEnd) !== h.hashEnd)
      refuse(`the backup's shard ${h.shardId} covers another hash range than this cluster's`)
  }
}

/**
 * Seeds a data replica from the backup (see the file comment): clears its ranges, writes its
 * records chunk by chunk (not synced: the bootstrap batch's sync makes them durable), and answers
 * the index it starts at. Throws, before any replica record exists, when the file is not sound.
 */
async function restoreReplica(
  engine: Engine,
  source: RestoreSource,
  h: HostedShard,
  log: Logger,
  clearChunkKeys: number,
): Promise<LogIndex> {
  const shard = shardOf(source, h.shardId)
  for (const range of replicatedRanges(h))
    for (;;) {
      const step = await engine.deleteRangeChunk(range, { keysMax: clearChunkKeys })
      if (step.done) break
    }
  let entries = 0
  for await (const chunk of restoreEntries(source, shard)) {
    const batch = engine.batch()
    for (const [key, value] of chunk) batch.put(key, value)
    await engine.write(batch, { sync: false })
    entries += chunk.length
  }
  const index = Math.max(shard.appliedIndex, bootstrapIndex) as LogIndex
  log.info({ shard: h.shardId, index, entries }, 'replica restored from the backup')
  return index
}

async function bootstrap(
  engine: Engine,
  init: NodeHostInit,
  log: Logger,
  clearChunkKeys: number,
): Promise<ReplicaRecord[]> {
  const restore = init.restore
  const startIndex = new Map<ShardId, LogIndex>()
  if (restore !== undefined)
    for (const h of init.bootstrap)
      if (h.kind === 'data')
        startIndex.set(h.shardId, await restoreReplica(engine, restore, h, log, clearChunkKeys))
  const batch = engine.batch()
  const records: ReplicaRecord[] = []
  for (const h of init.bootstrap) {
    const confState: ConfState = {
      voters: [...h.voters].sort((a, b) => a - b),
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    }
    const index = startIndex.get(h.shardId) ?? bootstrapIndex
    ShardLogStore.stageBootstrap(batch, h.shardId, confState, index, bootstrapTerm)
    batch.put(raftAppliedIndexKey(h.shardId), encodeAppliedIndex(index))
    const record: ReplicaRecord = {
      shardId: h.shardId,
      kind: h.kind,
      hashStart: h.hashStart,
      hashEnd: h.hashEnd,
      state: 'active',
      removedEpoch: 0,
    }
    batch.put(replicaRecordKey(h.shardId), encodeReplicaRecord(record))
    records.push(record)
  }
  batch.put(bootstrappedKey, new Uint8Array([1]))
  if (restore !== undefined) batch.put(restoredKey, new TextEncoder().encode(restore.id))
  await engine.write(batch, { sync: true })
  return records
}

async function writeRecord(engine: Engine, record: ReplicaRecord): Promise<void> {
  await engine.write(engine.batch().put(replicaRecordKey(record.shardId), encodeReplicaRecord(record)), {
    sync: true,
  })
}

/** An install a crash cut short: clear the ranges, forget the log (keep term and vote), record `empty`. */
async function resetInstall(
  engine: Engine,
  record: ReplicaRecord,
  components: Components,
): Promise<ReplicaRecord> {
  for (const range of replicatedRanges(record))
    for (;;) {
      const step = await engine.deleteRangeChunk(range, { keysMax: components.limits.replicaDropChunkKeys })
      if (step.done) break
    }
  const store = await ShardLogStore.open(engine, record.shardId)
  const reset: ReplicaRecord = { ...record, state: 'empty' }
  const batch = engine.batch()
  store.stageReset(batch, store.confState())
  batch.del(raftAppliedIndexKey(record.shardId))
  batch.put(replicaRecordKey(record.shardId), encodeReplicaRecord(reset))
  await engine.write(batch, { sync: true })
  return reset
}
