/**
 * TLS over real loopback connections with certificates made by `kvctl certs`'s issuer: the
 * handshake refuses what it must, node certificates back node claims and nothing else, client
 * certificates carry their roles, and new files are taken without a restart.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import {
  Metadata,
  credentials,
  status as Grpc,
  type ChannelCredentials,
  type ServiceError,
} from '@grpc/grpc-js'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createCa, issueClient, issueNode, type Issued } from '../../../src/cli/certs/issue.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { NodeId } from '../../../src/common/ids.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import { KvServiceClient, type GetResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import type { ReloadingServerCredentials } from '../../../src/net/index.ts'
import {
  CredentialFiles,
  PeerCertificates,
  checkTlsMaterial,
  clientChannelCredentials,
  unary,
  type CallContext,
  type TlsMaterial,
} from '../../../src/net/index.ts'
import { kvServiceDefinition } from '../../../src/server/grpc-kv.ts'
import { serve, type Served } from './serve.ts'

const cluster = 'ringkv'
const nowMs = Date.now()
const days = 2
const peer = (n: number): string => `127.0.0.1:${17100 + n}`
const registered = new Map([
  [peer(1), NodeId(1)],
  [peer(2), NodeId(2)],
  [peer(3), NodeId(3)],
])

let ca: Issued
let otherCa: Issued
const nodes: Issued[] = []
let admin: Issued
let reader: Issued
let strangerAdmin: Issued
let dir: string

const material = (cert: Issued, authority = ca, peerAddress = peer(1)): TlsMaterial =>
  checkTlsMaterial(
    { ca: Buffer.from(authority.certPem), cert: Buffer.from(cert.certPem), key: Buffer.from(cert.keyPem) },
    { cluster, peerAddress, nowMs: Date.now() },
  )

beforeAll(async () => {
  ca = await createCa({ cluster, days, nowMs })
  otherCa = await createCa({ cluster, days, nowMs })
  for (let n = 1; n <= 3; n++)
    nodes.push(
      await issueNode(ca, {
        cluster,
        name: `node${n}`,
        peerAddresses: [peer(n)],
        hosts: ['localhost'],
        days,
        nowMs,
      }),
    )
  admin = await issueClient(ca, { cluster, name: 'root', role: 'admin', days, nowMs })
  reader = await issueClient(ca, { cluster, name: 'reader', role: 'readonly', days, nowMs })
  strangerAdmin = await issueClient(otherCa, { cluster, name: 'root', role: 'admin', days, nowMs })
  dir = mkdtempSync(join(tmpdir(), 'ringkv-tls-'))
})

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
})

const started: Served[] = []
afterEach(() => {
  for (const s of started.splice(0)) s.close()
})

const answer: GetResponse = {
  found: false,
  value: Buffer.alloc(0),
  version: 0,
  createVersion: 0,
  receipt: undefined,
}

/** A listener serving a stub Get that records its context. */
async function listen(
  kind: 'client' | 'peer',
  tls: TlsMaterial,
  seen: CallContext[],
  clientCertRequired = false,
): Promise<Served> {
  const get = unary(async (_req, ctx: CallContext) => {
    seen.push(ctx)
    return answer
  })
  const stub = unary(async () => ({}))
  const served = await serve({
    kind,
    tls,
    clientCertRequired,
    nodeIdOf: (addresses) => addresses.map((a) => registered.get(a)).find((id) => id !== undefined),
    services: [
      [
        kvServiceDefinition,
        {
          get,
          put: stub,
          delete: stub,
          batchGet: stub,
          batch: stub,
          scan: stub,
          multi: stub,
          shardMap: stub,
        },
      ],
    ],
  })
  started.push(served)
  return served
}

const creds = (authority: Issued, cert?: Issued): ChannelCredentials =>
  clientChannelCredentials({
    ca: authority.certPem,
    ...(cert === undefined ? {} : { cert: cert.certPem, key: cert.keyPem }),
  })

