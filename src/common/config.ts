/**
 * kvd configuration: command-line flags, `RINGKV_*` environment variables and an optional JSON
 * file (`--config path.json` or `RINGKV_CONFIG`), with the precedence
 *
 *     flags > environment > file > defaults
 *
 * Every field is validated here. Bad input is a KvError INVALID_ARGUMENT whose `details.field`
 * names the field (`listen`, `nodeId`, `limits.valueBytesMax`, ...) and whose message is one line
 * fit to print; it is never an exception with a stack. Limits may only be tightened
 * (STYLE.md 7.5): a value above the built-in one is refused, and the relationships asserted in
 * limits.ts must still hold afterwards.
 *
 * | field      | flag           | environment             | file key     | default                  |
 * |------------|----------------|-------------------------|--------------|--------------------------|
 * | dataDir    | --data DIR     | RINGKV_DATA_DIR         | dataDir      | (required)               |
 * | listen     | --listen H:P   | RINGKV_LISTEN           | listen       | 127.0.0.1:7001           |
 * | httpListen | --http H:P     | RINGKV_HTTP_LISTEN      | httpListen   | listen host, port + 1000 |
 * | nodeId     | --node-id N    | RINGKV_NODE_ID          | nodeId       | 1 (assigned with --join) |
 * | logLevel   | --log-level L  | RINGKV_LOG_LEVEL        | logLevel     | info                     |
 * | logFormat  | --log-format F | RINGKV_LOG_FORMAT       | logFormat    | json (or pretty)         |
 * | join       | --join H:P,..  | RINGKV_JOIN             | join         | none                     |
 * | initialCluster | --initial-cluster 1=H:P,2=H:P,.. | RINGKV_INITIAL_CLUSTER | initialCluster | this node alone |
 * | shardCount | --shards N     | RINGKV_SHARDS           | shardCount   | 64                       |
 * | replicaCount | --replicas N | RINGKV_REPLICAS         | replicaCount | 3                        |
 * | vnodesPerNode | --vnodes N  | RINGKV_VNODES           | vnodesPerNode | 128                     |
 * | metaReplicas | --meta-replicas N | RINGKV_META_REPLICAS | metaReplicas | 3                      |
 * | zone       | --zone Z       | RINGKV_ZONE             | zone         | none                     |
 * | weight     | --weight W     | RINGKV_WEIGHT           | weight       | 1                        |
 * | heartbeatMs | --heartbeat-ms N | RINGKV_HEARTBEAT_MS   | heartbeatMs  | 1000                     |
 * | deadAfterMs | --dead-after D | RINGKV_DEAD_AFTER      | deadAfter    | 5m (D: 90s, 5m, 1500ms; a bare number is seconds) |
 * | autoRebalance | --auto-rebalance B | RINGKV_AUTO_REBALANCE | autoRebalance | true             |
 * | snapshotRateMiBps | --snapshot-rate MIB | RINGKV_SNAPSHOT_RATE | snapshotRate | 32 (MiB/s) |
 * | allowFaultInjection | --allow-fault-injection | RINGKV_ALLOW_FAULT_INJECTION=1 | allowFaultInjection | false |
 * | leaseReads | --lease-reads  | RINGKV_LEASE_READS=1    | leaseReads   | false                    |
 * | tickMs     | --tick-ms N    | RINGKV_TICK_MS          | tickMs       | 100                      |
 * | limits.X   | --limit X=N    | RINGKV_LIMIT_<X_SNAKE>  | limits.X     | common/limits.ts         |
 * | peerListen | --peer-listen H:P | RINGKV_PEER_LISTEN   | peerListen   | listen host, port + 100  |
 * | advertise  | --advertise H:P | RINGKV_ADVERTISE       | advertise    | --listen (the --initial-cluster entry) |
 * | peerAdvertise | --peer-advertise H:P | RINGKV_PEER_ADVERTISE | peerAdvertise | advertise host, peer-listen port |
 * | clusterName | --cluster-name N | RINGKV_CLUSTER_NAME  | clusterName  | ringkv                   |
 * | certFile   | --cert-file F  | RINGKV_CERT_FILE        | certFile     | none (plaintext)         |
 * | keyFile    | --key-file F   | RINGKV_KEY_FILE         | keyFile      | none                     |
 * | caFile     | --ca-file F    | RINGKV_CA_FILE          | caFile       | none                     |
 * | clientCertAuth | --client-cert-auth | RINGKV_CLIENT_CERT_AUTH=1 | clientCertAuth | false    |
 * | authFile   | --auth-file F  | RINGKV_AUTH_FILE        | authFile     | none                     |
 * | restoreDir | --restore DIR  | RINGKV_RESTORE          | restoreDir   | none (a new cluster seeded from a backup) |
 *
 * The client listener (--listen) serves clients; the peer listener (--peer-listen) serves other
 * nodes (Raft, forwarded requests, meta calls), so the two can be firewalled apart. Each node of
 * --initial-cluster is `ID=HOST:PORT[/PEER_HOST:PEER_PORT][@ZONE]`: its client address, and its
 * peer address when that is not the same host at port + 100. The TLS files go together (all three
 * or none); with them both listeners speak TLS and peers authenticate each other (net/).
 *
 * (e.g. `--limit valueBytesMax=65536` or `RINGKV_LIMIT_VALUE_BYTES_MAX=65536`). A listen port of
 * 0 asks the OS for a free port; with listen port 0 the default HTTP port is 0 too.
 */
