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
 * - `lastIndex`: the log index of the client's last tagged command, for LRU eviction. Several
 *   writes of one client may share an entry (a group, commands.ts), never those of two clients,
 *   so each client's lastIndex is still its own.
 *
 * It is state-machine state: changed only by `apply` (a pure function of the log: recency is a log
 * index, never a time), written through the apply's batch under the shard-local prefix (keys.ts
 * `dedupClientKey`/`dedupResultKey`), and identical on every replica that applied the same
 * commands, whether it loaded the table from disk or built it in memory. A client's header is
 * written once per entry however many of its commands the entry holds: `begin` and `register`
 * mark it changed, and the caller ends every entry with `flush` (into the same batch), which
 * writes each changed header once; results and deletions are written as they happen.
 *
 * Registered sessions (Raft thesis §6.3 RegisterClient; every write from the network): a client id
 * is registered on the shard through the log (`register`, with the principal it belongs to and a
 * floor for its seqs) before its writes, and a write names it. A write whose session is not in the
 * table, belongs to another principal, or has expired is refused (`unknown`: SESSION_EXPIRED) and
 * never applied, so a forgotten session can never make a retry apply twice. Sessions expire after
 * `sessionIdleMsMax` without use, measured by the log's own clock (the largest leader wall time
 * stamped on a command so far), so every replica expires alike. Registering beyond a principal's
 * `sessionsPerPrincipalMax` gives up that principal's least recently active session, never another
 * principal's; with the table full of live sessions of others, registering is refused (`full`).
 * Registering an id that exists under another principal is refused (`conflict`): nobody can take
 * over, advance or evict another principal's session. (Clients of one principal share a quota;
 * unauthenticated clients are one principal, protected by their ids being unguessable.)
 *
 * Unregistered clients (a tag without a session stamp: in-process callers such as tests and the
 * simulator, and log entries written before sessions) are created on first use, and beyond
 * `clientsMax` the least recently active client is forgotten (header and results deleted in the
 * same batch). NB(storage): such a forgotten client that then retries an old write gets it applied
 * again; no network client can be in this mode.
 *
 * Record encodings: header = format u8 (=3) | watermark uvarint | lastIndex uvarint | session u8
 * (0 none, 1 registered) | [principal bytes | lastActiveMs uvarint]; format 2 headers (no session
 * byte) are read as unregistered; result = format u8 (=2) | result (encodeApplyResult).
 */
import { assert, unreachable } from '../common/assert.ts'
import type { LogIndex, ShardId } from '../common/ids.ts'
import {
  ByteReader,
  ByteWriter,
  decodeDedupKey,
  failStop,
  type MalformedHandler,
  dedupClientIdBytes,
  dedupClientKey,
  dedupResultKey,
  type Entry,
} from '../storage/index.ts'
import { limits } from '../common/limits.ts'
import type { BatchOpResult } from './api.ts'
import type { ClientTag, SessionStamp } from './commands.ts'

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
  /** The tag's session is not registered here for its principal, or expired: nothing applied. */
  | { readonly kind: 'unknown' }

/** What registering a session did. */
export type RegisterCheck =
  | { readonly kind: 'registered' }
  /** The id is registered to another principal: nothing changed. */
  | { readonly kind: 'conflict' }
  /** The table holds `limit` live sessions of other principals: nothing changed. */
  | { readonly kind: 'full'; readonly limit: number }

/** One client's persisted header. */
export interface DedupClientHeader {
  readonly watermark: number
  readonly lastIndex: LogIndex
  /** The principal of a registered session; null for an unregistered client. */
  readonly principal?: string | null
  /** The log time of the session's last use (registered sessions). */
  readonly lastActiveMs?: number
}

/** A read-only view of one client's state (for logs and tests). */
export interface DedupClientView extends DedupClientHeader {
  /** Seqs with a saved result, ascending. */
  readonly seqs: readonly number[]
}

interface ClientState {
  /** The client id's bytes in its dedup keys (keys.ts dedupClientIdBytes), encoded once. */
  readonly idBytes: Uint8Array
  watermark: number
  lastIndex: LogIndex
  readonly principal: string | null
  lastActiveMs: number
  // Invariant: every key >= watermark; size <= resultsPerClientMax (+ what a tightened limit left).
  readonly results: Map<number, ApplyResult>
}

/** The subset of a write batch the table writes through. */
export interface DedupWriter {
  put(key: Uint8Array, value: Uint8Array): unknown
  del(key: Uint8Array): unknown
}