async function getVia(
  served: Served,
  channel: ChannelCredentials,
  entries: Record<string, string> = {},
): Promise<{ ok: GetResponse } | { code: number; ringkv: string | undefined }> {
  const client = new KvServiceClient(served.address, channel, {
    'grpc.ssl_target_name_override': 'localhost',
  })
  const md = new Metadata()
  for (const [k, v] of Object.entries(entries)) md.set(k, v)
  try {
    return await new Promise((resolve) =>
      client.get(
        { key: Buffer.from('k'), options: undefined },
        md,
        { deadline: Date.now() + 5_000 },
        (err, res) =>
          resolve(
            err === null
              ? { ok: res }
              : {
                  code: err.code,
                  ringkv: (err as ServiceError).metadata?.get('ringkv-code')[0] as string | undefined,
                },
          ),
      ),
    )
  } finally {
    client.close()
  }
}

describe('net/tls: the peer listener', () => {
  it('refuses at the handshake a caller without a certificate, or with one of another CA', async () => {
    const seen: CallContext[] = []
    const served = await listen('peer', material(nodes[0]!), seen)
    expect(await getVia(served, credentials.createInsecure())).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(await getVia(served, creds(ca))).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(await getVia(served, creds(ca, strangerAdmin))).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(seen).toEqual([])
  })

  it("takes a node's claims only as its own: node 2's certificate cannot speak as node 3", async () => {
    const seen: CallContext[] = []
    const served = await listen('peer', material(nodes[0]!), seen)
    const node2 = creds(ca, nodes[1])
    expect(await getVia(served, node2, { 'ringkv-forwarded-by': '2' })).toEqual({ ok: answer })
    expect(seen[0]).toMatchObject({ caller: { kind: 'node', nodeId: 2 }, forwardedBy: 2, forwarded: true })
    for (const claim of [{ 'ringkv-forwarded-by': '3' }, { 'ringkv-from': '3' }])
      expect(await getVia(served, node2, claim), JSON.stringify(claim)).toMatchObject({
        code: Grpc.PERMISSION_DENIED,
        ringkv: 'PERMISSION_DENIED',
      })
    expect(seen).toHaveLength(1)
  })

  it('passes on the client a member forwards for, and refuses that claim without a forward', async () => {
    const seen: CallContext[] = []
    const served = await listen('peer', material(nodes[0]!), seen)
    const node2 = creds(ca, nodes[1])
    expect(
      await getVia(served, node2, {
        'ringkv-forwarded-by': '2',
        'ringkv-principal': 'client:readonly:alice',
      }),
    ).toEqual({ ok: answer })
    expect(seen[0]?.principal).toEqual({ kind: 'client', name: 'alice', role: 'readonly', via: 'forwarded' })
    expect(seen[0]?.caller).toMatchObject({ kind: 'node', nodeId: 2 })
    expect(await getVia(served, node2, { 'ringkv-principal': 'client:admin:alice' })).toMatchObject({
      code: Grpc.PERMISSION_DENIED,
    })
  })

  it('refuses a client certificate and an unregistered node (no node id) where a node is needed', async () => {
    const seen: CallContext[] = []
    const served = await listen('peer', material(nodes[0]!), seen)
    expect(await getVia(served, creds(ca, admin))).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    const stranger = await issueNode(ca, {
      cluster,
      name: 'x',
      peerAddresses: ['127.0.0.1:9'],
      hosts: [],
      days,
      nowMs,
    })
    expect(await getVia(served, creds(ca, stranger))).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    expect(seen).toEqual([])
  })
})

describe('net/tls: the client listener', () => {
  it('serves a client certificate with its role; without one, or from another CA: UNAUTHENTICATED', async () => {
    const seen: CallContext[] = []
    const served = await listen('client', material(nodes[0]!), seen)
    expect(await getVia(served, creds(ca, reader))).toEqual({ ok: answer })
    expect(seen[0]?.principal).toEqual({
      kind: 'client',
      name: 'reader',
      role: 'readonly',
      via: 'certificate',
    })
    expect(await getVia(served, creds(ca))).toMatchObject({ code: Grpc.UNAUTHENTICATED })
    expect(await getVia(served, creds(ca, strangerAdmin))).toMatchObject({ code: Grpc.UNAUTHENTICATED })
    // A client that does not trust the node's CA does not get through either.
    expect(await getVia(served, creds(otherCa, strangerAdmin))).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(seen).toHaveLength(1)
  })

  it('with client certificates required, refuses at the handshake what is not from the CA', async () => {
    const seen: CallContext[] = []
    const served = await listen('client', material(nodes[0]!), seen, true)
    expect(await getVia(served, creds(ca, admin))).toEqual({ ok: answer })
    expect(await getVia(served, creds(ca))).toMatchObject({ code: Grpc.UNAVAILABLE })
    expect(await getVia(served, creds(ca, strangerAdmin))).toMatchObject({ code: Grpc.UNAVAILABLE })
  })
})