import { readFileSync } from 'node:fs'
import { ErrorCode, KvError } from './errors.ts'
import { NodeId } from './ids.ts'
import { limits as defaultLimits, tightenLimits, type Limits } from './limits.ts'
import type { LogLevel as PinoLogLevel } from './logger-pino.ts'

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof logLevels)[number] & PinoLogLevel
/** json: one JSON object per line (for machines); pretty: one readable line per event (for people). */
export const logFormats = ['json', 'pretty'] as const
export type LogFormat = (typeof logFormats)[number]

export interface HostPort {
  readonly host: string
  readonly port: number
}

export interface KvdConfig {
  readonly dataDir: string
  readonly listen: HostPort
  /** Where other nodes' traffic is served (Raft, forwarded requests, meta calls). */
  readonly peerListen: HostPort
  /** This node's client address as others and clients dial it (the registry's `address`). */
  readonly advertise: string
  /** This node's peer address as other nodes dial it (the registry's `peerAddress`). */
  readonly peerAdvertise: string
  /** The cluster name certificates must carry (net/identity.ts). */
  readonly clusterName: string
  /** TLS: this node's certificate, its key, and the CA of nodes and clients (all or none). */
  readonly certFile: string | undefined
  readonly keyFile: string | undefined
  readonly caFile: string | undefined
  /** The client listener refuses clients without a certificate of the CA at the handshake. */
  readonly clientCertAuth: boolean
  /** Bearer tokens and role overrides (net/auth-file.ts). */
  readonly authFile: string | undefined
  readonly httpListen: HostPort
  readonly nodeId: NodeId
  readonly logLevel: LogLevel
  readonly logFormat: LogFormat
  /** True when --node-id (or its env/file key) was given. */
  readonly nodeIdGiven: boolean
  /**
   * Nodes of an existing cluster to join through (any of them). A node without an id in its data
   * directory registers with the meta shard through them and gets its id; with an id it rejoins.
   */
  readonly join: readonly string[]
  /**
   * The nodes of a new cluster, by node id (this node among them). Every member starts with the
   * same list and computes the same placement of shards on them (hashing/placement). Default: this
   * node alone at `listen`.
   */
  readonly initialCluster: ReadonlyMap<NodeId, HostPort>
  /** The zone of each initial node (`ID=HOST:PORT@ZONE`), '' when not given. */
  readonly initialZones: ReadonlyMap<NodeId, string>
  /** The peer address of each initial node (`ID=HOST:PORT/PEER_HOST:PEER_PORT`, else host:port + 100). */
  readonly initialPeers: ReadonlyMap<NodeId, HostPort>
  /** Shards a new cluster is cut into (equal slices of the hash space). Fixed at bootstrap. */
  readonly shardCount: number
  /** Replicas of each data shard (distinct nodes, distinct zones while enough exist). */
  readonly replicaCount: number
  /** Virtual nodes of a weight-1 node on the ring. */
  readonly vnodesPerNode: number
  /** Replicas of the meta shard in a new cluster. */
  readonly metaReplicas: number
  /** This node's failure-domain label ('' = none); with --initial-cluster, its @ZONE wins. */
  readonly zone: string
  /** This node's relative capacity on the ring. */
  readonly weight: number
  /** How often this node reports to the meta shard and refreshes its shard map. */
  readonly heartbeatMs: number
  /** Silence after which the meta leader declares a node dead and re-creates its replicas elsewhere. */
  readonly deadAfterMs: number
  /** The meta leader balances replicas by itself (false: it plans balance moves but does not run them). */
  readonly autoRebalance: boolean
  /** MiB per second of snapshot data this node sends, all streams together (moves, catch-up). */
  readonly snapshotRateMiBps: number
  /** Accept the admin call that drops or delays traffic to chosen peers (tests and demos only). */
  readonly allowFaultInjection: boolean
  /** Linearizable reads use the leader lease instead of a ReadIndex round (needs bounded clock drift). */
  readonly leaseReads: boolean
  /** One Raft tick; elections take electionTicks of these. */
  readonly tickMs: number
  /** The effective limits (the defaults, tightened by the overrides). */
  readonly limits: Readonly<Limits>
  /** Only the limits the configuration changed. */
  readonly limitOverrides: Readonly<Partial<Limits>>
  /** The config file that was read, if any. */
  readonly configFile: string | undefined
  /** A backup directory a new cluster's replicas are seeded from on first start (not with --join). */
  readonly restoreDir: string | undefined
}

