/**
 * The request pipeline over real loopback gRPC, with stub handlers: every step refuses before the
 * handler runs, in order, and what the handler gets (principal, signal, forwarded) is what the
 * steps established.
 */
import { Metadata, credentials, status as Grpc, type ServiceError } from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import { AssertionError } from '../../../src/common/assert.ts'
import { tightenLimits } from '../../../src/common/limits.ts'
import { AdminServiceClient } from '../../../src/gen/ringkv/v1/admin.ts'
import { KvServiceClient, type GetResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import {
  RequestGate,
  parseAuthFile,
  serverStream,
  tokenDigest,
  unary,
  type CallContext,
  type Handler,
} from '../../../src/net/index.ts'
import { adminServiceDefinition } from '../../../src/server/grpc-admin.ts'
import { kvServiceDefinition } from '../../../src/server/grpc-kv.ts'
import { serve, type Served, type ServeOptions } from './serve.ts'

const tokens = { reader: 'reader-token', writer: 'writer-token', admin: 'admin-token' }
const authTable = parseAuthFile(
  JSON.stringify({
    tokens: [
      { sha256: tokenDigest(tokens.reader), principal: 'reader', role: 'readonly' },
      { sha256: tokenDigest(tokens.writer), principal: 'writer', role: 'readwrite' },
      { sha256: tokenDigest(tokens.admin), principal: 'root', role: 'admin' },
    ],
  }),
  'auth.json',
  10,
)

const getAnswer: GetResponse = {
  found: true,
  value: Buffer.from('v'),
  version: 1,
  createVersion: 1,
  receipt: undefined,
}

/** Stub handlers that record the contexts they were called with. */
function stubs(seen: CallContext[], behaviour: { get?: (ctx: CallContext) => Promise<GetResponse> } = {}) {
  const record = (ctx: CallContext): void => {
    seen.push(ctx)
  }
  const answer =
    <T>(value: T) =>
    async (_req: unknown, ctx: CallContext): Promise<T> => {
      record(ctx)
      return value
    }
  const kv: Record<string, Handler> = {
    get: unary(async (_req, ctx: CallContext) => {
      record(ctx)
      ctx.consistency = 'linearizable'
      return behaviour.get === undefined ? getAnswer : await behaviour.get(ctx)
    }),
    put: unary(answer({ version: 2, receipt: undefined })),
    delete: unary(answer({ deleted: true, receipt: undefined })),
    batchGet: unary(answer({ results: [], receipts: [] })),
    batch: unary(answer({ results: [], receipt: undefined })),
    multi: unary(async (_req, ctx: CallContext) => {
      record(ctx)
      // As grpc-kv.ts does for a write op of a Multi call.
      ctx.authorize('readwrite', 'Multi.Put')
      return { results: [] }
    }),
    scan: serverStream(async (_req, ctx: CallContext, call) => {
      record(ctx)
      call.write({ entries: [], cursor: Buffer.alloc(0), done: true, receipt: undefined })
    }),
    shardMap: unary(answer({})),
  }
  const admin: Record<string, Handler> = {
    status: unary(answer({ node: undefined, clusterId: '', peers: [] })),
    injectFault: unary(answer({ faults: [] })),
    join: unary(answer({ nodeId: 1, clusterId: '', map: undefined })),
    heartbeat: unary(answer({ state: 'active' })),
  }
  return { kv, admin }
}

const started: Served[] = []
afterEach(() => {
  for (const s of started.splice(0)) s.close()
})

async function start(
  options: Omit<ServeOptions, 'services'>,
  seen: CallContext[],
  behaviour = {},
): Promise<Served> {
  const { kv, admin } = stubs(seen, behaviour)
  const served = await serve({
    ...options,
    services: [
      [kvServiceDefinition, kv],
      [adminServiceDefinition, admin],
    ],
  })
  started.push(served)
  return served
}

function metadata(entries: Record<string, string> = {}): Metadata {
  const md = new Metadata()
  for (const [k, v] of Object.entries(entries)) md.set(k, v)
  return md
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

async function call<T>(
  start: (cb: (err: ServiceError | null, res: T) => void) => unknown,
): Promise<{ ok: T } | { code: number; ringkv: string | undefined; details: string }> {
  return await new Promise((resolve) => {
    start((err, res) => {
      if (err === null) resolve({ ok: res })
      else
        resolve({
          code: err.code,
          ringkv: err.metadata?.get('ringkv-code')[0] as string | undefined,
          details: err.details,
        })
    })
  })
}

function kvClient(served: Served): KvServiceClient {
  return new KvServiceClient(served.address, credentials.createInsecure())
}

const get = (c: KvServiceClient, md = metadata(), deadline?: number) =>
  call<GetResponse>((cb) =>
    c.get({ key: Buffer.from('k'), options: undefined }, md, deadline === undefined ? {} : { deadline }, cb),
  )
const put = (c: KvServiceClient, md = metadata()) =>
  call((cb) => c.put({ key: Buffer.from('k'), value: Buffer.from('v'), options: undefined }, md, cb))

describe('net/pipeline', () => {
  it('open (nothing configured): serves everything but what the table denies, and counts each call', async () => {
    const seen: CallContext[] = []
    const served = await start({}, seen)
    const c = kvClient(served)
    expect(await get(c)).toEqual({ ok: getAnswer })
    expect(seen[0]?.principal).toEqual({ kind: 'open' })
    expect(seen[0]?.forwarded).toBe(false)
    expect(served.metrics.observed).toEqual([{ method: 'Get', consistency: 'linearizable', code: 'OK' }])
    expect(served.gate.inFlight).toBe(0)
    c.close()
  })

  it('without credentials a secured listener refuses before the handler runs: UNAUTHENTICATED', async () => {
    const seen: CallContext[] = []
    const served = await start({ auth: () => authTable }, seen)
    const c = kvClient(served)
    expect(await get(c)).toMatchObject({ code: Grpc.UNAUTHENTICATED, ringkv: 'UNAUTHENTICATED' })
    expect(await get(c, metadata(bearer('wrong')))).toMatchObject({ code: Grpc.UNAUTHENTICATED })
    expect(seen).toEqual([])
    expect(served.metrics.refusals).toEqual([
      { listener: 'client', code: 'UNAUTHENTICATED' },
      { listener: 'client', code: 'UNAUTHENTICATED' },
    ])
    // Health probes need no credentials.
    c.close()
  })

  it('roles: readonly reads, readwrite writes, admin administers; the handler sees who', async () => {
    const seen: CallContext[] = []
    const served = await start({ auth: () => authTable }, seen)
    const c = kvClient(served)
    const admin = new AdminServiceClient(served.address, credentials.createInsecure())
    expect(await get(c, metadata(bearer(tokens.reader)))).toEqual({ ok: getAnswer })
    expect(seen.at(-1)?.principal).toEqual({ kind: 'client', name: 'reader', role: 'readonly', via: 'token' })
    expect(await put(c, metadata(bearer(tokens.reader)))).toMatchObject({
      code: Grpc.PERMISSION_DENIED,
      ringkv: 'PERMISSION_DENIED',
    })
    expect(await put(c, metadata(bearer(tokens.writer)))).toMatchObject({ ok: { version: 2 } })
    const multi = (token: string) => call((cb) => c.multi({ ops: [] }, metadata(bearer(token)), cb))
    expect(await multi(tokens.reader)).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    expect(await multi(tokens.writer)).toMatchObject({ ok: {} })
    const fault = (token: string) =>
      call((cb) =>
        admin.injectFault({ peers: [], drop: false, delayMs: 0, clear: false }, metadata(bearer(token)), cb),
      )
    expect(await fault(tokens.writer)).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    expect(await fault(tokens.admin)).toMatchObject({ ok: { faults: [] } })
    const join = (token: string) =>
      call((cb) =>
        admin.join({ address: 'x:1', zone: '', weight: 1, peerAddress: '' }, metadata(bearer(token)), cb),
      )
    expect(await join(tokens.writer)).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    const heartbeat = (token: string) =>
      call((cb) => admin.heartbeat({ nodeId: 1, leaders: [] }, metadata(bearer(token)), cb))
    expect(await heartbeat(tokens.writer)).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    c.close()
    admin.close()
  })

  it('refuses node claims from anyone but a node: forwarded-by, from and principal', async () => {
    const seen: CallContext[] = []
    const served = await start({ auth: () => authTable }, seen)
    const c = kvClient(served)
    for (const claim of [
      { 'ringkv-forwarded-by': '2' },
      { 'ringkv-from': '2' },
      { 'ringkv-principal': 'client:admin:root' },
    ])
      expect(
        await get(c, metadata({ ...bearer(tokens.reader), ...claim })),
        JSON.stringify(claim),
      ).toMatchObject({
        code: Grpc.PERMISSION_DENIED,
      })
    expect(seen).toEqual([])
    c.close()
  })

  it('takes claims as made when nothing is configured (local use), so forwarding still works', async () => {
    const seen: CallContext[] = []
    const served = await start({}, seen)
    const c = kvClient(served)
    expect(await get(c, metadata({ 'ringkv-forwarded-by': '3' }))).toEqual({ ok: getAnswer })
    expect(seen[0]).toMatchObject({ forwarded: true, forwardedBy: 3 })
    expect(await get(c, metadata({ 'ringkv-forwarded-by': 'three' }))).toMatchObject({
      code: Grpc.INVALID_ARGUMENT,
    })
    c.close()
  })

  it('refuses at once a request passed on by a peer an injected drop fault cuts this node off from', async () => {
    const seen: CallContext[] = []
    const served = await start({ cutOffFrom: (peer) => peer === 3 }, seen)
    const c = kvClient(served)
    expect(await get(c, metadata({ 'ringkv-forwarded-by': '3' }))).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(seen).toEqual([])
    expect(await get(c, metadata({ 'ringkv-forwarded-by': '2' }))).toEqual({ ok: getAnswer })
    expect(await get(c, metadata({}))).toEqual({ ok: getAnswer })
    expect(seen.map((ctx) => ctx.forwardedBy)).toEqual([2, undefined])
    c.close()
  })

  it('denies what the table denies even when open: peer methods on the client listener, client methods on the peer one', async () => {
    const seen: CallContext[] = []
    const served = await serve({
      kind: 'peer',
      services: [[adminServiceDefinition, stubs(seen).admin]],
    })
    started.push(served)
    const admin = new AdminServiceClient(served.address, credentials.createInsecure())
    expect(
      await call((cb) =>
        admin.injectFault({ peers: [], drop: false, delayMs: 0, clear: false }, metadata(), cb),
      ),
    ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    expect(await call((cb) => admin.status({}, metadata(), cb))).toMatchObject({
      code: Grpc.PERMISSION_DENIED,
    })
    expect(seen).toEqual([])
    admin.close()
  })

  it('refuses at start a service with a method the table does not rule', async () => {
    const rogue = {
      dropAll: { ...kvServiceDefinition.get, path: '/ringkv.v1.KvService/DropAll' },
    }
    await expect(serve({ services: [[rogue, { dropAll: unary(async () => ({})) }]] })).rejects.toThrow(
      /no access rule for \/ringkv.v1.KvService\/DropAll/,
    )
  })

  it('admission: OVERLOADED when the gate is full, UNAVAILABLE while draining; admin calls are not gated', async () => {
    const seen: CallContext[] = []
    const gate = new RequestGate(1)
    gate.enter()
    const served = await start({ gate }, seen)
    const c = kvClient(served)
    const admin = new AdminServiceClient(served.address, credentials.createInsecure())
    expect(await get(c)).toMatchObject({ code: Grpc.RESOURCE_EXHAUSTED, ringkv: 'OVERLOADED' })
    gate.leave()
    gate.drain()
    expect(await get(c)).toMatchObject({ code: Grpc.UNAVAILABLE, ringkv: 'UNAVAILABLE' })
    expect(await call((cb) => admin.status({}, metadata(), cb))).toMatchObject({ ok: {} })
    c.close()
    admin.close()
  })

  it('deadline: one too far away is INVALID_ARGUMENT; the handler signal fires at the deadline', async () => {
    const seen: CallContext[] = []
    const served = await start({ limits: tightenLimits({ requestDeadlineMsMax: 5_000 }) }, seen, {
      get: (ctx: CallContext) =>
        new Promise<GetResponse>((_, reject) =>
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason as Error), { once: true }),
        ),
    })
    const c = kvClient(served)
    expect(await get(c, metadata(), Date.now() + 60_000)).toMatchObject({
      code: Grpc.INVALID_ARGUMENT,
      ringkv: 'INVALID_ARGUMENT',
    })
    expect(seen).toEqual([])
    // The client's own deadline and the server's timer race; either way the call ends DEADLINE_EXCEEDED.
    expect(await get(c, metadata(), Date.now() + 200)).toMatchObject({ code: Grpc.DEADLINE_EXCEEDED })
    expect(seen).toHaveLength(1)
    c.close()
  })

  it('a request that does not decode is INVALID_ARGUMENT and never reaches the handler', async () => {
    const seen: CallContext[] = []
    const served = await start({}, seen)
    const raw = new KvServiceClient(served.address, credentials.createInsecure())
    const garbage = await new Promise<ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        '/ringkv.v1.KvService/Get',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0xff, 0xff, 0xff]),
        (err) => resolve(err!),
      ),
    )
    expect(garbage.code).toBe(Grpc.INVALID_ARGUMENT)
    expect(seen).toEqual([])
    raw.close()
  })

  it('a broken invariant in a handler answers INTERNAL and goes to onFatal', async () => {
    const seen: CallContext[] = []
    const fatal: Error[] = []
    const served = await start({ onFatal: (err) => fatal.push(err) }, seen, {
      get: () => Promise.reject(new AssertionError('broken')),
    })
    const c = kvClient(served)
    expect(await get(c)).toMatchObject({ code: Grpc.INTERNAL, ringkv: 'INTERNAL' })
    expect(fatal.map((e) => e.message)).toEqual(['broken'])
    c.close()
  })

  it('a server stream is ended by the pipeline and counted once', async () => {
    const seen: CallContext[] = []
    const served = await start({}, seen)
    const c = kvClient(served)
    const pages: unknown[] = []
    for await (const page of c.scan({
      prefix: Buffer.alloc(0),
      limit: 1,
      cursor: Buffer.alloc(0),
      options: undefined,
    }))
      pages.push(page)
    expect(pages).toHaveLength(1)
    expect(served.metrics.observed).toEqual([{ method: 'Scan', consistency: 'none', code: 'OK' }])
    c.close()
  })
})
