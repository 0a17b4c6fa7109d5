/**
 * `kvctl rebalance plan|status|pause|resume|cancel` and `kvctl node drain|undrain|remove`: the
 * rebalancing job on the meta leader and a node's lifecycle (docs/rebalancing.md, docs/operations.md
 * "Decommissioning a node").
 *
 * `rebalance status` prints the job (state, moves done of total, percent, bytes, rate, ETA, why it
 * waits), each running move's step and reason, and the next planned moves with why each waits;
 * `--watch` redraws it every second until the job ends. `node drain` refuses at once (exit 7, the
 * blocking shards listed) when the other nodes cannot hold the node's replicas.
 */
import { Option } from 'commander'
import {
  nodeAction,
  rebalance,
  type NodeAction,
  type RebalanceResponse,
} from '../../client/admin-rebalance.ts'
import { moveFromWire } from '../../client/admin-moves.ts'
import type { CliContext } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { formatBytes } from './cluster-view.ts'
import { parsePositive, type CommandSpec } from './command.ts'
import { moveLine } from './moves.ts'

/** How often `status --watch` redraws. */
const watchMs = 1000
/** Planned moves a table shows (JSON shows every one the answer lists). */
const plannedShownMax = 20

/**
 * Percent, rate and ETA of the job, from its counters and the clock. The ETA: the bytes left (the
 * planned moves' and the running moves' unsent ones) at the rate observed so far; before any byte
 * was counted, the meta leader's estimate at the snapshot throttle; without sizes, the time a move
 * took so far times the moves left.
 */
export function progressOf(
  r: RebalanceResponse,
  nowMs: number,
): {
  total: number
  ended: number
  percent: number
  rateBps: number
  etaS: number | null
  bytesLeft: number
} {
  const job = r.job
  const runningLeft = r.running.reduce((sum, m) => sum + Math.max(0, m.bytesTotal - m.bytesSent), 0)
  if (job === undefined)
    return {
      total: 0,
      ended: 0,
      percent: 100,
      rateBps: 0,
      etaS: r.plannedMs > 0 ? Math.ceil(r.plannedMs / 1000) : null,
      bytesLeft: r.plannedBytes + runningLeft,
    }
  const ended = job.done + job.failed
  const open = job.state === 'running' || job.state === 'paused'
  const total = ended + r.running.length + (open ? r.plannedTotal : 0)
  const percent = total === 0 ? 100 : Math.floor((ended / total) * 100)
  const elapsedS = Math.max(1, ((job.finishedMs > 0 ? job.finishedMs : nowMs) - job.createdMs) / 1000)
  const rateBps = job.bytes / elapsedS
  const perMoveS = ended > 0 ? elapsedS / ended : null
  const left = total - ended
  const bytesLeft = (open ? r.plannedBytes : 0) + runningLeft
  const sized = r.plannedUnsized === 0 && bytesLeft > 0
  const etaS = !open
    ? null
    : sized && rateBps > 0
      ? Math.round(bytesLeft / rateBps)
      : sized && r.plannedMs > 0
        ? Math.ceil(r.plannedMs / 1000)
        : perMoveS !== null
          ? Math.round(left * perMoveS)
          : null
  return { total, ended, percent, rateBps, etaS, bytesLeft }
}

