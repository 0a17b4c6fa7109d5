import { Option } from 'commander'
import { KvClient, type KvClientInit } from '../../client/client.ts'
import { runCapDemo, type CapDemoResult } from '../cap/scenario.ts'
import { isStale, judge, promises, type Observation } from '../cap/verdict.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { parsePositive, type CommandSpec } from './command.ts'

/**
 * `kvctl cap-demo`: cuts a shard's leader off from every other node (kvd --allow-fault-injection),
 * runs every read and write level on both sides, heals, and prints the CAP table as observed, each
 * level's promise judged (cap/verdict.ts). Exit code 10 (PromiseBroken) when a promise was broken.
 */
export const capDemoCommand: CommandSpec = {
  name: 'cap-demo',
  arguments: '',
  summary:
    "cut a shard's leader off, try every level on both sides, heal, and print the CAP table as observed",
  kind: 'write',
  details: [
    'Needs a cluster of 3 or more nodes started with --allow-fault-injection (npm start runs one).',
    'The leader of the demo key is cut off from every other node; the table shows, for each level on',
    'each side, whether it was served or refused, stale or not, and after healing kept or lost, and',
    'whether the promise of docs/consistency.md held. Exit code 10 when a promise was broken. The',
    'partition is healed before the command ends, also when it fails.',
  ],
  options: [
    new Option('--key <prefix>', 'the demo keys (default: cap-demo/<time>)'),
    new Option('--bound-ms <n>', 'the bound of the bounded reads').argParser(parsePositive).default(500),
    new Option('--call-ms <n>', 'the budget of each call on the minority side')
      .argParser(parsePositive)
      .default(2_000),
    new Option('--settle-ms <n>', 'how long to wait for a new leader, and for convergence after healing')
      .argParser(parsePositive)
      .default(30_000),
  ],
  examples: ['kvctl cap-demo', 'kvctl --endpoints 127.0.0.1:7002 cap-demo -o json'],
  async run(ctx, _args, options) {
    const { tls, token, endpoints, dialTimeoutMs } = ctx.globals
    const connect = (init: KvClientInit): KvClient => {
      const full: KvClientInit = {
        ...init,
        ...(dialTimeoutMs !== undefined ? { dialTimeoutMs } : {}),
        ...(tls !== undefined ? { tls } : {}),
        ...(token !== undefined ? { token } : {}),
      }
      return ctx.io.connect?.(full) ?? new KvClient(full)
    }
    const result = await runCapDemo(
      {
        endpoints,
        key: (options['key'] as string | undefined) ?? `cap-demo/${ctx.clock.wallMs().toString(36)}`,
        boundMs: options['boundMs'] as number,
        callMs: options['callMs'] as number,
        settleMs: options['settleMs'] as number,
      },
      {
        connect,
        admin: ctx.adminOptions(),
        clock: ctx.clock,
        say: (line) => {
          if (ctx.format === 'table') ctx.io.stderr.write(`${line}\n`)
        },
      },
    )
    const broken = result.observations.filter((o) => !judge(o).kept).length
    ctx.print(ctx.format === 'json' ? json(capJson(result)) : capTable(result))
    return broken > 0 ? ExitCode.PromiseBroken : ExitCode.Ok
  },
}

function observed(o: Observation): string {
  if (o.outcome === 'served') return o.servedBy !== undefined ? `served by node ${o.servedBy}` : 'served'
  return `${o.outcome === 'unknown' ? 'unknown' : 'refused'} (${o.code ?? '?'})`
}

function staleCell(o: Observation): string {
  if (o.op !== 'read') return '-'
  const stale = isStale(o)
  if (stale === undefined) return '-'
  return `${stale ? 'stale' : 'fresh'} (v${o.version}, says ${o.stalenessMs} ms)`
}

function capTable(result: CapDemoResult): string {
  const rows = result.observations.map((o) => {
    const v = judge(o)
    return [
      o.side,
      String(o.node),
      `${o.op} ${o.level}`,
      observed(o),
      staleCell(o),
      o.op === 'write' ? (o.afterHeal ?? '-') : '-',
      v.kept ? 'kept' : `BROKEN: ${v.why}`,
    ]
  })
  const broken = result.observations.filter((o) => !judge(o).kept).length
  return [
    `shard ${result.shardId}: leader node ${result.leader} cut off from node ${result.cutOffFrom.join(', node ')}; ` +
      `the majority side wrote after ${Math.round(result.failoverMs)} ms; converged ${Math.round(result.convergedMs)} ms after healing`,
    table([['SIDE', 'NODE', 'CALL', 'OBSERVED', 'STALE', 'AFTER HEAL', 'PROMISE'], ...rows]),
    broken === 0 ? 'every level kept its promise' : `${broken} promise(s) broken`,
  ].join('\n')
}

function capJson(result: CapDemoResult): unknown {
  return {
    key: result.key,
    shardId: result.shardId,
    leader: result.leader,
    cutOffFrom: result.cutOffFrom,
    majorityNode: result.majorityNode,
    failoverMs: Math.round(result.failoverMs),
    convergedMs: Math.round(result.convergedMs),
    rows: result.observations.map((o) => {
      const v = judge(o)
      return {
        ...o,
        ...(o.op === 'read' ? { stale: isStale(o) ?? null } : {}),
        promise: promises[o.level],
        kept: v.kept,
        ...(v.kept ? {} : { why: v.why }),
      }
    }),
    broken: result.observations.filter((o) => !judge(o).kept).length,
  }
}
