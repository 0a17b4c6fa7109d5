/**
 * Kvd: one database node, wired. Wiring only; decisions live in shard/ (and later node/,
 * router/, cluster/).
 *
 * start(), in order:
 *   1. read and check the credential files (TLS certificate, key and CA; auth file), if any
 *   2. create the data dir; open RocksDB in `<dataDir>/db` (a second opener fails at once with
 *      StorageLockedError: RocksDB's LOCK)
 *   3. read `<dataDir>/cluster-id` or, on first boot, draw one and store it durably
 *   4. load the hasher; learn who this node is and the map it starts from; open the node host with
 *      this node's replicas, the router and the cluster agent
 *   5. start the two gRPC listeners, every call behind the request pipeline (net/):
 *        client (--listen):      KvService, AdminService, health, reflection
 *        peer (--peer-listen):   RaftTransportService, KvService and AdminService for other
 *                                nodes (forwarded requests, joins, heartbeats, map reads), health
 *      and HTTP (/metrics, /healthz, /readyz); then mark SERVING. From then on /readyz answers
 *      whether the node can serve its shards (readiness.ts: meta shard reached, leaders known,
 *      caught up), asked of the state it holds on every probe.
 * A failure part-way closes whatever was opened and rethrows. Without TLS files both listeners
 * are plaintext and take every caller; kvd says so loudly at start.
 *
 * stop(), in order (js-libp2p startable; STYLE.md 7.10):
 *   1. not ready: /readyz 503, health NOT_SERVING, the gate refuses new requests (UNAVAILABLE)
 *   2. stop accepting calls and drain the ones in flight, for at most limits.shutdownDrainMsMax,
 *      then cut what is left
 *   3. close HTTP, stop the agent and the node host, close the engine last
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import type { Server } from '@grpc/grpc-js'
import { HealthImplementation } from 'grpc-health-check'
import type { Clock } from '../common/clock.ts'
import { formatHostPort, type KvdConfig } from '../common/config.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { deadlineSignal } from '../common/clock.ts'
import { askInitialMembers, bootstrapVerdict } from './bootstrap-guard.ts'
import { fatalKind } from './fatal.ts'
import type { ClusterMap } from '../cluster/index.ts'
import {
  ClusterAgent,
  initialClusterMap,
  metaShardId,
  peerAddressOf,
  type LocalMeta,
  type NodeRecord,
} from '../cluster/index.ts'
import {
  Authenticator,
  CredentialFiles,
  GrpcListener,
  PeerCertificates,
  Pipeline,
  ReloadingServerCredentials,
  RequestGate,
  clientChannelCredentials,
  listenError,
  plaintextChannelCredentials,
  serverCredentials,
  type ListenerKind,
  type TlsMaterial,
} from '../net/index.ts'
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
import { BindableLogger, type Logger } from '../common/logger.ts'
import { RocksEngine, loadHasher, metaKey, openRocksEngine, type Engine } from '../storage/index.ts'
import type { Hasher } from '../hashing/index.ts'
import { registerRebalanceMetrics } from './metrics-rebalance.ts'
import { NodeHost, type HostedShard } from '../node/host.ts'
import { GrpcPeerTransport } from '../node/transport-grpc.ts'
import { SystemRandom } from '../common/random-system.ts'
import { openRestoreSource, type RestoreSource } from '../backup/index.ts'
import { clusterIdBytes } from './cursor.ts'
import { adminServiceDefinition, createAdminService } from './grpc-admin.ts'
import { createKvService, kvServiceDefinition } from './grpc-kv.ts'
import { createRaftService, raftServiceDefinition } from './grpc-raft.ts'
import { createReplicaService, replicaServiceDefinition } from './grpc-replica.ts'
import { KvdHttpServer, KvdMetrics } from './http.ts'
import { readiness, type Readiness } from './readiness.ts'
import { safeModeOf } from '../planner/index.ts'
import { addReflection } from './reflection.ts'
import { internalStatus, toStatus } from './status.ts'

/** The health-checked service names: '' (the whole server) and the client API. */
export const healthServiceNames = ['', 'ringkv.v1.KvService'] as const

export interface KvdInit {
  readonly config: KvdConfig
  readonly version: string
}

