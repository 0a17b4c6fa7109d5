/**
 * The trust boundary end to end: a 3-node cluster of real kvd processes with mutual TLS between
 * peers on their own listener, client certificates and bearer tokens on the client listener, and
 * roles. Every refusal is checked for its code and for "nothing changed".
 *
 * Certificates come from `kvctl certs`'s issuer (src/cli/certs/issue.ts); each node's names the
 * peer address its ports were given, as kvd requires.
 */
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import {
  Client,
  Metadata,
  credentials,
  status as Grpc,
  type ChannelCredentials,
  type ServiceError,
} from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCa, issueClient, issueNode, type Issued } from '../../../src/cli/certs/issue.ts'
import { KvClient, isKvErrorWithCode, type KvClientInit } from '../../../src/client/index.ts'
import { AdminServiceClient, type StatusResponse } from '../../../src/gen/ringkv/v1/admin.ts'
import { Consistency, KvServiceClient, type ShardMapResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import { SnapshotRequest, StreamRequest, StreamResponse } from '../../../src/gen/ringkv/v1/raft.ts'
import { clientChannelCredentials, tokenDigest } from '../../../src/net/index.ts'
import { runKvctl } from '../cli/run-kvctl.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'

const cluster_ = 'ringkv'
const days = 2
let dir: string
let ca: Issued
let otherCa: Issued
let admin: Issued
let reader: Issued
let stranger: Issued
const nodeCerts = new Map<number, Issued>()
const tokens = { app: 'app-token-0123456789', ops: 'ops-token-0123456789', late: 'late-token-0123456789' }
let cluster: Cluster
let joined: KvdHandle | undefined

const file = (name: string): string => join(dir, name)
const pem = (issued: Issued): { cert: string; key: string } => ({ cert: issued.certPem, key: issued.keyPem })

function writeAuth(extra: { tokens?: object[]; principals?: Record<string, string> } = {}): void {
  writeFileSync(
    file('auth.json'),
    JSON.stringify({
      tokens: [
        { sha256: tokenDigest(tokens.app), principal: 'app', role: 'readwrite' },
        { sha256: tokenDigest(tokens.ops), principal: 'ops', role: 'readonly' },
        ...(extra.tokens ?? []),
      ],
      principals: extra.principals ?? {},
    }),
  )
}

/** Writes node `id`'s certificate for `peerAddress` and returns its kvd flags. */
async function nodeFlags(id: number, peerAddress: string): Promise<string[]> {
  const issued = await issueNode(ca, {
    cluster: cluster_,
    name: `node${id}`,
    peerAddresses: [peerAddress],
    hosts: ['127.0.0.1', 'localhost'],
    days,
    nowMs: Date.now(),
  })
  nodeCerts.set(id, issued)
  writeFileSync(file(`node${id}.crt`), issued.certPem)
  writeFileSync(file(`node${id}.key`), issued.keyPem)
  return [
    '--cert-file',
    file(`node${id}.crt`),
    '--key-file',
    file(`node${id}.key`),
    '--ca-file',
    file('ca.crt'),
    '--auth-file',
    file('auth.json'),
    '--limit',
    'credentialsReloadMs=300',
    '--allow-fault-injection',
  ]
}

const tlsWith = (cert?: Issued, authority = ca): NonNullable<KvClientInit['tls']> => ({
  ca: authority.certPem,
  ...(cert === undefined ? {} : pem(cert)),
})

function sdk(access: Pick<KvClientInit, 'tls' | 'token'>): KvClient {
  return new KvClient({
    endpoints: cluster.endpoints,
    deadlineMs: 4_000,
    retry: { attemptsMax: 2 },
    ...access,
  })
}

const channel = (cert?: Issued, authority = ca): ChannelCredentials =>
  clientChannelCredentials({ ca: authority.certPem, ...(cert === undefined ? {} : pem(cert)) })

const rawOptions = { 'grpc.use_local_subchannel_pool': 1 }

/** A unary call's outcome: its answer, or its gRPC and ringkv codes. */
async function outcome<T>(
  start: (md: Metadata, cb: (err: ServiceError | null, res: T) => void) => unknown,
  md = new Metadata(),
): Promise<{ ok: T } | { code: number; ringkv: string | undefined }> {
  return await new Promise((resolve) =>
    start(md, (err, res) =>
      resolve(
        err === null
          ? { ok: res }
          : { code: err.code, ringkv: err.metadata?.get('ringkv-code')[0] as string | undefined },
      ),
    ),
  )
}

function adminAt(address: string, creds: ChannelCredentials): AdminServiceClient {
  return new AdminServiceClient(address, creds, rawOptions)
}

function bearer(token: string): Metadata {
  const md = new Metadata()
  md.set('authorization', `Bearer ${token}`)
  return md
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

async function statusOf(address: string, cert: Issued): Promise<StatusResponse> {
  const client = adminAt(address, channel(cert))
  try {
    const r = await outcome<StatusResponse>((md, cb) => client.status({}, md, cb))
    if (!('ok' in r)) throw new Error(`status failed: ${JSON.stringify(r)}`)
    return r.ok
  } finally {
    client.close()
  }
}

async function shardMap(): Promise<ShardMapResponse> {
  const client = new KvServiceClient(cluster.endpoints[0]!, channel(admin), rawOptions)
  try {
    const r = await outcome<ShardMapResponse>((md, cb) => client.shardMap({}, md, cb))
    if (!('ok' in r)) throw new Error(`shard map failed: ${JSON.stringify(r)}`)
    return r.ok
  } finally {
    client.close()
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ringkv-tls-e2e-'))
  const nowMs = Date.now()
  ca = await createCa({ cluster: cluster_, days, nowMs })
  otherCa = await createCa({ cluster: cluster_, days, nowMs })
  admin = await issueClient(ca, { cluster: cluster_, name: 'root', role: 'admin', days, nowMs })
  reader = await issueClient(ca, { cluster: cluster_, name: 'reader', role: 'readonly', days, nowMs })
  stranger = await issueClient(otherCa, { cluster: cluster_, name: 'root', role: 'admin', days, nowMs })
  writeFileSync(file('ca.crt'), ca.certPem)
  for (const [name, issued] of [
    ['reader', reader],
    ['stranger', stranger],
  ] as const) {
    writeFileSync(file(`${name}.crt`), issued.certPem)
    writeFileSync(file(`${name}.key`), issued.keyPem)
  }
  writeAuth()
  cluster = await startCluster({
    nodes: 3,
    shards: 4,
    nodeArgs: (node) => nodeFlags(node.nodeId, `127.0.0.1:${node.peerPort}`),
    client: { tls: tlsWith(admin) },
  })
}, 120_000)

afterAll(async () => {
  await joined?.stop()
  await cluster?.stop()
  rmSync(dir, { recursive: true, force: true })
})

describe('TLS end to end: a 3-node cluster with mutual TLS between peers', () => {
  it('serves a client with a certificate of the CA', async () => {
    const client = sdk({ tls: tlsWith(admin) })
    try {
      await client.put('tls/a', 'one')
      const got = await client.get('tls/a')
      expect(got.valueText()).toBe('one')
    } finally {
      client.close()
    }
  })

  it('refuses a client without a certificate, and one with a certificate from another CA', async () => {
    for (const access of [{ tls: tlsWith() }, { tls: tlsWith(stranger) }]) {
      const client = sdk(access)
      try {
        expect(await codeOf(client.get('tls/a'))).toBe('UNAUTHENTICATED')
      } finally {
        client.close()
      }
    }
    // Plaintext does not get past the TLS handshake at all.
    const plain = sdk({})
    try {
      expect(await codeOf(plain.get('tls/a'))).toBe('UNAVAILABLE')
    } finally {
      plain.close()
    }
  })

  it('refuses forged peer streams without a peer certificate at the handshake', async () => {
    const peer = cluster.nodes[0]!.peer
    for (const creds of [credentials.createInsecure(), channel(), channel(stranger, otherCa)]) {
      const raw = new Client(peer, creds, rawOptions)
      const err = await openStream(raw, { from: '2', to: '1' })
      expect(err).toMatchObject({ code: Grpc.UNAVAILABLE })
      raw.close()
    }
    // A client certificate of the right CA gets through the handshake, but is no node.
    const raw = new Client(peer, channel(admin), rawOptions)
    expect(await openStream(raw, { from: '2', to: '1' })).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    raw.close()
  })

  it("refuses node 2's certificate claiming to be node 3 (stream, snapshot, heartbeat, forward)", async () => {
    const node1 = cluster.node(1)
    const asNode2 = channel(nodeCerts.get(2))
    const raw = new Client(node1.peer, asNode2, rawOptions)
    expect(await openStream(raw, { from: '3', to: '1' })).toMatchObject({
      code: Grpc.PERMISSION_DENIED,
      ringkv: 'PERMISSION_DENIED',
    })
    // The same certificate as itself is served (the hello comes back): it is the claim that is refused.
    expect(await openStream(raw, { from: '2', to: '1' })).toEqual('hello')
    const snapshot = await new Promise<ServiceError>((resolve) => {
      const call = raw.makeClientStreamRequest<Buffer, Buffer>(
        '/ringkv.v1.RaftTransportService/Snapshot',
        (b) => b,
        (b) => b,
        new Metadata(),
        { deadline: Date.now() + 5_000 },
        (err) => resolve(err!),
      )
      call.write(
        Buffer.from(
          SnapshotRequest.encode({
            shardId: 0,
            fromNode: 3,
            toNode: 1,
            index: 10,
            term: 2,
            offset: 0,
            data: Buffer.alloc(0),
            last: true,
          }).finish(),
        ),
      )
      call.end()
    })
    expect({ code: snapshot.code, ringkv: snapshot.metadata.get('ringkv-code')[0] }).toEqual({
      code: Grpc.PERMISSION_DENIED,
      ringkv: 'PERMISSION_DENIED',
    })
    raw.close()
    const adminPeer = new AdminServiceClient(node1.peer, asNode2, rawOptions)
    const forged = new Metadata()
    forged.set('ringkv-forwarded-by', '2')
    expect(
      await outcome((md, cb) => adminPeer.heartbeat({ nodeId: 3, leaders: [] }, md, cb), forged),
    ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    const asThree = new Metadata()
    asThree.set('ringkv-forwarded-by', '3')
    expect(
      await outcome((md, cb) => adminPeer.heartbeat({ nodeId: 2, leaders: [] }, md, cb), asThree),
    ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    adminPeer.close()
  })

  it('each admin call without the role is PERMISSION_DENIED, and nothing changed', async () => {
    const before = await shardMap()
    for (const [who, creds, md] of [
      ['readonly certificate', channel(reader), new Metadata()],
      ['readwrite token', channel(), bearer(tokens.app)],
    ] as const) {
      const client = adminAt(cluster.endpoints[0]!, creds)
      expect(
        await outcome(
          (m, cb) => client.injectFault({ peers: [2, 3], drop: true, delayMs: 0, clear: false }, m, cb),
          md,
        ),
        who,
      ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
      expect(
        await outcome(
          (m, cb) => client.join({ address: '127.0.0.1:1', zone: '', weight: 1, peerAddress: '' }, m, cb),
          md,
        ),
        who,
      ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
      expect(
        await outcome((m, cb) => client.heartbeat({ nodeId: 1, leaders: [] }, m, cb), md),
        who,
      ).toMatchObject({
        code: Grpc.PERMISSION_DENIED,
      })
      client.close()
    }
    // Nothing changed: no fault in force (the admin may look), no node registered.
    const adminClient = adminAt(cluster.endpoints[0]!, channel(admin))
    expect(
      await outcome((m, cb) =>
        adminClient.injectFault({ peers: [], drop: false, delayMs: 0, clear: false }, m, cb),
      ),
    ).toEqual({ ok: { faults: [] } })
    adminClient.close()
    expect((await shardMap()).nodes.map((n) => n.nodeId)).toEqual(before.nodes.map((n) => n.nodeId))
    // Status: health for anyone with a role, the detail for admins only.
    const plain = await statusOf(cluster.endpoints[0]!, reader)
    expect(plain.node?.nodeId).toBe(1)
    expect({ dataDir: plain.node?.dataDir, clusterId: plain.clusterId, peers: plain.peers }).toEqual({
      dataDir: '',
      clusterId: '',
      peers: [],
    })
    const full = await statusOf(cluster.endpoints[0]!, admin)
    expect(full.node?.dataDir).toBe(cluster.node(1).dataDir)
    expect(full.clusterId).toMatch(/^[0-9a-f]{32}$/)
    expect(full.peers.map((p) => p.nodeId).sort()).toEqual([2, 3])
  })

  it('readonly cannot write (kvctl exits 8, the SDK gets PERMISSION_DENIED, batched or not), and nothing changed', async () => {
    const kvctl = await runKvctl(
      [
        '--endpoints',
        cluster.endpoints.join(','),
        '-o',
        'json',
        '--deadline-ms',
        '4000',
        'put',
        'tls/readonly',
        'nope',
      ],
      {
        env: {
          KVCTL_CA_FILE: file('ca.crt'),
          KVCTL_CERT_FILE: file('reader.crt'),
          KVCTL_KEY_FILE: file('reader.key'),
        },
      },
    )
    expect(kvctl.code, kvctl.stderr).toBe(8)
    expect(kvctl.stderr).toContain('PERMISSION_DENIED')
    const readonly = sdk({ tls: tlsWith(reader) })
    const tokenReader = sdk({ tls: tlsWith(), token: tokens.ops })
    try {
      for (const client of [readonly, tokenReader]) {
        expect(await codeOf(client.put('tls/readonly', 'nope'))).toBe('PERMISSION_DENIED')
        expect(await codeOf(client.delete('tls/a'))).toBe('PERMISSION_DENIED')
        expect(await codeOf(client.batch([{ type: 'put', key: 'tls/readonly', value: 'x' }]))).toBe(
          'PERMISSION_DENIED',
        )
        // Concurrent single-key calls travel as one Multi: its write op is refused on its own.
        const [got, wrote] = await Promise.allSettled([
          client.get('tls/a'),
          client.put('tls/readonly', 'nope'),
        ])
        expect(got.status).toBe('fulfilled')
        expect(wrote.status === 'rejected' && isKvErrorWithCode(wrote.reason, 'PERMISSION_DENIED')).toBe(true)
      }
      expect((await readonly.get('tls/readonly')).found).toBe(false)
      expect((await readonly.get('tls/a')).valueText()).toBe('one')
    } finally {
      readonly.close()
      tokenReader.close()
    }
  })

  it('tokens: a listed token works over TLS, an unknown one does not; the auth file is re-read', async () => {
    const app = sdk({ tls: tlsWith(), token: tokens.app })
    const late = sdk({ tls: tlsWith(), token: tokens.late })
    try {
      await app.put('tls/token', 'by app')
      expect((await app.get('tls/token')).valueText()).toBe('by app')
      expect(await codeOf(late.get('tls/token'))).toBe('UNAUTHENTICATED')
      // A new token, then a principal locked out, without a restart.
      writeAuth({ tokens: [{ sha256: tokenDigest(tokens.late), principal: 'late', role: 'readonly' }] })
      await until('the new token to be accepted', async () =>
        (await late.get('tls/token')).found ? true : undefined,
      )
      writeAuth({
        tokens: [{ sha256: tokenDigest(tokens.late), principal: 'late', role: 'readonly' }],
        principals: { app: 'none' },
      })
      await until('app to be locked out', async () =>
        (await codeOf(app.get('tls/token'))) === 'PERMISSION_DENIED' ? true : undefined,
      )
    } finally {
      writeAuth()
      // The next tests use the app token on every node, and each node re-reads the file on its
      // own: wait until each one lets app in again (an eventual read is served where it lands).
      for (const endpoint of cluster.endpoints) {
        const raw = new KvServiceClient(endpoint, channel(), rawOptions)
        const read = {
          consistency: Consistency.CONSISTENCY_EVENTUAL,
          maxStalenessMs: 0,
          session: undefined,
          route: undefined,
        }
        try {
          await until(`app to be let in again by ${endpoint}`, async () => {
            const r = await outcome(
              (m, cb) => raw.get({ key: Buffer.from('tls/token'), options: read }, m, cb),
              bearer(tokens.app),
            )
            return 'ok' in r ? true : undefined
          })
        } finally {
          raw.close()
        }
      }
      app.close()
      late.close()
    }
  })

  it('binds exactly-once sessions to the authenticated client: another client cannot write on one, even through a forward', async () => {
    const tagged = (clientId: string, seq: number) => ({
      consistency: 0,
      clientId,
      seq,
      firstIncompleteSeq: seq,
      route: undefined,
    })
    const victimId = 'victim-session-0123456789'
    const key = Buffer.from('tls/session')
    const asAdmin = new KvServiceClient(cluster.endpoints[0]!, channel(admin), rawOptions)
    const registered = await outcome((m, cb) =>
      asAdmin.registerSession({ clientId: victimId, key, floor: 1, route: undefined }, m, cb),
    )
    expect(registered).toMatchObject({ ok: {} })
    // Another principal (a readwrite token) names the victim's id, on every node: on all but
    // one the write is forwarded to the shard's leader, which sees the original client.
    for (const endpoint of cluster.endpoints) {
      const other = new KvServiceClient(endpoint, channel(), rawOptions)
      expect(
        await outcome(
          (m, cb) => other.put({ key, value: Buffer.from('hijack'), options: tagged(victimId, 1) }, m, cb),
          bearer(tokens.app),
        ),
        endpoint,
      ).toMatchObject({ code: Grpc.FAILED_PRECONDITION, ringkv: 'SESSION_EXPIRED' })
      other.close()
    }
    // Nothing was applied, and the session still serves its owner.
    const read = sdk({ tls: tlsWith(admin) })
    try {
      expect((await read.get('tls/session')).found).toBe(false)
    } finally {
      read.close()
    }
    // The owner writes on it through every node: forwarded writes carry their client along.
    for (const [i, endpoint] of cluster.endpoints.entries()) {
      const owner = new KvServiceClient(endpoint, channel(admin), rawOptions)
      expect(
        await outcome((m, cb) =>
          owner.put({ key, value: Buffer.from(`mine ${i}`), options: tagged(victimId, i + 1) }, m, cb),
        ),
        endpoint,
      ).toMatchObject({ ok: {} })
      owner.close()
    }
    asAdmin.close()
  })

  it('takes a renewed certificate without a restart: new connections get it', async () => {
    const node1 = cluster.node(1)
    const old = nodeCerts.get(1)!
    const before = await servedFingerprint(node1.grpc)
    expect(before).toBe(new X509Certificate(old.certPem).fingerprint256)
    await nodeFlags(1, node1.peer)
    const renewed = new X509Certificate(nodeCerts.get(1)!.certPem).fingerprint256
    expect(renewed).not.toBe(before)
    await until('node 1 to serve the renewed certificate', async () =>
      (await servedFingerprint(node1.grpc)) === renewed ? true : undefined,
    )
    await until('node 1 peer listener too', async () =>
      (await servedFingerprint(node1.peer, admin)) === renewed ? true : undefined,
    )
    // Peers and clients carry on over the new certificate.
    const client = sdk({ tls: tlsWith(admin) })
    try {
      await client.put('tls/after-renewal', 'yes', { consistency: 'all' })
      expect((await client.get('tls/after-renewal')).valueText()).toBe('yes')
    } finally {
      client.close()
    }
  })

  it('a node joins with its certificate; a certificate cannot register an address it does not name', async () => {
    const port = await freePort()
    let peerPort = await freePort()
    while (peerPort === port) peerPort = await freePort()
    const flags = await nodeFlags(4, `127.0.0.1:${peerPort}`)
    joined = await startKvd({
      port,
      peerPort,
      args: ['--join', cluster.endpoints[1]!, '--heartbeat-ms', '250', ...flags],
    })
    const registered = await until('node 4 in the map, active', async () => {
      const n = (await shardMap()).nodes.find((x) => x.address === `127.0.0.1:${port}`)
      return n?.state === 'active' ? n : undefined
    })
    expect(registered.peerAddress).toBe(`127.0.0.1:${peerPort}`)
    // Its certificate names 127.0.0.1:<peerPort> only: it cannot register another node.
    const asNode4 = adminAt(cluster.endpoints[0]!, channel(nodeCerts.get(4)))
    expect(
      await outcome((m, cb) =>
        asNode4.join({ address: '127.0.0.1:2', zone: '', weight: 1, peerAddress: '127.0.0.1:3' }, m, cb),
      ),
    ).toMatchObject({ code: Grpc.PERMISSION_DENIED })
    asNode4.close()
    expect((await shardMap()).nodes.some((n) => n.address === '127.0.0.1:2')).toBe(false)
  })
})

/**
 * Opens a Raft peer stream with `ringkv-from`/`ringkv-to`: 'hello' when the server answers it,
 * else the failure's codes.
 */
function openStream(
  client: Client,
  ids: { from: string; to: string },
): Promise<'hello' | { code: number; ringkv: string | undefined }> {
  return new Promise((resolve) => {
    const md = new Metadata()
    md.set('ringkv-from', ids.from)
    md.set('ringkv-to', ids.to)
    const call = client.makeBidiStreamRequest<Buffer, Buffer>(
      '/ringkv.v1.RaftTransportService/Stream',
      (b) => b,
      (b) => b,
      md,
      { deadline: Date.now() + 5_000 },
    )
    call.on('data', (b: Buffer) => {
      StreamResponse.decode(b)
      resolve('hello')
      call.cancel()
    })
    call.on('error', (err: ServiceError) =>
      resolve({ code: err.code, ringkv: err.metadata?.get('ringkv-code')[0] as string | undefined }),
    )
    call.write(Buffer.from(StreamRequest.encode({ envelopes: [] }).finish()))
  })
}

/** The fingerprint of the certificate a new TLS connection to `address` is served. */
function servedFingerprint(address: string, cert?: Issued): Promise<string> {
  const [host, port] = [
    address.slice(0, address.lastIndexOf(':')),
    Number(address.slice(address.lastIndexOf(':') + 1)),
  ]
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host, port, ca: ca.certPem, ALPNProtocols: ['h2'], ...(cert === undefined ? {} : pem(cert)) },
      () => {
        resolve(socket.getPeerCertificate().fingerprint256)
        socket.destroy()
      },
    )
    socket.on('error', reject)
  })
}
