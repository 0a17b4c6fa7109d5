import { Metadata } from '@grpc/grpc-js'
import { describe, expect, it } from 'vitest'
import { NodeId } from '../../../src/common/ids.ts'
import {
  Authenticator,
  certificateIdentity,
  decodePrincipal,
  encodePrincipal,
  parseAuthFile,
  parseSubjectAltName,
  principalKey,
  tokenDigest,
  type AuthContext,
  type AuthTable,
} from '../../../src/net/index.ts'

describe('net/identity: ringkv names in certificates', () => {
  it('reads node and client URIs of its own cluster only', () => {
    const san =
      'DNS:localhost, IP Address:127.0.0.1, URI:ringkv://prod/node/10.0.0.1:7101, ' +
      'URI:ringkv://prod/node/[::1]:7101, URI:ringkv://other/node/10.0.0.2:7101, URI:https://example.test/x'
    expect(certificateIdentity(san, 'prod')).toEqual({
      nodeAddresses: ['10.0.0.1:7101', '[::1]:7101'],
      clients: [],
      otherClusters: 1,
    })
    expect(certificateIdentity('URI:ringkv://prod/client/alice?role=readonly', 'prod').clients).toEqual([
      { name: 'alice', role: 'readonly' },
    ])
  })

  it('skips malformed ringkv URIs instead of half-reading them', () => {
    const bad = [
      'URI:ringkv://prod/node/no-port',
      'URI:ringkv://prod/node/host:99999',
      'URI:ringkv://prod/client/alice',
      'URI:ringkv://prod/client/alice?role=root',
      'URI:ringkv://prod/client/al/ice?role=admin',
      'URI:ringkv://prod/client/?role=admin',
    ]
    for (const san of bad) {
      const id = certificateIdentity(san, 'prod')
      expect([...id.nodeAddresses, ...id.clients], san).toEqual([])
    }
  })

  it('does not let a quoted value smuggle in a second name', () => {
    // What Node writes for a URI whose value holds ", " (a JSON string, the comma escaped).
    const san = 'URI:"ringkv://prod/client/x\\u002c URI:ringkv://prod/client/mallory?role=admin", DNS:a'
    expect(parseSubjectAltName(san)).toEqual([
      { type: 'URI', value: 'ringkv://prod/client/x, URI:ringkv://prod/client/mallory?role=admin' },
      { type: 'DNS', value: 'a' },
    ])
    expect(certificateIdentity(san, 'prod').clients).toEqual([])
  })

  it('keys a principal the same however its calls arrive', () => {
    const via = ['certificate', 'token', 'forwarded'] as const
    expect(
      new Set(via.map((v) => principalKey({ kind: 'client', name: 'alice', role: 'readonly', via: v }))),
    ).toEqual(new Set(['client:alice']))
    expect(principalKey({ kind: 'node', addresses: ['a:1'], nodeId: NodeId(3) })).toBe('node:3')
    expect(principalKey({ kind: 'open' })).toBe('anonymous')
  })

  it('carries a forwarded client in metadata, and refuses anything else', () => {
    const alice = { kind: 'client', name: 'alice', role: 'readwrite', via: 'token' } as const
    expect(decodePrincipal(encodePrincipal(alice)!)).toEqual({ ...alice, via: 'forwarded' })
    expect(encodePrincipal({ kind: 'node', addresses: ['a:1'], nodeId: NodeId(1) })).toBeUndefined()
    for (const text of ['client:root:alice', 'node:1', 'client:admin:', 'client:admin:a b'])
      expect(decodePrincipal(text), text).toBeUndefined()
  })
})

describe('net/auth-file', () => {
  const digest = tokenDigest('s3cret')
  it('reads tokens by digest and principal overrides', () => {
    const table = parseAuthFile(
      JSON.stringify({
        tokens: [{ sha256: digest, principal: 'app', role: 'readwrite' }],
        principals: { bob: 'none', carol: 'admin' },
      }),
      'auth.json',
      10,
    )
    expect(table.tokens.get(digest)).toEqual({ principal: 'app', role: 'readwrite' })
    expect(table.overrides.get('bob')).toBe('none')
  })

  it('refuses a file that is not exactly what it should be, naming the problem', () => {
    const cases: [unknown, RegExp][] = [
      ['not json', /not valid JSON/],
      [[], /JSON object/],
      [{ tokens: {} }, /tokens must be an array/],
      [{ tokens: [{ sha256: 'abc', principal: 'a', role: 'admin' }] }, /sha256/],
      [{ tokens: [{ sha256: digest, principal: 'a b', role: 'admin' }] }, /principal/],
      [{ tokens: [{ sha256: digest, principal: 'a', role: 'root' }] }, /role/],
      [{ tokens: [{ sha256: digest, principal: 'a', role: 'admin', extra: 1 }] }, /unknown key/],
      [
        {
          tokens: [
            { sha256: digest, principal: 'a', role: 'admin' },
            { sha256: digest, principal: 'b', role: 'admin' },
          ],
        },
        /twice/,
      ],
      [{ principals: { a: 'god' } }, /principals\.a/],
      [{ users: [] }, /unknown key/],
    ]
    for (const [content, message] of cases) {
      const text = typeof content === 'string' ? content : JSON.stringify(content)
      let error: unknown
      try {
        parseAuthFile(text, 'auth.json', 10)
      } catch (err) {
        error = err
      }
      expect((error as { code?: string }).code, text).toBe('INVALID_ARGUMENT')
      expect((error as Error).message, text).toMatch(message)
    }
    const many = {
      tokens: Array.from({ length: 3 }, (_, i) => ({
        sha256: tokenDigest(`t${i}`),
        principal: 'a',
        role: 'admin',
      })),
    }
    expect(() => parseAuthFile(JSON.stringify(many), 'auth.json', 2)).toThrow(/at most 2 tokens/)
  })
})

