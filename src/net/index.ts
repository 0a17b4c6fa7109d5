/**
 * net/: the one place that builds gRPC servers and channels with their credentials (TLS, mutual
 * TLS between peers, tokens), and the one request pipeline every call on every listener goes
 * through (admission, authentication, authorization, deadline, errors, metrics). ARCHITECTURE.md
 * section 7 is the trust boundary this room enforces.
 *
 *   identity.ts        roles, principals, the ringkv names in certificates
 *   access.ts          the authorization table: every method, who may call it on which listener
 *   auth-file.ts       tokens and role overrides (kvd --auth-file)
 *   tls-files.ts       the node's certificate, key, CA and auth file: checked, re-read on an interval
 *   tls.ts             server and channel credentials (reloading), bearer tokens
 *   authenticator.ts   a call -> its principal
 *   metadata.ts        node claims in request metadata (ringkv-from, -forwarded-by, -principal)
 *   gate.ts            admission: the bounded count of requests in flight, and drain
 *   decode.ts          requests that do not decode are INVALID_ARGUMENT
 *   deadline-sweep.ts  every call's deadline behind one timer
 *   pipeline.ts        the steps, in order, and the handler kinds written against them
 *   listener.ts        one gRPC server on one address behind the pipeline
 *
 * Only common/ and the generated proto code are imported here; the client SDK uses the channel
 * half (tls.ts) and nothing of the server half.
 */
export {
  accessError,
  accessOf,
  allows,
  authorize,
  methodRules,
  ruleOf,
  type Access,
  type ListenerKind,
  type MethodRule,
} from './access.ts'
export { emptyAuthTable, parseAuthFile, tokenDigest, type AuthTable, type TokenEntry } from './auth-file.ts'
export {
  Authenticator,
  type AuthContext,
  type AuthenticatorComponents,
  type AuthenticatorInit,
} from './authenticator.ts'
export { decoded, isMalformed, withTolerantDecoding, type MalformedRequest } from './decode.ts'
export { RequestGate } from './gate.ts'
export {
  anonymousPrincipal,
  certificateIdentity,
  clientNamePattern,
  clientUri,
  clusterNameDefault,
  clusterNamePattern,
  describePrincipal,
  isPeerAddress,
  isRole,
  nodeUri,
  openPrincipal,
  parseSubjectAltName,
  principalKey,
  roleCovers,
  roles,
  Role,
  type CertificateIdentity,
  type Principal,
} from './identity.ts'
export { GrpcListener, listenError, type GrpcListenerComponents, type GrpcListenerInit } from './listener.ts'
export { decodePrincipal, encodePrincipal, nodeIdText, peerMetadataKeys } from './metadata.ts'
export {
  Pipeline,
  bidi,
  checkDeadline,
  clientStream,
  serverStream,
  unary,
  type CallContext,
  type Handler,
  type PipelineComponents,
  type PipelineMetrics,
  type RequestLabels,
} from './pipeline.ts'
export {
  PeerCertificates,
  ReloadingServerCredentials,
  authorizationKey,
  bearerTokenInterceptor,
  clientChannelCredentials,
  clientTlsChannelOptions,
  plaintextChannelCredentials,
  serverCredentials,
  type ClientTls,
} from './tls.ts'
export {
  CredentialFiles,
  checkTlsMaterial,
  type CredentialFilesComponents,
  type CredentialFilesInit,
  type TlsMaterial,
} from './tls-files.ts'
