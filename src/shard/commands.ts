/**
 * The replicated command: what a write becomes before it is given an index (today by the local
 * replica, later by a Raft log entry) and applied by the state machine. Binary and versioned,
 * because it is stored in logs and read back by future versions:
 *
 *   format u8 (=2) | kind u8 | flags u8 | [clientId bytes | seq uvarint | firstIncompleteSeq uvarint]
 *   | body
 *   kind 1 put:    op(put)         kind 2 delete: op(delete)      kind 3 batch: count uvarint | op*
 *   op:            opKind u8 (1 put, 2 delete) | opFlags u8 | [expectedVersion uvarint]
 *                  | key bytes | [value bytes]        (bytes = length uvarint + raw)
 *   flags bit 0: the exactly-once tag is present;   opFlags bit 0: expectedVersion is present.
 *
 * Format 2 added firstIncompleteSeq to the tag; format 1 was never deployed and is not read.
 * Commands are written only by us and validated before they are encoded; a command that does not
 * decode is corruption of the log (an assertion, STYLE.md 7.4).
 */
import { assert, unreachable } from '../common/assert.ts'
import { ByteReader, ByteWriter } from '../storage/index.ts'
import type { BatchOp } from './api.ts'

export const commandFormat = 2

/**
 * The exactly-once tag of a write (Raft thesis §6.3, for pipelined clients): `seq` names the write
 * among the client's writes, and `firstIncompleteSeq` (<= seq) is the lowest seq the client has not
 * yet received an answer for, so the results of every seq below it may be discarded (dedup.ts).
 */
export interface ClientTag {
  readonly clientId: string
  readonly seq: number
  readonly firstIncompleteSeq: number
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

const Kind = { put: 1, delete: 2, batch: 3 } as const
const OpKind = { put: 1, delete: 2 } as const
const flagTag = 0x01
const opFlagExpected = 0x01
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function writeOp(w: ByteWriter, op: BatchOp): void {
  w.u8(OpKind[op.kind]).u8(op.expectedVersion === undefined ? 0 : opFlagExpected)
  if (op.expectedVersion !== undefined) w.uvarint(op.expectedVersion)
  w.bytes(op.key)
  if (op.kind === 'put') w.bytes(op.value)
}

function readOp(r: ByteReader): BatchOp {
  const kind = r.u8()
  const flags = r.u8()
  assert((flags & ~opFlagExpected) === 0, 'corrupt command: unknown op flags')
  const expectedVersion = (flags & opFlagExpected) !== 0 ? r.uvarint() : undefined
  const key = r.bytes()
  const withVersion = expectedVersion === undefined ? {} : { expectedVersion }
  if (kind === OpKind.put) return { kind: 'put', key, value: r.bytes(), ...withVersion }
  assert(kind === OpKind.delete, 'corrupt command: unknown op kind')
  return { kind: 'delete', key, ...withVersion }
}

/** Encodes a validated command (see validate.ts). */
export function encodeCommand(command: Command): Uint8Array {
  const w = new ByteWriter(64 + approxCommandBytes(command))
  w.u8(commandFormat)
    .u8(Kind[command.kind])
    .u8(command.tag === undefined ? 0 : flagTag)
  if (command.tag !== undefined)
    w.bytes(encoder.encode(command.tag.clientId))
      .uvarint(command.tag.seq)
      .uvarint(command.tag.firstIncompleteSeq)
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

export function decodeCommand(bytes: Uint8Array): Command {
  const r = new ByteReader(bytes, 0, 'command')
  assert(r.u8() === commandFormat, 'corrupt command: unknown format')
  const kind = r.u8()
  const flags = r.u8()
  assert((flags & ~flagTag) === 0, 'corrupt command: unknown flags')
  let tag: ClientTag | undefined
  if ((flags & flagTag) !== 0) {
    let clientId: string
    try {
      clientId = decoder.decode(r.bytes())
    } catch {
      assert(false, 'corrupt command: client id is not UTF-8')
    }
    const seq = r.uvarint()
    const firstIncompleteSeq = r.uvarint()
    assert(firstIncompleteSeq <= seq, 'corrupt command: firstIncompleteSeq above seq')
    tag = { clientId, seq, firstIncompleteSeq }
  }
  const withTag = tag === undefined ? {} : { tag }
  let command: Command
  if (kind === Kind.batch) {
    const count = r.uvarint()
    const ops: BatchOp[] = []
    for (let i = 0; i < count; i++) ops.push(readOp(r))
    command = { kind: 'batch', ops, ...withTag }
  } else {
    const op = readOp(r)
    assert(Kind[op.kind] === kind, 'corrupt command: kind and op disagree')
    command = { ...op, ...withTag }
  }
  r.end()
  return command
}

/** Bytes of keys and values in the command (what the group-commit byte bound counts). */
export function approxCommandBytes(command: Command): number {
  const opBytes = (op: BatchOp): number => op.key.length + (op.kind === 'put' ? op.value.length : 0) + 12
  const tagBytes = command.tag === undefined ? 0 : command.tag.clientId.length + 20
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
