/**
 * The authorization table: for every gRPC method kvd serves, keyed by its full name, who may call
 * it on each listener, whether it passes the request gate, and its deadline policy. A method that
 * is not in the table is refused on both listeners (default deny), and registering a service
 * with a method missing here fails at start (listener.ts), so a new method forces a decision
 * (test/unit/net/access.test.ts also checks every method of every service definition).
 *
 * Access levels:
 *   public         anyone, even without credentials (health checks)
 *   readonly       a client of role readonly or above
 *   readwrite      a client of role readwrite or above
 *   admin          a client of role admin
 *   admin-or-node  a client of role admin, or a node certificate (a joining node has no id yet)
 *   node           a node of the registry (its certificate names a registered peer address)
 *   deny           nobody (the method is not served on this listener)
 *
 * With no credentials configured (local use) every principal is `open` and everything but `deny`
 * is allowed. What a handler checks beyond its method (a heartbeat's node id is the caller's own,
 * a join's address is one the caller's certificate names, Status detail for admin or nodes, the
 * write ops of a Multi call) it asks of the same rules through `allows`.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { roleCovers, type Principal, type Role } from './identity.ts'

export type Access = 'public' | 'readonly' | 'readwrite' | 'admin' | 'admin-or-node' | 'node' | 'deny'
export type ListenerKind = 'client' | 'peer'

export interface MethodRule {
  /** Who may call it on the client listener (--listen). */
  readonly client: Access
  /** Who may call it on the peer listener (--peer-listen). */
  readonly peer: Access
  /** Counted against the request gate (limits.requestsInFlightMax; refused while draining). */
  readonly gated: boolean
  /**
   * `request`: the caller's deadline bounds the call (at most limits.requestDeadlineMsMax; none =
   * that maximum). `stream`: a long-lived stream with its own liveness (peer streams, snapshots).
   */
  readonly deadline: 'request' | 'stream'
}

const kv = (client: Access): MethodRule => ({ client, peer: 'node', gated: true, deadline: 'request' })
const admin = (client: Access, peer: Access): MethodRule => ({
  client,
  peer,
  gated: false,
  deadline: 'request',
})
const peerStream: MethodRule = { client: 'deny', peer: 'node', gated: false, deadline: 'stream' }
const health: MethodRule = { client: 'public', peer: 'public', gated: false, deadline: 'request' }
const reflection: MethodRule = { client: 'readonly', peer: 'deny', gated: false, deadline: 'stream' }

/** The table (see the file comment). */
export const methodRules: Readonly<Record<string, MethodRule>> = {
  // KvService: clients on --listen; on --peer-listen the calls other nodes forward.
  '/ringkv.v1.KvService/Get': kv('readonly'),
  '/ringkv.v1.KvService/BatchGet': kv('readonly'),
  '/ringkv.v1.KvService/Scan': kv('readonly'),
  '/ringkv.v1.KvService/ShardMap': kv('readonly'),
  // Its write ops need readwrite too: checked per op (grpc-kv.ts).
  '/ringkv.v1.KvService/Multi': kv('readonly'),
  '/ringkv.v1.KvService/Put': kv('readwrite'),
  '/ringkv.v1.KvService/Delete': kv('readwrite'),
  '/ringkv.v1.KvService/Batch': kv('readwrite'),
  // An exactly-once session for the caller's writes, registered through the log.
  '/ringkv.v1.KvService/RegisterSession': kv('readwrite'),
  // AdminService. Status: anyone with a role sees the node's health; its detail (data directory,
  // peers, cluster id) only admin or nodes (grpc-admin.ts).
  '/ringkv.v1.AdminService/Status': admin('readonly', 'deny'),
  '/ringkv.v1.AdminService/InjectFault': admin('admin', 'deny'),
  // A joining node calls a member's client listener with its node certificate (it has no id yet);
  // members pass joins and heartbeats on to the meta leader over the peer listener.
  '/ringkv.v1.AdminService/Join': admin('admin-or-node', 'node'),
  '/ringkv.v1.AdminService/Heartbeat': admin('admin-or-node', 'node'),
  // Moves and leader transfers (kvctl shards): admins. Members pass moves on to the meta leader,
  // whose mover runs them; a leader transfer is carried out by the node that takes the call.
  '/ringkv.v1.AdminService/MoveReplica': admin('admin', 'node'),
  '/ringkv.v1.AdminService/ListMoves': admin('admin', 'node'),
  '/ringkv.v1.AdminService/TransferShardLeader': admin('admin', 'deny'),
  // Rebalancing and node lifecycle (kvctl rebalance, kvctl node): admins; members pass them on to
  // the meta leader, whose executor answers.
  '/ringkv.v1.AdminService/Rebalance': admin('admin', 'node'),
  '/ringkv.v1.AdminService/NodeAction': admin('admin', 'node'),
  // A shard's state streamed for a backup (kvctl backup create): admins, at the shard's leader.
  '/ringkv.v1.AdminService/ExportShard': admin('admin', 'deny'),
  // The replicas of a node, controlled by other nodes (the mover, shard leaders): peers only.
  '/ringkv.v1.ReplicaService/PrepareReplica': admin('deny', 'node'),
  '/ringkv.v1.ReplicaService/ChangeReplicas': admin('deny', 'node'),
  '/ringkv.v1.ReplicaService/TransferLeader': admin('deny', 'node'),
  '/ringkv.v1.ReplicaService/ReplicaState': admin('deny', 'node'),
  '/ringkv.v1.ReplicaService/DestroyReplica': admin('deny', 'node'),
  // Raft between nodes, on the peer listener only.
  '/ringkv.v1.RaftTransportService/Stream': peerStream,
  '/ringkv.v1.RaftTransportService/Snapshot': peerStream,
  // grpc.health.v1: probes need no credentials.
  '/grpc.health.v1.Health/Check': health,
  '/grpc.health.v1.Health/Watch': { ...health, deadline: 'stream' },
  '/grpc.health.v1.Health/List': health,
  // Server reflection (grpcurl): the API's shape, to clients with a role.
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': reflection,
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': reflection,
}

