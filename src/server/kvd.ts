/**
 * Kvd: one database node, wired. Wiring only; decisions live in shard/ (and later node/,
 * router/, cluster/).
 *
 * start(), in order:
 *   1. create the data dir; open RocksDB in `<dataDir>/db` (a second opener fails at once with
 *      StorageLockedError: RocksDB's LOCK)
 *   2. read `<dataDir>/cluster-id` or, on first boot, draw one and store it durably
 *   3. load the hasher; open the local replica of shard 0, which covers the whole ring
 *   4. start gRPC (KvService, AdminService, RaftTransportService stub, health, reflection) and
 *      HTTP (/metrics, /healthz, /readyz); then mark SERVING / ready
 * A failure part-way closes whatever was opened and rethrows.
 *
 * stop(), in order (js-libp2p startable; STYLE.md 7.10):
 *   1. not ready: /readyz 503, health NOT_SERVING, the gate refuses new requests (UNAVAILABLE)
 *   2. stop accepting calls and drain the ones in flight, for at most limits.shutdownDrainMsMax,
 *      then cut what is left
 *   3. close HTTP, close the replica (drains its write queue), close the engine last
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { Server, ServerCredentials } from '@grpc/grpc-js'
import { HealthImplementation } from 'grpc-health-check'
import type { AssertionError } from '../common/assert.ts'
import type { Clock } from '../common/clock.ts'
import { formatHostPort, type HostPort, type KvdConfig } from '../common/config.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { deadlineSignal } from '../common/clock.ts'
import {
  ClusterAgent,
  ClusterMap,
  initialClusterMap,
  metaShardId,
  type LocalMeta,
  type NodeRecord,
} from '../cluster/index.ts'
import { ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import {
  Forwarder,
  GrpcMetaRemote,
  GrpcReplicaRemote,
  PeerClients,
  Router,
  mapFromProto,
  mapToProto,
  type LocalReplica,
} from '../router/index.ts'
import type { Logger } from '../common/logger.ts'
import { loadHasher, metaKey, openRocksEngine, type Engine } from '../storage/index.ts'
import { hashSpaceEnd, type Hasher } from '../hashing/index.ts'
import { NodeHost, type HostedShard } from '../node/host.ts'
import { GrpcPeerTransport } from '../node/transport-grpc.ts'
import { SystemRandom } from '../common/random-system.ts'
import type { openLocalReplica, Replica } from '../shard/index.ts'
import { clusterIdBytes } from './cursor.ts'
import { RequestGate } from './gate.ts'
import { adminServiceDefinition, createAdminService } from './grpc-admin.ts'
import { createKvService, kvServiceDefinition } from './grpc-kv.ts'
import { createRaftService, raftServiceDefinition } from './grpc-raft.ts'
import { createReplicaService, replicaServiceDefinition } from './grpc-replica.ts'
import { KvdHttpServer, KvdMetrics } from './http.ts'
import { addReflection } from './reflection.ts'

/** The health-checked service names: '' (the whole server) and the client API. */
export const healthServiceNames = ['', 'ringkv.v1.KvService'] as const

export interface KvdInit {
  readonly config: KvdConfig
  readonly version: string
}

export interface KvdComponents {
  readonly clock: Clock
  readonly logger: Logger
  /** A broken invariant met while serving; the default rethrows it asynchronously (crash). */
  readonly onFatal?: (err: AssertionError) => void
  /** Opens the replica of shard 0; default `openLocalReplica` (tests inject a double). */
  readonly openReplica?: typeof openLocalReplica
}

/** The addresses actually bound (ports resolved when 0 was asked). */
export interface KvdAddresses {
  readonly grpc: string
  readonly http: string
}

type State = 'new' | 'starting' | 'serving' | 'stopping' | 'stopped'

export class Kvd {
  private readonly init: KvdInit
  private readonly components: KvdComponents
  private readonly log: Logger
  private readonly metrics = new KvdMetrics()
  private readonly gate: RequestGate
  private readonly health = new HealthImplementation(
    Object.fromEntries(healthServiceNames.map((name) => [name, 'NOT_SERVING' as const])),
  )
  private state: State = 'new'
  private engine: Engine | undefined
  private replica: Replica | undefined
  private host: NodeHost | undefined
  private agent: ClusterAgent | undefined
  private peerClients: PeerClients | undefined
  private forwarder: Forwarder | undefined
  private nodeId: NodeId = NodeId(1)
  private readonly localViews = new Map<ShardId, LocalReplica & LocalMeta>()
  private transport: GrpcPeerTransport | undefined
  private readonly random = new SystemRandom()
  private grpc: Server | undefined
  private http: KvdHttpServer | undefined
  private bound: KvdAddresses | undefined
  private clusterIdHex = ''
  private startedMs = 0

