/**
 * The replicated command: what a write becomes before it is given an index (today by the local
 * replica, later by a Raft log entry) and applied by the state machine. Binary and versioned,
 * because it is stored in logs and read back by future versions:
 *
 *   format u8 (=3) | kind u8 | flags u8 | [clientId bytes | seq uvarint | firstIncompleteSeq uvarint]
 *   | [principal bytes | atMs uvarint] | body
 *   kind 1 put:    op(put)         kind 2 delete: op(delete)      kind 3 batch: count uvarint | op*
 *   kind 4 register (a session):   clientId bytes | floor uvarint          (flags: session only)
 *   op:            opKind u8 (1 put, 2 delete) | opFlags u8 | [expectedVersion uvarint]
 *                  | key bytes | [value bytes]        (bytes = length uvarint + raw)
 *   flags bit 0: the exactly-once tag is present;   bit 1: the session stamp is present (the
 *   principal the session belongs to, and the proposing leader's wall time: the log's own clock,
 *   which expires sessions alike on every replica);   opFlags bit 0: expectedVersion is present.
 *
 * A Raft entry carries one command, or a group of commands of one client proposed together (the
 * leader groups the writes of one loop turn: `encodeEntry`):
 *
 *   group entry:   format u8 (=3) | kind u8 (=5) | flags u8 (=0) | count uvarint | (command bytes)*
 *
 * with 2..limits.entryCommandsMax tagged put, delete or batch commands that all name one client
 * (their dedup records then share the entry's index as the client's last activity, dedup.ts).
 * An entry of one command is that command's encoding, so logs written before groups still apply.
 *
 * Format 3 added registered sessions (the stamp and kind 4); format 2 (tags without a stamp) is
 * still read. Format 2 added firstIncompleteSeq to the tag; format 1 was never deployed.
 * Commands are written only by us and validated before they are encoded. An entry that arrives in
 * an append from a peer is checked with `commandAcceptable` (validate.ts) before it is appended (a buggy or hostile
 * leader cannot plant one that no replica can apply); a command in our own log that does not decode
 * is then corruption of the log (an assertion, STYLE.md 7.4).
 */
import { assert, unreachable } from '../common/assert.ts'
import { limits } from '../common/limits.ts'
import { ByteReader, ByteWriter } from '../storage/index.ts'
import type { MalformedHandler } from '../storage/index.ts'
import type { BatchOp } from './api.ts'

export const commandFormat = 3
/** The previous format, still read from logs written before sessions were registered. */
const commandFormatUnstamped = 2

/**
 * The exactly-once tag of a write (Raft thesis §6.3, for pipelined clients): `seq` names the write
 * among the client's writes, and `firstIncompleteSeq` (<= seq) is the lowest seq the client has not
 * yet received an answer for, so the results of every seq below it may be discarded (dedup.ts).
 */
export interface ClientTag {
  readonly clientId: string
  readonly seq: number
  readonly firstIncompleteSeq: number
  /**
   * Present on every write from the network: the tag names a session registered on the shard
   * (`register`), which must belong to this principal (dedup.ts). Absent only for in-process
   * callers that predate sessions (tests, the simulator): their client is created on first use.
   */
  readonly session?: SessionStamp
}

/** Who a session belongs to, and when (the proposing leader's wall time) it was last used. */
export interface SessionStamp {
  readonly principal: string
  readonly atMs: number
}

export type Command =
  | {
      readonly kind: 'put'
      readonly key: Uint8Array
      readonly value: Uint8Array
      readonly expectedVersion?: number
      readonly tag?: ClientTag
    }
  | {
      readonly kind: 'delete'
      readonly key: Uint8Array
      readonly expectedVersion?: number
      readonly tag?: ClientTag
    }
  | { readonly kind: 'batch'; readonly ops: readonly BatchOp[]; readonly tag?: ClientTag }
  /**
   * Registers the exactly-once session `clientId` of `session.principal` (Raft thesis §6.3
   * RegisterClient); its writes must then carry seqs >= `floor`.
   */
  | {
      readonly kind: 'register'
      readonly clientId: string
      readonly floor: number
      readonly session: SessionStamp
      readonly tag?: undefined
    }

