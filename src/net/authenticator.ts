/**
 * Authentication: who one call comes from, on each listener.
 *
 * Client listener (--listen):
 *   - no TLS files and no auth file: `open` (local use; kvd says so loudly at start);
 *   - a client certificate (verified by the TLS handshake against the CA) naming a ringkv identity
 *     of this cluster: a node certificate is that node; a client certificate is its client, with
 *     its role, or the auth file's override for its name (`none`: PERMISSION_DENIED);
 *   - else a bearer token (`authorization: Bearer <token>`) whose SHA-256 the auth file lists: its
 *     principal and role (overrides apply); a token the file does not list is UNAUTHENTICATED;
 *   - else `anonymous` (calls that need a role are then UNAUTHENTICATED).
 * Peer listener (--peer-listen): certificates only (tokens are ignored). Without TLS files it is
 * `open` for every caller (the peers cannot be told apart), which kvd also says at start.
 *
 * A node certificate's principal carries the node id the registry has for one of the peer
 * addresses it names (`nodeIdOf`, read per call: the map changes), or none for a node not yet
 * registered (a joining node).
 */
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import type { ListenerKind } from './access.ts'
import { tokenBytesMax, tokenDigest, type AuthTable } from './auth-file.ts'
import {
  anonymousPrincipal,
  certificateIdentity,
  openPrincipal,
  type Principal,
  type Role,
} from './identity.ts'
import { authorizationKey } from './tls.ts'

export interface AuthenticatorInit {
  readonly cluster: string
  /** TLS files are configured: both listeners are TLS (the peer listener mutual). */
  readonly tls: boolean
}

export interface AuthenticatorComponents {
  /** The registered node id of any of these peer addresses. */
  readonly nodeIdOf: (peerAddresses: readonly string[]) => NodeId | undefined
  /** The auth table in force; undefined without an auth file. */
  readonly auth: () => AuthTable | undefined
}

/** What grpc-js tells of a call's connection (its AuthContext type is not exported). */
export type AuthContext = ReturnType<ServerUnaryCall<unknown, unknown>['getAuthContext']>

const bearerPrefix = /^Bearer /i

export class Authenticator {
  private readonly init: AuthenticatorInit
  private readonly components: AuthenticatorComponents

  constructor(init: AuthenticatorInit, components: AuthenticatorComponents) {
    this.init = init
    this.components = components
  }

  /** Whether calls on `listener` are checked at all (else every principal is `open`). */
  secured(listener: ListenerKind): boolean {
    return this.init.tls || (listener === 'client' && this.components.auth() !== undefined)
  }

  /**
   * The principal of a call on `listener`. Throws KvError UNAUTHENTICATED (a token this node
   * does not accept, an ambiguous certificate) or PERMISSION_DENIED (a locked-out principal).
   */
  authenticate(listener: ListenerKind, auth: AuthContext, metadata: Metadata): Principal {
    if (!this.secured(listener)) return openPrincipal
    const fromCertificate = this.certificatePrincipal(auth)
    if (fromCertificate !== undefined) return fromCertificate
    if (listener === 'peer') return anonymousPrincipal
    return this.tokenPrincipal(metadata) ?? anonymousPrincipal
  }

  private certificatePrincipal(auth: AuthContext): Principal | undefined {
    // grpc-js gives the certificate only when the handshake verified it against the CA.
    const certificate = auth.sslPeerCertificate
    if (certificate === undefined) return undefined
    const identity = certificateIdentity(certificate.subjectaltname, this.init.cluster)
    if (identity.nodeAddresses.length > 0)
      return {
        kind: 'node',
        addresses: identity.nodeAddresses,
        nodeId: this.components.nodeIdOf(identity.nodeAddresses),
      }
    if (identity.clients.length > 1)
      throw new KvError(ErrorCode.Unauthenticated, 'the client certificate names more than one client')
    const client = identity.clients[0]
    if (client === undefined) return undefined
    return {
      kind: 'client',
      name: client.name,
      role: this.roleOf(client.name, client.role),
      via: 'certificate',
    }
  }

  private tokenPrincipal(metadata: Metadata): Principal | undefined {
    const values = metadata.get(authorizationKey)
    if (values.length === 0) return undefined
    const value = values[0]
    if (values.length > 1 || typeof value !== 'string' || !bearerPrefix.test(value))
      throw new KvError(ErrorCode.Unauthenticated, 'authorization must be one "Bearer <token>"')
    const token = value.slice('Bearer '.length).trim()
    if (token === '' || Buffer.byteLength(token) > tokenBytesMax)
      throw new KvError(ErrorCode.Unauthenticated, 'malformed bearer token')
    const table = this.components.auth()
    if (table === undefined)
      throw new KvError(ErrorCode.Unauthenticated, 'this node takes no tokens (it has no auth file)')
    const entry = table.tokens.get(tokenDigest(token))
    if (entry === undefined) throw new KvError(ErrorCode.Unauthenticated, 'unknown bearer token')
    return {
      kind: 'client',
      name: entry.principal,
      role: this.roleOf(entry.principal, entry.role),
      via: 'token',
    }
  }

  /** The role of a client principal after the auth file's overrides. */
  private roleOf(name: string, role: Role): Role {
    const override = this.components.auth()?.overrides.get(name)
    if (override === 'none')
      throw new KvError(ErrorCode.PermissionDenied, `principal ${name} is locked out (auth file)`)
    return override ?? role
  }
}
