/**
 * shard/: one replica of one shard: the KV state machine (deterministic apply, versions,
 * compare-and-set, exactly-once dedup), the replica as a Raft group driven by the node's one
 * Ready loop (raft-group.ts, raft-replica.ts), and the read path per consistency level. Replicas
 * are created and run by the node host (node/host.ts); kvd and the tests reach them through it.
 *
 * @example
 * const host = await NodeHost.open({ nodeId, bootstrap, shardCount, tickMs, leaseReads }, components)
 * host.start()
 * const replica = host.replicaForHash(hasher.hash64(key))
 * const { version } = await replica.put(key, value, { level: WriteLevel.Majority })
 * const { found, receipt } = await replica.get(key, { level: ReadLevel.Linearizable })
 */
export {
  ReadLevel,
  WriteLevel,
  type Receipt,
  type VersionedValue,
  type ReadOptions,
  type WriteOptions,
  type BatchOp,
  type BatchOpResult,
  type ScanPosition,
  type ScanEntry,
  type ScanArgs,
  type ScanStream,
  type ReplicaRole,
  type ReplicaStatus,
  type Replica,
  type ShardSet,
} from './api.ts'
// For the Raft integration: the replicated command and the deterministic state machine.
export { encodeCommand, decodeCommand, commandFormat, type Command, type ClientTag } from './commands.ts'
export {
  KvStateMachine,
  ApplyOverlay,
  encodeAppliedIndex,
  decodeAppliedIndex,
  type ApplyOutcome,
  type ApplyReader,
  type ApplyWriter,
  type KvStateMachineInit,
  type KvStateMachineComponents,
} from './state-machine.ts'
export type { ApplyResult, DedupClientView } from './dedup.ts'
// The replica of a shard run as a Raft group, driven by the node's Ready loop (node/host.ts).
export {
  Deferred,
  RaftGroup,
  newGroupCounters,
  type GroupCounters,
  type GroupLogStore,
  type InstalledSnapshot,
  type LogWrite,
  type RaftGroupComponents,
  type RaftGroupInit,
  type ShardConfigView,
  type StagedReady,
  type WriteAnswer,
} from './raft-group.ts'
export { RaftReplica, type RaftReplicaComponents, type ReplicaLoop } from './raft-replica.ts'
// The shard's replicated descriptor (epoch) and the membership changes its leader carries out.
export {
  decodeDescriptor,
  encodeDescriptor,
  firstDescriptor,
  type ShardDescriptorRecord,
} from './descriptor.ts'
export {
  caughtUpLagEntriesMax,
  changeDone,
  isJointConf,
  isUpToDate,
  membersOf,
  planConfChange,
  type LeaderView,
  type MemberProgress,
  type ReplicaChange,
} from './replica-change.ts'
