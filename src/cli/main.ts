/**
 * kvctl: the operator and developer CLI over the public API (ARCHITECTURE.md section 1).
 *
 * `main(argv, io)` runs one invocation with injected I/O and resolves with the exit code; it
 * never calls process.exit and never prints a stack. bin/kvctl.js wires it to the process.
 *
 * @example
 * $ kvctl --endpoints 127.0.0.1:7001 put greeting hello
 * $ kvctl get greeting --consistency eventual -o json
 */
import { readFile } from 'node:fs/promises'
import { Command, CommanderError, Option } from 'commander'
import type { ClientTls } from '../net/index.ts'
import { writeConsistencies, readConsistencies } from '../client/types.ts'
import { backupCommand } from './commands/backup.ts'
import { certsCommand } from './commands/certs.ts'
import { delCommand } from './commands/del.ts'
import { endpointCommand } from './commands/endpoint.ts'
import { faultCommand } from './commands/fault.ts'
import { capDemoCommand } from './commands/cap-demo.ts'
import { getCommand } from './commands/get.ts'
import { putCommand } from './commands/put.ts'
import { nodeCommand, rebalanceCommand } from './commands/rebalance.ts'
import { ringCommand } from './commands/ring.ts'
import { scanCommand } from './commands/scan.ts'
import { shardsCommand } from './commands/shards.ts'
import { statusCommand } from './commands/status.ts'
import { packageVersion } from '../common/package-paths.ts'
import { limits } from '../common/limits.ts'
import { parsePositive, type CommandSpec } from './commands/command.ts'
import { CliContext, endpointsDefault, usageError, type CliIo, type GlobalOptions } from './context.ts'
import { ExitCode, exitCodeForError, exitCodesHelp } from './exit-codes.ts'
import { errorText, errorView, outputFormats, type OutputFormat } from './output.ts'
import { explainUnreachable } from './unreachable.ts'

export type { CliIo } from './context.ts'

/**
 * Every global flag and the variable that gives its default (a flag wins over its variable). A
 * boolean variable is on for 1/true/yes and off for 0/false/no/empty; anything else is a usage error.
 */
export const globalFlagEnv: readonly { readonly flag: string; readonly key: string; readonly env: string }[] =
  [
    { flag: '--endpoints', key: 'endpoints', env: 'KVCTL_ENDPOINTS' },
    { flag: '--output', key: 'output', env: 'KVCTL_OUTPUT' },
    { flag: '--consistency', key: 'consistency', env: 'KVCTL_CONSISTENCY' },
    { flag: '--max-staleness-ms', key: 'maxStalenessMs', env: 'KVCTL_MAX_STALENESS_MS' },
    { flag: '--deadline-ms', key: 'deadlineMs', env: 'KVCTL_DEADLINE_MS' },
    { flag: '--dial-timeout-ms', key: 'dialTimeoutMs', env: 'KVCTL_DIAL_TIMEOUT_MS' },
    { flag: '--route', key: 'route', env: 'KVCTL_ROUTE' },
    { flag: '--zone', key: 'zone', env: 'KVCTL_ZONE' },
    { flag: '--ca-file', key: 'caFile', env: 'KVCTL_CA_FILE' },
    { flag: '--cert-file', key: 'certFile', env: 'KVCTL_CERT_FILE' },
    { flag: '--key-file', key: 'keyFile', env: 'KVCTL_KEY_FILE' },
    { flag: '--server-name', key: 'serverName', env: 'KVCTL_SERVER_NAME' },
    { flag: '--token', key: 'token', env: 'KVCTL_TOKEN' },
    { flag: '--verbose', key: 'verbose', env: 'KVCTL_VERBOSE' },
  ]

/** The command table. */
export const commands: readonly CommandSpec[] = [
  putCommand,
  getCommand,
  delCommand,
  scanCommand,
  statusCommand,
  endpointCommand,
  shardsCommand,
  ringCommand,
  faultCommand,
  capDemoCommand,
  certsCommand,
  nodeCommand,
  rebalanceCommand,
  backupCommand,
]

/** Runs kvctl with `argv` (without node and the script path) and resolves with the exit code. */
export async function main(argv: readonly string[], io: CliIo): Promise<ExitCode> {
  let exitCode: ExitCode = ExitCode.Ok
  let jsonErrors = false
  const program = buildProgram(io, {
    setExitCode: (code) => (exitCode = code),
    setJsonErrors: (json) => (jsonErrors = json),
  })
  try {
    await program.parseAsync([...argv], { from: 'user' })
    return exitCode
  } catch (err) {
    if (err instanceof CommanderError) return exitCodeForCommander(err)
    io.stderr.write(`${errorText(errorView(err), jsonErrors ? 'json' : 'table')}\n`)
    return exitCodeForError(err, 'read')
  }
}

