import { describe, expect, it } from 'vitest'
import { isKvErrorWithCode } from '../../../src/common/errors.ts'
import { ConnectionQuota } from '../../../src/net/connection-quota.ts'

const refusal = (f: () => unknown): unknown => {
  try {
    f()
  } catch (err) {
    return err
  }
  return undefined
}

describe('net/connection-quota', () => {
  it('bounds requests per connection and per client, and gives the slots back on release', () => {
    const q = new ConnectionQuota({ requestsPerConnectionMax: 2, requestsPerPrincipalMax: 3 })
    const a1 = q.admit('alice', 'c1')
    q.admit('alice', 'c1')
    const perConnection = refusal(() => q.admit('alice', 'c1'))
    expect(isKvErrorWithCode(perConnection, 'OVERLOADED')).toBe(true)
    expect((perConnection as { details: unknown }).details).toEqual({ limit: 2 })
    q.admit('alice', 'c2')
    expect((refusal(() => q.admit('alice', 'c3')) as { details: unknown }).details).toEqual({ limit: 3 })
    q.admit('bob', 'c3')
    expect(q.inFlight).toBe(4)
    a1()
    expect(() => a1()).toThrow()
    q.admit('alice', 'c1')
    expect(q.inFlight).toBe(4)
  })
})
