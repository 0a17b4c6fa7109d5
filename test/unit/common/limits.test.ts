import { describe, expect, it } from 'vitest'
import { AssertionError, limits, tightenLimits } from '../../../src/common/index.ts'

describe('common/limits', () => {
  it('fits a maximal proposal in one append and one gRPC frame', () => {
    expect(limits.proposalBytesMax).toBeGreaterThanOrEqual(limits.keyBytesMax + limits.valueBytesMax)
    expect(limits.appendBytesMax).toBeGreaterThanOrEqual(limits.proposalBytesMax)
    expect(limits.grpcMessageBytesMax).toBeGreaterThanOrEqual(limits.appendBytesMax)
  })

  it('tightens a limit and leaves the others alone', () => {
    const tight = tightenLimits({ valueBytesMax: 1024 })
    expect(tight.valueBytesMax).toBe(1024)
    expect(tight.keyBytesMax).toBe(limits.keyBytesMax)
    expect(limits.valueBytesMax).toBe(1024 * 1024)
  })

  it('refuses to loosen a limit or set a non-positive one', () => {
    expect(() => tightenLimits({ valueBytesMax: limits.valueBytesMax + 1 })).toThrow(AssertionError)
    expect(() => tightenLimits({ keyBytesMax: 0 })).toThrow(AssertionError)
    expect(() => tightenLimits({ keyBytesMax: 1.5 })).toThrow(AssertionError)
  })
})