function describe(ctx: CliContext, r: RebalanceResponse): string[] {
  const lines: string[] = []
  const p = progressOf(r, ctx.clock.wallMs())
  const job = r.job
  if (job === undefined) lines.push('no rebalancing job yet')
  else {
    lines.push(
      `job ${job.id} (${job.trigger}): ${job.state}, ${p.ended}/${p.total} moves (${p.percent}%), ${job.failed} failed, ` +
        `${formatBytes(job.bytes)} moved, ${formatBytes(p.rateBps)}/s` +
        (p.etaS === null ? '' : `, ETA ${p.etaS} s`),
    )
    if (job.reason !== '') lines.push(`  waiting: ${job.reason}`)
  }
  if (r.safeMode !== '') lines.push(`SAFE MODE: ${r.safeMode}`)
  lines.push(
    `under-replicated shards: ${r.underReplicated}; blocked: ${r.blocked}; auto-rebalance: ${r.autoRebalance ? 'on' : 'off (plan only)'}`,
  )
  for (const m of r.running) lines.push(`  ${moveLine(moveFromWire(m))}`)
  if (r.plannedTotal > 0) {
    lines.push(`planned: ${r.plannedTotal} moves${plannedSize(r)}`)
    lines.push(
      table([
        ['SHARD', 'FROM', 'TO', 'REASON', 'BYTES', 'WAITING'],
        ...r.planned
          .slice(0, plannedShownMax)
          .map((m) => [
            String(m.shardId),
            m.fromNode === 0 ? '-' : String(m.fromNode),
            String(m.toNode),
            m.reason,
            m.bytes > 0 ? formatBytes(m.bytes) : '-',
            m.wait === '' ? '-' : m.wait,
          ]),
      ]),
    )
    if (r.plannedTotal > plannedShownMax) lines.push(`... and ${r.plannedTotal - plannedShownMax} more`)
  }
  return lines
}

/** ", 1.2 GiB (3 of unknown size), about 40 s at 32 MiB/s a sending node" for the planned line. */
function plannedSize(r: RebalanceResponse): string {
  if (r.plannedBytes === 0 && r.plannedUnsized === 0) return ''
  const unsized = r.plannedUnsized > 0 ? ` (${r.plannedUnsized} of unknown size)` : ''
  const time =
    r.plannedMs > 0 && r.snapshotRateBps > 0
      ? `, about ${Math.ceil(r.plannedMs / 1000)} s at ${formatBytes(r.snapshotRateBps)}/s a sending node`
      : ''
  return `, ${formatBytes(r.plannedBytes)}${unsized}${time}`
}

function print(ctx: CliContext, r: RebalanceResponse): void {
  if (ctx.format === 'json') ctx.print(json({ ...r, progress: progressOf(r, ctx.clock.wallMs()) }))
  else for (const line of describe(ctx, r)) ctx.print(line)
}

function steerCommand(action: 'pause' | 'resume' | 'cancel', summary: string): CommandSpec {
  return {
    name: action,
    arguments: '',
    summary,
    kind: 'write',
    examples: [`kvctl rebalance ${action}`],
    async run(ctx) {
      print(ctx, await rebalance(ctx.globals.endpoints, action, ctx.adminOptions()))
      return ExitCode.Ok
    },
  }
}

const rebalanceStatusCommand: CommandSpec = {
  name: 'status',
  arguments: '',
  summary: 'the rebalancing job: progress, rate, ETA, running moves and why planned ones wait',
  kind: 'read',
  options: [new Option('--watch', 'on a terminal, redraw every second until the job ends')],
  examples: ['kvctl rebalance status', 'kvctl rebalance status --watch', 'kvctl rebalance status -o json'],
  async run(ctx, _args, options) {
    const watch = options['watch'] === true && ctx.io.stdout.isTTY === true && ctx.format === 'table'
    for (;;) {
      const r = await rebalance(ctx.globals.endpoints, 'status', ctx.adminOptions())
      if (watch) ctx.io.stdout.write('\x1b[2J\x1b[H')
      print(ctx, r)
      const open = r.job !== undefined && (r.job.state === 'running' || r.job.state === 'paused')
      if (!watch || !open) return ExitCode.Ok
      await new Promise((resolve) => setTimeout(resolve, watchMs))
    }
  },
}