/** The rule of `path`, or undefined (the method is refused). */
export function ruleOf(path: string): MethodRule | undefined {
  return Object.hasOwn(methodRules, path) ? methodRules[path] : undefined
}

/** The access level `path` needs on `listener` ('deny' when it is not in the table). */
export function accessOf(path: string, listener: ListenerKind): Access {
  return ruleOf(path)?.[listener] ?? 'deny'
}

/**
 * Whether `principal` has `access` on `listener`. A node of the registry counts as any client
 * role on the peer listener: there it passes on what a member already let in at the client
 * listener (forwarded requests).
 */
export function allows(access: Access, principal: Principal, listener: ListenerKind): boolean {
  if (access === 'deny') return false
  if (access === 'public' || principal.kind === 'open') return true
  switch (principal.kind) {
    case 'anonymous':
      return false
    case 'client':
      if (access === 'node') return false
      if (access === 'admin-or-node') return principal.role === 'admin'
      return roleCovers(principal.role, access)
    case 'node':
      if (access === 'admin-or-node') return true
      if (principal.nodeId === undefined) return false
      return access === 'node' || (listener === 'peer' && access !== 'admin')
  }
}

/** `allows`, or the error that says why not (UNAUTHENTICATED without an identity, else PERMISSION_DENIED). */
export function authorize(access: Access, principal: Principal, listener: ListenerKind, what: string): void {
  if (allows(access, principal, listener)) return
  throw accessError(access, principal, what)
}

export function accessError(access: Access, principal: Principal, what: string): KvError {
  if (principal.kind === 'anonymous')
    return new KvError(
      ErrorCode.Unauthenticated,
      `${what} needs credentials: a client certificate or a bearer token this node accepts`,
    )
  if (access === 'deny') return new KvError(ErrorCode.PermissionDenied, `${what} is not served here`)
  if (principal.kind === 'node' && principal.nodeId === undefined && access === 'node')
    return new KvError(
      ErrorCode.PermissionDenied,
      `${what}: no registered node has a peer address this certificate names`,
    )
  return new KvError(ErrorCode.PermissionDenied, `${what} needs ${needs(access)}`)
}

function needs(access: Access): string {
  switch (access) {
    case 'admin-or-node':
      return 'role admin or a node certificate'
    case 'node':
      return 'a node certificate'
    default:
      return `role ${access}`
  }
}

/** The role a client access level names (for messages and per-op checks). */
export function roleOfAccess(access: Access): Role | undefined {
  return access === 'readonly' || access === 'readwrite' || access === 'admin' ? access : undefined
}
