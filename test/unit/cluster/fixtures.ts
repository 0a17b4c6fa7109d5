/** Shared test doubles for the cluster and router tests: hand-built maps, a meta replica, error capture. */
import { KvError, NodeId, ShardId, type Clock } from '../../../src/common/index.ts'
import {
  ClusterMap,
  metaShardId,
  type ClusterRecord,
  type NodeRecord,
  type NodeState,
  type ShardRecord,
} from '../../../src/cluster/index.ts'
import type { InitialClusterSpec, InitialNode } from '../../../src/cluster/index.ts'
import { equalHashRanges, hashSpaceEnd, type Hasher } from '../../../src/hashing/index.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { MemoryEngine, loadHasher } from '../../../src/storage/index.ts'
import { openTestReplica } from '../shard/helpers.ts'

export const clusterId = '0123456789abcdef0123456789abcdef'

let hasherPromise: Promise<Hasher> | undefined
export const testHasher = (): Promise<Hasher> => (hasherPromise ??= loadHasher())

/**
 * A clock whose time moves only by hand and whose timers fire only when a test fires them (so
 * deadlines never expire on their own).
 */
export class ManualClock implements Clock {
  now = 1000
  wall = 1_700_000_000_000
  readonly timers: { readonly delayMs: number; readonly onFire: () => void; cancelled: boolean }[] = []
  nowMs(): number {
    return this.now
  }
  wallMs(): number {
    return this.wall
  }
  setTimer(delayMs: number, onFire: () => void): { cancel(): void } {
    const timer = { delayMs, onFire, cancelled: false }
    this.timers.push(timer)
    return { cancel: () => (timer.cancelled = true) }
  }
  /** Fires (once) the oldest live timer set with `delayMs`; false when there is none. */
  fire(delayMs: number): boolean {
    const timer = this.timers.find((t) => !t.cancelled && t.delayMs === delayMs)
    if (timer === undefined) return false
    timer.cancelled = true
    timer.onFire()
    return true
  }
}

export function node(id: number, state: NodeState = 'active', zone = ''): NodeRecord {
  return { id: NodeId(id), address: `n${id}:7000`, zone, weight: 1, state, lastHeartbeatMs: 0 }
}

export function initialNodes(count: number, zones: readonly string[] = []): InitialNode[] {
  return Array.from({ length: count }, (_, i) => ({
    id: NodeId(i + 1),
    address: `n${i + 1}:7000`,
    zone: zones[i] ?? '',
    weight: 1,
  }))
}

export function spec(
  nodes: readonly InitialNode[],
  extra: Partial<InitialClusterSpec> = {},
): InitialClusterSpec {
  return {
    clusterId,
    nodes,
    shardCount: 64,
    replicaCount: 3,
    vnodesPerNode: 64,
    metaReplicaCount: 3,
    ...extra,
  }
}

/**
 * A hand-built map: `replicas[i]` are shard i's replicas (equal ranges of the ring), `hints[i]`
 * its leader hint (0 = none), every shard at epoch `epoch`; the meta shard on nodes 1..3.
 */
export function handMap(
  nodes: readonly NodeRecord[],
  replicas: readonly (readonly number[])[],
  opts: { hints?: readonly number[]; epoch?: number } = {},
): ClusterMap {
  const ranges = equalHashRanges(replicas.length)
  const shards: ShardRecord[] = replicas.map((r, i) => ({
    shardId: ShardId(i),
    hashStart: ranges[i]!.start,
    hashEnd: ranges[i]!.end,
    replicas: r.map((id) => NodeId(id)),
    leaderHint: opts.hints?.[i] ?? 0,
    leaderTerm: (opts.hints?.[i] ?? 0) === 0 ? 0 : 1,
    epoch: opts.epoch ?? 1,
  }))
  const cluster: ClusterRecord = {
    clusterId,
    shardCount: replicas.length,
    replicaCount: 3,
    vnodesPerNode: 64,
  }
  const meta: ShardRecord = {
    shardId: metaShardId,
    hashStart: 0n,
    hashEnd: hashSpaceEnd,
    replicas: [NodeId(1), NodeId(2), NodeId(3)],
    leaderHint: 0,
    leaderTerm: 0,
    epoch: 1,
  }
  return new ClusterMap(cluster, nodes, shards, meta)
}

/**
 * The meta shard's replica on a one-node NodeHost over a fresh MemoryEngine (MetaStore needs only
 * a Replica). The host runs on its own clock, so a test's ManualClock sees only the agent's timers.
 */
export async function openMetaReplica(): Promise<Replica> {
  return await openTestReplica(new MemoryEngine(), { shard: { shardId: metaShardId, kind: 'meta' } })
}

/** The error a call throws (synchronously or as a rejection); fails when it does not throw. */
export async function thrown(run: () => unknown): Promise<unknown> {
  try {
    await run()
  } catch (err) {
    return err
  }
  throw new Error('expected an error, got none')
}

/** The KvError a call throws; fails on any other error or none. */
export async function kvError(run: () => unknown): Promise<KvError> {
  const err = await thrown(run)
  if (!(err instanceof KvError)) throw new Error(`expected a KvError, got ${String(err)}`, { cause: err })
  return err
}
