/**
 * What kvd calls a fail-stop (src/server/fatal.ts): a full disk, found anywhere in the cause chain
 * as RocksDB or Node report it, says so with what to do; only an assertion is a broken invariant.
 */
import { AssertionError } from 'node:assert'
import { describe, expect, it } from 'vitest'
import { ErrorCode, KvError } from '../../../src/common/errors.ts'
import { fatalKind, fatalMessage } from '../../../src/server/fatal.ts'

describe('fatalKind and fatalMessage', () => {
  it('a full disk, as RocksDB words it under a storage error, or as a Node errno', () => {
    const rocks = new KvError(ErrorCode.Internal, 'engine write failed', {
      cause: new Error('IO error: No space left on device: While appending to file: /data/db/000012.log'),
    })
    expect(fatalKind(rocks)).toBe('disk-full')
    const errno = Object.assign(new Error('write failed'), { code: 'ENOSPC' })
    expect(fatalKind(errno)).toBe('disk-full')
    expect(fatalMessage(rocks, '/data')).toMatch(
      /^out of disk space under \/data: .*Free space, then start kvd again/,
    )
  })

  it('an assertion is a broken invariant; any other failure is a storage failure with its message', () => {
    expect(fatalKind(new AssertionError({ message: 'applied index went back' }))).toBe('invariant')
    expect(fatalMessage(new AssertionError({ message: 'x' }), '/d')).toBe(
      'broken invariant, stopping (see the fatal log line)',
    )
    const io = new Error('IO error: Input/output error')
    expect(fatalKind(io)).toBe('storage')
    expect(fatalMessage(io, '/d')).toMatch(/a storage operation under \/d failed .*Input\/output error/)
  })

  it('follows a bounded cause chain (a cycle ends)', () => {
    const a: Error & { cause?: unknown } = new Error('a')
    const b: Error & { cause?: unknown } = new Error('b', { cause: a })
    a.cause = b
    expect(fatalKind(a)).toBe('storage')
  })
})
