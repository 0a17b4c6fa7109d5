/**
 * Exactly-once sessions against a real kvd over gRPC, played by a hostile client that does not
 * know the victim's client id (it is 128 random bits; with authentication, sessions are also
 * scoped to their principal: test/unit/node/sessions.test.ts):
 * - writes naming ids that were never registered (4,097+ of them: the flood that used to evict
 *   the victim) are refused SESSION_EXPIRED and apply nothing, and take no room in the table;
 * - a flood of registrations past the per-principal quota can give up the victim's session, but
 *   the victim's retry then fails SESSION_EXPIRED and is never applied twice.
 */
import { status as Grpc } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../../src/common/limits.ts'
import { expectFailure, kv, kvClient } from '../helpers/grpc.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'
import type {
  KvServiceClient,
  RegisterSessionRequest,
  RegisterSessionResponse,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { Metadata } from '@grpc/grpc-js'

let node: KvdHandle
beforeAll(async () => {
  node = await startKvd()
}, 60_000)
afterAll(async () => {
  await node?.stop()
})

const b = (s: string): Buffer => Buffer.from(s)

function register(
  client: KvServiceClient,
  r: Partial<RegisterSessionRequest>,
): Promise<RegisterSessionResponse> {
  return new Promise((resolve, reject) =>
    client.registerSession(
      { clientId: '', key: b('k'), floor: 0, route: undefined, ...r },
      new Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => (err !== null ? reject(err) : resolve(res)),
    ),
  )
}

const tagged = (clientId: string, seq: number) => ({
  consistency: 0,
  clientId,
  seq,
  firstIncompleteSeq: seq,
  route: undefined,
})

describe('exactly-once sessions over gRPC', () => {
  it('writes on unregistered ids are refused and apply nothing, however many', async () => {
    const client = kvClient(node.address)
    const c = kv(client, 30_000)
    const n = limits.dedupClientsMax + 1
    let refused = 0
    for (let from = 0; from < n; from += 256) {
      const batch = Array.from({ length: Math.min(256, n - from) }, (_, i) =>
        c
          .put({ key: b(`flood/${from + i}`), value: b('x'), options: tagged(`attacker-${from + i}`, 1) })
          .then(
            () => 'applied',
            (err: { code: number; metadata?: Metadata }) => String(err.metadata?.get('ringkv-code')[0]),
          ),
      )
      for (const outcome of await Promise.all(batch)) if (outcome === 'SESSION_EXPIRED') refused++
    }
    expect(refused).toBe(n)
    expect((await c.get({ key: b('flood/0') })).found).toBe(false)
  }, 120_000)

  it('a victim whose session was given up in a flood gets SESSION_EXPIRED on retry, never a second apply', async () => {
    const client = kvClient(node.address)
    const c = kv(client, 30_000)
    await register(client, { clientId: 'victim-0123456789abcdef', key: b('eo'), floor: 1 })
    const first = await c.put({
      key: b('eo'),
      value: b('once'),
      options: tagged('victim-0123456789abcdef', 1),
    })
    // Registrations of the same (anonymous) principal beyond its quota.
    const total = limits.sessionsPerPrincipalMax + 8
    for (let from = 0; from < total; from += 128)
      await Promise.all(
        Array.from({ length: Math.min(128, total - from) }, (_, i) =>
          register(client, { clientId: `flood-${from + i}`, key: b('eo'), floor: 0 }),
        ),
      )
    // The retry of the victim's write: answered from its saved result if the session lived on,
    // refused if it was given up; never applied a second time.
    let retried: number | undefined
    try {
      retried = (
        await c.put({ key: b('eo'), value: b('once'), options: tagged('victim-0123456789abcdef', 1) })
      ).version
    } catch (err) {
      await expectFailure(Promise.reject(err), Grpc.FAILED_PRECONDITION, 'SESSION_EXPIRED')
    }
    if (retried !== undefined) expect(retried).toBe(first.version)
    const got = await c.get({ key: b('eo') })
    expect(got.version).toBe(first.version)
    expect(got.createVersion).toBe(first.version)
  }, 120_000)
})
