/**
 * `kvctl shards move`, `kvctl shards moves` and `kvctl shards transfer-leader`: moving one replica
 * and following its progress, listing moves, moving a shard's leadership.
 *
 * `move` waits for the move to end unless `--async`: on a terminal it draws one progress line
 * (step, snapshot bytes, the reason it waits), otherwise it prints a line per step; JSON output
 * prints the final state of the move. Exit 0 when the move is done, 1 when it failed (its reason
 * on stderr), 7 when it was refused before it started (MOVE_REFUSED, STALE_EPOCH).
 */
import { Option } from 'commander'
import { listMoves, moveReplica, transferShardLeader, type MoveStatus } from '../../client/admin-moves.ts'
import type { CliContext } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { formatBytes } from './cluster-view.ts'
import { parsePositive, parseUint, type CommandSpec } from './command.ts'

/** The steps of a move in order (cluster/records.ts MoveStep), for the progress bar. */
const steps = ['prepare', 'learner', 'catchup', 'transfer', 'replace', 'cleanup'] as const
/** How often `move` asks for progress. */
const pollMs = 500
/** Width of the progress bar, in characters. */
const barWidth = 24

function parseShard(value: string): number {
  return parseUint(value)
}

/** Percent done of a move: whole steps, and the snapshot's share of `catchup`. */
export function movePercent(m: MoveStatus): number {
  if (m.step === 'done') return 100
  const i = steps.indexOf(m.step as (typeof steps)[number])
  if (i < 0) return 0
  const within = m.step === 'catchup' && m.bytesTotal > 0 ? Math.min(1, m.bytesSent / m.bytesTotal) : 0
  return Math.floor(((i + within) / steps.length) * 100)
}

/** One line about a move: `shard 5: 1 -> 4 [######......] 40% catchup 12.0 MiB of 50.0 MiB (receiving a snapshot)`. */
export function moveLine(m: MoveStatus): string {
  const pct = movePercent(m)
  const filled = Math.round((pct / 100) * barWidth)
  const bytes =
    m.bytesSent > 0
      ? ` ${formatBytes(m.bytesSent)}${m.bytesTotal > 0 ? ` of ${formatBytes(m.bytesTotal)}` : ''}`
      : ''
  const reason = m.reason === '' ? '' : ` (${m.reason})`
  return `shard ${m.shardId}: ${movePath(m)} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${pct}% ${m.step}${bytes}${reason}`
}

