/**
 * The kvd command line (bin/kvd.js calls `main`):
 *
 *     kvd --data DIR --listen HOST:PORT [--peer-listen HOST:PORT] [--http HOST:PORT]
 *         [--join HOST:PORT[,..]] [--node-id N] [--log-level L] [--log-format json|pretty]
 *         [--config FILE] [--limit NAME=VALUE ...]
 *         [--cert-file F --key-file F --ca-file F [--client-cert-auth]] [--auth-file F]
 *
 * Configuration precedence and fields: common/config.ts. Exit codes:
 *   0  clean shutdown (SIGTERM/SIGINT: drain, close, exit), also --help / --version
 *   1  failure (data dir locked by another kvd, address in use, storage error, broken invariant)
 *   2  bad command line or configuration
 * Failures print ONE line `kvd: <what went wrong>` on stderr (plus a structured log line), never
 * a stack. A second SIGTERM/SIGINT during the drain exits at once with 1.
 */
import { Command, CommanderError, Option } from 'commander'
import { setLogger } from '@grpc/grpc-js'
import { pino } from 'pino'
import { SystemClock } from '../common/clock-system.ts'
import { loadConfig, type ConfigFlags, type KvdConfig } from '../common/config.ts'
import { ErrorCode, isKvError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { createRootLogger } from '../common/logger-pino.ts'
import { StorageLockedError } from '../storage/index.ts'
import { fatalMessage } from './fatal.ts'
import { Kvd } from './kvd.ts'
import { packageVersion } from './paths.ts'

export const ExitCode = { Ok: 0, Failure: 1, BadConfig: 2 } as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

export interface MainIo {
  /** Where the one-line failure messages and help go (default: process.stderr / stdout). */
  readonly stderr?: (line: string) => void
  readonly stdout?: (text: string) => void
  /** Signals to handle; default process.on/off. */
  readonly signals?: Pick<NodeJS.Process, 'on' | 'off'>
}

/** Runs kvd until it is told to stop. Resolves with the exit code; never rejects. */
export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: MainIo = {},
): Promise<ExitCode> {
  const stderr = io.stderr ?? ((line: string) => process.stderr.write(`${line}\n`))
  const stdout = io.stdout ?? ((text: string) => process.stdout.write(text))
  const signals = io.signals ?? process
  const version = packageVersion()

  const program = new Command('kvd')
    .description('ringkv database node')
    .version(version)
    .addOption(new Option('--data <dir>', 'data directory (created if missing)'))
    .addOption(
      new Option('--listen <host:port>', 'client listener: KvService, AdminService (default 127.0.0.1:7001)'),
    )
    .addOption(
      new Option(
        '--peer-listen <host:port>',
        'peer listener: Raft, forwarded requests, meta calls between nodes (default: listen port + 100)',
      ),
    )
    .addOption(new Option('--advertise <host:port>', 'the client address others dial (default: --listen)'))
    .addOption(
      new Option(
        '--peer-advertise <host:port>',
        'the peer address other nodes dial (default: advertise host, peer-listen port)',
      ),
    )
    .addOption(
      new Option(
        '--cluster-name <name>',
        'the cluster name certificates carry: ringkv://NAME/... (default ringkv)',
      ),
    )
    .addOption(
      new Option(
        '--cert-file <file>',
        "this node's certificate (PEM): TLS on both listeners, mutual between peers",
      ),
    )
    .addOption(new Option('--key-file <file>', "this node's private key (PEM)"))
    .addOption(new Option('--ca-file <file>', 'the CA that issued node and client certificates (PEM)'))
    .addOption(
      new Option(
        '--client-cert-auth',
        'refuse clients without a certificate of the CA at the TLS handshake (no tokens)',
      ),
    )
    .addOption(
      new Option('--auth-file <file>', 'bearer tokens and role overrides (JSON; re-read while running)'),
    )
    .addOption(new Option('--http <host:port>', 'HTTP listen address for /metrics, /healthz, /readyz'))
    .addOption(
      new Option(
        '--join <host:port,...>',
        'nodes of an existing cluster to join through (the id is assigned)',
      ),
    )
    .addOption(new Option('--node-id <n>', 'this node id in a new cluster (default 1)'))
    .addOption(
      new Option(
        '--initial-cluster <id=host:port,...>',
        'the nodes of a new cluster, this node among them, each ID=HOST:PORT[/PEER_HOST:PEER_PORT][@ZONE] (default: this node alone)',
      ),
    )
    .addOption(new Option('--shards <n>', 'shards of a new cluster (default 64)'))
    .addOption(new Option('--replicas <n>', 'replicas of each shard (default 3)'))
    .addOption(new Option('--vnodes <n>', 'virtual nodes of a weight-1 node on the ring (default 128)'))
    .addOption(new Option('--meta-replicas <n>', 'replicas of the meta shard (default 3, at most 5)'))
    .addOption(new Option('--zone <zone>', "this node's failure-domain label"))
    .addOption(new Option('--weight <w>', "this node's relative capacity on the ring (default 1)"))
    .addOption(
      new Option('--heartbeat-ms <ms>', 'heartbeat to the meta shard and map refresh (default 1000)'),
    )
    .addOption(
      new Option(
        '--dead-after <duration>',
        'silence after which a node is dead and its replicas are re-created elsewhere: 90s, 5m, 1500ms (default 5m)',
      ),
    )
    .addOption(
      new Option(
        '--auto-rebalance <true|false>',
        'balance replicas onto joining nodes by itself (default true; false: plan only)',
      ),
    )
    .addOption(
      new Option(
        '--snapshot-rate <MiB/s>',
        'snapshot data this node sends per second, all moves and catch-ups together (default 32)',
      ),
    )
    .addOption(
      new Option(
        '--tick-ms <ms>',
        'Raft tick (default 100): a leader heartbeats every tick, a follower campaigns after 10-20 ticks of silence',
      ),
    )
    .addOption(new Option('--lease-reads', 'linearizable reads by leader lease instead of ReadIndex'))
    .addOption(
      new Option('--allow-fault-injection', 'accept the admin call that drops or delays peer traffic'),
    )
    .addOption(new Option('--log-level <level>', 'trace|debug|info|warn|error|fatal|silent (default info)'))
    .addOption(
      new Option(
        '--log-format <format>',
        'json (default: one JSON object per line) or pretty (one readable line per event)',
      ),
    )
    .addOption(
      new Option(
        '--restore <dir>',
        'seed a new cluster from this backup (kvctl backup create) on first start',
      ),
    )
    .addOption(new Option('--config <file>', 'JSON config file (flags > RINGKV_* env > file > defaults)'))
    .addOption(
      new Option('--limit <name=value>', 'tighten a limit of common/limits.ts (repeatable)').argParser(
        (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
      ),
    )
    .exitOverride()
    .configureOutput({
      writeOut: stdout,
      writeErr: (s) => stderr(`kvd: ${s.trimEnd().replace(/^error: /, '')}`),
    })
    .allowExcessArguments(false)

  try {
    program.parse(argv as string[], { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError)
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
        ? ExitCode.Ok
        : ExitCode.BadConfig
    throw err
  }
  const opts = program.opts<ConfigFlags>()

  let config: KvdConfig
  try {
    config = loadConfig({ flags: opts, env })
  } catch (err) {
    if (isKvError(err)) {
      stderr(`kvd: ${err.message}`)
      return ExitCode.BadConfig
    }
    throw err
  }

  // Synchronous stderr: log lines survive a process.exit right after them.
  const logger: Logger = createRootLogger({
    name: 'kvd',
    level: config.logLevel,
    format: config.logFormat,
    color: process.stderr.isTTY,
    destination: pino.destination({ fd: 2, sync: true }) as unknown as NodeJS.WritableStream,
  })
  // grpc-js writes its own diagnostics to stderr; route them into the log instead.
  setLogger({
    error: (...args: unknown[]) => logger.warn({ grpc: args.map(String).join(' ') }, 'grpc-js diagnostic'),
  })
  const kvd = new Kvd(
    { config, version },
    {
      clock: new SystemClock(),
      logger,
      onFatal: (err) => {
        stderr(`kvd: ${fatalMessage(err, config.dataDir)}`)
        process.exit(ExitCode.Failure)
      },
    },
  )

  try {
    await kvd.start()
  } catch (err) {
    logger.error({ err }, 'kvd failed to start')
    stderr(`kvd: ${startFailureMessage(err, config)}`)
    return ExitCode.Failure
  }

  return await new Promise<ExitCode>((resolve) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal, exiting without drain')
        process.exit(ExitCode.Failure)
      }
      stopping = true
      logger.info({ signal }, 'shutdown requested')
      kvd.stop().then(
        () => {
          signals.off('SIGTERM', onSignal)
          signals.off('SIGINT', onSignal)
          resolve(ExitCode.Ok)
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed')
          stderr(`kvd: shutdown failed: ${err instanceof Error ? err.message : String(err)}`)
          resolve(ExitCode.Failure)
        },
      )
    }
    signals.on('SIGTERM', onSignal)
    signals.on('SIGINT', onSignal)
  })
}

function startFailureMessage(err: unknown, config: KvdConfig): string {
  // Only the lock: other data-directory errors (an old format, a lost directory) say what they are.
  if (
    err instanceof StorageLockedError ||
    (isKvError(err) && err.code === ErrorCode.Unavailable && err.details?.field === 'dataDir')
  )
    return `data directory ${config.dataDir} is in use by another kvd process (its lock is held, and deleting RocksDB's LOCK file does not release it)`
  return err instanceof Error ? err.message : String(err)
}
