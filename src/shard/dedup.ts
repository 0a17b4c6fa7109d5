/**
 * The exactly-once table (Raft thesis §6.3): per client, the last seq applied and its result, so a
 * retried write returns the original result instead of being applied twice. It is state-machine
 * state: changed only by `apply`, persisted in the same batch under the shard-local prefix
 * (keys.ts `dedupKey`), and identical on every replica that applied the same commands.
 *
 * Bounded by `dedupClientsMax`: beyond it the least recently written client is forgotten (its
 * record deleted in the same batch). Recency is the log index of a client's last write, unique per
 * client because one command carries one tag, so replicas that loaded the table from disk and
 * replicas that built it in memory evict the same client.
 * NB(storage): a client forgotten by eviction that then retries an old write gets it applied
 * again; the SDK's sessions must stay under the bound (or re-register) to keep exactly-once.
 *
 * Record encoding: format u8 (=1) | seq uvarint | lastIndex uvarint | result (encodeApplyResult).
 */
import { assert, unreachable } from '../common/assert.ts'
import type { LogIndex, ShardId } from '../common/ids.ts'
import { ByteReader, ByteWriter, dedupKey, decodeDedupKey, type Entry } from '../storage/index.ts'
import type { BatchOpResult } from './api.ts'
import type { ClientTag } from './commands.ts'

/** What applying a command produced: the answer a caller (and every retry of it) gets. */
export type ApplyResult =
  | { readonly kind: 'put'; readonly version: LogIndex }
  | { readonly kind: 'delete'; readonly deleted: boolean }
  | { readonly kind: 'batch'; readonly results: readonly BatchOpResult[] }
  /** A compare-and-set failed; nothing was written. `opIndex` is the failing op (0 outside a batch). */
  | { readonly kind: 'versionMismatch'; readonly opIndex: number; readonly currentVersion: number }

export interface DedupEntry {
  readonly seq: number
  readonly lastIndex: LogIndex
  readonly result: ApplyResult
}

export type DedupCheck =
  | { readonly kind: 'new' }
  | { readonly kind: 'duplicate'; readonly result: ApplyResult }
  /** The client already moved past this seq; the result is gone (the client broke the one-outstanding rule). */
  | { readonly kind: 'stale'; readonly lastSeq: number }

/** The subset of a write batch the table writes through. */
export interface DedupWriter {
  put(key: Uint8Array, value: Uint8Array): unknown
  del(key: Uint8Array): unknown
}

const recordFormat = 1
const ResultKind = { put: 1, delete: 2, batch: 3, versionMismatch: 4 } as const

export function encodeApplyResult(w: ByteWriter, result: ApplyResult): ByteWriter {
  w.u8(ResultKind[result.kind])
  switch (result.kind) {
    case 'put':
      return w.uvarint(result.version)
    case 'delete':
      return w.u8(result.deleted ? 1 : 0)
    case 'batch':
      w.uvarint(result.results.length)
      for (const r of result.results) {
        if (r.kind === 'put') w.u8(ResultKind.put).uvarint(r.version)
        else w.u8(ResultKind.delete).u8(r.deleted ? 1 : 0)
      }
      return w
    case 'versionMismatch':
      return w.uvarint(result.opIndex).uvarint(result.currentVersion)
    default:
      return unreachable(result)
  }
}

function readBool(r: ByteReader): boolean {
  const b = r.u8()
  assert(b === 0 || b === 1, 'corrupt dedup record: bad boolean')
  return b === 1
}

export function decodeApplyResult(r: ByteReader): ApplyResult {
  const kind = r.u8()
  switch (kind) {
    case ResultKind.put:
      return { kind: 'put', version: r.uvarint() as LogIndex }
    case ResultKind.delete:
      return { kind: 'delete', deleted: readBool(r) }
    case ResultKind.batch: {
      const n = r.uvarint()
      const results: BatchOpResult[] = []
      for (let i = 0; i < n; i++) {
        const k = r.u8()
        if (k === ResultKind.put) results.push({ kind: 'put', version: r.uvarint() as LogIndex })
        else {
          assert(k === ResultKind.delete, 'corrupt dedup record: bad batch result kind')
          results.push({ kind: 'delete', deleted: readBool(r) })
        }
      }
      return { kind: 'batch', results }
    }
    case ResultKind.versionMismatch:
      return { kind: 'versionMismatch', opIndex: r.uvarint(), currentVersion: r.uvarint() }
    default:
      assert(false, 'corrupt dedup record: bad result kind')
  }
}

export function encodeDedupEntry(entry: DedupEntry): Uint8Array {
  const w = new ByteWriter(32).u8(recordFormat).uvarint(entry.seq).uvarint(entry.lastIndex)
  return encodeApplyResult(w, entry.result).finish()
}

export function decodeDedupEntry(bytes: Uint8Array): DedupEntry {
  const r = new ByteReader(bytes, 0, 'dedup record')
  assert(r.u8() === recordFormat, 'corrupt dedup record: unknown format')
  const seq = r.uvarint()
  const lastIndex = r.uvarint() as LogIndex
  const result = decodeApplyResult(r)
  r.end()
  return { seq, lastIndex, result }
}

export class DedupTable {
  // Invariant: iteration order is ascending lastIndex (least recently written client first).
  private readonly entries = new Map<string, DedupEntry>()
  // The largest lastIndex in the table (0 when empty): records must come in increasing index order.
  private newestIndex = 0

  constructor(
    private readonly shardId: ShardId,
    private readonly clientsMax: number,
  ) {
    assert(Number.isSafeInteger(clientsMax) && clientsMax > 0, 'bad dedupClientsMax')
  }

  /** Rebuilds the table from its persisted records (an iteration over keys.ts `dedupRange`). */
  static load(shardId: ShardId, clientsMax: number, records: readonly Entry[]): DedupTable {
    const table = new DedupTable(shardId, clientsMax)
    const decoded = records.map(([key, value]) => {
      const k = decodeDedupKey(key)
      assert(k.shardId === shardId, 'dedup record of another shard')
      return { clientId: k.clientId, entry: decodeDedupEntry(value) }
    })
    decoded.sort((a, b) => a.entry.lastIndex - b.entry.lastIndex)
    for (const { clientId, entry } of decoded) {
      table.entries.set(clientId, entry)
      table.newestIndex = entry.lastIndex
    }
    return table
  }

  get size(): number {
    return this.entries.size
  }

  check(tag: ClientTag): DedupCheck {
    const entry = this.entries.get(tag.clientId)
    if (entry === undefined || tag.seq > entry.seq) return { kind: 'new' }
    if (tag.seq === entry.seq) return { kind: 'duplicate', result: entry.result }
    return { kind: 'stale', lastSeq: entry.seq }
  }

  /** Remembers `result` as the answer to `tag`, applied at `index`; writes it and any eviction. */
  record(tag: ClientTag, index: LogIndex, result: ApplyResult, writer: DedupWriter): void {
    const entry: DedupEntry = { seq: tag.seq, lastIndex: index, result }
    assert(index > this.newestIndex, 'dedup indexes must increase')
    this.newestIndex = index
    this.entries.delete(tag.clientId)
    this.entries.set(tag.clientId, entry)
    writer.put(dedupKey(this.shardId, tag.clientId), encodeDedupEntry(entry))
    while (this.entries.size > this.clientsMax) {
      const oldest = this.entries.keys().next()
      assert(oldest.done !== true, 'dedup table empty while over its bound')
      this.entries.delete(oldest.value)
      writer.del(dedupKey(this.shardId, oldest.value))
    }
  }
}