export interface KvdComponents {
  readonly clock: Clock
  readonly logger: Logger
  /** A fail-stop while serving (a broken invariant, a failed storage write); the default rethrows it asynchronously (crash). */
  readonly onFatal?: (err: unknown) => void
  /**
   * Opens the node's storage in `dir`; default RocksDB (`openRocksEngine`). Tests wrap it to hold
   * or count disk operations.
   */
  readonly openEngine?: (dir: string, logger: Logger) => Promise<Engine>
}

/** The addresses actually bound (ports resolved when 0 was asked). */
export interface KvdAddresses {
  /** The client listener. */
  readonly grpc: string
  /** The peer listener. */
  readonly peer: string
  readonly http: string
}

type State = 'new' | 'starting' | 'serving' | 'stopping' | 'stopped'

export class Kvd {
  private readonly init: KvdInit
  private readonly components: KvdComponents
  /** Lines carry `node`: the configured id at once in a new cluster, a joining node's once it is known. */
  private readonly log: BindableLogger
  private readonly metrics = new KvdMetrics()
  private readonly gate: RequestGate
  private readonly health = new HealthImplementation(
    Object.fromEntries(healthServiceNames.map((name) => [name, 'NOT_SERVING' as const])),
  )
  private state: State = 'new'
  private engine: Engine | undefined
  private host: NodeHost | undefined
  private agent: ClusterAgent | undefined
  private peerClients: PeerClients | undefined
  private forwarder: Forwarder | undefined
  private nodeId: NodeId = NodeId(1)
  private readonly localViews = new Map<ShardId, LocalReplica & LocalMeta>()
  private transport: GrpcPeerTransport | undefined
  private readonly random = new SystemRandom()
  private credentials: CredentialFiles | undefined
  private listeners: GrpcListener[] = []
  private http: KvdHttpServer | undefined
  private bound: KvdAddresses | undefined
  private clusterIdHex = ''
  /** --restore: the backup a new cluster's replicas are seeded from. */
  private restore: RestoreSource | undefined
  private startedMs = 0

