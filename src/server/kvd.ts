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
import { ShardId } from '../common/ids.ts'
import type { Logger } from '../common/logger.ts'
import { loadHasher, openRocksEngine, type Engine } from '../storage/index.ts'
import { hashSpaceEnd, rangeIndexOf } from '../hashing/index.ts'
import { NodeHost } from '../node/host.ts'
import { GrpcPeerTransport } from '../node/transport-grpc.ts'
import { SystemRandom } from '../common/random-system.ts'
import type { openLocalReplica, Replica, ShardSet } from '../shard/index.ts'
import { clusterIdBytes } from './cursor.ts'
import { RequestGate } from './gate.ts'
import { adminServiceDefinition, createAdminService } from './grpc-admin.ts'
import { createKvService, kvServiceDefinition } from './grpc-kv.ts'
import { createRaftService, raftServiceDefinition } from './grpc-raft.ts'
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
      const clusterId = await loadOrCreateClusterId(config.dataDir, initialClusterId(config))
      this.clusterIdHex = clusterId.toString('hex')
      const hasher = await loadHasher()
      let shards: ShardSet
      if (this.components.openReplica !== undefined) {
        // Test seam: one replica covering the whole ring, no Raft.
        const replica = await this.components.openReplica(
          { nodeId: config.nodeId, shardId: ShardId(0) },
          { engine: this.engine, hasher, clock, logger: this.log, limits: config.limits },
        )
        this.replica = replica
        shards = singleShardSet(replica)
      } else {
        const transport = new GrpcPeerTransport(
          { nodeId: config.nodeId, limits: config.limits },
          { clock, random: this.random, logger: this.log },
        )
        this.transport = transport
        transport.setPeers(
          new Map([...config.initialCluster].map(([id, addr]) => [id, formatHostPort(addr)] as const)),
        )
        this.host = await NodeHost.open(
          {
            nodeId: config.nodeId,
            members: [...config.initialCluster.keys()],
            shardCount: config.shardCount,
            tickMs: config.tickMs,
            leaseReads: config.leaseReads,
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
        shards = hostShardSet(this.host)
      }

      const grpc = new Server({
        'grpc.max_receive_message_length': config.limits.grpcMessageBytesMax,
        'grpc.max_send_message_length': config.limits.grpcMessageBytesMax,
      })
      this.grpc = grpc
      grpc.addService(
        kvServiceDefinition,
        createKvService({
          shards,
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
            [...config.initialCluster]
              .filter(([id]) => id !== config.nodeId)
              .map(([nodeId, addr]) => ({ nodeId, address: formatHostPort(addr) })),
          allowFaultInjection: config.allowFaultInjection,
          faults: () => this.transport,
          clock,
          logger: this.log,
          gate: this.gate,
          node: () => ({
            nodeId: config.nodeId,
            address: this.bound?.grpc ?? formatHostPort(config.listen),
            version: this.init.version,
            dataDir: config.dataDir,
            startedMs: this.startedMs,
            clusterId: this.clusterIdHex,
          }),
        }),
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
    await this.replica?.close()
    this.replica = undefined
    await this.closeReplication()
    await this.engine?.close()
    this.engine = undefined
  }

  /** Stops the Raft groups, then the peer transport (ending inbound peer streams). Idempotent. */
  private async closeReplication(): Promise<void> {
    await this.host?.close()
    this.host = undefined
    await this.transport?.close()
    this.transport = undefined
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
    .map(([id, addr]) => `${id}=${formatHostPort(addr)}`)
    .join(',')
  return createHash('sha256')
    .update(`ringkv-cluster|${members}|shards=${config.shardCount}`)
    .digest()
    .subarray(0, clusterIdBytes)
}

/** One replica covering the whole ring (the test seam). */
function singleShardSet(replica: Replica): ShardSet {
  return { ranges: [{ start: 0n, end: hashSpaceEnd }], replicaAt: () => replica, indexOfHash: () => 0 }
}

function hostShardSet(host: NodeHost): ShardSet {
  return {
    ranges: host.ranges,
    replicaAt: (index) => host.replicas[index]!,
    indexOfHash: (hash) => rangeIndexOf(host.ranges, hash),
  }
}
