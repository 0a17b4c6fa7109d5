/**
 * The exactly-once table (Raft thesis §6.3, done for pipelined clients). A tagged write carries
 * (clientId, seq, firstIncompleteSeq): firstIncompleteSeq is the lowest seq the client has not yet
 * received an answer for, so it has every answer below it and will never retry those seqs. Per
 * client the table keeps:
 *
 * - `watermark`: the highest firstIncompleteSeq seen. A seq below it is a retry of a write the
 *   client already had answered (or a seq it reused): `stale`, refused, never applied.
 * - `results`: the saved answer of each applied seq >= watermark. A retry of one of them gets the
 *   saved answer and applies nothing (`duplicate`); results below a rising watermark are deleted.
 *   At most `resultsPerClientMax` per client: a new seq beyond that is refused (`full`, nothing
 *   applied; the server answers OVERLOADED) until the client's watermark advances. The SDK never
 *   gets there: it keeps every seq it sends below firstIncompleteSeq + that bound.
 * - `lastIndex`: the log index of the client's last tagged command, for LRU eviction.
 *
 * It is state-machine state: changed only by `apply` (a pure function of the log: recency is a log
 * index, never a time), written through the apply's batch under the shard-local prefix (keys.ts
 * `dedupClientKey`/`dedupResultKey`), and identical on every replica that applied the same
 * commands, whether it loaded the table from disk or built it in memory.
 *
 * Bounded by `clientsMax` clients: beyond it the least recently active client is forgotten (header
 * and results deleted in the same batch).
 * NB(storage): a forgotten client that then retries an old write gets it applied again (its
 * watermark is gone too); clients must stay active within the last `clientsMax` clients of a shard.
 *
 * Record encodings: header = format u8 (=2) | watermark uvarint | lastIndex uvarint;
 * result = format u8 (=2) | result (encodeApplyResult).
 */
import { assert, unreachable } from '../common/assert.ts'
import type { LogIndex, ShardId } from '../common/ids.ts'
import {
  ByteReader,
  ByteWriter,
  decodeDedupKey,
  dedupClientKey,
  dedupResultKey,
  type Entry,
} from '../storage/index.ts'
import type { BatchOpResult } from './api.ts'
import type { ClientTag } from './commands.ts'

/** What applying a command produced: the answer a caller (and every retry of it) gets. */
export type ApplyResult =
  | { readonly kind: 'put'; readonly version: LogIndex }
  | { readonly kind: 'delete'; readonly deleted: boolean }
  | { readonly kind: 'batch'; readonly results: readonly BatchOpResult[] }
  /** A compare-and-set failed; nothing was written. `opIndex` is the failing op (0 outside a batch). */
  | { readonly kind: 'versionMismatch'; readonly opIndex: number; readonly currentVersion: number }

/** What the table says about a tagged command, before it is applied. */
export type DedupCheck =
  | { readonly kind: 'new' }
  | { readonly kind: 'duplicate'; readonly result: ApplyResult }
  /** Below the client's watermark: the client already had this seq answered; no result is kept. */
  | { readonly kind: 'stale'; readonly watermark: number }
  /** A new seq, but the client already has `limit` unacknowledged results saved. */
  | { readonly kind: 'full'; readonly limit: number }

/** One client's persisted header. */
export interface DedupClientHeader {
  readonly watermark: number
  readonly lastIndex: LogIndex
}

/** A read-only view of one client's state (for logs and tests). */
export interface DedupClientView extends DedupClientHeader {
  /** Seqs with a saved result, ascending. */
  readonly seqs: readonly number[]
}

interface ClientState {
  watermark: number
  lastIndex: LogIndex
  // Invariant: every key >= watermark; size <= resultsPerClientMax (+ what a tightened limit left).
  readonly results: Map<number, ApplyResult>
}

/** The subset of a write batch the table writes through. */
export interface DedupWriter {
  put(key: Uint8Array, value: Uint8Array): unknown
  del(key: Uint8Array): unknown
}

const recordFormat = 2
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

export function encodeDedupHeader(header: DedupClientHeader): Uint8Array {
  return new ByteWriter(24).u8(recordFormat).uvarint(header.watermark).uvarint(header.lastIndex).finish()
}

export function decodeDedupHeader(bytes: Uint8Array): DedupClientHeader {
  const r = new ByteReader(bytes, 0, 'dedup header')
  assert(r.u8() === recordFormat, 'corrupt dedup header: unknown format')
  const watermark = r.uvarint()
  const lastIndex = r.uvarint() as LogIndex
  r.end()
  return { watermark, lastIndex }
}

export function encodeDedupResult(result: ApplyResult): Uint8Array {
  return encodeApplyResult(new ByteWriter(16).u8(recordFormat), result).finish()
}

export function decodeDedupResult(bytes: Uint8Array): ApplyResult {
  const r = new ByteReader(bytes, 0, 'dedup result')
  assert(r.u8() === recordFormat, 'corrupt dedup result: unknown format')
  const result = decodeApplyResult(r)
  r.end()
  return result
}

const ascending = (a: number, b: number): number => a - b

export interface DedupTableInit {
  readonly shardId: ShardId
  readonly clientsMax: number
  readonly resultsPerClientMax: number
}