/** "1 -> 4", or "- -> 4" for a move that adds a replica (no source). */
export function movePath(m: { readonly from: number; readonly to: number }): string {
  return `${m.from === 0 ? '-' : m.from} -> ${m.to}`
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** The move of `shardId` that started at `startedMs`: running, or finished (recent). */
async function findMove(
  ctx: CliContext,
  shardId: number,
  startedMs: number,
): Promise<MoveStatus | undefined> {
  const { running, recent } = await listMoves(ctx.globals.endpoints, ctx.adminOptions())
  return (
    running.find((m) => m.shardId === shardId && m.startedMs === startedMs) ??
    recent.find((m) => m.shardId === shardId && m.startedMs === startedMs)
  )
}

export const shardsMoveCommand: CommandSpec = {
  name: 'move',
  arguments: '<shard>',
  summary: 'move one replica of a shard from one node to another (add, catch up, replace, remove)',
  kind: 'write',
  options: [
    new Option('--from <node>', 'the node whose replica moves')
      .argParser(parsePositive)
      .makeOptionMandatory(),
    new Option('--to <node>', 'the node that receives it').argParser(parsePositive).makeOptionMandatory(),
    new Option('--epoch <n>', 'refuse unless the shard is at this epoch (as kvctl shards shows)').argParser(
      parsePositive,
    ),
    new Option('--async', 'return once the move is recorded; follow it with kvctl shards moves'),
  ],
  details: [
    'The meta leader records the move and runs it step by step: create the replica on the',
    'destination, add it as a learner, stream it a snapshot (throttled by kvd --snapshot-rate) and',
    'the log, move leadership away from the source if it leads, replace the source through joint',
    "consensus, and drop the source's replica. A move survives the loss of the meta leader. Refused,",
    'with nothing changed, when the source holds no replica, the destination holds one already or',
    'is not active, the move would put two replicas in one zone, or the shard is moving already.',
  ],
  examples: ['kvctl shards move 5 --from 1 --to 4', 'kvctl shards move 5 --from 1 --to 4 --async -o json'],
  async run(ctx, args, options) {
    const shardId = parseShard(args[0]!)
    const started = await moveReplica(
      ctx.globals.endpoints,
      {
        shardId,
        from: options['from'] as number,
        to: options['to'] as number,
        ...(options['epoch'] !== undefined ? { epoch: options['epoch'] as number } : {}),
      },
      ctx.adminOptions(),
    )
    if (options['async'] === true) {
      if (ctx.format === 'json') ctx.print(json({ move: started }))
      else ctx.print(`move of shard ${shardId} from node ${started.from} to node ${started.to} recorded`)
      return ExitCode.Ok
    }
    const tty = ctx.io.stdout.isTTY === true && ctx.format === 'table'
    let last = started
    let lastLine = ''
    let lastStep = ''
    for (;;) {
      const now = await findMove(ctx, shardId, started.startedMs).catch(() => undefined)
      if (now !== undefined) last = now
      const line = moveLine(last)
      // A terminal gets one line redrawn in place; a pipe gets a line per step.
      if (tty) ctx.io.stdout.write(`\r${line.padEnd(lastLine.length)}`)
      else if (ctx.format === 'table' && last.step !== lastStep) ctx.print(line)
      lastLine = line
      lastStep = last.step
      if (last.finishedMs > 0 || last.step === 'done' || last.step === 'failed' || last.step === 'cancelled')
        break
      await sleep(pollMs)
    }
    if (tty) ctx.io.stdout.write('\n')
    if (ctx.format === 'json') ctx.print(json({ move: last }))
    if (last.step !== 'done') {
      ctx.io.stderr.write(`move of shard ${shardId} ${last.step}: ${last.reason}\n`)
      return ExitCode.Error
    }
    if (ctx.format === 'table' && !tty)
      ctx.print(`shard ${shardId}: moved from node ${last.from} to node ${last.to}`)
    return ExitCode.Ok
  },
}

export const shardsMovesCommand: CommandSpec = {
  name: 'moves',
  arguments: '',
  summary: 'list the replica moves in progress and the latest finished ones',
  kind: 'read',
  examples: ['kvctl shards moves', 'kvctl shards moves -o json'],
  async run(ctx) {
    const { running, recent } = await listMoves(ctx.globals.endpoints, ctx.adminOptions())
    if (ctx.format === 'json') {
      ctx.print(json({ running, recent }))
      return ExitCode.Ok
    }
    const row = (m: MoveStatus): string[] => [
      String(m.shardId),
      movePath(m),
      m.step,
      m.finishedMs > 0 ? '' : `${movePercent(m)}%`,
      m.bytesSent > 0 ? formatBytes(m.bytesSent) : '-',
      String(m.epoch),
      m.reason === '' ? '-' : m.reason,
    ]
    const header = ['SHARD', 'MOVE', 'STEP', 'DONE', 'SNAPSHOT', 'EPOCH', 'REASON']
    ctx.print(running.length === 0 ? 'no moves in progress' : table([header, ...running.map(row)]))
    if (recent.length > 0) {
      ctx.print('')
      ctx.print('recent:')
      ctx.print(table([header, ...recent.map(row)]))
    }
    return ExitCode.Ok
  },
}

export const shardsTransferLeaderCommand: CommandSpec = {
  name: 'transfer-leader',
  arguments: '<shard>',
  summary: "move a shard's leadership to one of its voters",
  kind: 'write',
  options: [
    new Option('--to <node>', 'the voter that should lead').argParser(parsePositive).makeOptionMandatory(),
  ],
  examples: ['kvctl shards transfer-leader 5 --to 2'],
  async run(ctx, args, options) {
    const shardId = parseShard(args[0]!)
    const res = await transferShardLeader(
      ctx.globals.endpoints,
      { shardId, to: options['to'] as number },
      ctx.adminOptions(),
    )
    if (ctx.format === 'json') ctx.print(json({ shardId, leaderId: res.leaderId, term: res.term }))
    else ctx.print(`shard ${shardId}: node ${res.leaderId} leads (term ${res.term})`)
    return ExitCode.Ok
  },
}
