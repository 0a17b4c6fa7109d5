/**
 * The binary encoding of the Raft core's values: log entries, hard state, configuration, snapshot
 * metadata (stored by log-store.ts) and peer messages (carried in `RaftEnvelope.message`,
 * proto/ringkv/v1/raft.proto). Compact, because MsgApp and its response are most of the peer
 * traffic: integers are LEB128 varints, and the entries of a MsgApp do not repeat their indexes.
 *
 *   every value     format u8 (=1) | body
 *   entry           index | entryBody
 *   entryBody       term | entryType u8 (0 normal, 1 confChange) | data bytes
 *   hard state      term | vote (0: none) | commit
 *   conf state      confState
 *   confState       voters ids | learners ids | votersOutgoing ids | learnersNext ids | autoLeave bool
 *   ids             count | nodeId*
 *   snapshot meta   index | term | confState
 *   message         tag u8 | from | to | term | then by tag:
 *     1 MsgApp             logTerm | index | commit | count | entryBody*   (entry i is at index + 1 + i)
 *     2 MsgAppResp         index | reject bool | rejectHint | logTerm
 *     3 MsgVote            logTerm | index | leaderTransfer bool        (4 MsgPreVote: the same)
 *     5 MsgVoteResp        reject bool                                  (6 MsgPreVoteResp: the same)
 *     7 MsgHeartbeat       commit | round [| leaderCommit]   (absent: written by an older node)
 *     8 MsgHeartbeatResp   round
 *     9 MsgSnap            index | term | confState | data bytes
 *    10 MsgTimeoutNow      (nothing)
 *    11 MsgTransferLeader  transferee
 *    12 MsgReadIndex       context bytes
 *    13 MsgReadIndexResp   context bytes | index | reject bool
 *
 * Unmarked integers are uvarints (safe integers only), `bytes` is a uvarint length and the bytes,
 * a bool is one byte 0 or 1, and a node id is a uvarint > 0.
 *
 * Encoding a value the core could not have made (a node id 0, a MsgApp whose entries do not follow
 * its index) is a programmer error (assert). Decoding never trusts its input: the bytes come from a
 * peer, or from a disk that may be damaged, so anything malformed (truncated, trailing bytes, an
 * unknown format or tag, a bool that is not 0/1, a configuration the core would refuse) throws
 * KvError INVALID_ARGUMENT and nothing else. The caller decides what that means: a peer's bad
 * message is dropped, a stored record that does not decode is corruption (log-store.ts).
 */
import { assert, ErrorCode, KvError, unreachable } from '../common/index.ts'
import type { LogIndex, NodeId, Term } from '../common/index.ts'
import { EntryType, messageTypes } from '../raft/index.ts'
import type { ConfState, Entry, HardState, Message, MessageType, SnapshotMeta } from '../raft/index.ts'
import { ByteReader, ByteWriter } from '../storage/index.ts'

/** The first byte of every encoding. A new layout gets a new number; readers refuse what they do not know. */
export const raftCodecFormat = 1

/** Stable wire tags. Never renumber: a tag names a message type in bytes other versions read. */
const messageTag: Readonly<Record<MessageType, number>> = {
  MsgApp: 1,
  MsgAppResp: 2,
  MsgVote: 3,
  MsgVoteResp: 4,
  MsgPreVote: 5,
  MsgPreVoteResp: 6,
  MsgHeartbeat: 7,
  MsgHeartbeatResp: 8,
  MsgSnap: 9,
  MsgTimeoutNow: 10,
  MsgTransferLeader: 11,
  MsgReadIndex: 12,
  MsgReadIndexResp: 13,
}
const messageTypeByTag: ReadonlyMap<number, MessageType> = new Map(
  messageTypes.map((type) => [messageTag[type], type]),
)
assert(messageTypeByTag.size === messageTypes.length, 'raft codec: message tags must be distinct')

const entryTypeTag: Readonly<Record<EntryType, number>> = { [EntryType.Normal]: 0, [EntryType.ConfChange]: 1 }
const entryTypeByTag: readonly EntryType[] = [EntryType.Normal, EntryType.ConfChange]

/** Fixed bytes estimated per entry (term, type, data length) and per message (header), for sizing buffers. */
const entryOverheadBytes = 16
const messageOverheadBytes = 64
/** The least bytes one entry body (term, type, empty data) and one node id take: bounds a decoded count. */
const entryBodyBytesMin = 3
const nodeIdBytesMin = 1