export class DedupTable {
  private readonly shardId: ShardId
  private readonly clientsMax: number
  private readonly resultsPerClientMax: number
  // Invariant: iteration order is ascending lastIndex (least recently active client first).
  private readonly clients = new Map<string, ClientState>()
  // The largest lastIndex in the table (0 when empty): activity must come in increasing index order.
  private newestIndex = 0

  constructor(init: DedupTableInit) {
    assert(Number.isSafeInteger(init.clientsMax) && init.clientsMax > 0, 'bad dedupClientsMax')
    assert(
      Number.isSafeInteger(init.resultsPerClientMax) && init.resultsPerClientMax > 0,
      'bad dedupResultsPerClientMax',
    )
    this.shardId = init.shardId
    this.clientsMax = init.clientsMax
    this.resultsPerClientMax = init.resultsPerClientMax
  }

  /** Rebuilds the table from its persisted records (an iteration over keys.ts `dedupRange`). */
  static load(init: DedupTableInit, records: readonly Entry[]): DedupTable {
    const table = new DedupTable(init)
    const loaded = new Map<string, ClientState>()
    for (const [key, value] of records) {
      const k = decodeDedupKey(key)
      assert(k.shardId === init.shardId, 'dedup record of another shard')
      if (k.seq === undefined) {
        assert(!loaded.has(k.clientId), 'duplicate dedup header')
        const header = decodeDedupHeader(value)
        loaded.set(k.clientId, { ...header, results: new Map() })
      } else {
        // Key order puts a client's header before its results.
        const client = loaded.get(k.clientId)
        assert(client !== undefined, 'dedup result without its client header')
        assert(k.seq >= client.watermark, 'dedup result below its watermark')
        client.results.set(k.seq, decodeDedupResult(value))
      }
    }
    const byRecency = [...loaded.entries()].sort(([, a], [, b]) => a.lastIndex - b.lastIndex)
    for (const [clientId, client] of byRecency) {
      assert(client.lastIndex > table.newestIndex, 'two dedup clients share a last index')
      table.clients.set(clientId, client)
      table.newestIndex = client.lastIndex
    }
    return table
  }

  /** Clients remembered. */
  get size(): number {
    return this.clients.size
  }

  /** One client's state, or undefined when the table does not know it. */
  client(clientId: string): DedupClientView | undefined {
    const c = this.clients.get(clientId)
    if (c === undefined) return undefined
    return { watermark: c.watermark, lastIndex: c.lastIndex, seqs: [...c.results.keys()].sort(ascending) }
  }

  /**
   * The first half of applying a tagged command at `index`. Unless the seq is stale (then nothing
   * changes), raises the client's watermark to the tag's firstIncompleteSeq (deleting the results
   * below it), makes `index` its last activity (creating the client, and evicting the least
   * recently active one beyond `clientsMax`), and writes all of it. Then says whether the command
   * is new (apply it, then `record` its result), a duplicate, or refused as full.
   */
  begin(tag: ClientTag, index: LogIndex, writer: DedupWriter): DedupCheck {
    assert(tag.firstIncompleteSeq <= tag.seq, 'tag with firstIncompleteSeq above seq')
    let client = this.clients.get(tag.clientId)
    if (client !== undefined && tag.seq < client.watermark)
      return { kind: 'stale', watermark: client.watermark }
    assert(index > this.newestIndex, 'dedup indexes must increase')
    this.newestIndex = index
    if (client === undefined) {
      client = { watermark: tag.firstIncompleteSeq, lastIndex: index, results: new Map() }
    } else {
      this.clients.delete(tag.clientId)
      client.lastIndex = index
      if (tag.firstIncompleteSeq > client.watermark) {
        client.watermark = tag.firstIncompleteSeq
        const acknowledged = [...client.results.keys()].filter((seq) => seq < tag.firstIncompleteSeq)
        for (const seq of acknowledged.sort(ascending)) {
          client.results.delete(seq)
          writer.del(dedupResultKey(this.shardId, tag.clientId, seq))
        }
      }
    }
    this.clients.set(tag.clientId, client)
    writer.put(dedupClientKey(this.shardId, tag.clientId), encodeDedupHeader(client))
    this.evict(writer)
    const saved = client.results.get(tag.seq)
    if (saved !== undefined) return { kind: 'duplicate', result: saved }
    if (client.results.size >= this.resultsPerClientMax)
      return { kind: 'full', limit: this.resultsPerClientMax }
    return { kind: 'new' }
  }

  /** The second half, for a `new` command: saves its result as the answer to every retry. */
  record(tag: ClientTag, result: ApplyResult, writer: DedupWriter): void {
    const client = this.clients.get(tag.clientId)
    assert(client !== undefined, 'record without begin')
    assert(tag.seq >= client.watermark, 'record of a stale seq')
    assert(!client.results.has(tag.seq), 'record of a seq already saved')
    client.results.set(tag.seq, result)
    writer.put(dedupResultKey(this.shardId, tag.clientId, tag.seq), encodeDedupResult(result))
  }

  private evict(writer: DedupWriter): void {
    while (this.clients.size > this.clientsMax) {
      const oldest = this.clients.entries().next()
      assert(oldest.done !== true, 'dedup table empty while over its bound')
      const [clientId, client] = oldest.value
      this.clients.delete(clientId)
      for (const seq of [...client.results.keys()].sort(ascending))
        writer.del(dedupResultKey(this.shardId, clientId, seq))
      writer.del(dedupClientKey(this.shardId, clientId))
    }
  }
}
