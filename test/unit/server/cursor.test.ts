import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeCursor, encodeCursor } from '../../../src/server/cursor.ts'

const cluster = Buffer.alloc(16, 7)
const other = Buffer.alloc(16, 8)

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    return (err as { code?: string }).code
  }
}

describe('server/cursor', () => {
  it('round-trips any position', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.uint8Array({ maxLength: 4096 }),
        (hash, key) => {
          const decoded = decodeCursor(encodeCursor({ hash, key }, cluster), cluster)
          expect(decoded?.hash).toBe(hash)
          expect(Buffer.from(decoded?.key ?? [])).toEqual(Buffer.from(key))
        },
      ),
    )
  })

  it('reads an empty cursor as the start', () => {
    expect(decodeCursor(new Uint8Array(0), cluster)).toBeUndefined()
  })

  it('refuses a cursor of another cluster', () => {
    const cursor = encodeCursor({ hash: 5n, key: Buffer.from('k') }, other)
    expect(codeOf(() => decodeCursor(cursor, cluster))).toBe('INVALID_ARGUMENT')
  })

  it('refuses every truncation, extension and single-bit flip', () => {
    const cursor = encodeCursor({ hash: 123456789n, key: Buffer.from('some-key') }, cluster)
    for (let n = 1; n < cursor.length; n++)
      expect(codeOf(() => decodeCursor(cursor.subarray(0, n), cluster))).toBe('INVALID_ARGUMENT')
    expect(codeOf(() => decodeCursor(Buffer.concat([cursor, Buffer.from([0])]), cluster))).toBe(
      'INVALID_ARGUMENT',
    )
    for (let bit = 0; bit < cursor.length * 8; bit++) {
      const flipped = Buffer.from(cursor)
      flipped[bit >> 3]! ^= 1 << (bit & 7)
      expect(codeOf(() => decodeCursor(flipped, cluster))).toBe('INVALID_ARGUMENT')
    }
  })

  it('refuses random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 200 }), (bytes) => {
        expect(codeOf(() => decodeCursor(bytes, cluster))).toBe('INVALID_ARGUMENT')
      }),
    )
  })
})
