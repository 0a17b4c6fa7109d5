/**
 * Small operations on a running test cluster: who leads a shard, waiting for a condition, and
 * raw per-node KV calls (tests that show what ONE node does must not be routed by the SDK).
 */
import type { ServiceError } from '@grpc/grpc-js'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import type { Cluster } from './cluster.ts'
import { adminClient, adminStatus, kv, kvClient } from './grpc.ts'

export { Consistency }

/** Polls `probe` every 50 ms until it returns a value (not undefined), or fails after `ms`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const start = Date.now()
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() - start > ms)
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`,
      )
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The node that says it leads `shardId`, asking only `among` (default every node). */
export async function leaderOf(
  cluster: Cluster,
  shardId: number,
  among?: readonly number[],
): Promise<number | undefined> {
  for (const node of cluster.nodes) {
    if (among !== undefined && !among.includes(node.nodeId)) continue
    try {
      const s = await adminStatus(adminClient(node.grpc))
      if (s.node?.shards.some((sh) => sh.shardId === shardId && sh.role === 'leader')) return node.nodeId
    } catch {
      // down or partitioned from us: not a leader we can use
    }
  }
  return undefined
}

/** Raw KV calls to one node, with a deadline. */
export function nodeKv(cluster: Cluster, nodeId: number, deadlineMs = 5_000) {
  return kv(kvClient(cluster.node(nodeId).grpc), deadlineMs)
}

/** The ringkv error code of a failed call (or the gRPC code name when it has none). */
export async function failureCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    const e = err as ServiceError
    return String(e.metadata?.get('ringkv-code')[0] ?? `grpc-${e.code}`)
  }
  return 'ok'
}

export const enc = (s: string): Buffer => Buffer.from(s)