  constructor(init: KvdInit, components: KvdComponents) {
    this.init = init
    this.components = components
    this.log = components.logger.child({ node: init.config.nodeId })
    this.gate = new RequestGate(init.config.limits.requestsInFlightMax)
  }

  get addresses(): KvdAddresses {
    if (this.bound === undefined) throw new Error('kvd is not started')
    return this.bound
  }

  get clusterId(): string {
    return this.clusterIdHex
  }

  get isServing(): boolean {
    return this.state === 'serving'
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`kvd cannot start when ${this.state}`)
    this.state = 'starting'
    const { config } = this.init
    const { clock } = this.components
    this.startedMs = clock.nowMs()
    try {
      await mkdir(config.dataDir, { recursive: true })
      this.engine = await openRocksEngine({ dir: join(config.dataDir, 'db') }, { logger: this.log })
      const hasher = await loadHasher()
      const identity = await this.identity(this.engine, hasher)
      this.nodeId = identity.nodeId
      const clusterId = await loadOrCreateClusterId(config.dataDir, identity.clusterId)
      this.clusterIdHex = clusterId.toString('hex')
      const peerClients = new PeerClients(identity.nodeId, config.limits)
      this.peerClients = peerClients
      this.forwarder = new Forwarder(peerClients)
      const forwarder = this.forwarder
      this.metrics.exposeForwarded(() => forwarder.byMethod())
      const map =
        this.components.openReplica !== undefined || identity.map === undefined
          ? soloMap(this.clusterIdHex, identity.nodeId, formatHostPort(config.listen))
          : identity.map
      const router = new Router({
        nodeId: identity.nodeId,
        map: () => this.agent?.map ?? map,
        local: (shardId) => this.localReplica(shardId),
      })
      if (this.components.openReplica !== undefined) {
        // Test seam: one replica covering the whole ring, no Raft.
        const replica = await this.components.openReplica(
          { nodeId: identity.nodeId, shardId: ShardId(0) },
          { engine: this.engine, hasher, clock, logger: this.log, limits: config.limits },
        )
        this.replica = replica
      } else {
        const transport = new GrpcPeerTransport(
          { nodeId: identity.nodeId, limits: config.limits },
          { clock, random: this.random, logger: this.log },
        )
        this.transport = transport
        transport.setPeers(peerAddresses(map))
        this.host = await NodeHost.open(
          {
            nodeId: identity.nodeId,
            bootstrap: hostedOf(map, identity.nodeId),
            shardCount: map.cluster.shardCount,
            tickMs: config.tickMs,
            leaseReads: config.leaseReads,
            snapshotBytesPerSecond: config.snapshotRateMiBps * 1024 * 1024,
          },
          {
            engine: this.engine,
            hasher,
            clock,
            random: this.random,
            logger: this.log,
            limits: config.limits,
            transport,
            onFatal: (err) => this.fatal(err),
          },
        )
        const host = this.host
        const engine = this.engine
        let stored = encodeMap(map, identity.nodeId)
        this.agent = new ClusterAgent(
          {
            nodeId: identity.nodeId,
            heartbeatMs: config.heartbeatMs,
            mapRefreshMs: config.heartbeatMs,
            nodeDeadAfterMs: config.heartbeatMs * nodeDeadAfterHeartbeats,
            metaCallMs: Math.max(config.heartbeatMs, metaCallMsMin),
            initialMap: map,
            movePollMs,
            moveStallMsMax,
            movesConcurrentMax: config.limits.movesConcurrentMax,
          },
          {
            clock,
            logger: this.log,
            localMeta: () => this.localReplica(metaShardId),
            leaderReports: () => host.leaderships(),
            remote: new GrpcMetaRemote(peerClients),
            replicas: new GrpcReplicaRemote(peerClients),
            ownReplicas: () =>
              host.status().map((v) => ({ shardId: v.shardId, state: v.state, epoch: v.epoch })),
            dropReplica: (shardId, epoch, members) => host.destroyReplica(shardId, epoch, members),
            onMap: (next) => {
              transport.setPeers(peerAddresses(next))
              // Kept, so a restarted node routes at once (a joined node cannot compute its map).
              const bytes = encodeMap(next, identity.nodeId)
              if (Buffer.compare(bytes, stored) === 0) return
              stored = bytes
              const batch = engine.batch()
              batch.put(mapKey, bytes)
              engine
                .write(batch, { sync: false })
                .catch((err: unknown) => this.log.warn({ err }, 'map not stored'))
            },
          },
        )
      }

      const grpc = new Server({
        'grpc.max_receive_message_length': config.limits.grpcMessageBytesMax,
        'grpc.max_send_message_length': config.limits.grpcMessageBytesMax,
      })
      this.grpc = grpc
      grpc.addService(
        kvServiceDefinition,
        createKvService({
          router,
          forwarder: this.forwarder,
          limits: config.limits,
          clock,
          logger: this.log,
          metrics: this.metrics,
          hasher,
          gate: this.gate,
          clusterId,
          onFatal: (err) => this.fatal(err),
        }),
      )
      grpc.addService(
        adminServiceDefinition,
        createAdminService({
          replicas: () => (this.replica === undefined ? [] : [this.replica]),
          ...(this.host === undefined ? {} : { shardViews: () => this.host?.status() ?? [] }),
          peers: () =>
            [...router.map.nodes.values()]
              .filter((n) => n.id !== identity.nodeId)
              .map((n) => ({ nodeId: n.id, address: n.address })),
          allowFaultInjection: config.allowFaultInjection,
          faults: () => this.transport,
          shardSizes: async () => (await this.host?.approximateBytes()) ?? new Map(),
          shardEpoch: (shardId) => router.map.shard(ShardId(shardId))?.epoch ?? 0,
          forwarded: () => this.forwarder?.total ?? 0,
          cluster: () => this.agent,
          clock,
          logger: this.log,
          gate: this.gate,
          node: () => ({
            nodeId: identity.nodeId,
            zone: config.zone,
            address: this.bound?.grpc ?? formatHostPort(config.listen),
            version: this.init.version,
            dataDir: config.dataDir,
            startedMs: this.startedMs,
            clusterId: this.clusterIdHex,
          }),
        }),
      )
      grpc.addService(
        replicaServiceDefinition,
        createReplicaService({ host: () => this.host, clock, logger: this.log, limits: config.limits }),
      )
      grpc.addService(
        raftServiceDefinition,
        createRaftService(
          this.transport === undefined
            ? undefined
            : { transport: this.transport, clock, logger: this.log, limits: config.limits },
        ),
      )
      this.health.addToServer(grpc)
      addReflection(grpc)
      const grpcPort = await bind(grpc, config.listen)

      this.http = new KvdHttpServer({ metrics: this.metrics, isReady: () => this.state === 'serving' })
      const httpBound = await this.http.listen(config.httpListen).catch((err: unknown) => {
        throw listenError('http', config.httpListen, err)
      })
      this.bound = {
        grpc: formatHostPort({ host: config.listen.host, port: grpcPort }),
        http: formatHostPort(httpBound),
      }
      // Peers can reach this node now; start the groups (elections, replication).
      this.host?.start()
      this.agent?.start()
      await this.soloLeaders()
      for (const name of healthServiceNames) this.health.setStatus(name, 'SERVING')
      this.state = 'serving'
      this.log.info(
        {
          address: this.bound.grpc,
          httpAddress: this.bound.http,
          dataDir: config.dataDir,
          clusterId: this.clusterIdHex,
          version: this.init.version,
          join: config.join,
        },
        'kvd serving',
      )
    } catch (err) {
      await this.closeAll(0)
      this.state = 'stopped'
      throw err
    }
  }

  /**
   * Waits (at most soloLeaderWaitMs) until every group whose only voter is this node leads: such a
   * group elects itself at once, and until it has, a write to it would be refused (NOT_LEADER), so
   * the node is not ready. Groups with other voters elect with their peers; clients retry those.
   */
  private async soloLeaders(): Promise<void> {
    const host = this.host
    if (host === undefined) return
    const solo = (): boolean =>
      host
        .status()
        .filter((v) => v.state === 'active' && v.voters.length === 1 && v.voters[0] === this.nodeId)
        .every((v) => v.role === 'leader')
    const { clock } = this.components
    const until = clock.nowMs() + soloLeaderWaitMs
    while (!solo() && clock.nowMs() < until)
      await new Promise<void>((resolve) => clock.setTimer(soloLeaderPollMs, resolve, { keepAlive: true }))
    if (!solo())
      this.log.warn({ waitedMs: soloLeaderWaitMs }, 'a single-voter shard has not elected itself yet')
  }

  /** Graceful stop (see the file comment). Idempotent; resolves when everything is closed. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return
    this.state = 'stopping'
    this.log.info({ inFlight: this.gate.inFlight }, 'kvd draining')
    await this.closeAll(this.init.config.limits.shutdownDrainMsMax)
    this.state = 'stopped'
    this.log.info({}, 'kvd stopped')
  }

  private async closeAll(drainMs: number): Promise<void> {
    for (const name of healthServiceNames) this.health.setStatus(name, 'NOT_SERVING')
    this.gate.drain()
    const grpc = this.grpc
    if (grpc !== undefined) {
      // tryShutdown stops new calls and waits for the open ones; after drainMs whatever is left
      // is cut (forceShutdown), which also ends the wait on the gate. Peer streams stay open while
      // client calls drain (their writes still need replication); closing the host and the
      // transport then ends them, which lets tryShutdown finish.
      let cut: () => void = () => {}
      const timedOut = new Promise<void>((resolve) => (cut = resolve))
      const timer = this.components.clock.setTimer(drainMs, () => {
        this.log.warn({ inFlight: this.gate.inFlight }, 'drain timed out, cutting calls')
        grpc.forceShutdown()
        cut()
      })
      const shutdown = new Promise<void>((resolve) => grpc.tryShutdown(() => resolve()))
      await Promise.race([this.gate.idle(), timedOut])
      await this.closeReplication()
      await Promise.race([shutdown, timedOut])
      timer.cancel()
      this.grpc = undefined
    }
    await this.http?.close()
    this.http = undefined
    this.peerClients?.close()
    this.peerClients = undefined
    await this.replica?.close()
    this.replica = undefined
    await this.closeReplication()
    await this.engine?.close()
    this.engine = undefined
  }

  /** Stops the agent and the Raft groups, then the peer transport (ending inbound peer streams). Idempotent. */
  private async closeReplication(): Promise<void> {
    await this.agent?.stop()
    await this.host?.close()
    this.host = undefined
    await this.transport?.close()
    this.transport = undefined
  }

  /** This node's replica of `shardId` with its Raft view, for the router and the agent. */
  private localReplica(shardId: ShardId): (LocalReplica & LocalMeta) | undefined {
    if (this.replica !== undefined)
      return shardId === 0 ? { replica: this.replica, isLeader: true, leaderId: this.nodeId } : undefined
    const r = this.host?.replica(shardId)
    // A replica that does not serve (waiting for or installing a snapshot) is as good as none here:
    // requests go to the shard's other replicas.
    if (r === undefined || !r.serving) return undefined
    // Asked on every request: one view object per replica, kept.
    const known = this.localViews.get(shardId)
    if (known?.replica === r) return known
    const view = {
      replica: r,
      get isLeader() {
        return r.isLeader
      },
      get leaderId() {
        return r.leaderId
      },
      get epoch() {
        return r.epoch
      },
    }
    this.localViews.set(shardId, view)
    return view
  }

  /**
   * Who this node is and the map it starts from: from its data directory when it has been here
   * before; else a member of a new cluster computes the cluster's first map (--initial-cluster),
   * and a joining node registers through --join and gets its id and the map.
   */
  private async identity(
    engine: Engine,
    hasher: Hasher,
  ): Promise<{ nodeId: NodeId; clusterId: Buffer | undefined; map: ClusterMap | undefined }> {
    const { config } = this.init
    const storedId = await engine.get(nodeIdKey)
    const storedMap = await engine.get(mapKey)
    const map = storedMap === null ? undefined : mapFromProto(ShardMapResponse.decode(storedMap))
    if (config.join.length > 0) {
      if (storedId !== null && map !== undefined) {
        const nodeId = NodeId(Number(new TextDecoder().decode(storedId)))
        return { nodeId, clusterId: Buffer.from(map.cluster.clusterId, 'hex'), map }
      }
      const joined = await this.join()
      const batch = engine.batch()
      batch.put(nodeIdKey, new TextEncoder().encode(String(joined.node.id)))
      batch.put(mapKey, encodeMap(joined.map, joined.node.id))
      await engine.write(batch, { sync: true })
      this.log.info({ nodeId: joined.node.id, cluster: joined.map.cluster.clusterId }, 'joined the cluster')
      return {
        nodeId: joined.node.id,
        clusterId: Buffer.from(joined.map.cluster.clusterId, 'hex'),
        map: joined.map,
      }
    }
    if (storedId !== null && Number(new TextDecoder().decode(storedId)) !== config.nodeId)
      throw new KvError(
        ErrorCode.InvalidArgument,
        `${config.dataDir} belongs to node ${new TextDecoder().decode(storedId)}, not --node-id ${config.nodeId}`,
        { details: { field: 'nodeId' } },
      )
    const clusterId = await loadOrCreateClusterId(config.dataDir, initialClusterId(config))
    const initial =
      map ??
      initialClusterMap(
        {
          clusterId: clusterId.toString('hex'),
          nodes: [...config.initialCluster].map(([id, addr]) => ({
            id,
            address: formatHostPort(addr),
            zone: config.initialZones.get(id) ?? (id === config.nodeId ? config.zone : ''),
            weight: id === config.nodeId ? config.weight : 1,
          })),
          shardCount: config.shardCount,
          replicaCount: config.replicaCount,
          vnodesPerNode: config.vnodesPerNode,
          metaReplicaCount: config.metaReplicas,
        },
        hasher,
      )
    if (storedId === null) {
      const batch = engine.batch()
      batch.put(nodeIdKey, new TextEncoder().encode(String(config.nodeId)))
      await engine.write(batch, { sync: true })
    }
    return { nodeId: config.nodeId, clusterId, map: initial }
  }

  /** Registers with the cluster through the --join nodes, each in turn, until one answers. */
  private async join(): Promise<{ node: NodeRecord; map: ClusterMap }> {
    const { config } = this.init
    if (config.listen.port === 0)
      throw new KvError(
        ErrorCode.InvalidArgument,
        '--join needs a real --listen port (others must reach this node)',
        {
          details: { field: 'listen' },
        },
      )
    const clients = new PeerClients(NodeId(1), config.limits)
    const remote = new GrpcMetaRemote(clients, false)
    const args = { address: formatHostPort(config.listen), zone: config.zone, weight: config.weight }
    let last: unknown
    try {
      for (let attempt = 0; attempt < joinAttemptsMax; attempt++) {
        for (const seed of config.join) {
          const { signal, dispose } = deadlineSignal(this.components.clock, joinCallMs)
          try {
            return await remote.join(seed, args, signal)
          } catch (err) {
            last = err
            this.log.warn({ seed, err: (err as Error).message }, 'join attempt failed')
          } finally {
            dispose()
          }
        }
        await new Promise<void>((resolve) =>
          this.components.clock.setTimer(joinRetryMs, resolve, { keepAlive: true }),
        )
      }
    } finally {
      clients.close()
    }
    throw new KvError(
      ErrorCode.Unavailable,
      `cannot join through ${config.join.join(', ')}: ${(last as Error | undefined)?.message ?? 'no answer'}`,
      { cause: last, details: { field: 'join' } },
    )
  }

  private fatal(err: unknown): void {
    this.log.fatal({ err }, 'broken invariant')
    if (this.components.onFatal !== undefined) this.components.onFatal(err as AssertionError)
    else
      queueMicrotask(() => {
        throw err
      })
  }
}