// ---------------------------------------------------------------------------------------------
// Public encoders and decoders.

export function encodeEntry(e: Entry): Uint8Array {
  const w = writer(e.data.length + entryOverheadBytes).uvarint(e.index)
  writeEntryBody(w, e)
  return w.finish()
}

/** Decodes an entry. Throws KvError INVALID_ARGUMENT on malformed bytes. */
export function decodeEntry(bytes: Uint8Array): Entry {
  const f = new FieldReader(bytes, 'raft entry')
  const index = f.index()
  const entry = readEntryBody(f, index)
  f.end()
  return entry
}

export function encodeHardState(hs: HardState): Uint8Array {
  assert(hs.vote === null || hs.vote > 0, 'raft codec: vote for node 0')
  return writer(messageOverheadBytes)
    .uvarint(hs.term)
    .uvarint(hs.vote ?? 0)
    .uvarint(hs.commit)
    .finish()
}

/** Decodes a hard state. Throws KvError INVALID_ARGUMENT on malformed bytes. */
export function decodeHardState(bytes: Uint8Array): HardState {
  const f = new FieldReader(bytes, 'raft hard state')
  const term = f.term()
  const vote = f.uint()
  const commit = f.index()
  f.end()
  return { term, vote: vote === 0 ? null : (vote as NodeId), commit }
}

export function encodeConfState(cs: ConfState): Uint8Array {
  const w = writer(messageOverheadBytes)
  writeConfState(w, cs)
  return w.finish()
}

/** Decodes a configuration. Throws KvError INVALID_ARGUMENT on malformed bytes or an inconsistent configuration. */
export function decodeConfState(bytes: Uint8Array): ConfState {
  const f = new FieldReader(bytes, 'raft conf state')
  const cs = readConfState(f)
  f.end()
  return cs
}

export function encodeSnapshotMeta(meta: SnapshotMeta): Uint8Array {
  const w = writer(messageOverheadBytes)
  writeSnapshotMeta(w, meta)
  return w.finish()
}

/** Decodes snapshot metadata. Throws KvError INVALID_ARGUMENT on malformed bytes. */
export function decodeSnapshotMeta(bytes: Uint8Array): SnapshotMeta {
  const f = new FieldReader(bytes, 'raft snapshot meta')
  const meta = readSnapshotMeta(f)
  f.end()
  return meta
}

export function encodeMessage(m: Message): Uint8Array {
  assert(m.from > 0 && m.to > 0, 'raft codec: message from or to node 0')
  const w = writer(messageCapacity(m)).u8(messageTag[m.type]).uvarint(m.from).uvarint(m.to).uvarint(m.term)
  writeMessageBody(w, m)
  return w.finish()
}

/**
 * Decodes a peer message. Throws KvError INVALID_ARGUMENT on malformed bytes, never anything else.
 * The result is well-formed as far as the bytes go; the core still checks what only it can judge
 * (terms and indexes against its log, `RawNode.step`). Byte fields are copies, not views of `bytes`.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const f = new FieldReader(bytes, 'raft message')
  const tag = f.r.u8()
  const type = messageTypeByTag.get(tag) ?? f.fail(`unknown message tag ${tag}`)
  const base = { from: f.nodeId(), to: f.nodeId(), term: f.term() }
  const m = readMessageBody(f, type, base)
  f.end()
  return m
}

// ---------------------------------------------------------------------------------------------
// Writing.

function writer(capacity: number): ByteWriter {
  return new ByteWriter(capacity).u8(raftCodecFormat)
}

function messageCapacity(m: Message): number {
  switch (m.type) {
    case 'MsgApp': {
      let bytes = messageOverheadBytes
      for (const e of m.entries) bytes += e.data.length + entryOverheadBytes
      return bytes
    }
    case 'MsgSnap':
      return messageOverheadBytes + m.snapshot.data.length
    case 'MsgReadIndex':
    case 'MsgReadIndexResp':
      return messageOverheadBytes + m.context.length
    default:
      return messageOverheadBytes
  }
}

function writeEntryBody(w: ByteWriter, e: Entry): void {
  w.uvarint(e.term).u8(entryTypeTag[e.type]).bytes(e.data)
}

function writeBool(w: ByteWriter, b: boolean): void {
  w.u8(b ? 1 : 0)
}

function writeIds(w: ByteWriter, ids: readonly NodeId[]): void {
  w.uvarint(ids.length)
  for (const id of ids) w.uvarint(id)
}

function writeConfState(w: ByteWriter, cs: ConfState): void {
  const problem = confStateProblem(cs)
  assert(problem === null, `raft codec: encoding an inconsistent configuration: ${problem}`)
  writeIds(w, cs.voters)
  writeIds(w, cs.learners)
  writeIds(w, cs.votersOutgoing)
  writeIds(w, cs.learnersNext)
  writeBool(w, cs.autoLeave)
}

function writeSnapshotMeta(w: ByteWriter, meta: SnapshotMeta): void {
  w.uvarint(meta.index).uvarint(meta.term)
  writeConfState(w, meta.confState)
}

/** The MsgApp entries follow `m.index` one by one, so only their bodies are written. */
function writeAppEntries(w: ByteWriter, m: Extract<Message, { type: 'MsgApp' }>): void {
  w.uvarint(m.entries.length)
  m.entries.forEach((e, i) => {
    assert(e.index === m.index + 1 + i, `raft codec: MsgApp entry ${e.index} does not follow ${m.index}`)
    writeEntryBody(w, e)
  })
}

