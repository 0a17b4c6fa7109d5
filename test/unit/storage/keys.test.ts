import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AssertionError, LogIndex, ShardId } from '../../../src/common/index.ts'
import {
  ByteReader,
  ByteWriter,
  compareBytes,
  dataKey,
  dataKeyAfter,
  dataRangeAll,
  dataRangeForHashRange,
  decodeDataKey,
  decodeDedupKey,
  decodeRaftLogKey,
  decodeValueRecord,
  dedupClientKey,
  dedupResultKey,
  dedupRange,
  encodeValueRecord,
  hashEnd,
  metaKey,
  metaRange,
  prefixEnd,
  raftAppliedIndexKey,
  raftConfStateKey,
  raftHardStateKey,
  raftLogKey,
  raftLogRange,
  raftRange,
  shardLocalRange,
  type KeyRange,
} from '../../../src/storage/index.ts'

const u64 = fc.bigInt({ min: 0n, max: hashEnd - 1n })
const userKey = fc.uint8Array({ minLength: 1, maxLength: 64 })
const shardId = fc.integer({ min: 0, max: 0xffff_ffff }).map(ShardId)
const index = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(LogIndex)
const within = (key: Uint8Array, range: KeyRange): boolean =>
  compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0

describe('storage/keys', () => {
  it('round-trips data keys', () => {
    fc.assert(
      fc.property(u64, userKey, (hash, key) => {
        const decoded = decodeDataKey(dataKey(hash, key))
        expect(decoded.hash).toBe(hash)
        expect([...decoded.key]).toEqual([...key])
      }),
    )
  })

  it('lays a data key out as space | hash big-endian | key (the on-disk format)', () => {
    const key = dataKey(0x8102_0304_0506_07f8n, Uint8Array.of(0xaa, 0xbb))
    expect([...key.subarray(1)]).toEqual([0x81, 2, 3, 4, 5, 6, 7, 0xf8, 0xaa, 0xbb])
    expect(decodeDataKey(key).hash).toBe(0x8102_0304_0506_07f8n)
    expect([...dataKey(hashEnd - 1n, Uint8Array.of(1)).subarray(1, 9)]).toEqual(Array(8).fill(0xff))
  })

  it('orders data keys by hash first, then by key', () => {
    fc.assert(
      fc.property(u64, userKey, u64, userKey, (h1, k1, h2, k2) => {
        const c = compareBytes(dataKey(h1, k1), dataKey(h2, k2))
        if (h1 !== h2) expect(Math.sign(c)).toBe(h1 < h2 ? -1 : 1)
        else expect(Math.sign(c)).toBe(Math.sign(compareBytes(k1, k2)))
      }),
    )
  })

  it('maps a hash range to exactly the data keys whose hash is in it', () => {
    fc.assert(
      fc.property(u64, u64, u64, userKey, (a, b, h, key) => {
        fc.pre(a !== b)
        const start = a < b ? a : b
        const end = a < b ? b : a
        const range = dataRangeForHashRange(start, end)
        expect(within(dataKey(h, key), range)).toBe(h >= start && h < end)
      }),
    )
  })

  it('covers the whole ring, including the last hash, with the end of the ring', () => {
    const all = dataRangeAll()
    expect(within(dataKey(hashEnd - 1n, Uint8Array.of(0xff, 0xff)), all)).toBe(true)
    expect(within(dataKey(0n, Uint8Array.of(0)), all)).toBe(true)
    expect(within(metaKey('node-id'), all)).toBe(false)
    expect(within(raftHardStateKey(ShardId(0)), all)).toBe(false)
    const upper = dataRangeForHashRange(1n << 63n, hashEnd)
    expect(within(dataKey(hashEnd - 1n, Uint8Array.of(1)), upper)).toBe(true)
    expect(within(dataKey((1n << 63n) - 1n, Uint8Array.of(1)), upper)).toBe(false)
    expect(() => dataRangeForHashRange(5n, 5n)).toThrow(AssertionError)
    expect(() => dataRangeForHashRange(0n, hashEnd + 1n)).toThrow(AssertionError)
  })

  it('resumes a scan strictly after a position, before every later key', () => {
    fc.assert(
      fc.property(u64, userKey, u64, userKey, (h1, k1, h2, k2) => {
        const after = dataKeyAfter(h1, k1)
        const other = dataKey(h2, k2)
        expect(compareBytes(after, dataKey(h1, k1))).toBe(1)
        expect(compareBytes(other, after) >= 0).toBe(compareBytes(other, dataKey(h1, k1)) > 0)
      }),
    )
  })

  it('round-trips raft log keys and orders them by index', () => {
    fc.assert(
      fc.property(shardId, index, index, (sid, i, j) => {
        expect(decodeRaftLogKey(raftLogKey(sid, i))).toEqual({ shardId: sid, index: i })
        expect(Math.sign(compareBytes(raftLogKey(sid, i), raftLogKey(sid, j)))).toBe(Math.sign(i - j))
      }),
    )
  })

  it('keeps every key of a shard inside its ranges and out of its neighbours', () => {
    fc.assert(
      fc.property(shardId, index, (sid, i) => {
        const own = raftRange(sid)
        for (const key of [
          raftHardStateKey(sid),
          raftConfStateKey(sid),
          raftAppliedIndexKey(sid),
          raftLogKey(sid, i),
        ])
          expect(within(key, own)).toBe(true)
        expect(within(raftLogKey(sid, i), raftLogRange(sid, LogIndex(0)))).toBe(true)
        expect(within(raftAppliedIndexKey(sid), raftLogRange(sid, LogIndex(0)))).toBe(false)
        if (sid > 0) expect(within(raftLogKey(ShardId(sid - 1), i), own)).toBe(false)
        if (sid < 0xffff_ffff) expect(within(raftHardStateKey(ShardId(sid + 1)), own)).toBe(false)
        for (const key of [dedupClientKey(sid, 'c'), dedupResultKey(sid, 'c', i)]) {
          expect(within(key, shardLocalRange(sid))).toBe(true)
          expect(within(key, dedupRange(sid))).toBe(true)
          expect(within(key, own)).toBe(false)
        }
      }),
    )
  })

  it('bounds a raft log range by index', () => {
    const sid = ShardId(7)
    const range = raftLogRange(sid, LogIndex(10), LogIndex(20))
    expect(within(raftLogKey(sid, LogIndex(9)), range)).toBe(false)
    expect(within(raftLogKey(sid, LogIndex(10)), range)).toBe(true)
    expect(within(raftLogKey(sid, LogIndex(19)), range)).toBe(true)
    expect(within(raftLogKey(sid, LogIndex(20)), range)).toBe(false)
  })

  it('round-trips dedup keys, including non-ASCII client ids', () => {
    fc.assert(
      fc.property(
        shardId,
        fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        (sid, clientId, seq) => {
          expect(decodeDedupKey(dedupClientKey(sid, clientId))).toEqual({
            shardId: sid,
            clientId,
            seq: undefined,
          })
          expect(decodeDedupKey(dedupResultKey(sid, clientId, seq))).toEqual({ shardId: sid, clientId, seq })
        },
      ),
    )
  })

  it("orders one client's dedup records header first, results by seq, clients never interleaved", () => {
    const sid = ShardId(2)
    const keys = [
      dedupResultKey(sid, 'ab', 300),
      dedupClientKey(sid, 'a'),
      dedupResultKey(sid, 'a', 256),
      dedupResultKey(sid, 'a', 2),
      dedupClientKey(sid, 'ab'),
      dedupResultKey(sid, 'ab', 1),
    ]
    const sorted = [...keys].sort(compareBytes).map((k) => {
      const { clientId, seq } = decodeDedupKey(k)
      return `${clientId}:${seq ?? 'header'}`
    })
    expect(sorted).toEqual(['a:header', 'a:2', 'a:256', 'ab:header', 'ab:1', 'ab:300'])
  })

  it('keeps meta keys in their own space', () => {
    expect(within(metaKey('cluster-id'), metaRange())).toBe(true)
    expect(() => metaKey('')).toThrow(AssertionError)
  })

  it('fails stop on corrupt keys', () => {
    expect(() => decodeDataKey(Uint8Array.of(0x44, 1, 2))).toThrow(AssertionError)
    expect(() => decodeRaftLogKey(raftHardStateKey(ShardId(1)))).toThrow(AssertionError)
    expect(() => decodeRaftLogKey(Uint8Array.of(0x52, 0, 0, 0, 1, 0x6c, 0))).toThrow(AssertionError)
  })
})

