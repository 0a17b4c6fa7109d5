import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { certificateIdentity, checkTlsMaterial, parseAuthFile, tokenDigest } from '../../../src/net/index.ts'

const dir = mkdtempSync(join(tmpdir(), 'ringkv-certs-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function kvctl(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Object.assign((async function* () {})(), { isTTY: true }),
    env: {},
  }
  return { code: await main(argv, io), stdout, stderr }
}

const read = (name: string): Buffer => readFileSync(join(dir, name))

describe('kvctl certs', () => {
  it('local: a CA, node certificates kvd accepts for their addresses, and an admin client', async () => {
    const out = join(dir, 'local')
    const r = await kvctl(['certs', 'local', '--dir', out, '--nodes', '2', '--base-port', '17001'])
    expect(r.code, r.stderr).toBe(0)
    const files = (JSON.parse(r.stdout) as { written: { file: string }[] }).written.map((w) => w.file)
    expect(files.map((f) => f.slice(out.length + 1)).sort()).toEqual(
      [
        'admin.crt',
        'admin.key',
        'ca.crt',
        'ca.key',
        'node1.crt',
        'node1.key',
        'node2.crt',
        'node2.key',
      ].sort(),
    )
    for (const n of [1, 2]) {
      const material = checkTlsMaterial(
        {
          ca: read(`local/ca.crt`),
          cert: read(`local/node${n}.crt`),
          key: read(`local/node${n}.key`),
        },
        { cluster: 'ringkv', peerAddress: `127.0.0.1:${17100 + n}`, nowMs: Date.now() },
      )
      expect(material.fingerprint).toMatch(/^[0-9A-F:]+$/)
      expect(new X509Certificate(read(`local/node${n}.crt`)).checkHost('localhost')).toBe('localhost')
      expect(new X509Certificate(read(`local/node${n}.crt`)).checkIP('127.0.0.1')).toBe('127.0.0.1')
    }
    expect(
      certificateIdentity(new X509Certificate(read('local/admin.crt')).subjectAltName, 'ringkv').clients,
    ).toEqual([{ name: 'admin', role: 'admin' }])
    expect(statSync(join(out, 'ca.key')).mode & 0o777).toBe(0o600)
    // Nothing is overwritten without --force.
    const again = await kvctl(['certs', 'local', '--dir', out])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/exists/)
  })

  it('ca, node and client, step by step, for another cluster', async () => {
    const out = join(dir, 'prod')
    expect((await kvctl(['certs', 'ca', '--dir', out, '--cluster', 'prod'])).code).toBe(0)
    const node = await kvctl([
      'certs',
      'node',
      '--dir',
      out,
      '--cluster',
      'prod',
      '--name',
      'ringkv-0',
      '--peer-address',
      'ringkv-0.ringkv:7101',
      '--host',
      'db.example.test',
    ])
    expect(node.code, node.stderr).toBe(0)
    const cert = new X509Certificate(read('prod/ringkv-0.crt'))
    expect(certificateIdentity(cert.subjectAltName, 'prod').nodeAddresses).toEqual(['ringkv-0.ringkv:7101'])
    expect(cert.checkHost('db.example.test')).toBe('db.example.test')
    expect(cert.checkHost('ringkv-0.ringkv')).toBe('ringkv-0.ringkv')
    const client = await kvctl([
      'certs',
      'client',
      '--dir',
      out,
      '--cluster',
      'prod',
      '--name',
      'alice',
      '--role',
      'readonly',
    ])
    expect(client.code, client.stderr).toBe(0)
    expect(
      certificateIdentity(new X509Certificate(read('prod/alice.crt')).subjectAltName, 'prod').clients,
    ).toEqual([{ name: 'alice', role: 'readonly' }])
    expect((await kvctl(['certs', 'client', '--dir', out, '--name', 'bob', '--role', 'root'])).code).toBe(2)
    expect(
      (await kvctl(['certs', 'node', '--dir', join(dir, 'nowhere'), '--peer-address', 'a:1'])).code,
    ).toBe(2)
  })

  it('token: prints a new token and adds only its digest to the auth file', async () => {
    const file = join(dir, 'auth.json')
    const first = await kvctl(['certs', 'token', '--name', 'app', '--role', 'readwrite', '--auth-file', file])
    expect(first.code, first.stderr).toBe(0)
    const second = await kvctl(['certs', 'token', '--name', 'ops', '--role', 'admin', '--auth-file', file])
    const tokens = [first, second].map((r) => (JSON.parse(r.stdout) as { token: string }).token)
    const text = readFileSync(file, 'utf8')
    for (const token of tokens) expect(text).not.toContain(token)
    const table = parseAuthFile(text, file, 10)
    expect(table.tokens.get(tokenDigest(tokens[0]!))).toEqual({ principal: 'app', role: 'readwrite' })
    expect(table.tokens.get(tokenDigest(tokens[1]!))).toEqual({ principal: 'ops', role: 'admin' })
    expect(tokens[0]).not.toBe(tokens[1])
  })
})
