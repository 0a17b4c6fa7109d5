/**
 * Who is calling: roles, principals, and the names ringkv writes into certificates.
 *
 * A certificate speaks for ringkv through URI subject alternative names, one per identity:
 *
 *   ringkv://<cluster>/node/<peer host:port>         a node, by the peer address it serves on
 *   ringkv://<cluster>/client/<name>?role=<role>     a client (a person, a program) and its role
 *
 * `<cluster>` is the cluster's name (kvd --cluster-name, default `ringkv`): a certificate of
 * another cluster is not an identity here even when the same CA signed it. A node certificate
 * names the peer address(es) it may serve on; the node registry binds each address to one node
 * id, so the id a peer speaks as is the id registered for an address its certificate names (see
 * Authenticator in authenticator.ts). Nothing else of a certificate (CN, DNS or IP names) is an
 * identity: those serve TLS hostname checks only.
 *
 * A principal is the outcome of authentication for one call:
 *   - `open`: no credentials are configured on this node (local use): every call is allowed;
 *   - `anonymous`: credentials are configured and the call carries none that this node accepts;
 *   - `client`: a certificate's client name or a token's principal, with its role;
 *   - `node`: a node certificate; `nodeId` once the registry knows one of its addresses.
 */
import type { NodeId } from '../common/ids.ts'

export const Role = { Admin: 'admin', ReadWrite: 'readwrite', ReadOnly: 'readonly' } as const
export type Role = (typeof Role)[keyof typeof Role]
export const roles: readonly Role[] = [Role.ReadOnly, Role.ReadWrite, Role.Admin]

/** Each role may do what the roles below it may: readonly < readwrite < admin. */
const roleRank: Readonly<Record<Role, number>> = { readonly: 1, readwrite: 2, admin: 3 }

export function isRole(s: unknown): s is Role {
  return typeof s === 'string' && Object.hasOwn(roleRank, s)
}

/** True when `role` may do what `needed` may. */
export function roleCovers(role: Role, needed: Role): boolean {
  return roleRank[role] >= roleRank[needed]
}

/** How a client principal was established. */
export type ClientVia = 'certificate' | 'token' | 'forwarded'

export type Principal =
  | { readonly kind: 'open' }
  | { readonly kind: 'anonymous' }
  | { readonly kind: 'client'; readonly name: string; readonly role: Role; readonly via: ClientVia }
  | { readonly kind: 'node'; readonly addresses: readonly string[]; readonly nodeId: NodeId | undefined }

export const openPrincipal: Principal = { kind: 'open' }
export const anonymousPrincipal: Principal = { kind: 'anonymous' }

/** A principal as a short label for logs (never a token). */
export function describePrincipal(p: Principal): string {
  switch (p.kind) {
    case 'open':
      return 'open'
    case 'anonymous':
      return 'anonymous'
    case 'client':
      return `client ${p.name} (${p.role}, ${p.via})`
    case 'node':
      return p.nodeId === undefined ? `node at ${p.addresses.join(',')}` : `node ${p.nodeId}`
  }
}

/**
 * A stable key for what belongs to a principal (exactly-once client sessions, quotas, stream
 * budgets): the same for every call of one client, whether it came directly, by another of its
 * tokens or certificates naming the same principal, or forwarded by a member. Without credentials
 * configured every caller is one principal, `anonymous`.
 */
export function principalKey(p: Principal): string {
  switch (p.kind) {
    case 'open':
    case 'anonymous':
      return 'anonymous'
    case 'client':
      return `client:${p.name}`
    case 'node':
      return p.nodeId === undefined ? `node@${p.addresses.join(',')}` : `node:${p.nodeId}`
  }
}

/** Cluster names: what may stand between `ringkv://` and the next `/`. */
export const clusterNamePattern = /^[a-z0-9][a-z0-9.-]{0,62}$/
export const clusterNameDefault = 'ringkv'
/** Client names: short, printable, no separators of the URI. */
export const clientNamePattern = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/
/** A peer address as a certificate names it: host:port, an IPv6 host in brackets. */
const peerAddressPattern = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/

export function isPeerAddress(s: string): boolean {
  if (!peerAddressPattern.test(s)) return false
  const port = Number(s.slice(s.lastIndexOf(':') + 1))
  return port > 0 && port <= 65535
}

/** The URI a node certificate carries for one peer address. */
export function nodeUri(cluster: string, peerAddress: string): string {
  return `ringkv://${cluster}/node/${peerAddress}`
}

/** The URI a client certificate carries. */
export function clientUri(cluster: string, name: string, role: Role): string {
  return `ringkv://${cluster}/client/${name}?role=${role}`
}

/** What a certificate says about its holder, for one cluster. */
export interface CertificateIdentity {
  /** Peer addresses of node URIs. */
  readonly nodeAddresses: readonly string[]
  /** Client URIs. */
  readonly clients: readonly { readonly name: string; readonly role: Role }[]
  /** ringkv URIs of other clusters (a certificate from the right CA for the wrong cluster). */
  readonly otherClusters: number
}

const uriPattern = /^ringkv:\/\/([^/]+)\/(node|client)\/(.+)$/

/**
 * The ringkv identities of a certificate, from its subject alternative names as Node writes them
 * (`PeerCertificate.subjectaltname`, e.g. `DNS:a, IP Address:127.0.0.1, URI:ringkv://...`),
 * keeping those of `cluster`. Malformed ringkv URIs are skipped (never half-read).
 */
export function certificateIdentity(
  subjectAltName: string | undefined,
  cluster: string,
): CertificateIdentity {
  const nodeAddresses: string[] = []
  const clients: { name: string; role: Role }[] = []
  let otherClusters = 0
  for (const { type, value } of parseSubjectAltName(subjectAltName ?? '')) {
    if (type !== 'URI') continue
    const match = uriPattern.exec(value)
    if (match === null) continue
    const [, uriCluster, kind, rest] = match as unknown as [string, string, string, string]
    if (uriCluster !== cluster) {
      otherClusters++
      continue
    }
    if (kind === 'node') {
      if (isPeerAddress(rest) && !nodeAddresses.includes(rest)) nodeAddresses.push(rest)
      continue
    }
    const q = rest.indexOf('?role=')
    if (q <= 0) continue
    const name = rest.slice(0, q)
    const role = rest.slice(q + '?role='.length)
    if (clientNamePattern.test(name) && isRole(role)) clients.push({ name, role })
  }
  return { nodeAddresses, clients, otherClusters }
}

/**
 * Splits Node's subjectaltname string into entries. Entries are `TYPE:value` joined by `, `; a
 * value with special characters is written as a JSON string (Node >= 17.3.1), so a comma inside a
 * quoted value never starts a new entry (that is how a crafted name could otherwise smuggle in a
 * second identity).
 */
export function parseSubjectAltName(text: string): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = []
  let i = 0
  while (i < text.length) {
    const colon = text.indexOf(':', i)
    if (colon < 0) break
    const type = text.slice(i, colon).trim()
    let j = colon + 1
    let value: string
    if (text[j] === '"') {
      // A JSON string: find its closing quote (skipping escapes) and decode it.
      let k = j + 1
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string
      } catch {
        return out
      }
      j = k + 1
    } else {
      const end = text.indexOf(', ', j)
      value = text.slice(j, end < 0 ? text.length : end)
      j = end < 0 ? text.length : end
    }
    out.push({ type, value })
    // Past the separator.
    if (text.startsWith(', ', j)) j += 2
    else if (j < text.length) return out
    i = j
  }
  return out
}