function writeMessageBody(w: ByteWriter, m: Message): void {
  switch (m.type) {
    case 'MsgApp':
      w.uvarint(m.logTerm).uvarint(m.index).uvarint(m.commit)
      return writeAppEntries(w, m)
    case 'MsgAppResp':
      w.uvarint(m.index)
      writeBool(w, m.reject)
      w.uvarint(m.rejectHint).uvarint(m.logTerm)
      return
    case 'MsgVote':
    case 'MsgPreVote':
      w.uvarint(m.logTerm).uvarint(m.index)
      return writeBool(w, m.leaderTransfer)
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      return writeBool(w, m.reject)
    case 'MsgHeartbeat':
      w.uvarint(m.commit).uvarint(m.round)
      if (m.leaderCommit !== undefined) w.uvarint(m.leaderCommit)
      return
    case 'MsgHeartbeatResp':
      w.uvarint(m.round)
      return
    case 'MsgSnap':
      writeSnapshotMeta(w, m.snapshot.meta)
      w.bytes(m.snapshot.data)
      return
    case 'MsgTimeoutNow':
      return
    case 'MsgTransferLeader':
      assert(m.transferee > 0, 'raft codec: transfer to node 0')
      w.uvarint(m.transferee)
      return
    case 'MsgReadIndex':
      w.bytes(m.context)
      return
    case 'MsgReadIndexResp':
      w.bytes(m.context).uvarint(m.index)
      return writeBool(w, m.reject)
    default:
      unreachable(m)
  }
}

// ---------------------------------------------------------------------------------------------
// Reading.

function invalid(message: string): never {
  throw new KvError(ErrorCode.InvalidArgument, message)
}

/**
 * A ByteReader for untrusted bytes with the field kinds of this encoding. Every failure is KvError
 * INVALID_ARGUMENT naming what was being decoded.
 */
class FieldReader {
  readonly r: ByteReader

  constructor(
    bytes: Uint8Array,
    private readonly what: string,
  ) {
    // A Buffer (what gRPC and RocksDB hand out) slices to views of itself; reading through a plain
    // Uint8Array view makes every byte field a copy the caller may keep after reusing `bytes`.
    const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    this.r = new ByteReader(view, 0, what, invalid)
    const format = this.r.u8()
    if (format !== raftCodecFormat) this.fail(`unknown format ${format}`)
  }

  fail(why: string): never {
    invalid(`corrupt ${this.what}: ${why}`)
  }

  uint(): number {
    return this.r.uvarint()
  }

  term(): Term {
    return this.r.uvarint() as Term
  }

  index(): LogIndex {
    return this.r.uvarint() as LogIndex
  }

  nodeId(): NodeId {
    const id = this.r.uvarint()
    if (id === 0) this.fail('node id 0')
    return id as NodeId
  }

  bool(): boolean {
    const b = this.r.u8()
    if (b > 1) this.fail(`bool ${b}`)
    return b === 1
  }

  bytes(): Uint8Array {
    return this.r.bytes()
  }

  /**
   * A count of items that take at least `itemBytesMin` each. Checked against the bytes left before
   * anything is read, so a hostile count cannot make the caller loop or allocate beyond the input.
   */
  count(itemBytesMin: number): number {
    const n = this.r.uvarint()
    if (n * itemBytesMin > this.r.remaining) this.fail(`count ${n} exceeds the bytes left`)
    return n
  }