function exitCodeForCommander(err: CommanderError): ExitCode {
  switch (err.code) {
    case 'commander.helpDisplayed':
    case 'commander.version':
      return ExitCode.Ok
    default:
      // Usage errors, and `kvctl` without a command (help shown on stderr).
      return ExitCode.Usage
  }
}

interface ProgramHooks {
  setExitCode(code: ExitCode): void
  setJsonErrors(json: boolean): void
}

function buildProgram(io: CliIo, hooks: ProgramHooks): Command {
  const program = new Command('kvctl')
  program
    .description('ringkv command-line client: read and write keys, inspect nodes')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // One line, in the same form as every other error.
      outputError: (s, write) =>
        write(
          `${errorText({ code: 'USAGE', message: `${s.replace(/^error:\s*/i, '').trim()} (see kvctl --help)` }, 'table')}\n`,
        ),
    })
    .addOption(
      new Option(
        '--endpoints <list>',
        `comma-separated host:port of kvd nodes [env KVCTL_ENDPOINTS]`,
      ).default(undefined, endpointsDefault),
    )
    .addOption(
      new Option(
        '-o, --output <format>',
        'table or json (default: table on a terminal, json otherwise)',
      ).choices(outputFormats),
    )
    .addOption(
      new Option(
        '--consistency <level>',
        `reads: ${readConsistencies.join('|')} (default linearizable); writes: ${writeConsistencies.join('|')} (default majority)`,
      ),
    )
    .addOption(
      new Option('--max-staleness-ms <ms>', 'bound for bounded reads (implies bounded)').argParser(
        parsePositive,
      ),
    )
    .addOption(
      new Option('--deadline-ms <ms>', 'time budget of the call, retries included').argParser(parsePositive),
    )
    .addOption(
      new Option(
        '--dial-timeout-ms <ms>',
        `how long to wait for a connection to an endpoint before trying the next (default ${limits.dialTimeoutMsDefault})`,
      ).argParser(parsePositive),
    )
    .addOption(
      new Option(
        '--route',
        "route each request to its shard's leader or a nearby replica by the cluster's shard map (default: send everything to the endpoint given, which forwards)",
      ),
    )
    .addOption(new Option('--zone <zone>', 'with --route: weaker reads prefer replicas in this zone'))
    .addOption(
      new Option(
        '--ca-file <file>',
        "TLS: the CA that issued the nodes' certificates (PEM) [env KVCTL_CA_FILE]",
      ),
    )
    .addOption(
      new Option(
        '--cert-file <file>',
        'TLS: a client certificate to authenticate with (PEM; kvctl certs client) [env KVCTL_CERT_FILE]',
      ),
    )
    .addOption(
      new Option('--key-file <file>', "TLS: the client certificate's key (PEM) [env KVCTL_KEY_FILE]"),
    )
    .addOption(
      new Option(
        '--server-name <name>',
        "TLS: check the nodes' certificates against this name, not the endpoint's host [env KVCTL_SERVER_NAME]",
      ),
    )
    .addOption(
      new Option(
        '--token <token>',
        'a bearer token (kvd --auth-file; kvctl certs token); prefer the environment [env KVCTL_TOKEN]',
      ),
    )
    .addOption(
      new Option(
        '-v, --verbose',
        'table output: also print who served each answer (node, shard, applied index, level, staleness) on stderr',
      ),
    )
    .version(packageVersion(), '--version', 'print the version of kvctl and exit')
    .addHelpText(
      'after',
      `\n${exitCodesHelp}\n\nEnvironment (each gives its flag's default; the flag wins):\n` +
        globalFlagEnv.map((e) => `  ${e.env.padEnd(24)}${e.flag}`).join('\n') +
        '\n',
    )
    .showSuggestionAfterError(true)

  for (const spec of commands) addCommand(program, spec, io, hooks)
  return program
}

function addCommand(parent: Command, spec: CommandSpec, io: CliIo, hooks: ProgramHooks): void {
  const command = parent.command([spec.name, spec.arguments].filter((s) => s !== '').join(' '))
  command.description(spec.summary)
  for (const alias of spec.aliases ?? []) command.alias(alias)
  for (const option of spec.options ?? []) command.addOption(option)
  if (spec.details !== undefined) command.addHelpText('after', `\n${spec.details.join('\n')}\n`)
  if (spec.examples !== undefined) {
    command.addHelpText('after', `\nExamples:\n${spec.examples.map((e) => `  $ ${e}`).join('\n')}\n`)
  }
  for (const sub of spec.subcommands ?? []) addCommand(command, sub, io, hooks)
  command.action(async (...actionArgs: unknown[]) => {
    const self = actionArgs[actionArgs.length - 1] as Command
    const args = self.args
    const globals = await globalOptions(self.optsWithGlobals(), io)
    hooks.setJsonErrors(globals.output === 'json')
    const ctx = new CliContext(io, globals)
    try {
      hooks.setExitCode(await spec.run(ctx, args, self.opts()))
    } catch (failure) {
      const err = await explainUnreachable(ctx, failure)
      io.stderr.write(`${errorText(errorView(err), ctx.format)}\n`)
      hooks.setExitCode(exitCodeForError(err, spec.kind))
    } finally {
      ctx.close()
    }
  })
}

