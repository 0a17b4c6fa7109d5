/**
 * The bootstrap guard: a member of --initial-cluster that starts with an empty data directory asks
 * the other initial members for their map before it creates anything, and refuses to start when
 * the cluster already knows it ran (its record shows a heartbeat) or no longer lists it (it was
 * removed).
 *
 * Why: every initial member derives the same cluster id and first map, so a member whose volume
 * was lost (a Kubernetes pod given a new volume, a wiped disk) would otherwise come back as if the
 * cluster were new: empty replicas with no vote and no log in groups that count it as a voter,
 * which can elect a leader that lacks acknowledged writes. Raft's safety rests on a voter never
 * forgetting; this node cannot know what it forgot, so it must not vote under its old id. The way
 * back is the replacement path (remove the node, start a new one with --join) or its data restored.
 *
 * Best effort by nature: when no other member answers (all down, or all starting for the first
 * time), the member starts, as it must for a cluster's first start. The decision is pure
 * (`bootstrapVerdict`); the calls are in `askInitialMembers`.
 */
import { deadlineSignal, type Clock } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import type { ClusterMap } from '../cluster/index.ts'

/** Budget of one member's answer (all are asked at once; a first start waits at most this long). */
export const bootstrapGuardCallMs = 2_000

export type BootstrapVerdict =
  | { readonly start: true; readonly answered: number }
  | {
      readonly start: false
      readonly reason: 'ran-before' | 'removed'
      readonly by: NodeId
      readonly error: KvError
    }

/**
 * Whether member `nodeId` of the cluster `clusterIdHex` may start as new, from the maps other
 * initial members answered with (`by` each). Maps of other clusters are not evidence.
 */
export function bootstrapVerdict(
  nodeId: NodeId,
  clusterIdHex: string,
  dataDir: string,
  answers: ReadonlyArray<{ readonly by: NodeId; readonly map: ClusterMap }>,
): BootstrapVerdict {
  const ours = answers.filter((a) => a.map.cluster.clusterId === clusterIdHex)
  for (const { by, map } of ours) {
    const record = map.nodes.get(nodeId)
    if (record === undefined)
      return {
        start: false,
        reason: 'removed',
        by,
        error: new KvError(
          ErrorCode.InvalidArgument,
          `node ${nodeId} was removed from cluster ${clusterIdHex} (node ${by}'s map no longer lists it), ` +
            `and ${dataDir} is empty: a removed node does not come back under its id; start a new node with --join`,
          { details: { field: 'dataDir' } },
        ),
      }
    if (record.lastHeartbeatMs > 0)
      return {
        start: false,
        reason: 'ran-before',
        by,
        error: new KvError(
          ErrorCode.InvalidArgument,
          `node ${nodeId} ran in cluster ${clusterIdHex} before (first heard ` +
            `${new Date(record.lastHeartbeatMs).toISOString()}, says node ${by}) but ${dataDir} is empty: ` +
            `its replicas' votes and logs are gone, and starting it as new could lose acknowledged writes. ` +
            `Restore its data directory, or replace it: once its replicas are re-created elsewhere ` +
            `(kvctl status), kvctl node remove ${nodeId} --force, then start a new node with --join`,
          { details: { field: 'dataDir' } },
        ),
      }
  }
  return { start: true, answered: ours.length }
}

/** Asks every member in `peers` (id -> peer address) for its map at once; the ones that answered. */
export async function askInitialMembers(
  peers: ReadonlyMap<NodeId, string>,
  shardMap: (address: string, signal: AbortSignal) => Promise<ClusterMap>,
  clock: Clock,
): Promise<Array<{ by: NodeId; map: ClusterMap }>> {
  const answers = await Promise.all(
    [...peers].map(async ([by, address]) => {
      const { signal, dispose } = deadlineSignal(clock, bootstrapGuardCallMs)
      try {
        return { by, map: await shardMap(address, signal) }
      } catch {
        return undefined // down, not listening yet, or another cluster's TLS: no evidence
      } finally {
        dispose()
      }
    }),
  )
  return answers.filter((a) => a !== undefined)
}
