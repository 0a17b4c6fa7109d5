import { errorView, json, table } from '../output.ts'
import { ExitCode } from '../exit-codes.ts'
import { askNodes, fetchMap, formatBytes, formatRange, type NodeStatusAnswer } from './cluster-view.ts'
import { listMoves, type MoveStatus } from '../../client/admin-moves.ts'
import type { CommandSpec } from './command.ts'
import { movePath, shardsMoveCommand, shardsMovesCommand, shardsTransferLeaderCommand } from './moves.ts'

/**
 * `kvctl shards`: the shard map (from the endpoint given, failing over) as a table or JSON: each
 * shard's hash range, replicas in preference order, leader, epoch and size. The size is the
 * approximate_bytes the shard's leader reports in its Status (or, when the leader does not answer,
 * the first replica that does); every node is asked in parallel with a short deadline, and a shard
 * no replica of which answers shows `?` (null in JSON). A shard that is moving says so (MOVE: the
 * source and destination and the step), from the meta leader's list of moves.
 */
export const shardsCommand: CommandSpec = {
  name: 'shards',
  arguments: '',
  summary: 'show the shard map: hash range, replicas, leader, epoch and size of every shard',
  kind: 'read',
  details: [
    "The map is the answering node's cached copy of the meta shard. SIZE comes from the Status of",
    "the shard's leader (or a replica), as RocksDB estimates it; `?` when no replica answered.",
    'RocksDB counts only data flushed to disk: `unflushed` is a shard whose writes (if any) are all',
    'still in memory, as a young or small one is (JSON: approximateBytes 0).',
  ],
  examples: [
    'kvctl shards',
    'kvctl shards -o json | jq ".shards[] | {shardId, leaderId}"',
    'kvctl shards move 5 --from 1 --to 4',
  ],
  subcommands: [shardsMoveCommand, shardsMovesCommand, shardsTransferLeaderCommand],
  async run(ctx) {
    const map = await fetchMap(ctx)
    const moving = new Map<number, MoveStatus>()
    try {
      for (const m of (
        await listMoves(ctx.globals.endpoints, { deadlineMs: ctx.globals.deadlineMs ?? 1_500 })
      ).running)
        moving.set(m.shardId, m)
    } catch {
      // Moves are shown when the meta leader answers; the map alone is still worth showing.
    }
    const holders = new Set(map.shards.flatMap((s) => s.replicas))
    const statuses = await askNodes(
      ctx,
      map.nodes.filter((n) => holders.has(n.nodeId) && n.state !== 'dead'),
    )
    const shards = map.shards.map((s) => {
      const size = sizeOf(s.shardId, [s.leaderId, ...s.replicas], statuses)
      const move = moving.get(s.shardId)
      return {
        ...s,
        approximateBytes: size?.bytes ?? null,
        sizeFrom: size?.nodeId ?? null,
        move: move === undefined ? null : { from: move.from, to: move.to, step: move.step },
      }
    })
    if (ctx.format === 'json') {
      ctx.print(
        json({
          clusterId: map.clusterId,
          endpoint: map.endpoint,
          servedBy: map.servedBy,
          replicaCount: map.replicaCount,
          shards,
          unreachable: [...statuses].flatMap(([nodeId, a]) =>
            a.ok
              ? []
              : [
                  {
                    nodeId,
                    address: map.nodes.find((n) => n.nodeId === nodeId)?.address ?? '',
                    error: errorView(a.error),
                  },
                ],
          ),
        }),
      )
      return ExitCode.Ok
    }
    ctx.print(
      table([
        ['SHARD', 'RANGE', 'REPLICAS', 'LEADER', 'EPOCH', 'SIZE', 'MOVE'],
        ...shards.map((s) => [
          String(s.shardId),
          formatRange(s.hashStart, s.hashEnd),
          s.replicas.join(','),
          s.leaderId > 0 ? String(s.leaderId) : '-',
          String(s.epoch),
          sizeCell(s.approximateBytes),
          s.move === null ? '-' : `${movePath(s.move)} ${s.move.step}`,
        ]),
      ]),
    )
    return ExitCode.Ok
  },
}

/** A size for people: `?` unknown, `unflushed` for RocksDB's 0 (it leaves memtables out). */
function sizeCell(bytes: number | null): string {
  if (bytes === null) return '?'
  return bytes === 0 ? 'unflushed' : formatBytes(bytes)
}

/** The size of `shardId` from the first of `nodes` whose Status answered and lists the shard. */
function sizeOf(
  shardId: number,
  nodes: readonly number[],
  statuses: ReadonlyMap<number, NodeStatusAnswer>,
): { bytes: number; nodeId: number } | undefined {
  for (const nodeId of nodes) {
    const answer = statuses.get(nodeId)
    if (answer?.ok !== true) continue
    const shard = answer.status.shards.find((s) => s.shardId === shardId)
    if (shard !== undefined) return { bytes: shard.approximateBytes, nodeId }
  }
  return undefined
}