function bind(server: Server, at: HostPort): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(formatHostPort(at), ServerCredentials.createInsecure(), (err, port) => {
      if (err !== null) reject(listenError('grpc', at, err))
      else resolve(port)
    })
  })
}

/** A bind failure as a KvError naming the address (UNAVAILABLE: the world, not the caller). */
function listenError(what: string, at: HostPort, cause: unknown): KvError {
  const reason =
    (cause as NodeJS.ErrnoException).code ?? (cause instanceof Error ? cause.message : String(cause))
  const inUse = /EADDRINUSE|address already in use/i.test(`${reason} ${(cause as Error).message ?? ''}`)
  return new KvError(
    ErrorCode.Unavailable,
    `cannot listen for ${what} on ${formatHostPort(at)}: ${inUse ? 'address already in use (EADDRINUSE)' : reason}`,
    { cause, details: { field: what === 'http' ? 'httpListen' : 'listen' } },
  )
}

const clusterIdFile = 'cluster-id'

/**
 * The cluster id of this data dir: read from `<dataDir>/cluster-id` (32 hex digits), or drawn at
 * random and stored durably (write a temp file, fsync, rename, fsync the dir) on first boot. Call
 * only while holding the engine's LOCK, so two processes never race here.
 */
export async function loadOrCreateClusterId(dataDir: string, wanted?: Buffer): Promise<Buffer> {
  const path = join(dataDir, clusterIdFile)
  try {
    const text = (await readFile(path, 'utf8')).trim()
    if (!new RegExp(`^[0-9a-f]{${clusterIdBytes * 2}}$`).test(text))
      throw new KvError(ErrorCode.Internal, `${path} is corrupt (expected ${clusterIdBytes * 2} hex digits)`)
    const stored = Buffer.from(text, 'hex')
    if (wanted !== undefined && !stored.equals(wanted))
      throw new KvError(
        ErrorCode.InvalidArgument,
        `${dataDir} belongs to another cluster (its --initial-cluster or --shards differ from this one's)`,
        { details: { field: 'initialCluster' } },
      )
    return stored
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = wanted ?? randomBytes(clusterIdBytes)
  const temp = `${path}.tmp`
  const file = await open(temp, 'w')
  try {
    await file.writeFile(`${id.toString('hex')}\n`)
    await file.sync()
  } finally {
    await file.close()
  }
  await rename(temp, path)
  const dir = await open(dataDir, 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
  return id
}

/**
 * The cluster id every member of a multi-node initial cluster derives alike: a hash of the member
 * list and the shard count, so members agree without talking. A single node draws a random one.
 */
export function initialClusterId(config: KvdConfig): Buffer | undefined {
  if (config.initialCluster.size <= 1) return undefined
  const members = [...config.initialCluster]
    .sort(([a], [b]) => a - b)
    .map(([id, addr]) => `${id}=${formatHostPort(addr)}@${config.initialZones.get(id) ?? ''}`)
    .join(',')
  return createHash('sha256')
    .update(
      `ringkv-cluster|${members}|shards=${config.shardCount}|replicas=${config.replicaCount}` +
        `|vnodes=${config.vnodesPerNode}|meta=${config.metaReplicas}`,
    )
    .digest()
    .subarray(0, clusterIdBytes)
}

/** How long start() waits for this node's single-voter groups to elect themselves, and how often it looks. */
const soloLeaderWaitMs = 10_000
const soloLeaderPollMs = 5
/** Missed heartbeats after which the meta leader marks a node dead. */
const nodeDeadAfterHeartbeats = 10
/** The least budget of one call to the meta shard. */
const metaCallMsMin = 2_000
/** How often the meta leader's mover looks at the moves, and how long a move may make no progress. */
const movePollMs = 250
const moveStallMsMax = 120_000
/** Rounds over the --join nodes before kvd gives up, the pause between rounds, and each call's budget. */
const joinAttemptsMax = 10
const joinRetryMs = 1_000
const joinCallMs = 5_000
const nodeIdKey = metaKey('node-id')
const mapKey = metaKey('cluster-map')

/** The map as stored in the data directory (kv.proto ShardMapResponse). */
function encodeMap(map: ClusterMap, nodeId: NodeId): Buffer {
  return Buffer.from(ShardMapResponse.encode(mapToProto(map, nodeId)).finish())
}

/** Every other node's address, for the peer transport. */
function peerAddresses(map: ClusterMap): Map<NodeId, string> {
  return new Map([...map.nodes.values()].map((n) => [n.id, n.address] as const))
}

/** The replicas `nodeId` holds in `map`, as the host creates them. */
export function hostedOf(map: ClusterMap, nodeId: NodeId): HostedShard[] {
  return map.shardsOf(nodeId).map((s) => ({
    shardId: s.shardId,
    kind: s.shardId === metaShardId ? 'meta' : 'data',
    hashStart: s.hashStart,
    hashEnd: s.hashEnd,
    voters: [...s.replicas],
  }))
}

/** The map of the single-replica test seam: one shard over the whole ring, on this node. */
function soloMap(clusterId: string, nodeId: NodeId, address: string): ClusterMap {
  const whole = {
    hashStart: 0n,
    hashEnd: hashSpaceEnd,
    replicas: [nodeId],
    leaderHint: nodeId,
    leaderTerm: 0,
    epoch: 1,
  }
  return new ClusterMap(
    { clusterId, shardCount: 1, replicaCount: 1, vnodesPerNode: 1 },
    [{ id: nodeId, address, zone: '', weight: 1, state: 'active', lastHeartbeatMs: 0 }],
    [{ shardId: ShardId(0), ...whole }],
    { shardId: metaShardId, ...whole },
  )
}
