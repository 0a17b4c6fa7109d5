import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AssertionError, limits } from '../../../src/common/index.ts'
import {
  commandFormat,
  decodeCommand,
  encodeCommand,
  tryDecodeCommand,
  type Command,
} from '../../../src/shard/commands.ts'
import { commandAcceptable } from '../../../src/shard/validate.ts'

const key = fc.uint8Array({ minLength: 1, maxLength: 20 })
const expected = fc.option(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { nil: undefined })
const tag = fc.option(
  fc
    .tuple(
      fc.string({ minLength: 1, maxLength: 20, unit: 'grapheme' }),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    )
    .map(([clientId, a, b]) => ({ clientId, seq: Math.max(a, b), firstIncompleteSeq: Math.min(a, b) })),
  { nil: undefined },
)
const withOpt = <T extends object>(base: T, extra: Record<string, unknown>): T => {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) out[k] = v
  return out as T
}
const putOp = fc
  .tuple(key, fc.uint8Array({ maxLength: 40 }), expected)
  .map(([k, v, e]) => withOpt({ kind: 'put' as const, key: k, value: v }, { expectedVersion: e }))
const deleteOp = fc
  .tuple(key, expected)
  .map(([k, e]) => withOpt({ kind: 'delete' as const, key: k }, { expectedVersion: e }))
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.tuple(putOp, tag).map(([op, t]) => withOpt<Command>(op, { tag: t })),
  fc.tuple(deleteOp, tag).map(([op, t]) => withOpt<Command>(op, { tag: t })),
  fc
    .tuple(fc.array(fc.oneof(putOp, deleteOp), { minLength: 1, maxLength: 5 }), tag)
    .map(([ops, t]) => withOpt<Command>({ kind: 'batch', ops }, { tag: t })),
)

describe('shard/commands', () => {
  it('round-trips every command', () => {
    fc.assert(
      fc.property(command, (c) => {
        expect(decodeCommand(encodeCommand(c))).toEqual(c)
      }),
    )
  })

  it('starts with its format byte', () => {
    expect(encodeCommand({ kind: 'delete', key: Uint8Array.of(1) })[0]).toBe(commandFormat)
    expect(commandFormat).toBe(3)
  })

  it('round-trips registrations and stamped tags, and still reads format 2', () => {
    const session = { principal: 'alice', atMs: 1_700_000_000_000 }
    const register: Command = { kind: 'register', clientId: 'c1', floor: 42, session }
    expect(decodeCommand(encodeCommand(register))).toEqual(register)
    const stamped: Command = {
      kind: 'delete',
      key: Uint8Array.of(1),
      tag: { clientId: 'c1', seq: 43, firstIncompleteSeq: 42, session },
    }
    expect(decodeCommand(encodeCommand(stamped))).toEqual(stamped)
    const unstamped: Command = {
      kind: 'delete',
      key: Uint8Array.of(1),
      tag: { clientId: 'c', seq: 1, firstIncompleteSeq: 1 },
    }
    const format2 = encodeCommand(unstamped).slice()
    format2[0] = 2
    expect(decodeCommand(format2)).toEqual(unstamped)
    // Format 2 knows no session flag, and a registration with a tag is refused.
    const stampedAs2 = encodeCommand(stamped).slice()
    stampedAs2[0] = 2
    expect(tryDecodeCommand(stampedAs2)).toBeNull()
    const badRegister = encodeCommand(register).slice()
    badRegister[2] = 0x03
    expect(tryDecodeCommand(badRegister)).toBeNull()
  })

  it('fails stop on corrupt bytes', () => {
    const good = encodeCommand({
      kind: 'put',
      key: Uint8Array.of(1),
      value: Uint8Array.of(2),
      tag: { clientId: 'c', seq: 3, firstIncompleteSeq: 2 },
    })
    // Format 1 (never deployed) is not read, nor an unknown format 4; nor is a tag whose
    // firstIncompleteSeq passes its seq.
    expect(() => decodeCommand(Uint8Array.of(1, ...good.subarray(1)))).toThrow(AssertionError)
    expect(() => decodeCommand(Uint8Array.of(4, ...good.subarray(1)))).toThrow(AssertionError)
    const inverted = good.slice()
    inverted[6] = 4 // format, kind, flags, id length, 'c', seq 3, then firstIncompleteSeq
    expect(() => decodeCommand(inverted)).toThrow(AssertionError)
    expect(() => decodeCommand(good.subarray(0, good.length - 1))).toThrow(AssertionError)
    expect(() => decodeCommand(Uint8Array.of(...good, 0))).toThrow(AssertionError)
    const badKind = good.slice()
    badKind[1] = 9
    expect(() => decodeCommand(badKind)).toThrow(AssertionError)
  })

  it('says whether bytes from a peer are an acceptable command, never throwing', () => {
    fc.assert(
      fc.property(command, (c) => {
        const bytes = encodeCommand(c)
        expect(tryDecodeCommand(bytes)).toEqual(c)
        expect(commandAcceptable(bytes, limits)).toBe(true)
      }),
    )
    // Arbitrary bytes, and every truncation or single-byte change of a good command.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const accepted = commandAcceptable(bytes, limits)
        expect(accepted).toBe(tryDecodeCommand(bytes) !== null && accepted)
      }),
    )
    fc.assert(
      fc.property(command, fc.nat(), fc.integer({ min: 0, max: 255 }), (c, at, byte) => {
        const bytes = encodeCommand(c).slice()
        const i = at % bytes.length
        bytes[i] = byte
        const decoded = tryDecodeCommand(bytes)
        if (decoded === null) expect(commandAcceptable(bytes, limits)).toBe(false)
        expect(tryDecodeCommand(bytes.subarray(0, i))).toBeNull()
      }),
    )
  })

  it('refuses commands that decode but that no write path would have let through', () => {
    const accepts = (c: Command): boolean => commandAcceptable(encodeCommand(c), limits)
    expect(accepts({ kind: 'delete', key: new Uint8Array(0) })).toBe(false)
    expect(accepts({ kind: 'delete', key: new Uint8Array(limits.keyBytesMax + 1) })).toBe(false)
    expect(accepts({ kind: 'batch', ops: [] })).toBe(false)
    const longId = 'x'.repeat(limits.clientIdBytesMax + 1)
    expect(
      accepts({
        kind: 'delete',
        key: Uint8Array.of(1),
        tag: { clientId: longId, seq: 1, firstIncompleteSeq: 1 },
      }),
    ).toBe(false)
    // A batch that claims more ops than it has bytes is refused without allocating them.
    const huge = Uint8Array.of(commandFormat, 3, 0, 0xff, 0xff, 0xff, 0xff, 0x0f)
    expect(tryDecodeCommand(huge)).toBeNull()
  })
})