  end(): void {
    this.r.end()
  }
}

function readEntryBody(f: FieldReader, index: LogIndex): Entry {
  const term = f.term()
  const tag = f.r.u8()
  const type = entryTypeByTag[tag] ?? f.fail(`unknown entry type ${tag}`)
  return { term, index, type, data: f.bytes() }
}

function readIds(f: FieldReader): NodeId[] {
  const n = f.count(nodeIdBytesMin)
  const ids: NodeId[] = []
  for (let i = 0; i < n; i++) ids.push(f.nodeId())
  return ids
}

function readConfState(f: FieldReader): ConfState {
  const cs: ConfState = {
    voters: readIds(f),
    learners: readIds(f),
    votersOutgoing: readIds(f),
    learnersNext: readIds(f),
    autoLeave: f.bool(),
  }
  const problem = confStateProblem(cs)
  if (problem !== null) f.fail(problem)
  return cs
}

function readSnapshotMeta(f: FieldReader): SnapshotMeta {
  return { index: f.index(), term: f.term(), confState: readConfState(f) }
}

function readAppEntries(f: FieldReader, index: LogIndex): Entry[] {
  const n = f.count(entryBodyBytesMin)
  if (!Number.isSafeInteger(index + n)) f.fail('entries beyond the largest index')
  const entries: Entry[] = []
  for (let i = 0; i < n; i++) entries.push(readEntryBody(f, (index + 1 + i) as LogIndex))
  return entries
}

interface MessageHeader {
  readonly from: NodeId
  readonly to: NodeId
  readonly term: Term
}

function readMessageBody(f: FieldReader, type: MessageType, h: MessageHeader): Message {
  switch (type) {
    case 'MsgApp': {
      const logTerm = f.term()
      const index = f.index()
      const commit = f.index()
      return { ...h, type, logTerm, index, commit, entries: readAppEntries(f, index) }
    }
    case 'MsgAppResp':
      return { ...h, type, index: f.index(), reject: f.bool(), rejectHint: f.index(), logTerm: f.term() }
    case 'MsgVote':
    case 'MsgPreVote':
      return { ...h, type, logTerm: f.term(), index: f.index(), leaderTransfer: f.bool() }
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      return { ...h, type, reject: f.bool() }
    case 'MsgHeartbeat': {
      const commit = f.index()
      const round = f.uint()
      return f.r.remaining === 0
        ? { ...h, type, commit, round }
        : { ...h, type, commit, round, leaderCommit: f.index() }
    }
    case 'MsgHeartbeatResp':
      return { ...h, type, round: f.uint() }
    case 'MsgSnap': {
      const meta = readSnapshotMeta(f)
      return { ...h, type, snapshot: { meta, data: f.bytes() } }
    }
    case 'MsgTimeoutNow':
      return { ...h, type }
    case 'MsgTransferLeader':
      return { ...h, type, transferee: f.nodeId() }
    case 'MsgReadIndex':
      return { ...h, type, context: f.bytes() }
    case 'MsgReadIndexResp':
      return { ...h, type, context: f.bytes(), index: f.index(), reject: f.bool() }
    default:
      unreachable(type)
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration consistency.

/**
 * What is wrong with `cs`, or null. These are the invariants `restoreConfig` asserts
 * (raft/tracker/tracker.ts `checkConfigInvariants`): a MsgSnap carrying a configuration that
 * breaks them would crash the core on restore, so a peer's bytes are refused here instead.
 */
export function confStateProblem(cs: ConfState): string | null {
  for (const [name, ids] of [
    ['voters', cs.voters],
    ['learners', cs.learners],
    ['votersOutgoing', cs.votersOutgoing],
    ['learnersNext', cs.learnersNext],
  ] as const) {
    if (new Set(ids).size !== ids.length) return `duplicate node in ${name}`
  }
  const voters = new Set([...cs.voters, ...cs.votersOutgoing])
  const learners = new Set(cs.learners)
  const outgoing = new Set(cs.votersOutgoing)
  for (const id of cs.learners) if (voters.has(id)) return `node ${id} is a voter and a learner`
  for (const id of cs.learnersNext) {
    if (!outgoing.has(id)) return `next learner ${id} is not an outgoing voter`
    if (learners.has(id)) return `node ${id} is a learner and a next learner`
  }
  return null
}
