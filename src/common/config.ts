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
 * | nodeId     | --node-id N    | RINGKV_NODE_ID          | nodeId       | 1                        |
 * | logLevel   | --log-level L  | RINGKV_LOG_LEVEL        | logLevel     | info                     |
 * | join       | --join H:P,..  | RINGKV_JOIN             | join         | none                     |
 * | initialCluster | --initial-cluster 1=H:P,2=H:P,.. | RINGKV_INITIAL_CLUSTER | initialCluster | this node alone |
 * | shardCount | --shards N     | RINGKV_SHARDS           | shardCount   | 8                        |
 * | allowFaultInjection | --allow-fault-injection | RINGKV_ALLOW_FAULT_INJECTION=1 | allowFaultInjection | false |
 * | leaseReads | --lease-reads  | RINGKV_LEASE_READS=1    | leaseReads   | false                    |
 * | tickMs     | --tick-ms N    | RINGKV_TICK_MS          | tickMs       | 100                      |
 * | limits.X   | --limit X=N    | RINGKV_LIMIT_<X_SNAKE>  | limits.X     | common/limits.ts         |
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

export interface HostPort {
  readonly host: string
  readonly port: number
}

export interface KvdConfig {
  readonly dataDir: string
  readonly listen: HostPort
  readonly httpListen: HostPort
  readonly nodeId: NodeId
  readonly logLevel: LogLevel
  /** Seed nodes of an existing cluster to join. Stored only: joining lands with the meta shard. */
  readonly join: readonly string[]
  /**
   * The voters of a new cluster, by node id (this node among them). Every member starts with the
   * same list and creates every shard with these voters. Default: this node alone at `listen`.
   */
  readonly initialCluster: ReadonlyMap<NodeId, HostPort>
  /** Shards a new cluster is cut into (equal slices of the hash space). Fixed at bootstrap. */
  readonly shardCount: number
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
}

/** Raw flag values as commander hands them over (all strings; absent when not given). */
export interface ConfigFlags {
  readonly data?: string | undefined
  readonly listen?: string | undefined
  readonly http?: string | undefined
  readonly join?: string | undefined
  readonly nodeId?: string | undefined
  readonly logLevel?: string | undefined
  readonly config?: string | undefined
  readonly limit?: readonly string[] | undefined
  readonly initialCluster?: string | undefined
  readonly shards?: string | undefined
  readonly allowFaultInjection?: boolean | undefined
  readonly leaseReads?: boolean | undefined
  readonly tickMs?: string | undefined
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

const fileKeys = new Set([
  'dataDir',
  'listen',
  'httpListen',
  'nodeId',
  'logLevel',
  'join',
  'limits',
  'initialCluster',
  'shardCount',
  'allowFaultInjection',
  'leaseReads',
  'tickMs',
])

/** Defaults and bounds of the cluster settings. */
export const shardCountDefault = 8
export const shardCountMax = 4096
export const tickMsDefault = 100
export const tickMsRange = { min: 10, max: 1000 } as const
/** Voters of one group: Raft needs an odd count to be useful; 7 is past any sane replica count. */
export const initialClusterMax = 7

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

  const nodeIdRaw = pick(flags.nodeId, '--node-id', 'RINGKV_NODE_ID', 'nodeId')
  const nodeId = nodeIdRaw === undefined ? NodeId(1) : parseNodeId(nodeIdRaw)

  const logLevelRaw = pick(flags.logLevel, '--log-level', 'RINGKV_LOG_LEVEL', 'logLevel')
  const logLevel = logLevelRaw === undefined ? 'info' : parseLogLevel(logLevelRaw)

  const joinRaw = pick(flags.join, '--join', 'RINGKV_JOIN', 'join')
  const join = joinRaw === undefined ? [] : parseJoin(joinRaw)

  const initialRaw = pick(
    flags.initialCluster,
    '--initial-cluster',
    'RINGKV_INITIAL_CLUSTER',
    'initialCluster',
  )
  const initialCluster =
    initialRaw === undefined ? new Map([[nodeId, listen]]) : parseInitialCluster(initialRaw)
  if (!initialCluster.has(nodeId))
    throw invalid('initialCluster', `--initial-cluster does not list this node (--node-id ${nodeId})`)

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

  const limitOverrides = parseLimits(flags.limit ?? [], env, file['limits'], fileSource)
  checkLimitRelations({ ...defaultLimits, ...limitOverrides })

  return {
    dataDir,
    listen,
    httpListen,
    nodeId,
    logLevel,
    join,
    initialCluster,
    shardCount,
    allowFaultInjection,
    leaseReads,
    tickMs,
    limits: tightenLimits(limitOverrides),
    limitOverrides,
    configFile,
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

/** `1=host:port,2=host:port`: distinct positive ids and distinct addresses, at most initialClusterMax. */
function parseInitialCluster(raw: Sourced): Map<NodeId, HostPort> {
  const text = parseString(raw, 'initialCluster')
  const out = new Map<NodeId, HostPort>()
  const seen = new Set<string>()
  for (const item of text.split(',').map((s) => s.trim())) {
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq <= 0)
      throw invalid(
        'initialCluster',
        `${raw.source} must be ID=HOST:PORT[,ID=HOST:PORT...], got ${JSON.stringify(item)}`,
      )
    const id = parseNodeId({ value: item.slice(0, eq), source: raw.source })
    const addr = parseHostPort({ value: item.slice(eq + 1), source: raw.source }, 'initialCluster')
    const key = formatHostPort(addr)
    if (out.has(id)) throw invalid('initialCluster', `${raw.source} lists node ${id} twice`)
    if (seen.has(key)) throw invalid('initialCluster', `${raw.source} lists ${key} twice`)
    if (addr.port === 0) throw invalid('initialCluster', `${raw.source}: ${key} needs a real port`)
    seen.add(key)
    out.set(id, addr)
  }
  if (out.size === 0 || out.size > initialClusterMax)
    throw invalid('initialCluster', `${raw.source} must list 1..${initialClusterMax} nodes, got ${out.size}`)
  return out
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
    [l.replicaWriteQueueMax >= l.groupCommitCommandsMax, 'replicaWriteQueueMax', 'groupCommitCommandsMax'],
    [l.groupCommitBytesMax >= l.proposalBytesMax, 'groupCommitBytesMax', 'proposalBytesMax'],
    [l.exportChunkBytes >= l.keyBytesMax, 'exportChunkBytes', 'keyBytesMax'],
  ]
  for (const [ok, name, other] of rules)
    if (!ok) throw invalid(`limits.${name}`, `limit ${name} (${l[name]}) must stay at least ${other}`)
}