const Kind = { put: 1, delete: 2, batch: 3, register: 4 } as const
/** The kind byte of a grouped entry (see `encodeEntry`); never the kind of a Command. */
const kindGroup = 5
const OpKind = { put: 1, delete: 2 } as const
const flagTag = 0x01
const flagSession = 0x02
const opFlagExpected = 0x01
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function writeOp(w: ByteWriter, op: BatchOp): void {
  w.u8(OpKind[op.kind]).u8(op.expectedVersion === undefined ? 0 : opFlagExpected)
  if (op.expectedVersion !== undefined) w.uvarint(op.expectedVersion)
  w.bytes(op.key)
  if (op.kind === 'put') w.bytes(op.value)
}

/** Thrown by `commandDecodes`' reader; never escapes this file. */
class Malformed extends Error {}
const throwMalformed: MalformedHandler = (message) => {
  throw new Malformed(message)
}
const failStop: MalformedHandler = (message) => {
  assert(false, message)
}

function readOp(r: ByteReader, malformed: MalformedHandler): BatchOp {
  const kind = r.u8()
  const flags = r.u8()
  if ((flags & ~opFlagExpected) !== 0) malformed('corrupt command: unknown op flags')
  const expectedVersion = (flags & opFlagExpected) !== 0 ? r.uvarint() : undefined
  const key = r.bytes()
  const withVersion = expectedVersion === undefined ? {} : { expectedVersion }
  if (kind === OpKind.put) return { kind: 'put', key, value: r.bytes(), ...withVersion }
  if (kind !== OpKind.delete) malformed('corrupt command: unknown op kind')
  return { kind: 'delete', key, ...withVersion }
}

/** Encodes a validated command (see validate.ts). */
export function encodeCommand(command: Command): Uint8Array {
  const w = new ByteWriter(64 + approxCommandBytes(command))
  if (command.kind === 'register') {
    w.u8(commandFormat).u8(Kind.register).u8(flagSession)
    writeStamp(w, command.session)
    return w.bytes(encoder.encode(command.clientId)).uvarint(command.floor).finish()
  }
  const tag = command.tag
  const flags = tag === undefined ? 0 : flagTag | (tag.session === undefined ? 0 : flagSession)
  w.u8(commandFormat).u8(Kind[command.kind]).u8(flags)
  if (tag !== undefined) {
    w.bytes(encoder.encode(tag.clientId)).uvarint(tag.seq).uvarint(tag.firstIncompleteSeq)
    if (tag.session !== undefined) writeStamp(w, tag.session)
  }
  switch (command.kind) {
    case 'put':
    case 'delete':
      writeOp(w, command)
      break
    case 'batch':
      w.uvarint(command.ops.length)
      for (const op of command.ops) writeOp(w, op)
      break
    default:
      unreachable(command)
  }
  return w.finish()
}

function writeStamp(w: ByteWriter, stamp: SessionStamp): void {
  w.bytes(encoder.encode(stamp.principal)).uvarint(stamp.atMs)
}

export function decodeCommand(bytes: Uint8Array): Command {
  return readCommand(bytes, failStop)
}

/**
 * Decodes bytes that may be anything (an entry in a peer's append): the command, or null when
 * they do not decode. Never throws. See `commandAcceptable` (validate.ts) for the whole check.
 */
export function tryDecodeCommand(bytes: Uint8Array): Command | null {
  try {
    return readCommand(bytes, throwMalformed)
  } catch (err) {
    if (err instanceof Malformed) return null
    throw err
  }
}

function readCommand(bytes: Uint8Array, malformed: MalformedHandler): Command {
  const r = new ByteReader(bytes, 0, 'command', malformed)
  const format = r.u8()
  if (format !== commandFormat && format !== commandFormatUnstamped)
    malformed('corrupt command: unknown format')
  const kind = r.u8()
  const flags = r.u8()
  const known = format === commandFormat ? flagTag | flagSession : flagTag
  if ((flags & ~known) !== 0) malformed('corrupt command: unknown flags')
  const text = (what: string): string => {
    try {
      return decoder.decode(r.bytes())
    } catch (err) {
      if (err instanceof Malformed) throw err
      return malformed(`corrupt command: ${what} is not UTF-8`)
    }
  }
  const readStamp = (): SessionStamp => ({ principal: text('principal'), atMs: r.uvarint() })
  if (format === commandFormat && kind === Kind.register) {
    if (flags !== flagSession) malformed('corrupt command: a registration carries exactly its stamp')
    const session = readStamp()
    const command: Command = { kind: 'register', clientId: text('client id'), floor: r.uvarint(), session }
    r.end()
    return command
  }
  if ((flags & flagSession) !== 0 && (flags & flagTag) === 0)
    malformed('corrupt command: a stamp without a tag')
  let tag: ClientTag | undefined
  if ((flags & flagTag) !== 0) {
    const clientId = text('client id')
    const seq = r.uvarint()
    const firstIncompleteSeq = r.uvarint()
    if (firstIncompleteSeq > seq) malformed('corrupt command: firstIncompleteSeq above seq')
    tag =
      (flags & flagSession) !== 0
        ? { clientId, seq, firstIncompleteSeq, session: readStamp() }
        : { clientId, seq, firstIncompleteSeq }
  }
  const withTag = tag === undefined ? {} : { tag }
  let command: Command
  if (kind === Kind.batch) {
    const count = r.uvarint()
    const ops: BatchOp[] = []
    if (count > bytes.length) malformed('corrupt command: op count beyond its bytes')
    for (let i = 0; i < count; i++) ops.push(readOp(r, malformed))
    command = { kind: 'batch', ops, ...withTag }
  } else {
    const op = readOp(r, malformed)
    if (Kind[op.kind] !== kind) malformed('corrupt command: kind and op disagree')
    command = { ...op, ...withTag }
  }
  r.end()
  return command
}

