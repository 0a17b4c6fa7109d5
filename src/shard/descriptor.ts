/**
 * The shard's replicated descriptor: its epoch and the log index of the entry that last changed
 * its replicas. It lives in the shard's own key space (storage/keys.ts shardDescriptorKey), is
 * written in the same batch as the applied index whenever a conf change entry applies, and
 * travels with snapshots, so every replica of the shard agrees on it at every applied index: the
 * shard's own configuration is the truth, and the meta shard's record follows it.
 *
 * The epoch rises by one with every applied conf change (adding a learner, entering and leaving a
 * joint configuration, removing a replica); a shard that never changed has epoch 1 (the epoch of
 * the cluster's first map). Routers and clients compare epochs to repair stale routes.
 *
 *   version u8 (1) | epoch uvarint | confIndex uvarint
 */
import { ErrorCode, KvError, type LogIndex } from '../common/index.ts'
import { ByteReader, ByteWriter } from '../storage/index.ts'

export interface ShardDescriptorRecord {
  readonly epoch: number
  /** The index of the conf change entry that made the current configuration (0: the first one). */
  readonly confIndex: LogIndex
}

/** A shard with no descriptor stored is at its first configuration. */
export const firstDescriptor: ShardDescriptorRecord = { epoch: 1, confIndex: 0 as LogIndex }

const formatVersion = 1

export function encodeDescriptor(d: ShardDescriptorRecord): Uint8Array {
  return new ByteWriter(24).u8(formatVersion).uvarint(d.epoch).uvarint(d.confIndex).finish()
}

/** Decodes a stored or received descriptor; INVALID_ARGUMENT when the bytes are not one. */
export function decodeDescriptor(bytes: Uint8Array): ShardDescriptorRecord {
  try {
    const r = new ByteReader(bytes, 0, 'shard descriptor')
    if (r.u8() !== formatVersion) throw new Error('unknown format')
    const epoch = r.uvarint()
    const confIndex = r.uvarint() as LogIndex
    r.end()
    if (epoch < 1) throw new Error('epoch 0')
    return { epoch, confIndex }
  } catch (err) {
    throw new KvError(ErrorCode.InvalidArgument, `malformed shard descriptor: ${(err as Error).message}`)
  }
}