export const rebalanceCommand: CommandSpec = {
  name: 'rebalance',
  arguments: '',
  summary: 'the rebalancing job: plan (dry run), status, pause, resume, cancel',
  kind: 'read',
  details: [
    'The meta leader plans replica moves from the cluster as it is (repairs of dead nodes first,',
    'then drains, then balance) and runs them as one job, a few at a time under its throttles.',
    'A node that joins gets its share by itself unless kvd runs with --auto-rebalance false.',
    'Pausing stops new moves (running ones finish their steps); cancelling ends the job.',
  ],
  examples: ['kvctl rebalance plan', 'kvctl rebalance status --watch', 'kvctl rebalance pause'],
  subcommands: [
    {
      name: 'plan',
      arguments: '',
      summary: 'the moves the planner proposes now (a dry run: nothing changes)',
      kind: 'read',
      examples: ['kvctl rebalance plan', 'kvctl rebalance plan -o json'],
      async run(ctx) {
        print(ctx, await rebalance(ctx.globals.endpoints, 'plan', ctx.adminOptions()))
        return ExitCode.Ok
      },
    },
    rebalanceStatusCommand,
    steerCommand('pause', 'start no new move (running moves finish their steps)'),
    steerCommand('resume', 'start moves again'),
    steerCommand('cancel', 'end the job (a move in joint consensus always finishes)'),
  ],
  async run(ctx, args, options) {
    return await rebalanceStatusCommand.run(ctx, args, options)
  },
}

function nodeSub(action: NodeAction, summary: string, extra: Option[], examples: string[]): CommandSpec {
  return {
    name: action,
    arguments: '<node>',
    summary,
    kind: 'write',
    options: extra,
    examples,
    async run(ctx, args, options) {
      const nodeId = parsePositive(args[0]!)
      const r = await nodeAction(
        ctx.globals.endpoints,
        { nodeId, action, dryRun: options['dryRun'] === true, force: options['force'] === true },
        ctx.adminOptions(),
      )
      if (ctx.format === 'json') ctx.print(json(r))
      else if (action === 'drain') {
        if (!r.possible) {
          ctx.print(
            `node ${nodeId} cannot be drained: ${r.blockingCount} shards block it${r.safeMode === '' ? '' : ` (${r.safeMode})`}`,
          )
          ctx.print(
            table([
              ['SHARD', 'REASON'],
              ...r.blockingShards.map((s, i) => [String(s), r.blockingReasons[i] ?? '']),
            ]),
          )
        } else {
          ctx.print(
            `${options['dryRun'] === true ? 'would drain' : 'draining'} node ${nodeId}: ${r.replicas} replicas, ${r.moves.length} moves planned now`,
          )
          for (const m of r.moves) ctx.print(`  shard ${m.shardId}: ${m.fromNode} -> ${m.toNode}`)
        }
      } else ctx.print(`node ${nodeId}: ${r.state}`)
      return action === 'drain' && !r.possible ? ExitCode.Refused : ExitCode.Ok
    },
  }
}

export const nodeCommand: CommandSpec = {
  name: 'node',
  arguments: '',
  summary: "a node's lifecycle: drain, undrain, remove",
  kind: 'write',
  details: [
    'Decommissioning: kvctl node drain N (refused at once, naming the blocking shards, when the',
    'other nodes cannot hold its replicas), wait until kvctl rebalance status shows the job done,',
    'then kvctl node remove N. A dead node is removed with --force once its replicas were',
    're-created elsewhere.',
  ],
  examples: ['kvctl node drain 4 --dry-run', 'kvctl node drain 4', 'kvctl node remove 4'],
  subcommands: [
    nodeSub(
      'drain',
      'give up all its replicas (pre-flight first)',
      [new Option('--dry-run', 'only the pre-flight and the moves it would take')],
      ['kvctl node drain 4 --dry-run', 'kvctl node drain 4 -o json'],
    ),
    nodeSub('undrain', 'a draining node is active again', [], ['kvctl node undrain 4']),
    nodeSub(
      'remove',
      'delete an empty node from the registry',
      [new Option('--force', 'remove a dead node (its replicas were re-created elsewhere)')],
      ['kvctl node remove 4', 'kvctl node remove 4 --force'],
    ),
  ],
  async run(ctx) {
    ctx.io.stderr.write('kvctl node: name a subcommand (drain, undrain, remove)\n')
    return ExitCode.Usage
  },
}
