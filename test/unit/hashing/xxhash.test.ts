import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { bytesToU64, createHasher, u64ToBytes, type Hasher } from '../../../src/hashing/index.ts'
import { loadHasher } from '../../../src/storage/index.ts'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('hashing/xxhash', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await loadHasher()
  })

  // Reference values of xxh64 with seed 0 (xxHash reference implementation; python-xxhash README).
  const vectors: [string, bigint][] = [
    ['', 0xef46db3751d8e999n],
    ['a', 0xd24ec4f1a98c6e5bn],
    ['abc', 0x44bc2cf5ad770999n],
    ['xxhash', 0x32dd38952c4bc720n],
    ['Nobody inspects the spammish repetition', 0xfbcea83c8a378bf1n],
  ]

  it.each(vectors)('hashes %j to the reference xxh64', (input, expected) => {
    expect(hasher.hash64(text(input))).toBe(expected)
    expect(bytesToU64(hasher.hash64Bytes(text(input)))).toBe(expected)
  })

  it('hands out hash bytes big-endian', () => {
    expect([...hasher.hash64Bytes(new Uint8Array())]).toEqual([
      0xef, 0x46, 0xdb, 0x37, 0x51, 0xd8, 0xe9, 0x99,
    ])
  })

  it('hashes a subarray by its own bytes only', () => {
    const buf = text('__abc__')
    expect(hasher.hash64(buf.subarray(2, 5))).toBe(0x44bc2cf5ad770999n)
  })

  it('is a pure function of the bytes, and u64 bytes round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const h = hasher.hash64(bytes)
        expect(h >= 0n && h < 1n << 64n).toBe(true)
        expect(hasher.hash64(bytes.slice())).toBe(h)
        expect(bytesToU64(u64ToBytes(h))).toBe(h)
      }),
    )
  })

  it('wraps any xxhash api that returns signed-looking values into [0, 2^64)', () => {
    const fake = createHasher({ h64Raw: () => (1n << 64n) + 5n })
    expect(fake.hash64(new Uint8Array())).toBe(5n)
  })
})
