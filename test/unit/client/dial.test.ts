/**
 * The dial timeout (client/dial.ts): an endpoint that accepts TCP but never speaks fails the
 * attempt UNAVAILABLE naming the endpoint once the dial timeout is out (not DEADLINE_EXCEEDED at
 * the call's deadline), so the retry moves on to the next endpoint; a refused endpoint fails at
 * once with grpc-js's own cause; a deadline shorter than the dial timeout still ends the call.
 *
 * No assertion on time: each case gives the call a deadline far longer than the test's own
 * timeout, so only the dial timeout (or an immediate refusal) can end it in time.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, KvError } from '../../../src/common/errors.ts'
import { KvClient } from '../../../src/client/index.ts'
import { FakeKvServer } from './fake-server.ts'

/** A TCP server that accepts connections and never writes a byte (a hung process). */
async function silentServer(): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    address: `127.0.0.1:${address.port}`,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** An address nothing listens on (a port bound, then released). */
async function refusedAddress(): Promise<string> {
  const s = await silentServer()
  await s.close()
  return s.address
}

async function failure(p: Promise<unknown>): Promise<KvError> {
  try {
    await p
  } catch (err) {
    if (err instanceof KvError) return err
    throw err
  }
  throw new Error('the call succeeded')
}

const longMs = 120_000

describe('client/dial: the dial timeout', () => {
  let silent: Awaited<ReturnType<typeof silentServer>>
  let silent2: Awaited<ReturnType<typeof silentServer>>
  let fake: FakeKvServer
  beforeAll(async () => {
    silent = await silentServer()
    silent2 = await silentServer()
    fake = await FakeKvServer.start()
  })
  afterAll(async () => {
    await silent?.close()
    await silent2?.close()
    await fake?.stop()
  })

  it('fails an endpoint that never speaks UNAVAILABLE, naming it, at the dial timeout', async () => {
    const client = new KvClient({
      endpoints: [silent.address],
      deadlineMs: longMs,
      dialTimeoutMs: 200,
      retry: { attemptsMax: 1 },
    })
    try {
      const err = await failure(client.get('k', { consistency: 'eventual' }))
      expect(err.code).toBe(ErrorCode.Unavailable)
      expect(err.message).toContain(silent.address)
      expect(err.message).toContain('dial timeout of 200 ms')
    } finally {
      client.close()
    }
  })

  it('moves on to the next endpoint after a dial timeout (writes too)', async () => {
    const client = new KvClient({
      endpoints: [silent.address, silent2.address, fake.address],
      deadlineMs: longMs,
      dialTimeoutMs: 200,
      retry: { backoffBaseMs: 0 },
    })
    try {
      await client.put('k', 'v')
      expect((await client.get('k')).valueText()).toBe('v')
    } finally {
      client.close()
    }
    // With only silent endpoints, the call gives up UNAVAILABLE naming one of them.
    const stuck = new KvClient({
      endpoints: [silent.address, silent2.address],
      deadlineMs: longMs,
      dialTimeoutMs: 200,
      retry: { attemptsMax: 2, backoffBaseMs: 0 },
    })
    try {
      const err = await failure(stuck.get('k', { consistency: 'eventual' }))
      expect(err.code).toBe(ErrorCode.Unavailable)
      expect(err.message).toMatch(new RegExp(`${silent.address}|${silent2.address}`))
      expect(err.message).toContain('dial timeout')
    } finally {
      stuck.close()
    }
  })

  it('fails a refused endpoint at once with the cause, not after the dial timeout', async () => {
    const refused = await refusedAddress()
    const client = new KvClient({
      endpoints: [refused],
      deadlineMs: longMs,
      dialTimeoutMs: longMs,
      retry: { attemptsMax: 1 },
    })
    try {
      const err = await failure(client.get('k', { consistency: 'eventual' }))
      expect(err.code).toBe(ErrorCode.Unavailable)
      expect(err.message).toMatch(/ECONNREFUSED/)
      expect(err.message).not.toContain('dial timeout')
    } finally {
      client.close()
    }
  })

  it('ends DEADLINE_EXCEEDED when the call deadline comes before the dial timeout', async () => {
    const client = new KvClient({
      endpoints: [silent.address],
      deadlineMs: 300,
      dialTimeoutMs: longMs,
    })
    try {
      const err = await failure(client.get('k', { consistency: 'eventual' }))
      expect(err.code).toBe(ErrorCode.DeadlineExceeded)
    } finally {
      client.close()
    }
  })

  it('refuses a dial timeout out of range', () => {
    expect(() => new KvClient({ endpoints: [fake.address], dialTimeoutMs: 0 })).toThrow(RangeError)
    expect(() => new KvClient({ endpoints: [fake.address], dialTimeoutMs: 1.5 })).toThrow(RangeError)
  })
})
