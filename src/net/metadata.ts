/**
 * Request metadata by which a node speaks for itself or for a client, and how each claim is
 * checked (pipeline.ts). With TLS files configured, every claim must match the caller's node
 * certificate, or the call is refused (PERMISSION_DENIED) before any handler runs; from a client
 * (or a caller without credentials) the keys are refused outright. Without TLS files (local use)
 * they are taken as claimed.
 *
 * | key                   | who sends it                                   | must equal                     |
 * |-----------------------|------------------------------------------------|--------------------------------|
 * | `ringkv-from`         | a node opening a Raft stream or snapshot        | the caller's node id           |
 * | `ringkv-to`           | the same: the node it means (the receiver checks it is itself) | —               |
 * | `ringkv-forwarded-by` | a node passing a request on (never passed on again) | the caller's node id       |
 * | `ringkv-principal`    | a node passing a client's request on: that client, `client:<role>:<name>` | — (the forwarder vouches; it let the client in) |
 */
import { clientNamePattern, isRole, type Principal } from './identity.ts'

export const peerMetadataKeys = {
  from: 'ringkv-from',
  to: 'ringkv-to',
  forwardedBy: 'ringkv-forwarded-by',
  principal: 'ringkv-principal',
} as const

/** A principal as `ringkv-principal` carries it (clients only: nodes speak for themselves). */
export function encodePrincipal(p: Principal): string | undefined {
  return p.kind === 'client' ? `client:${p.role}:${p.name}` : undefined
}

/** `ringkv-principal` back to a principal, or undefined when malformed. */
export function decodePrincipal(text: string): Principal | undefined {
  const match = /^client:([a-z]+):(.+)$/.exec(text)
  if (match === null) return undefined
  const [, role, name] = match as unknown as [string, string, string]
  if (!isRole(role) || !clientNamePattern.test(name)) return undefined
  return { kind: 'client', name, role, via: 'forwarded' }
}

/** A positive node id written in metadata, or undefined. */
export function nodeIdText(value: string | Buffer | undefined): number | undefined {
  const text = typeof value === 'string' ? value : value?.toString('utf8')
  if (text === undefined || !/^\d{1,16}$/.test(text)) return undefined
  const n = Number(text)
  return Number.isSafeInteger(n) && n > 0 ? n : undefined
}
