import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AssertionError, limits } from '../../../src/common/index.ts'
import {
  decodeEntry,
  encodeCommand,
  encodeEntry,
  tryDecodeEntry,
  type ClientTag,
  type Command,
} from '../../../src/shard/commands.ts'
import { ByteWriter } from '../../../src/storage/index.ts'
import { acceptableCommands, commandAcceptable } from '../../../src/shard/validate.ts'

// Grouped entries (commands.ts encodeEntry): tagged writes of one client in one Raft entry.

const key = fc.uint8Array({ minLength: 1, maxLength: 20 })
const expected = fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined })
const op = fc.oneof(
  fc
    .tuple(key, fc.uint8Array({ maxLength: 40 }), expected)
    .map(([k, v, e]) =>
      e === undefined
        ? { kind: 'put' as const, key: k, value: v }
        : { kind: 'put' as const, key: k, value: v, expectedVersion: e },
    ),
  fc
    .tuple(key, expected)
    .map(([k, e]) =>
      e === undefined
        ? { kind: 'delete' as const, key: k }
        : { kind: 'delete' as const, key: k, expectedVersion: e },
    ),
)
const session = fc.option(
  fc.record({ principal: fc.string({ minLength: 1, maxLength: 12 }), atMs: fc.nat() }),
  { nil: undefined },
)
/** `n` commands of one client, each its own seq. */
const group = (min: number, max: number): fc.Arbitrary<Command[]> =>
  fc
    .tuple(
      fc.string({ minLength: 1, maxLength: 20 }),
      session,
      fc.array(fc.tuple(fc.oneof(op, fc.array(op, { minLength: 1, maxLength: 4 })), fc.nat(1000)), {
        minLength: min,
        maxLength: max,
      }),
    )
    .map(([clientId, stamp, parts]) =>
      parts.map(([body, n], i): Command => {
        const seq = 1000 + i
        const tag: ClientTag =
          stamp === undefined
            ? { clientId, seq, firstIncompleteSeq: seq - (n % 5) }
            : { clientId, seq, firstIncompleteSeq: seq - (n % 5), session: stamp }
        return Array.isArray(body) ? { kind: 'batch', ops: body, tag } : { ...body, tag }
      }),
    )

const tagged = (clientId: string, seq: number): Command => ({
  kind: 'put',
  key: Uint8Array.of(seq & 0xff, 1),
  value: Uint8Array.of(7),
  tag: { clientId, seq, firstIncompleteSeq: 1 },
})

describe('shard/commands grouped entries', () => {
  it('round-trips a group of one client, and a single command stays its own encoding', () => {
    fc.assert(
      fc.property(group(1, 12), (commands) => {
        const bytes = encodeEntry(commands)
        expect(decodeEntry(bytes)).toEqual(commands)
        expect(tryDecodeEntry(bytes)).toEqual(commands)
        if (commands.length === 1) expect(bytes).toEqual(encodeCommand(commands[0]!))
      }),
    )
  })

  it('reads entries written before groups (one command each) as one command', () => {
    const old: Command = { kind: 'delete', key: Uint8Array.of(1, 2) }
    expect(decodeEntry(encodeCommand(old))).toEqual([old])
    const register: Command = {
      kind: 'register',
      clientId: 'c',
      floor: 1,
      session: { principal: 'p', atMs: 5 },
    }
    expect(decodeEntry(encodeCommand(register))).toEqual([register])
  })

  it('refuses every truncation of a group, and never throws on flipped bytes', () => {
    fc.assert(
      fc.property(group(2, 6), fc.nat(), fc.nat(255), (commands, at, mask) => {
        const bytes = encodeEntry(commands)
        for (let n = 0; n < bytes.length; n++) expect(tryDecodeEntry(bytes.subarray(0, n))).toBeNull()
        expect(() => decodeEntry(bytes.subarray(0, bytes.length - 1))).toThrow(AssertionError)
        const flipped = Uint8Array.from(bytes)
        flipped[at % flipped.length]! ^= mask + 1
        // Whatever a flipped byte makes of it, decoding answers (commands or null) and never throws;
        // whatever it accepts is a group of one client or one command.
        const out = tryDecodeEntry(flipped)
        if (out !== null && out.length > 1) expect(new Set(out.map((c) => c.tag?.clientId)).size).toBe(1)
        expect(() => commandAcceptable(flipped, limits)).not.toThrow()
      }),
      { numRuns: 200 },
    )
  })

  it('refuses groups of two clients, of registrations or untagged writes, of one, or beyond the bound', () => {
    const groupOf = (parts: readonly Uint8Array[], count = parts.length): Uint8Array => {
      const w = new ByteWriter(64).u8(3).u8(5).u8(0).uvarint(count)
      for (const p of parts) w.bytes(p)
      return w.finish()
    }
    const a1 = encodeCommand(tagged('a', 1))
    const a2 = encodeCommand(tagged('a', 2))
    expect(tryDecodeEntry(groupOf([a1, a2]))).toEqual([tagged('a', 1), tagged('a', 2)])
    expect(tryDecodeEntry(groupOf([a1, encodeCommand(tagged('b', 2))]))).toBeNull()
    expect(tryDecodeEntry(groupOf([a1, encodeCommand({ kind: 'delete', key: Uint8Array.of(1) })]))).toBeNull()
    const register = encodeCommand({
      kind: 'register',
      clientId: 'a',
      floor: 1,
      session: { principal: 'p', atMs: 1 },
    })
    expect(tryDecodeEntry(groupOf([a1, register]))).toBeNull()
    expect(tryDecodeEntry(groupOf([a1]))).toBeNull()
    expect(tryDecodeEntry(groupOf([a1, a2], 3))).toBeNull()
    expect(tryDecodeEntry(groupOf([a1, a2], limits.entryCommandsMax + 1))).toBeNull()
    // A group nested in a group is not a command.
    expect(tryDecodeEntry(groupOf([a1, groupOf([a1, a2])]))).toBeNull()
    // Unknown group flags.
    const flagged = groupOf([a1, a2])
    flagged[2] = 1
    expect(tryDecodeEntry(flagged)).toBeNull()
    // The entry check a follower runs on a peer's append says the same.
    expect(commandAcceptable(groupOf([a1, a2]), limits)).toBe(true)
    expect(commandAcceptable(groupOf([a1, encodeCommand(tagged('b', 2))]), limits)).toBe(false)
    // What the check decodes is what the apply would decode (a follower keeps it for the apply).
    const group = groupOf([a1, a2])
    expect(acceptableCommands(group, limits)).toEqual(decodeEntry(group))
    expect(acceptableCommands(groupOf([a1, encodeCommand(tagged('b', 2))]), limits)).toBeNull()
    expect(acceptableCommands(flagged, limits)).toBeNull()
  })

  it('encodes at most entryCommandsMax commands, all of one client', () => {
    const many = Array.from({ length: limits.entryCommandsMax }, (_, i) => tagged('a', i + 1))
    expect(decodeEntry(encodeEntry(many))).toHaveLength(limits.entryCommandsMax)
    expect(() => encodeEntry([...many, tagged('a', 9999)])).toThrow(AssertionError)
    expect(() => encodeEntry([tagged('a', 1), tagged('b', 2)])).toThrow(AssertionError)
    expect(() => encodeEntry([])).toThrow(AssertionError)
  })
})