describe('net/tls: peer channels', () => {
  it("check that the peer's certificate names the address dialled", async () => {
    const seen: CallContext[] = []
    // The server is node 1, but we dial it as if it were node 3.
    const served = await listen('peer', material(nodes[0]!), seen)
    const asNode2 = new PeerCertificates(material(nodes[1]!, ca, peer(2)), cluster)
    const right = asNode2.channelCredentials(peer(1))
    const wrong = asNode2.channelCredentials(peer(3))
    expect(await getVia(served, right, { 'ringkv-forwarded-by': '2' })).toEqual({ ok: answer })
    expect(await getVia(served, wrong, { 'ringkv-forwarded-by': '2' })).toMatchObject({
      code: Grpc.UNAVAILABLE,
    })
  })
})

/** The certificate a new TLS connection to `port` is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost', ALPNProtocols: ['h2'] },
      () => {
        resolve(socket.getPeerCertificate().fingerprint256)
        socket.destroy()
      },
    )
    socket.on('error', reject)
  })
}

describe('net/tls-files: credentials reloaded without a restart', () => {
  const files = (): { certFile: string; keyFile: string; caFile: string } => ({
    certFile: join(dir, 'node.crt'),
    keyFile: join(dir, 'node.key'),
    caFile: join(dir, 'ca.crt'),
  })
  const write = (cert: Issued): void => {
    writeFileSync(join(dir, 'node.crt'), cert.certPem)
    writeFileSync(join(dir, 'node.key'), cert.keyPem)
    writeFileSync(join(dir, 'ca.crt'), ca.certPem)
  }
  const load = (): Promise<CredentialFiles> =>
    CredentialFiles.load(
      {
        ...files(),
        cluster,
        peerAddress: peer(1),
        reloadMs: 60_000,
        fileBytesMax: 1 << 20,
        tokensMax: 10,
      },
      { clock: new SystemClock(), logger: silentLogger },
    )

  it('refuses at start files that do not make this node, saying which', async () => {
    write(nodes[1]!)
    await expect(load()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'certFile' } })
    writeFileSync(join(dir, 'node.crt'), nodes[0]!.certPem)
    writeFileSync(join(dir, 'node.key'), nodes[1]!.keyPem)
    await expect(load()).rejects.toMatchObject({ details: { field: 'keyFile' } })
    write(await issueNode(otherCa, { cluster, name: 'n1', peerAddresses: [peer(1)], hosts: [], days, nowMs }))
    await expect(load()).rejects.toThrow(/not issued by a certificate of the CA file/)
  })

  it('puts new files in force for new connections; a half-replaced set is refused and the old one stays', async () => {
    write(nodes[0]!)
    const loaded = await load()
    const seen: CallContext[] = []
    const served = await listen('client', loaded.tls!, seen)
    const before = await servedFingerprint(served.port)
    expect(before).toBe(loaded.tls!.fingerprint)

    // A new certificate for the same node, files replaced while kvd runs.
    const renewed = await issueNode(ca, {
      cluster,
      name: 'node1',
      peerAddresses: [peer(1)],
      hosts: ['localhost'],
      days,
      nowMs,
    })
    const changes: TlsMaterial[] = []
    loaded.onTls((m) => changes.push(m))
    // As kvd wires it: the listener's credentials follow the files.
    const listenerCredentials = served.credentials as ReloadingServerCredentials
    loaded.onTls((m) => listenerCredentials.update(m))
    // Only the certificate so far: it does not match the key, so nothing changes.
    writeFileSync(join(dir, 'node.crt'), renewed.certPem)
    await loaded.reload()
    expect(changes).toEqual([])
    expect(await servedFingerprint(served.port)).toBe(before)

    writeFileSync(join(dir, 'node.key'), renewed.keyPem)
    await loaded.reload()
    expect(changes).toHaveLength(1)
    expect(loaded.reloadCount).toBe(1)
    const after = await servedFingerprint(served.port)
    expect(after).not.toBe(before)
    expect(after).toBe(changes[0]!.fingerprint)
    // Calls still work over the new certificate.
    expect(await getVia(served, creds(ca, admin))).toEqual({ ok: answer })
    loaded.stop()
  })
})