/** Raw flag values as commander hands them over (all strings; absent when not given). */
export interface ConfigFlags {
  readonly data?: string | undefined
  readonly listen?: string | undefined
  readonly http?: string | undefined
  readonly join?: string | undefined
  readonly nodeId?: string | undefined
  readonly logLevel?: string | undefined
  readonly logFormat?: string | undefined
  readonly config?: string | undefined
  readonly limit?: readonly string[] | undefined
  readonly initialCluster?: string | undefined
  readonly shards?: string | undefined
  readonly allowFaultInjection?: boolean | undefined
  readonly leaseReads?: boolean | undefined
  readonly tickMs?: string | undefined
  readonly replicas?: string | undefined
  readonly vnodes?: string | undefined
  readonly metaReplicas?: string | undefined
  readonly zone?: string | undefined
  readonly weight?: string | undefined
  readonly heartbeatMs?: string | undefined
  readonly deadAfter?: string | undefined
  readonly autoRebalance?: string | undefined
  readonly snapshotRate?: string | undefined
  readonly peerListen?: string | undefined
  readonly advertise?: string | undefined
  readonly peerAdvertise?: string | undefined
  readonly clusterName?: string | undefined
  readonly certFile?: string | undefined
  readonly keyFile?: string | undefined
  readonly caFile?: string | undefined
  readonly clientCertAuth?: boolean | undefined
  readonly authFile?: string | undefined
  readonly restore?: string | undefined
}

export interface LoadConfigInput {
  readonly flags: ConfigFlags
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads the config file; defaults to the file system (injected by tests). */
  readonly readFile?: (path: string) => string
}

export const defaultListen: HostPort = { host: '127.0.0.1', port: 7001 }
/** The HTTP port defaults to the gRPC port plus this. */
export const httpPortOffset = 1000
/** The peer port defaults to the client port plus this (also for --initial-cluster entries). */
export const peerPortOffset = 100
export const clusterNameDefault = 'ringkv'
/** Cluster names (net/identity.ts clusterNamePattern). */
const clusterNamePattern = /^[a-z0-9][a-z0-9.-]{0,62}$/

/** The default peer address of a node whose client address is `client`: same host, port + 100. */
export function defaultPeerAddress(client: HostPort): HostPort {
  return { host: client.host, port: client.port === 0 ? 0 : client.port + peerPortOffset }
}

const fileKeys = new Set([
  'dataDir',
  'listen',
  'httpListen',
  'nodeId',
  'logLevel',
  'logFormat',
  'join',
  'limits',
  'initialCluster',
  'shardCount',
  'allowFaultInjection',
  'leaseReads',
  'tickMs',
  'replicaCount',
  'vnodesPerNode',
  'metaReplicas',
  'zone',
  'weight',
  'heartbeatMs',
  'deadAfter',
  'autoRebalance',
  'snapshotRate',
  'peerListen',
  'advertise',
  'peerAdvertise',
  'clusterName',
  'certFile',
  'keyFile',
  'caFile',
  'clientCertAuth',
  'authFile',
  'restoreDir',
])

/** Defaults and bounds of the cluster settings. */
export const shardCountDefault = 64
export const shardCountMax = 4096
export const tickMsDefault = 100
export const tickMsRange = { min: 10, max: 1000 } as const
/** Nodes listed by --initial-cluster (more join later with --join). */
export const initialClusterMax = 64
export const replicaCountDefault = 3
/** Voters of one group: 7 is past any sane replica count. */
export const replicaCountMax = 7
export const vnodesPerNodeDefault = 128
export const vnodesPerNodeConfigMax = 4096
export const metaReplicasDefault = 3
export const metaReplicasMax = 5
export const zoneBytesMax = 64
export const weightMax = 1024
export const heartbeatMsDefault = 1000
export const heartbeatMsRange = { min: 50, max: 60_000 } as const
/** Minutes, not seconds, by default: a restart must not cause a storm of repairs. */
export const deadAfterMsDefault = 5 * 60_000
export const deadAfterMsRange = { min: 1000, max: 7 * 24 * 3_600_000 } as const
export const snapshotRateMiBpsDefault = defaultLimits.snapshotBytesPerSecondDefault / (1024 * 1024)
export const snapshotRateMiBpsRange = { min: 1, max: 4096 } as const

/** A value and where it came from, so an error can say which source was wrong. */
interface Sourced {
  readonly value: unknown
  readonly source: string
}

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

/** `valueBytesMax` -> `VALUE_BYTES_MAX`. */
export function limitEnvName(name: keyof Limits): string {
  return `RINGKV_LIMIT_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`
}

