/**
 * Certificates for a test or small cluster (`kvctl certs`): a CA, node certificates and client
 * certificates, ECDSA P-256 with SHA-256, signed with @peculiar/x509 over Node's WebCrypto (Node's
 * own crypto cannot sign X.509). What each carries is what kvd checks (net/identity.ts):
 *
 *   CA       basicConstraints CA (critical), keyCertSign + cRLSign
 *   node     serverAuth + clientAuth (it is a server to clients and peers, and a client of peers);
 *            URI ringkv://<cluster>/node/<peer address> per peer address, and DNS / IP names for
 *            the hosts clients dial (TLS hostname checks)
 *   client   clientAuth; URI ringkv://<cluster>/client/<name>?role=<role>
 *
 * Keys are returned as PKCS#8 PEM, certificates as PEM. Nothing here touches files.
 */
import { webcrypto } from 'node:crypto'
import { isIP } from 'node:net'
import type * as X509Module from '@peculiar/x509'
import { clientUri, nodeUri, type Role } from '../../net/index.ts'

/** A certificate and its private key, PEM. */
export interface Issued {
  readonly certPem: string
  readonly keyPem: string
}

type X509 = typeof X509Module
type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

let loaded: Promise<X509> | undefined

/** The x509 library, loaded on first use (it needs the reflect-metadata polyfill first). */
function x509(): Promise<X509> {
  loaded ??= (async () => {
    await import('reflect-metadata')
    const lib = await import('@peculiar/x509')
    lib.cryptoProvider.set(webcrypto as unknown as Parameters<typeof lib.cryptoProvider.set>[0])
    return lib
  })()
  return loaded
}

const keyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const
const signingAlgorithm = { name: 'ECDSA', hash: 'SHA-256' } as const
/** Backdating of notBefore, for clocks slightly behind the one that issued. */
const backdateMs = 5 * 60_000
const dayMs = 86_400_000

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(keyAlgorithm, true, ['sign', 'verify'])) as CryptoKeyPair
}

async function keyPem(lib: X509, key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return lib.PemConverter.encode(der, 'PRIVATE KEY')
}

function validity(nowMs: number, days: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(nowMs - backdateMs), notAfter: new Date(nowMs + days * dayMs) }
}

/** `CN=...` with the characters a DN needs escaped. */
function dn(commonName: string, cluster: string): string {
  const escape = (s: string): string => s.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`)
  return `CN=${escape(commonName)}, O=ringkv, OU=${escape(cluster)}`
}

/** A new CA for `cluster`. */
export async function createCa(options: {
  readonly cluster: string
  readonly days: number
  readonly nowMs: number
}): Promise<Issued> {
  const lib = await x509()
  const keys = await newKeys()
  const cert = await lib.X509CertificateGenerator.createSelfSigned({
    name: dn(`ringkv CA (${options.cluster})`, options.cluster),
    keys: keys as never,
    signingAlgorithm,
    ...validity(options.nowMs, options.days),
    extensions: [
      new lib.BasicConstraintsExtension(true, undefined, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign, true),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  })
  return { certPem: cert.toString('pem'), keyPem: await keyPem(lib, keys.privateKey) }
}

/** The CA to issue with, from its PEM files. Throws when they do not parse or do not match. */
async function loadCa(
  lib: X509,
  ca: Issued,
): Promise<{ cert: InstanceType<X509['X509Certificate']>; key: CryptoKey }> {
  const cert = new lib.X509Certificate(ca.certPem)
  const der = lib.PemConverter.decodeFirst(ca.keyPem)
  const key = await webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm, false, ['sign'])
  return { cert, key }
}

async function issue(
  ca: Issued,
  options: {
    readonly commonName: string
    readonly cluster: string
    readonly days: number
    readonly nowMs: number
    readonly usages: readonly string[]
    readonly names: readonly { readonly type: 'dns' | 'ip' | 'url'; readonly value: string }[]
  },
): Promise<Issued> {
  const lib = await x509()
  const issuer = await loadCa(lib, ca)
  const keys = await newKeys()
  const cert = await lib.X509CertificateGenerator.create({
    subject: dn(options.commonName, options.cluster),
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey as never,
    signingKey: issuer.key as never,
    signingAlgorithm,
    ...validity(options.nowMs, options.days),
    extensions: [
      new lib.BasicConstraintsExtension(false, undefined, true),
      new lib.KeyUsagesExtension(
        lib.KeyUsageFlags.digitalSignature | lib.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new lib.ExtendedKeyUsageExtension([...options.usages]),
      new lib.SubjectAlternativeNameExtension(options.names.map((n) => ({ type: n.type, value: n.value }))),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      await lib.AuthorityKeyIdentifierExtension.create(issuer.cert),
    ],
  })
  return { certPem: cert.toString('pem'), keyPem: await keyPem(lib, keys.privateKey) }
}

/** The host of `host:port` (`[v6]:port` -> `v6`). */
export function hostOf(address: string): string {
  const host = address.slice(0, address.lastIndexOf(':'))
  return host.startsWith('[') ? host.slice(1, -1) : host
}

/**
 * A node certificate: it may serve as the node at each of `peerAddresses`, and carries `hosts`
 * (plus the hosts of the peer addresses) as DNS or IP names for hostname checks.
 */
export async function issueNode(
  ca: Issued,
  options: {
    readonly cluster: string
    readonly name: string
    readonly peerAddresses: readonly string[]
    readonly hosts: readonly string[]
    readonly days: number
    readonly nowMs: number
  },
): Promise<Issued> {
  const hosts = [...new Set([...options.hosts, ...options.peerAddresses.map(hostOf)])]
  return await issue(ca, {
    commonName: options.name,
    cluster: options.cluster,
    days: options.days,
    nowMs: options.nowMs,
    usages: ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'],
    names: [
      ...options.peerAddresses.map((a) => ({ type: 'url' as const, value: nodeUri(options.cluster, a) })),
      ...hosts.map((h) => ({ type: isIP(h) === 0 ? ('dns' as const) : ('ip' as const), value: h })),
    ],
  })
}

/** A client certificate for `name` with `role`. */
export async function issueClient(
  ca: Issued,
  options: {
    readonly cluster: string
    readonly name: string
    readonly role: Role
    readonly days: number
    readonly nowMs: number
  },
): Promise<Issued> {
  return await issue(ca, {
    commonName: options.name,
    cluster: options.cluster,
    days: options.days,
    nowMs: options.nowMs,
    usages: ['1.3.6.1.5.5.7.3.2'],
    names: [{ type: 'url', value: clientUri(options.cluster, options.name, options.role) }],
  })
}