async function globalOptions(opts: Record<string, unknown>, io: CliIo): Promise<GlobalOptions> {
  const env = (key: string): string | undefined => {
    const name = globalFlagEnv.find((e) => e.key === key)?.env
    return name === undefined ? undefined : nonEmpty(io.env[name])
  }
  const envName = (key: string): string => globalFlagEnv.find((e) => e.key === key)?.env ?? key
  const raw = (opts['endpoints'] as string | undefined) ?? env('endpoints') ?? endpointsDefault
  const endpoints = raw
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '')
  if (endpoints.length === 0) throw usageError('--endpoints needs at least one host:port')
  for (const e of endpoints) {
    if (!/^[^\s/]+:\d+$/.test(e)) throw usageError(`bad endpoint '${e}': expected host:port`)
  }
  const outputEnv = env('output')
  if (outputEnv !== undefined && !(outputFormats as readonly string[]).includes(outputEnv))
    throw usageError(`${envName('output')} must be one of ${outputFormats.join(', ')}; got '${outputEnv}'`)
  const output =
    (opts['output'] as OutputFormat | undefined) ??
    (outputEnv as OutputFormat | undefined) ??
    (io.stdout.isTTY === true ? 'table' : 'json')
  const number = (key: string): number | undefined => {
    if (opts[key] !== undefined) return opts[key] as number
    const text = env(key)
    if (text === undefined) return undefined
    try {
      return parsePositive(text)
    } catch {
      throw usageError(`${envName(key)} must be a positive integer; got '${text}'`)
    }
  }
  const flag = (key: string): boolean => {
    if (opts[key] === true) return true
    const text = env(key)?.toLowerCase()
    if (text === undefined || ['0', 'false', 'no'].includes(text)) return false
    if (['1', 'true', 'yes'].includes(text)) return true
    throw usageError(`${envName(key)} must be 1 or 0 (true/false, yes/no); got '${text}'`)
  }
  return {
    endpoints,
    output,
    consistency: (opts['consistency'] as string | undefined) ?? env('consistency'),
    maxStalenessMs: number('maxStalenessMs'),
    deadlineMs: number('deadlineMs'),
    dialTimeoutMs: number('dialTimeoutMs'),
    verbose: flag('verbose'),
    route: flag('route'),
    zone: (opts['zone'] as string | undefined) ?? env('zone'),
    tls: await tlsOptions(opts, io),
    token: nonEmpty((opts['token'] as string | undefined) ?? io.env['KVCTL_TOKEN']),
  }
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim()
}

/** The TLS flags (or their KVCTL_* variables), files read; undefined: plaintext. */
async function tlsOptions(opts: Record<string, unknown>, io: CliIo): Promise<ClientTls | undefined> {
  const flag = (name: string, env: string): string | undefined =>
    nonEmpty((opts[name] as string | undefined) ?? io.env[env])
  const caFile = flag('caFile', 'KVCTL_CA_FILE')
  const certFile = flag('certFile', 'KVCTL_CERT_FILE')
  const keyFile = flag('keyFile', 'KVCTL_KEY_FILE')
  const serverName = flag('serverName', 'KVCTL_SERVER_NAME')
  if (caFile === undefined) {
    if (certFile !== undefined || keyFile !== undefined || serverName !== undefined)
      throw usageError('--cert-file, --key-file and --server-name need --ca-file (TLS)')
    return undefined
  }
  if ((certFile === undefined) !== (keyFile === undefined))
    throw usageError('--cert-file and --key-file go together')
  const read = io.readFile ?? ((path: string) => readFile(path))
  const load = async (path: string, what: string): Promise<Uint8Array> => {
    try {
      return await read(path)
    } catch (err) {
      throw usageError(
        `cannot read the ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      )
    }
  }
  return {
    ca: await load(caFile, 'CA file'),
    ...(certFile === undefined ? {} : { cert: await load(certFile, 'certificate') }),
    ...(keyFile === undefined ? {} : { key: await load(keyFile, 'key') }),
    ...(serverName === undefined ? {} : { serverName }),
  }
}