describe('net/authenticator', () => {
  const appToken = 'app-token'
  let table: AuthTable | undefined = parseAuthFile(
    JSON.stringify({
      tokens: [
        { sha256: tokenDigest(appToken), principal: 'app', role: 'readwrite' },
        { sha256: tokenDigest('bob-token'), principal: 'bob', role: 'admin' },
      ],
      principals: { bob: 'none', carol: 'readonly' },
    }),
    'auth.json',
    10,
  )
  const authenticator = (tls: boolean): Authenticator =>
    new Authenticator(
      { cluster: 'prod', tls },
      {
        nodeIdOf: (addresses) => (addresses.includes('10.0.0.2:7101') ? NodeId(2) : undefined),
        auth: () => table,
      },
    )
  const md = (token?: string): Metadata => {
    const m = new Metadata()
    if (token !== undefined) m.set('authorization', `Bearer ${token}`)
    return m
  }
  const cert = (san: string): AuthContext => ({ sslPeerCertificate: { subjectaltname: san } }) as AuthContext
  const codeOf = (fn: () => unknown): string | undefined => {
    try {
      fn()
    } catch (err) {
      return (err as { code?: string }).code
    }
    return undefined
  }

  it('takes a token on the client listener, and never on the peer listener', () => {
    expect(authenticator(false).authenticate('client', {}, md(appToken))).toEqual({
      kind: 'client',
      name: 'app',
      role: 'readwrite',
      via: 'token',
    })
    expect(authenticator(true).authenticate('peer', {}, md(appToken))).toEqual({ kind: 'anonymous' })
    // Without TLS the peer listener cannot tell callers apart: open, and kvd says so at start.
    expect(authenticator(false).authenticate('peer', {}, md())).toEqual({ kind: 'open' })
  })

  it('refuses unknown, malformed and locked-out tokens', () => {
    expect(codeOf(() => authenticator(false).authenticate('client', {}, md('nope')))).toBe('UNAUTHENTICATED')
    const twice = md(appToken)
    twice.add('authorization', `Bearer ${appToken}`)
    expect(codeOf(() => authenticator(false).authenticate('client', {}, twice))).toBe('UNAUTHENTICATED')
    const basic = new Metadata()
    basic.set('authorization', 'Basic YTpi')
    expect(codeOf(() => authenticator(false).authenticate('client', {}, basic))).toBe('UNAUTHENTICATED')
    expect(codeOf(() => authenticator(false).authenticate('client', {}, md('x'.repeat(600))))).toBe(
      'UNAUTHENTICATED',
    )
    expect(codeOf(() => authenticator(false).authenticate('client', {}, md('bob-token')))).toBe(
      'PERMISSION_DENIED',
    )
  })

  it('reads a certificate first: a node by its registered peer address, a client with its role or the override', () => {
    const a = authenticator(true)
    expect(a.authenticate('peer', cert('URI:ringkv://prod/node/10.0.0.2:7101'), md())).toEqual({
      kind: 'node',
      addresses: ['10.0.0.2:7101'],
      nodeId: 2,
    })
    expect(a.authenticate('client', cert('URI:ringkv://prod/node/10.0.0.9:7101'), md())).toMatchObject({
      kind: 'node',
      nodeId: undefined,
    })
    expect(a.authenticate('client', cert('URI:ringkv://prod/client/carol?role=admin'), md(appToken))).toEqual(
      {
        kind: 'client',
        name: 'carol',
        role: 'readonly',
        via: 'certificate',
      },
    )
    expect(
      codeOf(() => a.authenticate('client', cert('URI:ringkv://prod/client/bob?role=admin'), md())),
    ).toBe('PERMISSION_DENIED')
    // A certificate of another cluster (same CA) is no identity here: the token decides.
    expect(
      a.authenticate('client', cert('URI:ringkv://staging/client/x?role=admin'), md(appToken)),
    ).toMatchObject({
      name: 'app',
    })
    expect(a.authenticate('client', cert('URI:ringkv://staging/client/x?role=admin'), md())).toEqual({
      kind: 'anonymous',
    })
    expect(
      codeOf(() =>
        a.authenticate(
          'client',
          cert('URI:ringkv://prod/client/x?role=admin, URI:ringkv://prod/client/y?role=readonly'),
          md(),
        ),
      ),
    ).toBe('UNAUTHENTICATED')
  })

  it('is open without TLS and without an auth file, and follows a reloaded auth table', () => {
    const saved = table
    table = undefined
    expect(authenticator(false).authenticate('client', {}, md())).toEqual({ kind: 'open' })
    expect(codeOf(() => authenticator(true).authenticate('client', {}, md(appToken)))).toBe('UNAUTHENTICATED')
    table = saved
    expect(authenticator(false).authenticate('client', {}, md())).toEqual({ kind: 'anonymous' })
  })
})
