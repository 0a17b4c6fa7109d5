/**
 * Credentials of every gRPC server and channel ringkv makes, in one place.
 *
 * Servers (kvd's two listeners): TLS from the node's credential files, swapped without a restart.
 * grpc-js keeps a server's TLS context in its ServerCredentials and re-applies it
 * (`Http2SecureServer.setSecureContext`) whenever the credentials announce new options; this
 * subclass announces the new files' options when CredentialFiles (tls-files.ts) puts them in
 * force, so every new connection gets the new certificate while open ones keep theirs.
 *   - client listener: TLS; client certificates are asked for and checked against the CA, but a
 *     client without one may still connect and present a token, unless `clientCertRequired`
 *     (kvd --client-cert-auth), when the handshake refuses it. A certificate from another CA is
 *     never an identity: the handshake refuses it when certificates are required, and otherwise
 *     the call counts as without one.
 *   - peer listener: mutual TLS; the handshake refuses any peer without a certificate of the CA.
 *
 * Peer channels (the node's outgoing calls to other nodes: Raft streams, snapshots, forwarded
 * requests, meta calls): mutual TLS with the node's own certificate, the same CA, and instead of a
 * hostname check the peer's certificate must name the peer address dialled for this cluster
 * (identity.ts nodeUri), which the registry binds to the node id meant. They take new files for
 * every new connection (grpc-js certificate-provider channel credentials fed from the files).
 *
 * Client channels (SDK, kvctl, a joining node's first call): TLS with a CA and optionally a client
 * certificate, fixed for the channel's life, with the usual hostname check; a bearer token rides
 * on every call as `authorization: Bearer <token>` (an interceptor, so it works over plaintext too,
 * where the server logs that tokens travel in the clear).
 */
import {
  credentials as grpcCredentials,
  experimental,
  InterceptingCall,
  ServerCredentials,
  type ChannelCredentials,
  type Interceptor,
} from '@grpc/grpc-js'
import type { PeerCertificate } from 'node:tls'
import { certificateIdentity } from './identity.ts'
import type { TlsMaterial } from './tls-files.ts'

/** The request metadata key of a bearer token. */
export const authorizationKey = 'authorization'

/** ServerCredentials whose TLS context follows the credential files (see the file comment). */
export class ReloadingServerCredentials extends ServerCredentials {
  constructor(
    material: TlsMaterial,
    options: { readonly requestCert: boolean; readonly certRequired: boolean },
  ) {
    super(
      { requestCert: options.requestCert, rejectUnauthorized: options.certRequired },
      contextOptions(material),
    )
  }

  /** New connections use `material` from now on. */
  update(material: TlsMaterial): void {
    this.updateSecureContextOptions(contextOptions(material))
  }

  _equals(other: ServerCredentials): boolean {
    return other === this
  }
}

function contextOptions(material: TlsMaterial): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: material.ca, cert: material.cert, key: material.key }
}

/** Server credentials of one listener: plaintext, or TLS that follows the files. */
export function serverCredentials(
  material: TlsMaterial | undefined,
  listener: 'client' | 'peer',
  clientCertRequired: boolean,
): ServerCredentials | ReloadingServerCredentials {
  if (material === undefined) return ServerCredentials.createInsecure()
  return new ReloadingServerCredentials(material, {
    requestCert: true,
    certRequired: listener === 'peer' || clientCertRequired,
  })
}

/**
 * The certificates of the node's outgoing peer connections, as grpc-js certificate providers:
 * every new connection takes the set in force (see the file comment).
 */
export class PeerCertificates implements experimental.CertificateProvider {
  private material: TlsMaterial
  private readonly caListeners = new Set<experimental.CaCertificateUpdateListener>()
  private readonly identityListeners = new Set<experimental.IdentityCertificateUpdateListener>()
  readonly cluster: string

  constructor(material: TlsMaterial, cluster: string) {
    this.material = material
    this.cluster = cluster
  }

  update(material: TlsMaterial): void {
    this.material = material
    for (const listener of this.caListeners) listener({ caCertificate: material.ca })
    for (const listener of this.identityListeners)
      listener({ certificate: material.cert, privateKey: material.key })
  }

  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener)
    listener({ caCertificate: this.material.ca })
  }

  removeCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener)
  }

  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener)
    listener({ certificate: this.material.cert, privateKey: this.material.key })
  }

  removeIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener)
  }

  /** Credentials of a channel to the peer at `peerAddress`: mutual TLS, its certificate must name that address. */
  channelCredentials(peerAddress: string): ChannelCredentials {
    const cluster = this.cluster
    return experimental.createCertificateProviderChannelCredentials(this, this, {
      checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined =>
        certificateIdentity(cert.subjectaltname, cluster).nodeAddresses.includes(peerAddress)
          ? undefined
          : new Error(`the peer's certificate does not name ringkv://${cluster}/node/${peerAddress}`),
    })
  }
}

/** Plaintext channel credentials (local use, or tests). */
export function plaintextChannelCredentials(): ChannelCredentials {
  return grpcCredentials.createInsecure()
}

/** What a client channel is built from (PEM bytes); none of it: plaintext. */
export interface ClientTls {
  /** The CA certificate(s) that issued the servers' certificates. */
  readonly ca: Uint8Array | string
  /** A client certificate and its key, for certificate authentication. */
  readonly cert?: Uint8Array | string | undefined
  readonly key?: Uint8Array | string | undefined
  /** The name the servers' certificates are checked against instead of the endpoint's host. */
  readonly serverName?: string | undefined
}

function pemBuffer(pem: Uint8Array | string): Buffer {
  return typeof pem === 'string' ? Buffer.from(pem, 'utf8') : Buffer.from(pem)
}

/**
 * Channel credentials of a client: TLS when `tls` is given, else plaintext. A certificate without
 * its key (or the reverse) is a TypeError.
 */
export function clientChannelCredentials(tls: ClientTls | undefined): ChannelCredentials {
  if (tls === undefined) return plaintextChannelCredentials()
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new TypeError('tls.cert and tls.key go together')
  return grpcCredentials.createSsl(
    pemBuffer(tls.ca),
    tls.key === undefined ? null : pemBuffer(tls.key),
    tls.cert === undefined ? null : pemBuffer(tls.cert),
  )
}

/** grpc-js channel options a client channel needs for `tls` (the server name override). */
export function clientTlsChannelOptions(tls: ClientTls | undefined): Record<string, string> {
  return tls?.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': tls.serverName }
}

/** A client interceptor that sends `token` on every call as `authorization: Bearer <token>`. */
export function bearerTokenInterceptor(token: string): Interceptor {
  if (token === '' || /[\s\r\n]/.test(token))
    throw new TypeError('a token is one word of printable characters')
  const value = `Bearer ${token}`
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(authorizationKey, value)
        next(metadata, listener)
      },
    })
}