/** Builds and validates the configuration. Throws KvError INVALID_ARGUMENT with details.field. */
export function loadConfig(input: LoadConfigInput): KvdConfig {
  const { flags, env } = input
  const readFile = input.readFile ?? ((path: string) => readFileSync(path, 'utf8'))

  const configFile = nonEmpty(flags.config) ?? nonEmpty(env['RINGKV_CONFIG'])
  const file = configFile === undefined ? {} : readConfigFile(configFile, readFile)
  const fileSource = `config file ${configFile ?? ''}`

  const pick = (
    flag: string | undefined,
    flagName: string,
    envName: string,
    fileKey: string,
  ): Sourced | undefined => {
    if (flag !== undefined) return { value: flag, source: flagName }
    const fromEnv = env[envName]
    if (fromEnv !== undefined && fromEnv !== '') return { value: fromEnv, source: envName }
    if (fileKey in file) return { value: file[fileKey], source: `${fileSource} key ${fileKey}` }
    return undefined
  }

  const dataDirRaw = pick(flags.data, '--data', 'RINGKV_DATA_DIR', 'dataDir')
  if (dataDirRaw === undefined) throw invalid('dataDir', 'a data directory is required (--data DIR)')
  const dataDir = parseString(dataDirRaw, 'dataDir')

  const listenRaw = pick(flags.listen, '--listen', 'RINGKV_LISTEN', 'listen')
  const listen = listenRaw === undefined ? defaultListen : parseHostPort(listenRaw, 'listen')

  const httpRaw = pick(flags.http, '--http', 'RINGKV_HTTP_LISTEN', 'httpListen')
  let httpListen: HostPort
  if (httpRaw !== undefined) httpListen = parseHostPort(httpRaw, 'httpListen')
  else if (listen.port === 0) httpListen = { host: listen.host, port: 0 }
  else {
    const port = listen.port + httpPortOffset
    if (port > 65535)
      throw invalid(
        'httpListen',
        `--listen port ${listen.port} leaves no default HTTP port; give --http HOST:PORT`,
      )
    httpListen = { host: listen.host, port }
  }
  if (listen.port !== 0 && httpListen.port === listen.port && httpListen.host === listen.host)
    throw invalid('httpListen', `--http ${formatHostPort(httpListen)} is the same address as --listen`)

  const peerRaw = pick(flags.peerListen, '--peer-listen', 'RINGKV_PEER_LISTEN', 'peerListen')
  let peerListen: HostPort
  if (peerRaw !== undefined) peerListen = parseHostPort(peerRaw, 'peerListen')
  else {
    peerListen = defaultPeerAddress(listen)
    if (peerListen.port > 65535)
      throw invalid(
        'peerListen',
        `--listen port ${listen.port} leaves no default peer port; give --peer-listen HOST:PORT`,
      )
  }
  for (const [other, name] of [
    [listen, '--listen'],
    [httpListen, '--http'],
  ] as const)
    if (peerListen.port !== 0 && peerListen.port === other.port && peerListen.host === other.host)
      throw invalid(
        'peerListen',
        `--peer-listen ${formatHostPort(peerListen)} is the same address as ${name}`,
      )

  const nodeIdRaw = pick(flags.nodeId, '--node-id', 'RINGKV_NODE_ID', 'nodeId')
  const nodeId = nodeIdRaw === undefined ? NodeId(1) : parseNodeId(nodeIdRaw)
  const nodeIdGiven = nodeIdRaw !== undefined

  const logLevelRaw = pick(flags.logLevel, '--log-level', 'RINGKV_LOG_LEVEL', 'logLevel')
  const logLevel = logLevelRaw === undefined ? 'info' : parseLogLevel(logLevelRaw)
  const logFormatRaw = pick(flags.logFormat, '--log-format', 'RINGKV_LOG_FORMAT', 'logFormat')
  const logFormat = logFormatRaw === undefined ? 'json' : parseLogFormat(logFormatRaw)

  const joinRaw = pick(flags.join, '--join', 'RINGKV_JOIN', 'join')
  const join = joinRaw === undefined ? [] : parseJoin(joinRaw)

  const initialRaw = pick(
    flags.initialCluster,
    '--initial-cluster',
    'RINGKV_INITIAL_CLUSTER',
    'initialCluster',
  )
  const advertiseRaw = pick(flags.advertise, '--advertise', 'RINGKV_ADVERTISE', 'advertise')
  const advertiseGiven = advertiseRaw === undefined ? undefined : parseHostPort(advertiseRaw, 'advertise')
  const peerAdvertiseRaw = pick(
    flags.peerAdvertise,
    '--peer-advertise',
    'RINGKV_PEER_ADVERTISE',
    'peerAdvertise',
  )
  const peerAdvertiseGiven =
    peerAdvertiseRaw === undefined ? undefined : parseHostPort(peerAdvertiseRaw, 'peerAdvertise')
  const initial =
    initialRaw === undefined
      ? {
          members: new Map([[nodeId, advertiseGiven ?? listen]]),
          zones: new Map<NodeId, string>(),
          peers: new Map([
            [nodeId, peerAdvertiseGiven ?? { host: (advertiseGiven ?? listen).host, port: peerListen.port }],
          ]),
        }
      : parseInitialCluster(initialRaw)
  const initialCluster = initial.members
  if (join.length > 0 && initialRaw !== undefined)
    throw invalid(
      'join',
      '--join and --initial-cluster exclude each other: join an existing cluster or start a new one',
    )
  if (join.length > 0 && nodeIdGiven)
    throw invalid('nodeId', '--node-id cannot be given with --join: the cluster assigns the id')
  if (!initialCluster.has(nodeId))
    throw invalid('initialCluster', `--initial-cluster does not list this node (--node-id ${nodeId})`)
  // This node's addresses: its --initial-cluster entry (which --advertise must not contradict),
  // else --advertise, else what it listens on.
  const ownClient = join.length > 0 ? (advertiseGiven ?? listen) : initialCluster.get(nodeId)!
  const ownPeer =
    join.length > 0
      ? (peerAdvertiseGiven ?? { host: ownClient.host, port: peerListen.port })
      : initial.peers.get(nodeId)!
  if (advertiseGiven !== undefined && formatHostPort(advertiseGiven) !== formatHostPort(ownClient))
    throw invalid(
      'advertise',
      `--advertise ${formatHostPort(advertiseGiven)} is not this node's --initial-cluster entry ${formatHostPort(ownClient)}`,
    )
  if (peerAdvertiseGiven !== undefined && formatHostPort(peerAdvertiseGiven) !== formatHostPort(ownPeer))
    throw invalid(
      'peerAdvertise',
      `--peer-advertise ${formatHostPort(peerAdvertiseGiven)} is not this node's peer address in --initial-cluster (${formatHostPort(ownPeer)})`,
    )
  if (
    initialRaw !== undefined &&
    peerRaw !== undefined &&
    peerAdvertiseGiven === undefined &&
    peerListen.port !== ownPeer.port
  )
    throw invalid(
      'peerListen',
      `--peer-listen port ${peerListen.port} is not this node's peer port in --initial-cluster (${formatHostPort(ownPeer)}); ` +
        'list it as ID=HOST:PORT/PEER_HOST:PEER_PORT, or give --peer-advertise',
    )
  const clusterNameRaw = pick(flags.clusterName, '--cluster-name', 'RINGKV_CLUSTER_NAME', 'clusterName')
  const clusterName =
    clusterNameRaw === undefined ? clusterNameDefault : parseString(clusterNameRaw, 'clusterName')
  if (!clusterNamePattern.test(clusterName))
    throw invalid('clusterName', `a cluster name is 1..63 of a-z 0-9 . -, starting with a letter or digit`)
  const fileOf = (
    flag: string | undefined,
    flagName: string,
    envName: string,
    key: string,
  ): string | undefined => {
    const raw = pick(flag, flagName, envName, key)
    return raw === undefined ? undefined : parseString(raw, key)
  }
  const certFile = fileOf(flags.certFile, '--cert-file', 'RINGKV_CERT_FILE', 'certFile')
  const keyFile = fileOf(flags.keyFile, '--key-file', 'RINGKV_KEY_FILE', 'keyFile')
  const caFile = fileOf(flags.caFile, '--ca-file', 'RINGKV_CA_FILE', 'caFile')
  const authFile = fileOf(flags.authFile, '--auth-file', 'RINGKV_AUTH_FILE', 'authFile')
  const tlsGiven = [certFile, keyFile, caFile].filter((f) => f !== undefined).length
  if (tlsGiven !== 0 && tlsGiven !== 3)
    throw invalid(
      certFile === undefined ? 'certFile' : keyFile === undefined ? 'keyFile' : 'caFile',
      '--cert-file, --key-file and --ca-file go together (all three, or none for plaintext)',
    )
  const clientCertRaw = pick(
    flags.clientCertAuth === true ? 'true' : undefined,
    '--client-cert-auth',
    'RINGKV_CLIENT_CERT_AUTH',
    'clientCertAuth',
  )
  const clientCertAuth = clientCertRaw === undefined ? false : parseBool(clientCertRaw, 'clientCertAuth')
  if (clientCertAuth && tlsGiven === 0)
    throw invalid('clientCertAuth', '--client-cert-auth needs --cert-file, --key-file and --ca-file')
  const replicasRaw = pick(flags.replicas, '--replicas', 'RINGKV_REPLICAS', 'replicaCount')
  const replicaCount =
    replicasRaw === undefined
      ? replicaCountDefault
      : parseIntIn(replicasRaw, 'replicaCount', 1, replicaCountMax)
  const vnodesRaw = pick(flags.vnodes, '--vnodes', 'RINGKV_VNODES', 'vnodesPerNode')
  const vnodesPerNode =
    vnodesRaw === undefined
      ? vnodesPerNodeDefault
      : parseIntIn(vnodesRaw, 'vnodesPerNode', 1, vnodesPerNodeConfigMax)
  const metaRaw = pick(flags.metaReplicas, '--meta-replicas', 'RINGKV_META_REPLICAS', 'metaReplicas')
  const metaReplicas =
    metaRaw === undefined ? metaReplicasDefault : parseIntIn(metaRaw, 'metaReplicas', 1, metaReplicasMax)
  const zoneRaw = pick(flags.zone, '--zone', 'RINGKV_ZONE', 'zone')
  const zone = initial.zones.get(nodeId) ?? (zoneRaw === undefined ? '' : parseZone(zoneRaw, 'zone'))
  const weightRaw = pick(flags.weight, '--weight', 'RINGKV_WEIGHT', 'weight')
  const weight = weightRaw === undefined ? 1 : parseWeight(weightRaw)
  const heartbeatRaw = pick(flags.heartbeatMs, '--heartbeat-ms', 'RINGKV_HEARTBEAT_MS', 'heartbeatMs')
  const heartbeatMs =
    heartbeatRaw === undefined
      ? heartbeatMsDefault
      : parseIntIn(heartbeatRaw, 'heartbeatMs', heartbeatMsRange.min, heartbeatMsRange.max)

  const deadRaw = pick(flags.deadAfter, '--dead-after', 'RINGKV_DEAD_AFTER', 'deadAfter')
  const deadAfterMs = deadRaw === undefined ? deadAfterMsDefault : parseDuration(deadRaw, 'deadAfter')
  const autoRaw = pick(flags.autoRebalance, '--auto-rebalance', 'RINGKV_AUTO_REBALANCE', 'autoRebalance')
  const autoRebalance = autoRaw === undefined ? true : parseBool(autoRaw, 'autoRebalance')

  const rateRaw = pick(flags.snapshotRate, '--snapshot-rate', 'RINGKV_SNAPSHOT_RATE', 'snapshotRate')
  const snapshotRateMiBps =
    rateRaw === undefined
      ? snapshotRateMiBpsDefault
      : parseIntIn(rateRaw, 'snapshotRate', snapshotRateMiBpsRange.min, snapshotRateMiBpsRange.max)

  const shardsRaw = pick(flags.shards, '--shards', 'RINGKV_SHARDS', 'shardCount')
  const shardCount =
    shardsRaw === undefined ? shardCountDefault : parseIntIn(shardsRaw, 'shardCount', 1, shardCountMax)
  const tickRaw = pick(flags.tickMs, '--tick-ms', 'RINGKV_TICK_MS', 'tickMs')
  const tickMs =
    tickRaw === undefined ? tickMsDefault : parseIntIn(tickRaw, 'tickMs', tickMsRange.min, tickMsRange.max)
  const faultRaw = pick(
    flags.allowFaultInjection === true ? 'true' : undefined,
    '--allow-fault-injection',
    'RINGKV_ALLOW_FAULT_INJECTION',
    'allowFaultInjection',
  )
  const allowFaultInjection = faultRaw === undefined ? false : parseBool(faultRaw, 'allowFaultInjection')
  const leaseRaw = pick(
    flags.leaseReads === true ? 'true' : undefined,
    '--lease-reads',
    'RINGKV_LEASE_READS',
    'leaseReads',
  )
  const leaseReads = leaseRaw === undefined ? false : parseBool(leaseRaw, 'leaseReads')

  const restoreDir = fileOf(flags.restore, '--restore', 'RINGKV_RESTORE', 'restoreDir')
  if (restoreDir !== undefined && join.length > 0)
    throw invalid(
      'restoreDir',
      '--restore makes a new cluster (with --initial-cluster); it cannot --join one',
    )

  const limitOverrides = parseLimits(flags.limit ?? [], env, file['limits'], fileSource)
  checkLimitRelations({ ...defaultLimits, ...limitOverrides })

  return {
    dataDir,
    listen,
    peerListen,
    advertise: formatHostPort(ownClient),
    peerAdvertise: formatHostPort(ownPeer),
    clusterName,
    certFile,
    keyFile,
    caFile,
    clientCertAuth,
    authFile,
    httpListen,
    nodeId,
    nodeIdGiven,
    logLevel,
    logFormat,
    join,
    initialCluster,
    initialZones: initial.zones,
    initialPeers: initial.peers,
    shardCount,
    replicaCount,
    vnodesPerNode,
    metaReplicas,
    zone,
    weight,
    heartbeatMs,
    deadAfterMs,
    autoRebalance,
    snapshotRateMiBps,
    allowFaultInjection,
    leaseReads,
    tickMs,
    limits: tightenLimits(limitOverrides),
    limitOverrides,
    configFile,
    restoreDir,
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === '' ? undefined : s
}

function readConfigFile(path: string, readFile: (path: string) => string): Record<string, unknown> {
  let text: string
  try {
    text = readFile(path)
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message
    throw invalid('config', `cannot read config file ${path}: ${reason}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw invalid('config', `config file ${path} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw invalid('config', `config file ${path} must hold a JSON object`)
  for (const key of Object.keys(parsed))
    if (!fileKeys.has(key)) throw invalid(key, `config file ${path}: unknown key ${JSON.stringify(key)}`)
  return parsed as Record<string, unknown>
}

function parseString(raw: Sourced, field: string): string {
  if (typeof raw.value !== 'string' || raw.value.trim() === '')
    throw invalid(field, `${raw.source} must be a non-empty string`)
  return raw.value
}

/** Parses `host:port`, `[v6]:port`; port in [0, 65535]. */
export function parseHostPort(raw: Sourced, field: string): HostPort {
  const text = parseString(raw, field).trim()
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text)
  const host = match?.[1] ?? match?.[2]
  const port = Number(match?.[3])
  if (host === undefined || !Number.isInteger(port) || port > 65535)
    throw invalid(
      field,
      `${raw.source} must be HOST:PORT with a port in 0..65535, got ${JSON.stringify(text)}`,
    )
  return { host, port }
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`
}

function parseNodeId(raw: Sourced): NodeId {
  const n =
    typeof raw.value === 'number' ? raw.value : typeof raw.value === 'string' ? strictInt(raw.value) : NaN
  if (!Number.isSafeInteger(n) || n < 1)
    throw invalid('nodeId', `${raw.source} must be a positive integer, got ${JSON.stringify(raw.value)}`)
  return NodeId(n)
}

function parseLogLevel(raw: Sourced): LogLevel {
  const level = typeof raw.value === 'string' ? raw.value.toLowerCase() : raw.value
  if (!(logLevels as readonly unknown[]).includes(level))
    throw invalid(
      'logLevel',
      `${raw.source} must be one of ${logLevels.join(', ')}, got ${JSON.stringify(raw.value)}`,
    )
  return level as LogLevel
}

function parseLogFormat(raw: Sourced): LogFormat {
  const format = typeof raw.value === 'string' ? raw.value.toLowerCase() : raw.value
  if (!(logFormats as readonly unknown[]).includes(format))
    throw invalid(
      'logFormat',
      `${raw.source} must be one of ${logFormats.join(', ')}, got ${JSON.stringify(raw.value)}`,
    )
  return format as LogFormat
}

function parseJoin(raw: Sourced): string[] {
  const items =
    typeof raw.value === 'string'
      ? raw.value.split(',').map((s) => s.trim())
      : Array.isArray(raw.value)
        ? (raw.value as unknown[])
        : undefined
  if (items === undefined) throw invalid('join', `${raw.source} must be HOST:PORT[,HOST:PORT...]`)
  return items
    .filter((item) => item !== '')
    .map((item) => formatHostPort(parseHostPort({ value: item, source: raw.source }, 'join')))
}

/**
 * `1=host:port,2=host:port/peerhost:peerport@zone-b`: distinct positive ids and distinct
 * addresses, at most initialClusterMax, each with an optional peer address (default: same host,
 * port + 100) and an optional zone label.
 */
function parseInitialCluster(raw: Sourced): {
  members: Map<NodeId, HostPort>
  zones: Map<NodeId, string>
  peers: Map<NodeId, HostPort>
} {
  const text = parseString(raw, 'initialCluster')
  const out = new Map<NodeId, HostPort>()
  const zones = new Map<NodeId, string>()
  const peers = new Map<NodeId, HostPort>()
  const seen = new Set<string>()
  for (const item of text.split(',').map((s) => s.trim())) {
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq <= 0)
      throw invalid(
        'initialCluster',
        `${raw.source} must be ID=HOST:PORT[/PEER_HOST:PEER_PORT][@ZONE][,...], got ${JSON.stringify(item)}`,
      )
    const id = parseNodeId({ value: item.slice(0, eq), source: raw.source })
    const at = item.indexOf('@', eq)
    if (at > 0) zones.set(id, parseZone({ value: item.slice(at + 1), source: raw.source }, 'initialCluster'))
    const addresses = at > 0 ? item.slice(eq + 1, at) : item.slice(eq + 1)
    const slash = addresses.indexOf('/')
    const addr = parseHostPort(
      { value: slash < 0 ? addresses : addresses.slice(0, slash), source: raw.source },
      'initialCluster',
    )
    const peer =
      slash < 0
        ? defaultPeerAddress(addr)
        : parseHostPort({ value: addresses.slice(slash + 1), source: raw.source }, 'initialCluster')
    if (out.has(id)) throw invalid('initialCluster', `${raw.source} lists node ${id} twice`)
    for (const a of [addr, peer]) {
      const key = formatHostPort(a)
      if (seen.has(key)) throw invalid('initialCluster', `${raw.source} lists ${key} twice`)
      if (a.port === 0 || a.port > 65535)
        throw invalid('initialCluster', `${raw.source}: ${key} needs a real port`)
      seen.add(key)
    }
    out.set(id, addr)
    peers.set(id, peer)
  }
  if (out.size === 0 || out.size > initialClusterMax)
    throw invalid('initialCluster', `${raw.source} must list 1..${initialClusterMax} nodes, got ${out.size}`)
  return { members: out, zones, peers }
}

function parseZone(raw: Sourced, field: string): string {
  const text = parseString(raw, field).trim()
  if (Buffer.byteLength(text) > zoneBytesMax || !/^[A-Za-z0-9._-]+$/.test(text))
    throw invalid(
      field,
      `${raw.source}: a zone is 1..${zoneBytesMax} of A-Z a-z 0-9 . _ -, got ${JSON.stringify(text)}`,
    )
  return text
}

function parseWeight(raw: Sourced): number {
  const n =
    typeof raw.value === 'number' ? raw.value : typeof raw.value === 'string' ? Number(raw.value) : NaN
  if (!Number.isFinite(n) || n <= 0 || n > weightMax)
    throw invalid(
      'weight',
      `${raw.source} must be a number in (0, ${weightMax}], got ${JSON.stringify(raw.value)}`,
    )
  return n
}

function parseIntIn(raw: Sourced, field: string, min: number, max: number): number {
  const n =
    typeof raw.value === 'number' ? raw.value : typeof raw.value === 'string' ? strictInt(raw.value) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw invalid(
      field,
      `${raw.source} must be an integer in ${min}..${max}, got ${JSON.stringify(raw.value)}`,
    )
  return n
}

/** A duration: `1500ms`, `90s`, `5m`, `1h`, or a bare number of seconds; within deadAfterMsRange. */
function parseDuration(raw: Sourced, field: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
  const text =
    typeof raw.value === 'number' ? String(raw.value) : typeof raw.value === 'string' ? raw.value : ''
  const match = /^(\d{1,12})(ms|s|m|h)?$/.exec(text.trim())
  const ms = match === null ? NaN : Number(match[1]) * units[match[2] ?? 's']!
  if (!Number.isSafeInteger(ms) || ms < deadAfterMsRange.min || ms > deadAfterMsRange.max)
    throw invalid(
      field,
      `${raw.source} must be a duration such as 90s, 5m or 1500ms, from ${deadAfterMsRange.min / 1000} s to ${deadAfterMsRange.max / 86_400_000} days, got ${JSON.stringify(raw.value)}`,
    )
  return ms
}

function parseBool(raw: Sourced, field: string): boolean {
  if (typeof raw.value === 'boolean') return raw.value
  const text = typeof raw.value === 'string' ? raw.value.trim().toLowerCase() : ''
  if (['1', 'true', 'yes'].includes(text)) return true
  if (['0', 'false', 'no'].includes(text)) return false
  throw invalid(field, `${raw.source} must be true or false, got ${JSON.stringify(raw.value)}`)
}

/** A decimal integer written plainly (no `1e3`, `0x10`, blanks or signs). */
function strictInt(s: string): number {
  return /^\d+$/.test(s.trim()) ? Number(s.trim()) : NaN
}

function isLimitName(name: string): name is keyof Limits {
  return Object.hasOwn(defaultLimits, name)
}

function parseLimits(
  flagItems: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  fileLimits: unknown,
  fileSource: string,
): Partial<Limits> {
  const out: Partial<Limits> = {}
  const set = (name: string, value: unknown, source: string): void => {
    if (!isLimitName(name))
      throw invalid(`limits.${name}`, `${source}: unknown limit ${JSON.stringify(name)}`)
    const n = typeof value === 'number' ? value : typeof value === 'string' ? strictInt(value) : NaN
    if (!Number.isSafeInteger(n) || n < 1)
      throw invalid(
        `limits.${name}`,
        `${source}: limit ${name} must be a positive integer, got ${JSON.stringify(value)}`,
      )
    if (n > defaultLimits[name])
      throw invalid(
        `limits.${name}`,
        `${source}: limit ${name} may only be tightened (at most ${defaultLimits[name]}), got ${n}`,
      )
    out[name] = n
  }
  // Lowest precedence first; later sources overwrite.
  if (fileLimits !== undefined) {
    if (typeof fileLimits !== 'object' || fileLimits === null || Array.isArray(fileLimits))
      throw invalid('limits', `${fileSource} key limits must be an object`)
    for (const [name, value] of Object.entries(fileLimits))
      set(name, value, `${fileSource} key limits.${name}`)
  }
  for (const name of Object.keys(defaultLimits) as (keyof Limits)[]) {
    const envName = limitEnvName(name)
    const value = env[envName]
    if (value !== undefined && value !== '') set(name, value, envName)
  }
  for (const item of flagItems) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw invalid('limits', `--limit must be NAME=VALUE, got ${JSON.stringify(item)}`)
    set(item.slice(0, eq), item.slice(eq + 1), `--limit ${item.slice(0, eq)}`)
  }
  return out
}

/** The relationships limits.ts asserts for the defaults, checked again after tightening. */
function checkLimitRelations(l: Limits): void {
  const rules: [boolean, keyof Limits, string][] = [
    [
      l.proposalBytesMax >= l.keyBytesMax + l.valueBytesMax,
      'proposalBytesMax',
      'keyBytesMax + valueBytesMax',
    ],
    [l.appendBytesMax >= l.proposalBytesMax, 'appendBytesMax', 'proposalBytesMax'],
    [l.grpcMessageBytesMax >= l.appendBytesMax, 'grpcMessageBytesMax', 'appendBytesMax'],
    [l.grpcMessageBytesMax > l.batchBytesMax, 'grpcMessageBytesMax', 'batchBytesMax'],
    [l.scanLimitMax >= l.scanPageEntriesMax, 'scanLimitMax', 'scanPageEntriesMax'],
    [
      l.requestDeadlineMsMax >= l.requestDeadlineMsDefault,
      'requestDeadlineMsMax',
      'requestDeadlineMsDefault',
    ],
    [l.exportChunkBytes >= l.keyBytesMax, 'exportChunkBytes', 'keyBytesMax'],
  ]
  for (const [ok, name, other] of rules)
    if (!ok) throw invalid(`limits.${name}`, `limit ${name} (${l[name]}) must stay at least ${other}`)
}
