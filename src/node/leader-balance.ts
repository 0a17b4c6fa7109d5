/**
 * Leader balancing's choice (host.ts runs it every few ticks; the simulator and the benchmarks
 * check leaders against it): which voter should lead a shard, so the leaders, and with them the
 * write load, spread over the nodes.
 */
import type { NodeId, ShardId } from '../common/ids.ts'

/**
 * The voter that should lead `shardId` (voters sorted, shard i -> voter i mod n); undefined while
 * its replicas are changing (a learner, a joint configuration): a move moves leadership on purpose.
 */
export function preferredLeaderOf(
  shardId: ShardId,
  conf: {
    readonly voters: readonly NodeId[]
    readonly learners: readonly NodeId[]
    readonly votersOutgoing: readonly NodeId[]
  },
): NodeId | undefined {
  if (conf.learners.length > 0 || conf.votersOutgoing.length > 0) return undefined
  const voters = [...conf.voters].sort((a, b) => a - b)
  return voters[shardId % voters.length]
}