describe('storage/value-record', () => {
  const record = fc
    .record({
      version: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      back: fc.nat(),
      value: fc.uint8Array({ maxLength: 200 }),
    })
    .map(({ version, back, value }) => ({
      version: LogIndex(version),
      createVersion: LogIndex(Math.max(1, version - back)),
      value,
    }))

  it('round-trips', () => {
    fc.assert(
      fc.property(record, (r) => {
        const decoded = decodeValueRecord(encodeValueRecord(r))
        expect(decoded.version).toBe(r.version)
        expect(decoded.createVersion).toBe(r.createVersion)
        expect([...decoded.value]).toEqual([...r.value])
      }),
    )
  })

  it('is compact: 4 bytes of overhead for a small, fresh record', () => {
    expect(
      encodeValueRecord({ version: LogIndex(100), createVersion: LogIndex(100), value: new Uint8Array(10) })
        .length,
    ).toBe(13)
  })

  it('fails stop on a corrupt record (fail-stop, STYLE.md 7.4)', () => {
    const good = encodeValueRecord({
      version: LogIndex(300),
      createVersion: LogIndex(2),
      value: Uint8Array.of(1),
    })
    expect(() => decodeValueRecord(new Uint8Array())).toThrow(AssertionError)
    expect(() => decodeValueRecord(Uint8Array.of(9, ...good.subarray(1)))).toThrow(AssertionError)
    expect(() => decodeValueRecord(Uint8Array.of(1, 0, 0))).toThrow(AssertionError) // version 0
    expect(() => decodeValueRecord(Uint8Array.of(1, 5, 5))).toThrow(AssertionError) // createVersion 0
    expect(() => decodeValueRecord(Uint8Array.of(1, 0x80))).toThrow(AssertionError) // truncated varint
    expect(() =>
      encodeValueRecord({ version: LogIndex(2), createVersion: LogIndex(3), value: new Uint8Array() }),
    ).toThrow(AssertionError)
  })
})

describe('storage/bytes', () => {
  it('round-trips varints and fixed ints', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })), (ns) => {
        const w = new ByteWriter(1)
        for (const n of ns) w.uvarint(n).u64(n)
        const r = new ByteReader(w.finish())
        for (const n of ns) {
          expect(r.uvarint()).toBe(n)
          expect(r.u64()).toBe(n)
        }
        r.end()
      }),
    )
  })

  it('compares bytewise like Buffer.compare', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        expect(compareBytes(a, b)).toBe(Buffer.compare(a, b))
      }),
    )
  })

  it('computes prefix ends', () => {
    expect([...(prefixEnd(Uint8Array.of(1, 0xff)) ?? [])]).toEqual([2])
    expect(prefixEnd(Uint8Array.of(0xff, 0xff))).toBeNull()
  })
})
