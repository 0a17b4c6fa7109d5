/**
 * The lifecycle of each replica a node holds, persisted per replica in the node's own meta keys
 * (storage/keys.ts metaKey), so that a crash in any state resumes correctly on restart:
 *
 *   empty ──install begins──> installing ──install ends──> active ──removal committed──> removing
 *     ^                            │                                                        │
 *     └──── install cut short ─────┘                           data dropped in the background
 *                                                                                            v
 *                                                                                       tombstone
 *
 * - `empty`: the replica holds no state of its shard (a new learner waiting for its first
 *   snapshot, or a replica whose install was cut short and whose log was reset). It does not
 *   serve, vote or campaign (raft RaftConfig.awaitingSnapshot); its ranges may hold leftovers of
 *   a cut install, which the next install clears first.
 * - `installing`: a snapshot is being written into the shard's ranges in place. On restart the
 *   install is abandoned: the ranges are garbage, so the replica is reset to `empty` (its log
 *   forgotten, its term and vote kept) and the leader sends a new snapshot.
 * - `active`: a member serving its shard.
 * - `removing`: its removal from the shard's configuration is committed (it applied it, or the
 *   mover showed it the configuration without it); it takes no part in the group any more and its
 *   data is dropped in throttled chunks.
 * - `tombstone`: all data gone; the record stays with the epoch of the removal, so late messages
 *   and stale requests can never bring the replica back. Only a request to create the replica at
 *   a newer epoch replaces a tombstone.
 *
 * Records are JSON (rare, small, readable in a debugger); a record that does not decode is
 * corruption (KvError INTERNAL naming the key), never an assertion.
 */
import { ErrorCode, KvError, ShardId } from '../common/index.ts'
import { dataRangeForHashRange, metaKey, shardLocalRange, type KeyRange } from '../storage/index.ts'

export type ReplicaState = 'empty' | 'installing' | 'active' | 'removing' | 'tombstone'
export const replicaStates: readonly ReplicaState[] = [
  'empty',
  'installing',
  'active',
  'removing',
  'tombstone',
]

export type ShardKind = 'data' | 'meta'

export interface ReplicaRecord {
  readonly shardId: ShardId
  readonly kind: ShardKind
  /** [hashStart, hashEnd) of the ring (the meta shard: the whole ring; it holds no user keys). */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  readonly state: ReplicaState
  /** removing, tombstone: the shard epoch of the configuration without this node (0 = unknown). */
  readonly removedEpoch: number
}

const idDigits = 10
const prefix = 'replica/'
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function replicaRecordKey(shardId: ShardId): Uint8Array {
  return metaKey(`${prefix}${String(shardId).padStart(idDigits, '0')}`)
}

/** Every replica record of the node. */
export function replicaRecordRange(): KeyRange {
  return { gte: metaKey(prefix), lt: metaKey('replica0') }
}

export function encodeReplicaRecord(r: ReplicaRecord): Uint8Array {
  return encoder.encode(
    JSON.stringify({
      shardId: r.shardId,
      kind: r.kind,
      hashStart: r.hashStart.toString(),
      hashEnd: r.hashEnd.toString(),
      state: r.state,
      removedEpoch: r.removedEpoch,
    }),
  )
}

export function decodeReplicaRecord(key: Uint8Array, bytes: Uint8Array): ReplicaRecord {
  const corrupt = (why: string): KvError =>
    new KvError(ErrorCode.Internal, `corrupt replica record ${decoder.decode(key)}: ${why}`)
  let o: Record<string, unknown>
  try {
    const v: unknown = JSON.parse(decoder.decode(bytes))
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object')
    o = v as Record<string, unknown>
  } catch (err) {
    throw corrupt((err as Error).message)
  }
  const { shardId, kind, hashStart, hashEnd, state, removedEpoch } = o
  if (typeof shardId !== 'number' || !Number.isSafeInteger(shardId) || shardId < 0 || shardId > 0xffff_ffff)
    throw corrupt('shardId')
  if (!equalsKey(key, replicaRecordKey(ShardId(shardId)))) throw corrupt('stored under another key')
  if (kind !== 'data' && kind !== 'meta') throw corrupt('kind')
  if (typeof hashStart !== 'string' || !/^\d+$/.test(hashStart)) throw corrupt('hashStart')
  if (typeof hashEnd !== 'string' || !/^\d+$/.test(hashEnd)) throw corrupt('hashEnd')
  if (BigInt(hashStart) >= BigInt(hashEnd) || BigInt(hashEnd) > 1n << 64n) throw corrupt('hash range')
  if (typeof state !== 'string' || !replicaStates.includes(state as ReplicaState)) throw corrupt('state')
  if (typeof removedEpoch !== 'number' || !Number.isSafeInteger(removedEpoch) || removedEpoch < 0)
    throw corrupt('removedEpoch')
  return {
    shardId: ShardId(shardId),
    kind,
    hashStart: BigInt(hashStart),
    hashEnd: BigInt(hashEnd),
    state: state as ReplicaState,
    removedEpoch,
  }
}

function equalsKey(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * Every key range of a replica's replicated state: user data (data shards) and the shard's own key
 * space (dedup table, descriptor, and the meta shard's records). What a snapshot carries, what an
 * install clears and fills, what a removed replica drops (with its Raft keys).
 */
export function replicatedRanges(
  r: Pick<ReplicaRecord, 'shardId' | 'kind' | 'hashStart' | 'hashEnd'>,
): KeyRange[] {
  const local = shardLocalRange(r.shardId)
  return r.kind === 'meta' ? [local] : [dataRangeForHashRange(r.hashStart, r.hashEnd), local]
}