  constructor(init: KvdInit, components: KvdComponents) {
    this.init = init
    this.components = components
    this.log = new BindableLogger(
      components.logger,
      init.config.join.length > 0 ? {} : { node: init.config.nodeId },
    )
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
      const credentials = await CredentialFiles.load(
        {
          certFile: config.certFile,
          keyFile: config.keyFile,
          caFile: config.caFile,
          authFile: config.authFile,
          cluster: config.clusterName,
          peerAddress: config.peerAdvertise,
          reloadMs: config.limits.credentialsReloadMs,
          fileBytesMax: config.limits.credentialFileBytesMax,
          tokensMax: config.limits.authTokensMax,
        },
        { clock, logger: this.log },
      )
      this.credentials = credentials
      const tls = credentials.tls
      this.warnIfOpen(tls !== undefined, credentials.auth !== undefined)
      // Outgoing peer connections: mutual TLS with this node's certificate (new files for new
      // connections), the peer's certificate checked against the address dialled.
      const peerCertificates = tls === undefined ? undefined : new PeerCertificates(tls, config.clusterName)
      const credentialsFor = (address: string): ReturnType<typeof plaintextChannelCredentials> =>
        peerCertificates?.channelCredentials(address) ?? plaintextChannelCredentials()
      if (peerCertificates !== undefined) credentials.onTls((material) => peerCertificates.update(material))
      await mkdir(config.dataDir, { recursive: true })
      const dbDir = join(config.dataDir, 'db')
      this.engine = await (this.components.openEngine?.(dbDir, this.log) ??
        openRocksEngine({ dir: dbDir }, { logger: this.log }))
      const hasher = await loadHasher()
      if (config.restoreDir !== undefined) this.restore = await openRestoreSource(config.restoreDir)
      const identity = await this.identity(this.engine, hasher, tls, credentialsFor)
      this.nodeId = identity.nodeId
      this.log.bind({ node: identity.nodeId })
      const clusterId = await loadOrCreateClusterId(config.dataDir, identity.clusterId)
      this.clusterIdHex = clusterId.toString('hex')
      const peerClients = new PeerClients(
        identity.nodeId,
        config.limits,
        credentialsFor,
        (address) => this.transport?.isCutOff(address) ?? false,
      )
      this.peerClients = peerClients
      this.forwarder = new Forwarder(peerClients)
      const forwarder = this.forwarder
      this.metrics.exposeNode({
        version: this.init.version,
        forwarded: () => forwarder.byMethod(),
        replicas: () => this.host?.status() ?? [],
        hostCounters: () => this.host?.counters(),
        transport: () => this.transport?.stats(),
        raft: () => this.host?.raftStats(),
        storage: () => this.host?.storageStats(),
        rocks: () => (this.engine instanceof RocksEngine ? this.engine.sizes() : undefined),
        peerRoundTrips: () => this.host?.peerRoundTrips(),
      })
      registerRebalanceMetrics(this.metrics.registry, () => this.agent?.rebalanceStatus())
      const map = identity.map
      const router = new Router({
        nodeId: identity.nodeId,
        map: () => this.agent?.map ?? map,
        local: (shardId) => this.localReplica(shardId),
        clock,
      })
      const transport = new GrpcPeerTransport(
        { nodeId: identity.nodeId, limits: config.limits },
        { clock, random: this.random, logger: this.log, credentialsFor },
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
          ...(this.restore !== undefined ? { restore: this.restore } : {}),
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
          nodeUnreachableAfterMs: config.heartbeatMs * nodeUnreachableAfterHeartbeats,
          nodeDeadAfterMs: config.deadAfterMs,
          metaCallMs: Math.max(config.heartbeatMs, metaCallMsMin),
          initialMap: map,
          movePollMs,
          moveStallMsMax,
          // The executor keeps up to rebalanceMovesMax moves running; the mover steps them all.
          movesConcurrentMax: Math.max(config.limits.movesConcurrentMax, config.limits.rebalanceMovesMax),
        },
        {
          clock,
          logger: this.log,
          localMeta: () => this.localReplica(metaShardId),
          leaderReports: () => host.leaderships(),
          shardSizes: () => host.approximateBytes(),
          remote: new GrpcMetaRemote(peerClients),
          replicas: new GrpcReplicaRemote(peerClients),
          ownReplicas: () =>
            host.status().map((v) => ({ shardId: v.shardId, state: v.state, epoch: v.epoch })),
          dropReplica: (shardId, epoch, members) => host.destroyReplica(shardId, epoch, members),
          rebalance: {
            hasher,
            autoRebalance: config.autoRebalance,
            throttles: {
              movesMax: config.limits.rebalanceMovesMax,
              repairSlots: config.limits.rebalanceRepairSlots,
              inPerNodeMax: config.limits.rebalanceMovesInPerNodeMax,
              outPerNodeMax: config.limits.rebalanceMovesOutPerNodeMax,
            },
            listedMax: config.limits.rebalanceJobMovesListedMax,
            pollMs: rebalancePollMs,
            snapshotRateBps: config.snapshotRateMiBps * 1024 * 1024,
          },
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

      const mapNow = (): ClusterMap => this.agent?.map ?? map
      const pipeline = new Pipeline({
        authenticator: new Authenticator(
          { cluster: config.clusterName, tls: tls !== undefined },
          { nodeIdOf: nodeIdIndex(mapNow), auth: () => credentials.auth },
        ),
        gate: this.gate,
        clock,
        logger: this.log,
        limits: config.limits,
        metrics: this.metrics,
        toStatus: (err) => toStatus(err, this.log),
        internalStatus,
        onFatal: (err) => this.fatal(err),
        cutOffFrom: (peer) => this.transport?.isCutOffFrom(peer) ?? false,
      })
      const listener = (kind: ListenerKind): GrpcListener => {
        const creds = serverCredentials(tls, kind, config.clientCertAuth)
        if (creds instanceof ReloadingServerCredentials)
          credentials.onTls((material) => creds.update(material))
        const made = new GrpcListener({ kind, limits: config.limits }, { pipeline, credentials: creds })
        this.listeners.push(made)
        return made
      }
      const client = listener('client')
      const peer = listener('peer')
      const kv = createKvService({
        router,
        forwarder: this.forwarder,
        limits: config.limits,
        clock,
        logger: this.log,
        metrics: this.metrics,
        hasher,
        clusterId,
      })
      const admin = createAdminService({
        // Every replica is a Raft group of the host: its view is the shard's status.
        replicas: () => [],
        shardViews: () => this.host?.status() ?? [],
        peers: () =>
          [...router.map.nodes.values()]
            .filter((n) => n.id !== identity.nodeId)
            .map((n) => ({ nodeId: n.id, address: n.address })),
        allowFaultInjection: config.allowFaultInjection,
        faults: () => this.transport,
        exportShard: (shardId, signal) => {
          if (this.host === undefined)
            throw new KvError(ErrorCode.Unavailable, 'this node has no replicas yet')
          return this.host.exportShard(shardId, signal)
        },
        shardSizes: async () => (await this.host?.approximateBytes()) ?? new Map(),
        shardEpoch: (shardId) => router.map.shard(ShardId(shardId))?.epoch ?? 0,
        forwarded: () => this.forwarder?.total ?? 0,
        cluster: () => this.agent,
        passOn: new GrpcMetaRemote(peerClients),
        clock,
        logger: this.log,
        gate: this.gate,
        node: () => ({
          nodeId: identity.nodeId,
          zone: config.zone,
          address: config.listen.port === 0 ? (this.bound?.grpc ?? config.advertise) : config.advertise,
          version: this.init.version,
          dataDir: config.dataDir,
          startedMs: this.startedMs,
          clusterId: this.clusterIdHex,
        }),
      })
      for (const l of [client, peer]) {
        l.addService(kvServiceDefinition, kv)
        l.addService(adminServiceDefinition, admin)
        this.health.addToServer(l.registry() as Server)
      }
      addReflection(client.registry())
      if (this.transport !== undefined)
        peer.addService(
          raftServiceDefinition,
          createRaftService({ transport: this.transport, clock, logger: this.log, limits: config.limits }),
        )
      peer.addService(
        replicaServiceDefinition,
        createReplicaService({ host: () => this.host, clock, logger: this.log, limits: config.limits }),
      )
      const grpcPort = await client.bind(config.listen)
      const peerPort = await peer.bind(config.peerListen)

      this.http = new KvdHttpServer({ metrics: this.metrics, readiness: () => this.readiness() })
      const httpBound = await this.http.listen(config.httpListen).catch((err: unknown) => {
        throw listenError('http', config.httpListen, err)
      })
      this.bound = {
        grpc: formatHostPort({ host: config.listen.host, port: grpcPort }),
        peer: formatHostPort({ host: config.peerListen.host, port: peerPort }),
        http: formatHostPort(httpBound),
      }
      // Peers can reach this node now; start the groups (elections, replication).
      this.host?.start()
      this.agent?.start()
      await this.soloLeaders()
      credentials.start()
      for (const name of healthServiceNames) this.health.setStatus(name, 'SERVING')
      this.state = 'serving'
      this.log.info(
        {
          address: this.bound.grpc,
          peerAddress: this.bound.peer,
          advertise: config.advertise,
          peerAdvertise: config.peerAdvertise,
          tls: tls !== undefined,
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
   * Whether this node can serve its shards now (readiness.ts decides), from what it already holds:
   * its map, its agent's last heartbeat to the meta shard, its replicas' Raft views.
   */
  readiness(): Readiness {
    const { config } = this.init
    const host = this.host
    const agent = this.agent
    const metaCallMs = Math.max(config.heartbeatMs, metaCallMsMin)
    const map = agent?.map
    const safeMode =
      map === undefined ? undefined : safeModeOf([...map.nodes.values()], map.cluster.replicaCount)
    const answer = readiness({
      nodeId: this.nodeId,
      lifecycle: this.state,
      member: agent?.map.nodes.has(this.nodeId) ?? false,
      nowMs: this.components.clock.nowMs(),
      metaHeardMs: agent?.lastMetaContactMs,
      metaStaleMs: config.limits.readyMetaHeartbeatsMissedMax * config.heartbeatMs + metaCallMs,
      replicas: (host?.status() ?? []).map((v) => ({
        ...v,
        serving: host?.replica(v.shardId)?.serving ?? false,
      })),
      applyLagMax: config.limits.readyApplyLagEntriesMax,
    })
    return safeMode === undefined ? answer : { ...answer, safeMode: safeMode.message }
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
    this.credentials?.stop()
    const listeners = this.listeners
    if (listeners.length > 0) {
      // tryShutdown stops new calls and waits for the open ones; after drainMs whatever is left
      // is cut (forceShutdown), which also ends the wait on the gate. Peer streams stay open while
      // client calls drain (their writes still need replication); closing the host and the
      // transport then ends them, which lets tryShutdown finish.
      let cut: () => void = () => {}
      const timedOut = new Promise<void>((resolve) => (cut = resolve))
      const timer = this.components.clock.setTimer(drainMs, () => {
        this.log.warn({ inFlight: this.gate.inFlight }, 'drain timed out, cutting calls')
        for (const l of listeners) l.forceShutdown()
        cut()
      })
      const shutdown = Promise.all(listeners.map((l) => l.tryShutdown()))
      await Promise.race([this.gate.idle(), timedOut])
      await this.closeReplication()
      await Promise.race([shutdown, timedOut])
      timer.cancel()
      this.listeners = []
    }
    await this.http?.close()
    this.http = undefined
    this.peerClients?.close()
    this.peerClients = undefined
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
    tls: TlsMaterial | undefined,
    credentialsFor: (address: string) => ReturnType<typeof plaintextChannelCredentials>,
  ): Promise<{ nodeId: NodeId; clusterId: Buffer | undefined; map: ClusterMap }> {
    const { config } = this.init
    const storedId = await engine.get(nodeIdKey)
    const storedMap = await engine.get(mapKey)
    const map = storedMap === null ? undefined : mapFromProto(ShardMapResponse.decode(storedMap))
    if (config.join.length > 0) {
      if (storedId !== null && map !== undefined) {
        const nodeId = NodeId(Number(new TextDecoder().decode(storedId)))
        return { nodeId, clusterId: Buffer.from(map.cluster.clusterId, 'hex'), map }
      }
      const joined = await this.join(tls)
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
    if (storedId === null && map === undefined && this.restore === undefined)
      await this.refuseIfRanBefore(credentialsFor)
    const clusterId = await loadOrCreateClusterId(
      config.dataDir,
      initialClusterId(config, this.restore?.id),
    ).catch((err: unknown) => {
      if (this.restore !== undefined && isKvError(err) && err.details?.field === 'initialCluster')
        throw new KvError(
          ErrorCode.InvalidArgument,
          `--restore ${this.restore.dir}: ${config.dataDir} already holds another cluster's data; a restore seeds a new, empty one`,
          { details: { field: 'restore' } },
        )
      throw err
    })
    const initial =
      map ??
      initialClusterMap(
        {
          clusterId: clusterId.toString('hex'),
          nodes: [...config.initialCluster].map(([id, addr]) => ({
            id,
            address: formatHostPort(addr),
            peerAddress: formatHostPort(config.initialPeers.get(id)!),
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

  /**
   * The bootstrap guard (bootstrap-guard.ts): a member of a multi-node --initial-cluster starting
   * with an empty data directory asks the other members whether the cluster knows it ran, and
   * refuses to start as new if so.
   */
  private async refuseIfRanBefore(
    credentialsFor: (address: string) => ReturnType<typeof plaintextChannelCredentials>,
  ): Promise<void> {
    const { config } = this.init
    const clusterId = initialClusterId(config)
    if (clusterId === undefined) return
    const peers = new Map(
      [...config.initialPeers]
        .filter(([id]) => id !== config.nodeId)
        .map(([id, addr]) => [id, formatHostPort(addr)] as const),
    )
    const clients = new PeerClients(config.nodeId, config.limits, credentialsFor)
    try {
      const remote = new GrpcMetaRemote(clients)
      const answers = await askInitialMembers(
        peers,
        (address, signal) => remote.shardMap(address, signal),
        this.components.clock,
      )
      const verdict = bootstrapVerdict(config.nodeId, clusterId.toString('hex'), config.dataDir, answers)
      if (!verdict.start) {
        this.log.error({ reason: verdict.reason, by: verdict.by }, 'refusing to start as a new member')
        throw verdict.error
      }
      this.log.info({ asked: peers.size, answered: verdict.answered }, 'starting as a new member')
    } finally {
      clients.close()
    }
  }

  /**
   * Registers with the cluster through the --join nodes (their client listeners), each in turn,
   * until one answers. With TLS the call presents this node's certificate, which must name the
   * peer address it registers (grpc-admin.ts), and checks the seed's as any client would.
   */
  private async join(tls: TlsMaterial | undefined): Promise<{ node: NodeRecord; map: ClusterMap }> {
    const { config } = this.init
    if (config.listen.port === 0)
      throw new KvError(
        ErrorCode.InvalidArgument,
        '--join needs a real --listen port (others must reach this node)',
        {
          details: { field: 'listen' },
        },
      )
    const joinCredentials = clientChannelCredentials(tls)
    const clients = new PeerClients(NodeId(1), config.limits, () => joinCredentials)
    const remote = new GrpcMetaRemote(clients, false)
    const args = {
      address: config.advertise,
      peerAddress: config.peerAdvertise,
      zone: config.zone,
      weight: config.weight,
    }
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

  /** Says loudly, once at start, what an unauthenticated listener lets anyone do. */
  private warnIfOpen(tls: boolean, auth: boolean): void {
    if (!tls && !auth)
      this.log.warn(
        { listen: this.init.config.listen, peerListen: this.init.config.peerListen },
        'PLAINTEXT AND OPEN: no --cert-file/--key-file/--ca-file and no --auth-file. Anyone who ' +
          'reaches these ports can read and write every key, join nodes, inject faults and speak as ' +
          'a peer. Use this for local work only.',
      )
    else if (!tls)
      this.log.warn(
        { peerListen: this.init.config.peerListen },
        'PLAINTEXT: no TLS files. Bearer tokens travel in the clear, and the peer listener takes ' +
          'any caller as a node. Use this for local work only.',
      )
  }

  private fatal(err: unknown): void {
    const kind = fatalKind(err)
    this.log.fatal(
      { err, kind },
      kind === 'disk-full' ? 'out of disk space' : kind === 'storage' ? 'storage failed' : 'broken invariant',
    )
    if (this.components.onFatal !== undefined) this.components.onFatal(err)
    else
      queueMicrotask(() => {
        throw err
      })
  }
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
export function initialClusterId(config: KvdConfig, restoredFrom?: string): Buffer | undefined {
  if (config.initialCluster.size <= 1) return undefined
  const members = [...config.initialCluster]
    .sort(([a], [b]) => a - b)
    .map(([id, addr]) => `${id}=${formatHostPort(addr)}@${config.initialZones.get(id) ?? ''}`)
    .join(',')
  return createHash('sha256')
    .update(
      `ringkv-cluster|${members}|shards=${config.shardCount}|replicas=${config.replicaCount}` +
        `|vnodes=${config.vnodesPerNode}|meta=${config.metaReplicas}` +
        // A cluster restored from a backup is a new cluster: old clients' tokens do not fit it.
        (restoredFrom === undefined ? '' : `|restored=${restoredFrom}`),
    )
    .digest()
    .subarray(0, clusterIdBytes)
}

/** How long start() waits for this node's single-voter groups to elect themselves, and how often it looks. */
const soloLeaderWaitMs = 10_000
const soloLeaderPollMs = 5
/** Missed heartbeats after which the meta leader marks a node unreachable (dead: --dead-after). */
const nodeUnreachableAfterHeartbeats = 10
/** The least budget of one call to the meta shard. */
const metaCallMsMin = 2_000
/** How often the meta leader's mover looks at the moves, and how long a move may make no progress. */
const movePollMs = 250
/** How often the meta leader plans and starts moves (cluster/executor). */
const rebalancePollMs = 1000
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

/** Every node's peer address, for the peer transport. */
function peerAddresses(map: ClusterMap): Map<NodeId, string> {
  return new Map([...map.nodes.values()].map((n) => [n.id, peerAddressOf(n)] as const))
}

/**
 * The registered node id of any of some peer addresses (a node certificate's), from the map in
 * force; the index is rebuilt when the map object changes.
 */
function nodeIdIndex(map: () => ClusterMap): (addresses: readonly string[]) => NodeId | undefined {
  let indexed: ClusterMap | undefined
  let byPeer = new Map<string, NodeId>()
  return (addresses) => {
    const current = map()
    if (current !== indexed) {
      byPeer = new Map([...current.nodes.values()].map((n) => [peerAddressOf(n), n.id] as const))
      indexed = current
    }
    for (const address of addresses) {
      const id = byPeer.get(address)
      if (id !== undefined) return id
    }
    return undefined
  }
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
