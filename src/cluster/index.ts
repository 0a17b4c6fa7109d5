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
} from './agent.ts'
export { initialClusterMap, metaReplicasOf, type InitialClusterSpec, type InitialNode } from './bootstrap.ts'
export {
  ClusterMap,
  descriptorOf,
  metaReplicaCountDefault,
  metaReplicaCountMax,
  metaShardId,
  wrongShard,
} from './cluster-map.ts'
export { MetaStore, metaBatchRecordsMax, metaTxnAttemptsMax, type LeaderReport } from './meta-store.ts'
export {
  nodeStates,
  type ClusterRecord,
  type NodeRecord,
  type NodeState,
  type ShardRecord,
} from './records.ts'
