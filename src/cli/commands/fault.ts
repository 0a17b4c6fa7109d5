import { InvalidArgumentError, Option } from 'commander'
import { injectFault, type FaultRequest } from '../../client/admin-fault.ts'
import { usageError } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { parseUint, type CommandSpec } from './command.ts'

/** Commander parser for a list of node ids: `2,3`. */
export function parseNodeIds(value: string): number[] {
  const ids = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
  if (ids.length === 0) throw new InvalidArgumentError('expected node ids, e.g. 2,3')
  return ids.map((s) => {
    if (!/^\d+$/.test(s)) throw new InvalidArgumentError(`bad node id '${s}'`)
    const n = Number(s)
    if (!Number.isSafeInteger(n) || n === 0) throw new InvalidArgumentError(`bad node id '${s}'`)
    return n
  })
}

/**
 * `kvctl fault`: drop or delay one node's peer traffic (needs kvd --allow-fault-injection), and
 * print the faults in force on it afterwards.
 */
export const faultCommand: CommandSpec = {
  name: 'fault',
  arguments: '',
  summary: "drop or delay a node's Raft traffic to and from chosen peers (kvd --allow-fault-injection)",
  kind: 'write',
  options: [
    new Option('--node-endpoint <host:port>', 'the node whose traffic to change').makeOptionMandatory(),
    new Option(
      '--isolate <ids>',
      'drop all traffic to and from these peers (node ids, comma-separated)',
    ).argParser(parseNodeIds),
    new Option('--peers <ids>', 'the peers for --delay-ms or --clear (node ids, comma-separated)').argParser(
      parseNodeIds,
    ),
    new Option('--delay-ms <n>', 'delay traffic to and from the peers by this many milliseconds').argParser(
      parseUint,
    ),
    new Option('--clear', 'remove the faults of --peers (of every peer without --peers)'),
  ],
  examples: [
    'kvctl fault --node-endpoint 127.0.0.1:7001 --isolate 2,3',
    'kvctl fault --node-endpoint 127.0.0.1:7001 --peers 2 --delay-ms 200',
    'kvctl fault --node-endpoint 127.0.0.1:7001 --clear',
    'kvctl fault --node-endpoint 127.0.0.1:7001   # list the faults in force',
  ],
  async run(ctx, _args, options) {
    const endpoint = options['nodeEndpoint'] as string
    if (!/^[^\s/]+:\d+$/.test(endpoint))
      throw usageError(`bad --node-endpoint '${endpoint}': expected host:port`)
    const request = faultRequest(options)
    const faults = await injectFault(endpoint, request, ctx.adminOptions())
    if (ctx.format === 'json') {
      ctx.print(json({ endpoint, faults }))
    } else if (faults.length === 0) {
      ctx.print(`no faults in force on ${endpoint}`)
    } else {
      ctx.print(
        table([
          ['PEER', 'DROP', 'DELAY MS'],
          ...faults.map((f) => [String(f.peer), f.drop ? 'yes' : 'no', String(f.delayMs)]),
        ]),
      )
    }
    return ExitCode.Ok
  },
}

/** The request the flags ask for; contradictory flags are usage errors. */
function faultRequest(options: Readonly<Record<string, unknown>>): FaultRequest {
  const isolate = options['isolate'] as number[] | undefined
  const peers = options['peers'] as number[] | undefined
  const delayMs = options['delayMs'] as number | undefined
  const clear = options['clear'] === true
  if (clear) {
    if (isolate !== undefined || delayMs !== undefined)
      throw usageError('--clear takes only --peers (or nothing: every peer)')
    return { clear: true, ...(peers !== undefined ? { peers } : {}) }
  }
  if (isolate !== undefined) {
    if (peers !== undefined)
      throw usageError('give the peers either with --isolate or with --peers, not both')
    return { peers: isolate, drop: true, ...(delayMs !== undefined ? { delayMs } : {}) }
  }
  if (peers !== undefined) {
    if (delayMs === undefined || delayMs === 0)
      throw usageError('--peers needs --delay-ms N (or --clear); to cut peers off use --isolate')
    return { peers, delayMs }
  }
  if (delayMs !== undefined) throw usageError('--delay-ms needs --peers (or --isolate)')
  return {}
}
