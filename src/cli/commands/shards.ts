import { errorView, json, table } from '../output.ts'
import { ExitCode } from '../exit-codes.ts'
import { askNodes, fetchMap, formatBytes, formatRange, type NodeStatusAnswer } from './cluster-view.ts'
import type { CommandSpec } from './command.ts'

/**
 * `kvctl shards`: the shard map (from the endpoint given, failing over) as a table or JSON: each
 * shard's hash range, replicas in preference order, leader, epoch and size. The size is the
 * approximate_bytes the shard's leader reports in its Status (or, when the leader does not answer,
 * the first replica that does); every node is asked in parallel with a short deadline, and a shard
 * no replica of which answers shows `?` (null in JSON).
 */
export const shardsCommand: CommandSpec = {
  name: 'shards',
  arguments: '',
  summary: 'show the shard map: hash range, replicas, leader, epoch and size of every shard',
  kind: 'read',
  details: [
    "The map is the answering node's cached copy of the meta shard. SIZE comes from the Status of",
    "the shard's leader (or a replica), as RocksDB estimates it; `?` when no replica answered.",
  ],
  examples: ['kvctl shards', 'kvctl shards -o json | jq ".shards[] | {shardId, leaderId}"'],
  async run(ctx) {
    const map = await fetchMap(ctx)
    const holders = new Set(map.shards.flatMap((s) => s.replicas))
    const statuses = await askNodes(
      ctx,
      map.nodes.filter((n) => holders.has(n.nodeId) && n.state !== 'dead'),
    )
    const shards = map.shards.map((s) => {
      const size = sizeOf(s.shardId, [s.leaderId, ...s.replicas], statuses)
      return { ...s, approximateBytes: size?.bytes ?? null, sizeFrom: size?.nodeId ?? null }
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
        ['SHARD', 'RANGE', 'REPLICAS', 'LEADER', 'EPOCH', 'SIZE'],
        ...shards.map((s) => [
          String(s.shardId),
          formatRange(s.hashStart, s.hashEnd),
          s.replicas.join(','),
          s.leaderId > 0 ? String(s.leaderId) : '-',
          String(s.epoch),
          s.approximateBytes === null ? '?' : formatBytes(s.approximateBytes),
        ]),
      ]),
    )
    return ExitCode.Ok
  },
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
