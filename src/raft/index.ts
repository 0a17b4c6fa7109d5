/**
 * raft/: Raft as a pure, deterministic state machine (the etcd-io/raft RawNode/Ready shape,
 * with raft-rs's split of messages sent before and after persistence). No I/O, no clock, no
 * ambient randomness, never awaits: inputs are `tick()`, `step()` and the proposal methods; all
 * output is a `Ready`, acknowledged with `advance()`.
 *
 * Features: elections with randomized timeouts, pre-vote (§9.6) and check-quorum (§6.2);
 * pipelined, flow-controlled replication with fast backtracking (§5.3); the current-term commit
 * rule (§5.4.2); snapshots; learners and joint consensus (§4.3); leader transfer (§3.10);
 * ReadIndex and lease reads (§6.4). See DESIGN.md beside this file.
 *
 * @example
 * const storage = MemoryLogStorage.bootstrap({ ...emptyConfState, voters: [1, 2, 3] as NodeId[] })
 * const node = new RawNode({ id: NodeId(1) }, { storage, random: new SeededRandom(1), logger: silentLogger })
 * node.tick()                       // from the shell's tick loop
 * if (node.hasReady()) {
 *   const rd = node.ready()
 *   send(rd.messages)               // may go at once
 *   persist(rd.snapshot, rd.entries, rd.hardState, { sync: rd.mustSync })
 *   send(rd.messagesAfterPersist)   // only after the write is durable
 *   apply(rd.committedEntries)
 *   node.advance(rd)
 * }
 */
export { RawNode } from './raw-node.ts'
export { confStateAfter } from './confchange/after.ts'
export {
  ReadOnlyOption,
  resolveConfig,
  type RaftComponents,
  type RaftConfig,
  type ResolvedConfig,
  type TestingFaults,
} from './config.ts'
export {
  ConfChangeTransition,
  ConfChangeType,
  EntryType,
  decodeConfChange,
  emptyConfState,
  encodeConfChange,
  entryBytes,
  isResponse,
  messageTypes,
  type ConfChange,
  type ConfChangeSingle,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MessageType,
  type MsgApp,
  type MsgAppResp,
  type MsgHeartbeat,
  type MsgHeartbeatResp,
  type MsgPreVote,
  type MsgPreVoteResp,
  type MsgReadIndex,
  type MsgReadIndexResp,
  type MsgSnap,
  type MsgTimeoutNow,
  type MsgTransferLeader,
  type MsgVote,
  type MsgVoteResp,
  type Snapshot,
  type SnapshotMeta,
} from './messages.ts'
export {
  Role,
  type CampaignResult,
  type ProgressStatus,
  type ProposeRejection,
  type ProposeResult,
  type ReadIndexResult,
  type ReadState,
  type Ready,
  type SoftState,
  type Status,
  type StepRejection,
  type StepResult,
  type TransferResult,
} from './types.ts'
export {
  MemoryLogStorage,
  tailEntries,
  tailTerm,
  type InitialState,
  type LogStorage,
  type StorageError,
  type StorageResult,
} from './storage.ts'
export {
  describeBytes,
  describeConfChange,
  describeConfState,
  describeEntries,
  describeEntry,
  describeHardState,
  describeMessage,
  describeReady,
  describeSnapshot,
} from './describe.ts'
