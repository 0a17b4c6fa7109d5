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
import { randomBytes } from 'node:crypto'
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
import { openLocalReplica, type Replica } from '../shard/index.ts'
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
      const clusterId = await loadOrCreateClusterId(config.dataDir)
      this.clusterIdHex = clusterId.toString('hex')
      const hasher = await loadHasher()
      this.replica = await (this.components.openReplica ?? openLocalReplica)(
        { nodeId: config.nodeId, shardId: ShardId(0) },
        { engine: this.engine, hasher, clock, logger: this.log, limits: config.limits },
      )
      const replica = this.replica

      const grpc = new Server({
        'grpc.max_receive_message_length': config.limits.grpcMessageBytesMax,
        'grpc.max_send_message_length': config.limits.grpcMessageBytesMax,
      })
      this.grpc = grpc
      grpc.addService(
        kvServiceDefinition,
        createKvService({
          replica,
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
      grpc.addService(raftServiceDefinition, createRaftService())
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
      // is cut (forceShutdown), which also ends the wait on the gate.
      let cut: () => void = () => {}
      const timedOut = new Promise<void>((resolve) => (cut = resolve))
      const timer = this.components.clock.setTimer(drainMs, () => {
        this.log.warn({ inFlight: this.gate.inFlight }, 'drain timed out, cutting calls')
        grpc.forceShutdown()
        cut()
      })
      await Promise.all([
        new Promise<void>((resolve) => grpc.tryShutdown(() => resolve())),
        Promise.race([this.gate.idle(), timedOut]),
      ])
      timer.cancel()
      this.grpc = undefined
    }
    await this.http?.close()
    this.http = undefined
    await this.replica?.close()
    this.replica = undefined
    await this.engine?.close()
    this.engine = undefined
  }

  private fatal(err: AssertionError): void {
    this.log.fatal({ err }, 'broken invariant')
    if (this.components.onFatal !== undefined) this.components.onFatal(err)
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
export async function loadOrCreateClusterId(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, clusterIdFile)
  try {
    const text = (await readFile(path, 'utf8')).trim()
    if (!new RegExp(`^[0-9a-f]{${clusterIdBytes * 2}}$`).test(text))
      throw new KvError(ErrorCode.Internal, `${path} is corrupt (expected ${clusterIdBytes * 2} hex digits)`)
    return Buffer.from(text, 'hex')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = randomBytes(clusterIdBytes)
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
