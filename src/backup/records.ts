/**
 * What each entry of a shard's backup file must be (pure): a storage key of the shard's replicated
 * ranges (its slice of the user data, then its own key space), in strictly increasing key order,
 * whose value decodes as what the node stores under that key:
 *
 *   - user data: a value record (storage/value-record.ts);
 *   - the dedup table: a client header or a saved result under a well-formed dedup key
 *     (shard/dedup.ts; exactly-once sessions travel with their shard);
 *   - the shard descriptor (shard/descriptor.ts): checked, but a restore leaves it out (a restored
 *     shard starts at the first configuration of its new cluster, epoch 1).
 *
 * Nothing else belongs to a data shard; anything else is refused (KvError INVALID_ARGUMENT).
 */
import type { ShardId } from '../common/ids.ts'
import { decodeDedupHeader, decodeDedupResult } from '../shard/dedup.ts'
import { decodeDescriptor } from '../shard/descriptor.ts'
import {
  KeySpace,
  ShardLocalKind,
  dataRangeForHashRange,
  decodeDedupKey,
  decodeValueRecord,
  shardDescriptorKey,
  shardLocalRange,
  type Entry,
  type KeyRange,
  type MalformedHandler,
} from '../storage/index.ts'

export interface ShardRange {
  readonly shardId: ShardId
  readonly hashStart: bigint
  readonly hashEnd: bigint
}

/** Checks entries in file order, one chunk after another. */
export class RecordChecker {
  private readonly data: KeyRange
  private readonly local: KeyRange
  private readonly descriptorKey: Uint8Array
  private last: Uint8Array | undefined

  constructor(
    private readonly shard: ShardRange,
    private readonly malformed: MalformedHandler,
  ) {
    this.data = dataRangeForHashRange(shard.hashStart, shard.hashEnd)
    this.local = shardLocalRange(shard.shardId)
    this.descriptorKey = shardDescriptorKey(shard.shardId)
  }

  check(entries: readonly Entry[]): void {
    for (const [key, value] of entries) {
      if (this.last !== undefined && compareBytes(this.last, key) >= 0)
        this.malformed('keys out of order (each must be greater than the one before)')
      this.last = key
      if (inRange(key, this.data)) {
        decodeValueRecord(value, this.malformed)
        continue
      }
      if (!inRange(key, this.local)) this.malformed(`a key outside shard ${this.shard.shardId}'s ranges`)
      // 'S' | shard id u32 | kind
      const kind = key[5]
      if (kind === ShardLocalKind.Dedup) {
        const k = decodeDedupKey(key, this.malformed)
        if (k.seq === undefined) decodeDedupHeader(value, this.malformed)
        else decodeDedupResult(value, this.malformed)
      } else if (compareBytes(key, this.descriptorKey) === 0) {
        try {
          decodeDescriptor(value)
        } catch (err) {
          this.malformed((err as Error).message)
        }
      } else this.malformed(`a key of unknown kind in shard ${this.shard.shardId}'s own key space`)
    }
  }
}

/** Whether `key` is the shard's descriptor, which a restore leaves out. */
export function isDescriptorKey(shardId: ShardId, key: Uint8Array): boolean {
  return (
    key.length === 6 && key[0] === KeySpace.ShardLocal && compareBytes(key, shardDescriptorKey(shardId)) === 0
  )
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number)
    if (d !== 0) return d
  }
  return a.length - b.length
}

function inRange(key: Uint8Array, range: KeyRange): boolean {
  return compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0
}
