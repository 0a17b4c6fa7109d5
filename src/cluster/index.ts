/**
 * cluster/: the control plane. The meta shard's records and transactions (node registry, shard map
 * with epochs), the map of a new cluster, and the agent that heartbeats, refreshes the map and
 * serves joins on every node. Rebalancing (moving replicas when nodes join or die) builds on this.
 */
export {
  ClusterAgent,
  type ClusterAgentInit,
  type JoinArgs,
  type LocalMeta,
  type MetaRemote,
  type OwnReplica,
} from './agent.ts'
export { Liveness, type LivenessInit, type StateChange } from './liveness.ts'
export { checkMove, type MoveRequest } from './move-rules.ts'
export {
  Mover,
  type MoveView,
  type MoverComponents,
  type MoverInit,
  type ReplicaChangeSpec,
  type ReplicaRemote,
  type ReplicaStateInfo,
  type ShardConfigInfo,
} from './mover.ts'
export { initialClusterMap, metaReplicasOf, type InitialClusterSpec, type InitialNode } from './bootstrap.ts'
export {
  ClusterMap,
  descriptorOf,
  metaReplicaCountDefault,
  metaReplicaCountMax,
  metaShardId,
  wrongShard,
} from './cluster-map.ts'
export {
  MetaStore,
  followVoters,
  metaBatchRecordsMax,
  metaTxnAttemptsMax,
  recentMovesMax,
  type LeaderReport,
  type StoredMove,
} from './meta-store.ts'
export {
  moveSteps,
  nodeStates,
  peerAddressOf,
  type ClusterRecord,
  type MoveRecord,
  type MoveStep,
  type NodeRecord,
  type NodeState,
  type ShardRecord,
} from './records.ts'
