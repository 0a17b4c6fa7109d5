/**
 * What `shards`, `ring` and `status` share: the shard map from one endpoint, each node's Status
 * asked in parallel with a short deadline, who holds which replicas, and cell formatting.
 */
import { isKvError } from '../../common/errors.ts'
import type { MapNode, NodeStatus, ShardMapResult } from '../../client/types.ts'
import type { CliContext } from '../context.ts'

/** Budget of each node's Status when sizes and counters are gathered (without --deadline-ms). */
export const nodeStatusDeadlineMsDefault = 1_500

/** One node's Status answer, or why there is none. */
export type NodeStatusAnswer =
  { readonly ok: true; readonly status: NodeStatus } | { readonly ok: false; readonly error: unknown }

/**
 * The shard map from the endpoints given (the current one, failing over), within `--deadline-ms`,
 * else `deadlineMsDefault`, else the client's default deadline.
 */
export async function fetchMap(ctx: CliContext, deadlineMsDefault?: number): Promise<ShardMapResult> {
  const deadlineMs = ctx.globals.deadlineMs ?? deadlineMsDefault
  return await ctx.client.shardMap(deadlineMs !== undefined ? { deadlineMs } : {})
}

/**
 * The Status of each of `nodes`, asked at its map address, all in parallel, each within the
 * short deadline (`--deadline-ms` overrides it). Nodes without an address are left out; a node
 * that does not answer (or answers for another node id) maps to its error.
 */
export async function askNodes(
  ctx: CliContext,
  nodes: readonly MapNode[],
): Promise<Map<number, NodeStatusAnswer>> {
  const deadlineMs = ctx.globals.deadlineMs ?? nodeStatusDeadlineMsDefault
  const asked = nodes.filter((n) => n.address !== '')
  const answers = await Promise.all(
    asked.map(async (n): Promise<[number, NodeStatusAnswer]> => {
      try {
        const res = await ctx.client.status({ endpoint: n.address, deadlineMs })
        if (res.node === null || res.node.nodeId !== n.nodeId) {
          const other = res.node === null ? 'no node' : `node ${res.node.nodeId}`
          return [n.nodeId, { ok: false, error: new Error(`${n.address} answered as ${other}`) }]
        }
        return [n.nodeId, { ok: true, status: res.node }]
      } catch (error) {
        if (!isKvError(error)) throw error
        return [n.nodeId, { ok: false, error }]
      }
    }),
  )
  return new Map(answers)
}

/** Per node id: replicas it holds and shards it leads, by the map. */
export function holdings(map: ShardMapResult): Map<number, { replicas: number; leaders: number }> {
  const out = new Map<number, { replicas: number; leaders: number }>(
    map.nodes.map((n) => [n.nodeId, { replicas: 0, leaders: 0 }]),
  )
  const entry = (id: number): { replicas: number; leaders: number } => {
    let e = out.get(id)
    if (e === undefined) {
      e = { replicas: 0, leaders: 0 }
      out.set(id, e)
    }
    return e
  }
  for (const shard of map.shards) {
    for (const r of shard.replicas) entry(r).replicas += 1
    if (shard.leaderId > 0) entry(shard.leaderId).leaders += 1
  }
  return out
}

/** `[start, end)` of a hash range as 16 hex digits each (the end of the ring is 2^64). */
export function formatRange(start: string, end: string): string {
  return `[${hex64(start)}, ${hex64(end)})`
}

function hex64(decimal: string): string {
  if (!/^\d{1,20}$/.test(decimal)) return decimal
  return BigInt(decimal).toString(16).padStart(16, '0')
}

/** Bytes for people: `512 B`, `1.5 KiB`, `3.0 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`
}

/** A fraction as a percentage with one decimal: `33.3%`. */
export function formatShare(fraction: number): string {
  return `${(fraction * 100).toFixed(1)}%`
}