/** Bytes of keys and values in the command (what the group-commit byte bound counts). */
export function approxCommandBytes(command: Command): number {
  const opBytes = (op: BatchOp): number => op.key.length + (op.kind === 'put' ? op.value.length : 0) + 12
  if (command.kind === 'register') return command.clientId.length + command.session.principal.length + 24
  const tagBytes =
    command.tag === undefined
      ? 0
      : command.tag.clientId.length + 20 + (command.tag.session?.principal.length ?? 0) + 12
  switch (command.kind) {
    case 'put':
    case 'delete':
      return opBytes(command) + tagBytes
    case 'batch':
      return command.ops.reduce((n, op) => n + opBytes(op), tagBytes)
    default:
      return unreachable(command)
  }
}

/**
 * The bytes of one Raft entry carrying `commands`: the command itself when there is one, else a
 * group (see the file comment). Commands must be validated, and a group's tagged by one client.
 */
export function encodeEntry(commands: readonly Command[]): Uint8Array {
  const only = commands[0]
  assert(only !== undefined && commands.length <= limits.entryCommandsMax, 'entry command count')
  if (commands.length === 1) return encodeCommand(only)
  const parts = commands.map((c) => {
    assert(groupable(c) && c.tag.clientId === groupClient(only), "a group holds one client's writes")
    return encodeCommand(c)
  })
  const w = new ByteWriter(16 + parts.reduce((n, p) => n + p.length + 5, 0))
  w.u8(commandFormat).u8(kindGroup).u8(0).uvarint(parts.length)
  for (const part of parts) w.bytes(part)
  return w.finish()
}

/** The commands of an entry from our own log (corruption is an assertion, like decodeCommand). */
export function decodeEntry(bytes: Uint8Array): readonly Command[] {
  return readEntry(bytes, failStop)
}

/** The commands of an entry that may be anything (a peer's append), or null. Never throws. */
export function tryDecodeEntry(bytes: Uint8Array): readonly Command[] | null {
  try {
    return readEntry(bytes, throwMalformed)
  } catch (err) {
    if (err instanceof Malformed) return null
    throw err
  }
}

/** A command that may share an entry with others: a tagged write. */
export function groupable(
  command: Command,
): command is Exclude<Command, { kind: 'register' }> & { readonly tag: ClientTag } {
  return command.kind !== 'register' && command.tag !== undefined
}

function groupClient(command: Command): string | undefined {
  return command.tag?.clientId
}

function readEntry(bytes: Uint8Array, malformed: MalformedHandler): readonly Command[] {
  if (bytes.length < 2 || bytes[0] !== commandFormat || bytes[1] !== kindGroup)
    return [readCommand(bytes, malformed)]
  const r = new ByteReader(bytes, 2, 'entry', malformed)
  if (r.u8() !== 0) malformed('corrupt entry: unknown group flags')
  const count = r.uvarint()
  if (count < 2 || count > limits.entryCommandsMax) malformed('corrupt entry: group size out of bounds')
  const commands: Command[] = []
  let client: string | undefined
  for (let i = 0; i < count; i++) {
    const command = readCommand(r.bytes(), malformed)
    if (!groupable(command)) malformed('corrupt entry: a group holds tagged writes only')
    client ??= command.tag.clientId
    if (command.tag.clientId !== client) malformed("corrupt entry: a group holds one client's writes")
    commands.push(command)
  }
  r.end()
  return commands
}
