import { describe, expect, it } from 'vitest'
import { KvServiceService, PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { decoded, isMalformed, withTolerantDecoding } from '../../../src/net/decode.ts'
import { RequestGate } from '../../../src/net/gate.ts'

describe('net/decode', () => {
  const tolerant = withTolerantDecoding(KvServiceService)

  it('decodes good bytes exactly as the generated deserializer does', () => {
    const bytes = Buffer.from(
      PutRequest.encode({ key: Buffer.from('k'), value: Buffer.from('v'), options: undefined }).finish(),
    )
    expect(tolerant.put.requestDeserialize(bytes)).toEqual(KvServiceService.put.requestDeserialize(bytes))
    expect(tolerant.put.path).toBe(KvServiceService.put.path)
    expect(tolerant.scan.responseStream).toBe(true)
  })

  it('turns undecodable bytes into a marker that is INVALID_ARGUMENT on use', () => {
    const request: unknown = tolerant.put.requestDeserialize(Buffer.from([0x0a, 0xff, 0x01]))
    expect(isMalformed(request)).toBe(true)
    expect(() => decoded(request)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', details: { field: 'request' } }),
    )
    // A uint64 beyond 2^53 is refused rather than rounded.
    const huge = Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
    expect(isMalformed(tolerant.put.requestDeserialize(huge))).toBe(true)
  })
})

describe('net/gate', () => {
  it('admits up to the bound, then OVERLOADED with the limit; leave frees a slot', () => {
    const gate = new RequestGate(2)
    gate.enter()
    gate.enter()
    expect(() => gate.enter()).toThrow(expect.objectContaining({ code: 'OVERLOADED', details: { limit: 2 } }))
    gate.leave()
    gate.enter()
    expect(gate.inFlight).toBe(2)
  })

  it('refuses with UNAVAILABLE once draining and resolves idle() when the last one leaves', async () => {
    const gate = new RequestGate(10)
    gate.enter()
    gate.drain()
    expect(() => gate.enter()).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }))
    let idle = false
    const waiting = gate.idle().then(() => (idle = true))
    await Promise.resolve()
    expect(idle).toBe(false)
    gate.leave()
    await waiting
    expect(idle).toBe(true)
  })
})