const recordFormat = 2
const headerFormat = 3
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

function readBool(r: ByteReader, malformed: MalformedHandler): boolean {
  const b = r.u8()
  if (b !== 0 && b !== 1) malformed('corrupt dedup record: bad boolean')
  return b === 1
}

/**
 * Reads what encodeApplyResult wrote. Malformed bytes are corruption (an assertion), unless
 * `malformed` says otherwise (records from outside: a backup file); the reader should carry it too.
 */
export function decodeApplyResult(r: ByteReader, malformed: MalformedHandler = failStop): ApplyResult {
  const kind = r.u8()
  switch (kind) {
    case ResultKind.put:
      return { kind: 'put', version: r.uvarint() as LogIndex }
    case ResultKind.delete:
      return { kind: 'delete', deleted: readBool(r, malformed) }
    case ResultKind.batch: {
      const n = r.uvarint()
      // Each result takes at least two bytes: a count that cannot fit what is left is corruption.
      if (n * 2 > r.remaining) malformed('corrupt dedup record: batch result count')
      const results: BatchOpResult[] = []
      for (let i = 0; i < n; i++) {
        const k = r.u8()
        if (k === ResultKind.put) results.push({ kind: 'put', version: r.uvarint() as LogIndex })
        else {
          if (k !== ResultKind.delete) malformed('corrupt dedup record: bad batch result kind')
          results.push({ kind: 'delete', deleted: readBool(r, malformed) })
        }
      }
      return { kind: 'batch', results }
    }
    case ResultKind.versionMismatch:
      return { kind: 'versionMismatch', opIndex: r.uvarint(), currentVersion: r.uvarint() }
    default:
      return malformed('corrupt dedup record: bad result kind')
  }
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder('utf-8', { fatal: true })

export function encodeDedupHeader(header: DedupClientHeader): Uint8Array {
  const w = new ByteWriter(48).u8(headerFormat).uvarint(header.watermark).uvarint(header.lastIndex)
  const principal = header.principal ?? null
  if (principal === null) return w.u8(0).finish()
  return w
    .u8(1)
    .bytes(textEncoder.encode(principal))
    .uvarint(header.lastActiveMs ?? 0)
    .finish()
}

/** A client's header as stored; malformed bytes as decodeApplyResult says. */
export function decodeDedupHeader(
  bytes: Uint8Array,
  malformed: MalformedHandler = failStop,
): DedupClientHeader {
  const r = new ByteReader(bytes, 0, 'dedup header', malformed)
  const format = r.u8()
  if (format !== headerFormat && format !== recordFormat) malformed('corrupt dedup header: unknown format')
  const watermark = r.uvarint()
  const lastIndex = r.uvarint() as LogIndex
  let principal: string | null = null
  let lastActiveMs = 0
  if (format === headerFormat && readBool(r, malformed)) {
    try {
      principal = textDecoder.decode(r.bytes())
    } catch {
      malformed('corrupt dedup header: principal is not UTF-8')
    }
    lastActiveMs = r.uvarint()
  }
  r.end()
  return { watermark, lastIndex, principal, lastActiveMs }
}

export function encodeDedupResult(result: ApplyResult): Uint8Array {
  return encodeApplyResult(new ByteWriter(16).u8(recordFormat), result).finish()
}

/** A saved result as stored; malformed bytes as decodeApplyResult says. */
export function decodeDedupResult(bytes: Uint8Array, malformed: MalformedHandler = failStop): ApplyResult {
  const r = new ByteReader(bytes, 0, 'dedup result', malformed)
  if (r.u8() !== recordFormat) malformed('corrupt dedup result: unknown format')
  const result = decodeApplyResult(r, malformed)
  r.end()
  return result
}

const ascending = (a: number, b: number): number => a - b

export interface DedupTableInit {
  readonly shardId: ShardId
  readonly clientsMax: number
  readonly resultsPerClientMax: number
  /** Default limits.sessionsPerPrincipalMax. */
  readonly sessionsPerPrincipalMax?: number
  /** Default limits.sessionIdleMsMax. */
  readonly sessionIdleMsMax?: number
}

export class DedupTable {
  private readonly shardId: ShardId
  private readonly clientsMax: number
  private readonly resultsPerClientMax: number
  private readonly sessionsPerPrincipalMax: number
  private readonly sessionIdleMsMax: number
  /** Registered sessions per principal. Invariant: the counts of `clients` by principal. */
  private readonly perPrincipal = new Map<string, number>()
  /** The log's clock: the largest session stamp applied (or loaded) so far. Never decreases. */
  private clockMs = 0
  // Invariant: iteration order is ascending lastIndex (least recently active client first).
  private readonly clients = new Map<string, ClientState>()
  // The largest lastIndex in the table (0 when empty): activity must come in increasing index order.
  private newestIndex = 0
  // Clients whose header changed since the last `flush`. Invariant: each is in `clients`.
  private readonly changed = new Map<string, ClientState>()

  constructor(init: DedupTableInit) {
    assert(Number.isSafeInteger(init.clientsMax) && init.clientsMax > 0, 'bad dedupClientsMax')
    assert(
      Number.isSafeInteger(init.resultsPerClientMax) && init.resultsPerClientMax > 0,
      'bad dedupResultsPerClientMax',
    )
    this.shardId = init.shardId
    this.clientsMax = init.clientsMax
    this.resultsPerClientMax = init.resultsPerClientMax
    this.sessionsPerPrincipalMax = init.sessionsPerPrincipalMax ?? limits.sessionsPerPrincipalMax
    this.sessionIdleMsMax = init.sessionIdleMsMax ?? limits.sessionIdleMsMax
    assert(Number.isSafeInteger(this.sessionsPerPrincipalMax) && this.sessionsPerPrincipalMax > 0)
    assert(Number.isSafeInteger(this.sessionIdleMsMax) && this.sessionIdleMsMax > 0)
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
        loaded.set(k.clientId, {
          idBytes: dedupClientIdBytes(k.clientId),
          watermark: header.watermark,
          lastIndex: header.lastIndex,
          principal: header.principal ?? null,
          lastActiveMs: header.lastActiveMs ?? 0,
          results: new Map(),
        })
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
      if (client.principal !== null) table.countPrincipal(client.principal, 1)
      table.clockMs = Math.max(table.clockMs, client.lastActiveMs)
    }
    return table
  }

  private countPrincipal(principal: string, delta: number): void {
    const n = (this.perPrincipal.get(principal) ?? 0) + delta
    assert(n >= 0, 'dedup: principal count below zero')
    if (n === 0) this.perPrincipal.delete(principal)
    else this.perPrincipal.set(principal, n)
  }

  /** Sessions registered by `principal` (for tests). */
  sessionsOf(principal: string): number {
    return this.perPrincipal.get(principal) ?? 0
  }

  private advanceClock(stamp: SessionStamp): void {
    if (stamp.atMs > this.clockMs) this.clockMs = stamp.atMs
  }

  private expired(client: ClientState): boolean {
    return client.principal !== null && client.lastActiveMs + this.sessionIdleMsMax < this.clockMs
  }

  /** Deletes a client and its results from the table and the batch. */
  private forget(clientId: string, client: ClientState, writer: DedupWriter): void {
    this.clients.delete(clientId)
    this.changed.delete(clientId)
    if (client.principal !== null) this.countPrincipal(client.principal, -1)
    for (const seq of [...client.results.keys()].sort(ascending))
      writer.del(dedupResultKey(this.shardId, client.idBytes, seq))
    writer.del(dedupClientKey(this.shardId, client.idBytes))
  }

  /** Raises a client's watermark to `to`, deleting the results below it. */
  private raiseWatermark(clientId: string, client: ClientState, to: number, writer: DedupWriter): void {
    if (to <= client.watermark) return
    client.watermark = to
    const acknowledged = [...client.results.keys()].filter((seq) => seq < to)
    for (const seq of acknowledged.sort(ascending)) {
      client.results.delete(seq)
      writer.del(dedupResultKey(this.shardId, client.idBytes, seq))
    }
  }

  /**
   * Makes `index` the client's last activity (moving it to the recent end); its header is written
   * by the next `flush`.
   */
  private touch(clientId: string, client: ClientState, index: LogIndex): void {
    // Several writes of one client may share an entry (a group, commands.ts): the index is then
    // already this client's last activity, and it stays the most recent client.
    const again =
      index === this.newestIndex && client.lastIndex === index && this.clients.get(clientId) === client
    assert(index > this.newestIndex || again, 'dedup indexes must increase')
    this.newestIndex = index
    this.clients.delete(clientId)
    client.lastIndex = index
    if (client.principal !== null) client.lastActiveMs = this.clockMs
    this.clients.set(clientId, client)
    this.changed.set(clientId, client)
  }

  /**
   * Writes the header of every client changed since the last flush, once each. The state machine
   * calls it at the end of every entry it applies, into the entry's batch.
   */
  flush(writer: DedupWriter): void {
    for (const [clientId, client] of this.changed) {
      assert(this.clients.get(clientId) === client, 'dedup: a changed header of a forgotten client')
      writer.put(dedupClientKey(this.shardId, client.idBytes), encodeDedupHeader(client))
    }
    this.changed.clear()
  }

  /**
   * Applies a registration at `index` (see the file comment): reaps expired sessions, then
   * registers `clientId` for `stamp.principal` with its seqs starting at `floor` (or renews it
   * when that principal holds it already, raising its watermark to `floor`).
   */
  register(
    clientId: string,
    floor: number,
    stamp: SessionStamp,
    index: LogIndex,
    writer: DedupWriter,
  ): RegisterCheck {
    assert(index > this.newestIndex, 'dedup indexes must increase')
    this.advanceClock(stamp)
    // Least recently active first, and activity times rise with indexes: expired ones lead.
    for (const [id, c] of this.clients) {
      if (c.principal === null) continue
      if (!this.expired(c)) break
      this.forget(id, c, writer)
    }
    const existing = this.clients.get(clientId)
    if (existing !== undefined) {
      if (existing.principal !== stamp.principal) return { kind: 'conflict' }
      this.raiseWatermark(clientId, existing, floor, writer)
      this.touch(clientId, existing, index)
      return { kind: 'registered' }
    }
    if (this.sessionsOf(stamp.principal) >= this.sessionsPerPrincipalMax) {
      // Give up this principal's own least recently active session.
      for (const [id, c] of this.clients) {
        if (c.principal !== stamp.principal) continue
        this.forget(id, c, writer)
        break
      }
    }
    if (this.clients.size >= this.clientsMax) return { kind: 'full', limit: this.clientsMax }
    const client: ClientState = {
      idBytes: dedupClientIdBytes(clientId),
      watermark: floor,
      lastIndex: index,
      principal: stamp.principal,
      lastActiveMs: this.clockMs,
      results: new Map(),
    }
    this.countPrincipal(stamp.principal, 1)
    this.touch(clientId, client, index)
    return { kind: 'registered' }
  }

  /** Clients remembered. */
  get size(): number {
    return this.clients.size
  }

  /** One client's state, or undefined when the table does not know it. */
  client(clientId: string): DedupClientView | undefined {
    const c = this.clients.get(clientId)
    if (c === undefined) return undefined
    return {
      watermark: c.watermark,
      lastIndex: c.lastIndex,
      principal: c.principal,
      lastActiveMs: c.lastActiveMs,
      seqs: [...c.results.keys()].sort(ascending),
    }
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
    if (tag.session !== undefined) {
      // A registered session: it must exist, be this principal's, and be alive. Never created here.
      this.advanceClock(tag.session)
      if (client === undefined || client.principal !== tag.session.principal) return { kind: 'unknown' }
      if (this.expired(client)) {
        this.forget(tag.clientId, client, writer)
        return { kind: 'unknown' }
      }
    } else if (client !== undefined && client.principal !== null) {
      // An unstamped tag (in-process) never touches a registered session.
      return { kind: 'unknown' }
    }
    if (client !== undefined && tag.seq < client.watermark)
      return { kind: 'stale', watermark: client.watermark }
    if (client === undefined) {
      client = {
        idBytes: dedupClientIdBytes(tag.clientId),
        watermark: tag.firstIncompleteSeq,
        lastIndex: index,
        principal: null,
        lastActiveMs: 0,
        results: new Map(),
      }
    } else {
      this.raiseWatermark(tag.clientId, client, tag.firstIncompleteSeq, writer)
    }
    this.touch(tag.clientId, client, index)
    if (tag.session === undefined) this.evict(writer)
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
    writer.put(dedupResultKey(this.shardId, client.idBytes, tag.seq), encodeDedupResult(result))
  }

  /** Unregistered clients only (in-process callers): beyond clientsMax, the least recent goes. */
  private evict(writer: DedupWriter): void {
    while (this.clients.size > this.clientsMax) {
      const oldest = this.clients.entries().next()
      assert(oldest.done !== true, 'dedup table empty while over its bound')
      const [clientId, client] = oldest.value
      this.forget(clientId, client, writer)
    }
  }
}
