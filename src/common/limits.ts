/**
 * Every limit of ringkv, in one place, with the relationships between them asserted at load
 * (TigerBeetle constants.zig + comptime asserts; STYLE.md 7.5). Configuration may tighten a limit
 * (see `tightenLimits`) but never loosen one. Names carry their unit last.
 */
import { assert } from './assert.ts'

export const limits = {
  /** Largest key. Keys are hashed, but scans and the data layout carry them whole. */
  keyBytesMax: 4 * 1024,
  /** Largest value by default; one value must fit in one Raft entry and one gRPC frame. */
  valueBytesMax: 1024 * 1024,
  /** Key + value + command envelope (ids, versions, framing). */
  proposalBytesMax: 1024 * 1024 + 64 * 1024,
  /** Bytes the command encoding adds around one op (kind, flags, expected version, two lengths). */
  commandOpEnvelopeBytesMax: 24,
  /** Bytes the command encoding adds once per command (format, kind, flags, client tag, op count). */
  commandEnvelopeBytesMax: 384,
  /**
   * Commands one Raft entry carries when a leader groups the writes proposed to a shard in one loop
   * turn (commands.ts `encodeEntry`); a decoder refuses a group claiming more.
   */
  entryCommandsMax: 256,
  /** Bytes of the commands grouped into one entry; a write larger than this goes alone. */
  entryGroupBytesMax: 256 * 1024,
  /**
   * Entries carried by one append message, by bytes. Half a gRPC message, so that an append with
   * its per-entry encoding (raft-codec.ts) and envelope framing always fits one peer stream message.
   */
  appendBytesMax: 2 * 1024 * 1024,
  /** Entries carried by one append message, by count. */
  appendEntriesMax: 1024,
  /** Appends in flight to one follower before the leader waits for acks (etcd-io/raft inflights). */
  inflightAppendsMax: 256,
  /** The leader refuses proposals with OVERLOADED above this many uncommitted bytes. */
  uncommittedBytesMax: 64 * 1024 * 1024,
  /** ReadIndex requests one Raft leader holds while waiting for a quorum heartbeat round (§6.4). */
  readIndexPendingMax: 4096,
  /** Messages queued per group between ready-loop iterations. */
  inboxMessagesMax: 4096,
  /**
   * Keys whose versions (version, createVersion, or absence: never the value) a shard's state
   * machine remembers from its latest applies, so that a write to one of them applies without a
   * storage read first (state-machine.ts); the keys of appended entries are read into it while they
   * replicate, up to twice this many until the next apply forgets the oldest. Per shard, about
   * 160 KiB at this size: enough for the entries of a few loop turns.
   */
  applyRecentKeysMax: 1024,
  /** Items (peer envelopes, client requests) queued for a node's Ready loop; beyond: OVERLOADED / dropped. */
  hostInboxMax: 65_536,
  /** Applied entries kept in a shard's log before it is compacted (a snapshot point is recorded). */
  raftLogCompactEntries: 4096,
  /** Entries kept behind the snapshot point at compaction, for followers slightly behind. */
  raftLogRetainEntries: 1024,
  /**
   * Bytes of applied entries held in a shard's log (in memory) before a snapshot point is recorded,
   * whatever their count: the log is bounded by bytes, not only by entries.
   */
  raftLogCompactBytes: 64 * 1024 * 1024,
  /** Bytes kept behind the snapshot point at compaction (at least one entry). */
  raftLogRetainBytes: 16 * 1024 * 1024,
  /** Bytes of one received snapshot held in memory before it is applied atomically in one batch. */
  snapshotBytesMax: 512 * 1024 * 1024,
  /** How long a session read waits for this replica to reach the token before SESSION_BEHIND. */
  sessionWaitMsMax: 1_000,
  /** Bytes queued towards one peer before messages are dropped and the peer reported unreachable. */
  peerQueueBytesMax: 32 * 1024 * 1024,
  /** grpc-js default receive limit; also our send limit. */
  grpcMessageBytesMax: 4 * 1024 * 1024,
  /** Operations in one Batch call. */
  batchOpsMax: 1024,
  /** Bytes of keys and values in one Batch call: one maximal op fits, and the whole batch fits one proposal. */
  batchBytesMax: 1024 * 1024 + 4 * 1024,
  /**
   * Bytes of values one BatchGet or Multi answer may carry: one gRPC message less room for its
   * framing and receipts. A BatchGet whose values exceed it is answered OVERLOADED (with this
   * limit); a Multi answers the gets that overflow it OVERLOADED, op by op.
   */
  answerBytesMax: 4 * 1024 * 1024 - 64 * 1024,
  /**
   * Distinct keys one BatchGet reads from a shard at once. The values read so far are counted
   * against answerBytesMax between reads, so a BatchGet naming large values is refused after
   * reading at most this many more of them, not after reading every one (a 10 KB request could
   * otherwise make a node read a GiB).
   */
  batchGetReadKeysMax: 8,
  /** Entries one Scan call may ask for; a scan streams in pages of at most this many. */
  scanLimitMax: 10_000,
  /** Entries a scan sends per stream message. */
  scanPageEntriesMax: 256,
  /** Bytes of one scan page (stream message): entries up to this, or one larger entry alone. */
  scanPageBytesMax: 1024 * 1024,
  /**
   * Bytes one server stream (Scan) may have written and not yet taken by its connection; then it
   * waits for its reader (server/stream-budget.ts). Two maximal pages, so the next page is ready
   * while one is on its way.
   */
  streamUnsentBytesMax: 2 * (1024 * 1024 + 8 * 1024),
  /** The same across all streams of one client (principal): one client cannot take the node's share. */
  principalUnsentBytesMax: 32 * 1024 * 1024,
  /** The same across every stream of the node. */
  nodeUnsentBytesMax: 256 * 1024 * 1024,
  /** Server streams open at once on one client connection; beyond: OVERLOADED. */
  streamsPerConnectionMax: 64,
  /** Server streams open at once for one client (principal); beyond: OVERLOADED. */
  streamsPerPrincipalMax: 256,
  /** Requests one client connection may have in flight on a node; beyond: OVERLOADED. */
  requestsPerConnectionMax: 1024,
  /** Requests one client (principal) may have in flight on a node; beyond: OVERLOADED. */
  requestsPerPrincipalMax: 2048,
  /** Requests one node serves at once before answering OVERLOADED. */
  requestsInFlightMax: 4096,
  /** Rebalancer moves running at once. */
  movesConcurrentMax: 2,
  /**
   * How long a replica may stay empty (created for a move, never added to its shard, e.g. its
   * node was down through the rollback) before its node drops it: far longer than a move takes
   * from creating it to adding it as a learner (cluster/agent.ts).
   */
  emptyReplicaGraceMs: 60_000,
  /** Replica moves the rebalancing executor keeps running at once, cluster-wide (cluster/executor). */
  rebalanceMovesMax: 4,
  /** Of those, slots only repairs may take: balance and drains never do. */
  rebalanceRepairSlots: 1,
  /** Moves running into one node at once (it receives a snapshot for each). */
  rebalanceMovesInPerNodeMax: 2,
  /** Moves running out of one live node at once. */
  rebalanceMovesOutPerNodeMax: 2,
  /** Moves a rebalancing job record lists (running first, then planned); the rest are only counted. */
  rebalanceJobMovesListedMax: 256,
  /** SDK attempts per call, also bounded by the call's deadline. */
  retryAttemptsMax: 16,
  /** SDK default deadline per call. */
  requestDeadlineMsDefault: 10_000,
  /** Longest deadline a request may ask for. */
  requestDeadlineMsMax: 10 * 60_000,
  /**
   * SDK default dial timeout: how long a call waits for its endpoint's connection to become ready
   * before failing UNAVAILABLE (and the retry moving to the next endpoint); etcd's --dial-timeout.
   */
  dialTimeoutMsDefault: 3_000,
  /** Time a graceful shutdown waits for in-flight requests before closing anyway. */
  shutdownDrainMsMax: 10_000,
  /** Clients remembered per shard by the exactly-once dedup table; the least recently used go first. */
  dedupClientsMax: 4096,
  /**
   * Saved write results per client per shard: the client's writes at or above its
   * firstIncompleteSeq. A new seq beyond it is refused with OVERLOADED (not applied); the SDK keeps
   * each seq it sends below firstIncompleteSeq + this, so it never is.
   */
  dedupResultsPerClientMax: 1024,
  /** Longest client id of the exactly-once tag (UTF-8 bytes). */
  clientIdBytesMax: 128,
  /** Longest principal (authenticated client identity) a session records (UTF-8 bytes). */
  principalBytesMax: 128,
  /**
   * Registered exactly-once sessions one principal may hold per shard. Registering one more gives
   * up that principal's least recently active session, never another principal's: a flood of
   * registrations cannot evict anyone else's session (dedupClientsMax bounds the table; when it is
   * full of live sessions, registering answers OVERLOADED).
   */
  sessionsPerPrincipalMax: 1024,
  /**
   * A registered session unused this long (by the log's own time: the leaders' clocks as written
   * into the commands) has expired; its writes are refused SESSION_EXPIRED, never re-applied.
   */
  sessionIdleMsMax: 60 * 60_000,
  /** Bytes of keys and values per chunk of an exported range (Raft snapshots, shard moves). */
  exportChunkBytes: 1024 * 1024,
  /** ExportShard streams (kvctl backup create) one node serves at once; one more is OVERLOADED. */
  exportStreamsMax: 4,
  /**
   * Largest chunk of entries in an export stream and a backup file: a chunk stops after the entry
   * that reaches exportChunkBytes of keys and values, so one more key and value (with its value
   * record), plus the lengths (at most 2 bytes per the smallest entry of 13 bytes: under half).
   */
  backupChunkBytesMax: 3 * 1024 * 1024,
  /**
   * Envelopes queued towards one peer (with peerQueueBytesMax). One more is dropped and the peer
   * reported unreachable (Raft tolerates loss and probes again). Sized for a heartbeat per shard
   * per tick (shardCountMax) with room for appends.
   */
  peerSendQueueMax: 8192,
  /**
   * Soft byte budget of one peer stream message (StreamRequest): envelopes queued for a peer go
   * out together up to this; one envelope larger than it goes alone (up to what one gRPC message
   * holds). Near batchBytesMax: big enough to amortise framing, small enough not to delay heartbeats.
   */
  peerBatchBytesMax: 1024 * 1024,
  /**
   * Bytes one envelope adds around its payload in a StreamRequest: the RaftEnvelope tag and length,
   * shard id, two uint64 node ids, the payload's tag and length (proto varints, rounded up).
   */
  peerEnvelopeFramingBytesMax: 64,
  /** First wait before redialling a peer whose stream failed; doubles per failure, with jitter. */
  peerReconnectBackoffMsMin: 50,
  /** Longest wait between redials of a peer: well under an election timeout at the default tick. */
  peerReconnectBackoffMsMax: 1_000,
  /** Time a peer has to answer a new stream (its hello) before the attempt counts as failed. */
  peerConnectMsMax: 2_000,
  /** Interval of HTTP/2 keepalive pings on peer channels: finds a silently dead peer. */
  peerKeepaliveMs: 10_000,
  /** A keepalive ping unanswered this long closes the peer's connection (and its stream). */
  peerKeepaliveTimeoutMs: 5_000,
  /** Bytes of snapshot data per Snapshot stream message. */
  snapshotChunkBytes: 1024 * 1024,
  /**
   * Snapshot messages written but not yet taken by the connection. grpc-js buffers 16 messages
   * before write() says to wait; this bounds a snapshot's memory on the sender far tighter.
   */
  snapshotChunksInFlightMax: 4,
  /** Bytes one snapshot message adds around its data (header fields, offset, flags). */
  snapshotChunkFramingBytesMax: 128,
  /** Keys deleted per step when a removed replica's data is dropped, or an install clears its ranges. */
  replicaDropChunkKeys: 4096,
  /** Pause between two steps of dropping a removed replica's data (paces the background work). */
  replicaDropPauseMs: 5,
  /** Default bytes per second of snapshot data a node sends, all streams together (--snapshot-rate). */
  snapshotBytesPerSecondDefault: 32 * 1024 * 1024,
  /** Deadline of sending (and of receiving) one whole snapshot stream. */
  snapshotSendMsMax: 10 * 60_000,
  /** Longest delay an injected fault may put on peer traffic. */
  faultDelayMsMax: 60_000,
  /** Peers one node may hold faults for at once (bounds the fault table). */
  faultPeersMax: 64,
  /**
   * Highest Raft term a node accepts or reaches (2^48). Terms rise by one per election, so a
   * legitimate cluster electing ten leaders a second needs some 900 years to get here; a term
   * above it can only come from a buggy or hostile member, and is refused, never persisted. Far
   * below 2^53, so `term + 1` is always exact.
   */
  raftTermMax: 2 ** 48,
  /**
   * How far one message may raise a node's term. Higher jumps are refused: a member cannot spend
   * the term space in a few messages. A node that was away for this many elections cannot rejoin
   * by itself (it says so in its log) and is rebuilt as a new replica.
   */
  raftTermJumpMax: 2 ** 20,
  /** Highest Raft log index a node accepts in a message (2^48 entries: centuries of writes). */
  raftIndexMax: 2 ** 48,
  /**
   * How often kvd re-reads its certificate, key, CA and auth files; changed files are put in force
   * without a restart (net/tls-files.ts). Tightening it makes replacements take effect sooner.
   */
  credentialsReloadMs: 5_000,
  /** Largest certificate, key, CA or auth file kvd reads. */
  credentialFileBytesMax: 1024 * 1024,
  /** Tokens (and principal overrides) one auth file may list. */
  authTokensMax: 10_000,
  /**
   * /readyz (server/readiness.ts): heartbeats to the meta shard that may fail in a row (plus one
   * call's deadline) before the node says it is cut off from the meta shard.
   */
  readyMetaHeartbeatsMissedMax: 3,
  /** /readyz: committed entries a voting replica may not have applied yet and still be ready. */
  readyApplyLagEntriesMax: 1024,
} as const

export type Limits = { -readonly [K in keyof typeof limits]: number }

// A single maximal proposal must always fit in one append and one gRPC frame.
assert(limits.proposalBytesMax >= limits.keyBytesMax + limits.valueBytesMax)
assert(limits.appendBytesMax >= limits.proposalBytesMax)
assert(limits.grpcMessageBytesMax >= limits.appendBytesMax)
// A batch fits in one gRPC frame with room for its envelope.
assert(limits.batchBytesMax < limits.grpcMessageBytesMax)
// A Batch call becomes one replicated command, which must fit in one Raft proposal.
assert(limits.batchBytesMax >= limits.keyBytesMax + limits.valueBytesMax)
assert(
  limits.proposalBytesMax >=
    limits.batchBytesMax +
      limits.batchOpsMax * limits.commandOpEnvelopeBytesMax +
      limits.commandEnvelopeBytesMax,
)
assert(limits.commandEnvelopeBytesMax >= limits.clientIdBytesMax + 64)
// A grouped entry is a Raft proposal like any other.
assert(limits.entryGroupBytesMax + limits.entryCommandsMax * 8 <= limits.proposalBytesMax)
assert(limits.entryCommandsMax >= 2)
// Dedup keys carry the client id behind a one-byte length (storage/keys.ts).
assert(limits.clientIdBytesMax <= 0xff)
// A tag with its session (principal and time) still fits the command envelope.
assert(limits.commandEnvelopeBytesMax >= limits.clientIdBytesMax + limits.principalBytesMax + 64)
assert(limits.sessionsPerPrincipalMax <= limits.dedupClientsMax)
// A client with a full window of writes still fits in a node's inbox of requests.
assert(limits.dedupResultsPerClientMax <= limits.hostInboxMax)
assert(limits.scanPageEntriesMax <= limits.scanLimitMax)
// One maximal value always fits an answer; an answer fits one gRPC message with room for framing.
assert(limits.answerBytesMax >= limits.valueBytesMax + limits.keyBytesMax)
assert(limits.answerBytesMax + 64 * 1024 <= limits.grpcMessageBytesMax)
assert(limits.batchGetReadKeysMax <= limits.batchOpsMax)
// Stream budgets: two maximal pages fit one stream's budget (a page of one maximal entry included),
// a stream's budget fits its client's, a client's fits the node's, and a page fits a gRPC message.
assert(limits.streamUnsentBytesMax >= 2 * limits.scanPageBytesMax)
assert(limits.streamUnsentBytesMax >= limits.valueBytesMax + limits.keyBytesMax + 1024)
assert(limits.streamUnsentBytesMax <= limits.principalUnsentBytesMax)
assert(limits.principalUnsentBytesMax <= limits.nodeUnsentBytesMax)
assert(limits.scanPageBytesMax + 64 * 1024 <= limits.grpcMessageBytesMax)
assert(limits.streamsPerConnectionMax <= limits.streamsPerPrincipalMax)
assert(limits.streamsPerPrincipalMax <= limits.requestsInFlightMax)
// No one connection, nor one client, can take every request slot of a node.
assert(limits.requestsPerConnectionMax <= limits.requestsPerPrincipalMax)
assert(limits.requestsPerPrincipalMax < limits.requestsInFlightMax)
assert(limits.requestDeadlineMsDefault <= limits.requestDeadlineMsMax)
// A first dial leaves the default deadline room for a retry at another endpoint.
assert(limits.dialTimeoutMsDefault < limits.requestDeadlineMsDefault)
// Balance always has a slot of its own besides the repairs' slots.
assert(limits.rebalanceRepairSlots < limits.rebalanceMovesMax)
assert(limits.raftLogRetainEntries < limits.raftLogCompactEntries)
assert(limits.raftLogRetainBytes < limits.raftLogCompactBytes)
// One maximal proposal fits the byte budgets of the log.
assert(limits.raftLogRetainBytes >= limits.proposalBytesMax)
// One maximal key fits an export chunk.
assert(limits.exportChunkBytes >= limits.keyBytesMax)
assert(
  limits.backupChunkBytesMax >=
    limits.exportChunkBytes * 1.5 + limits.keyBytesMax + limits.valueBytesMax + 1024,
)
assert(limits.backupChunkBytesMax + 1024 <= limits.grpcMessageBytesMax)
// Peer traffic: a batch and one snapshot chunk each fit one gRPC message with their framing, and
// one maximal proposal fits one envelope, and so does a full append (entries plus at most 16 bytes
// of encoding each, plus the message header).
assert(
  limits.appendBytesMax + limits.appendEntriesMax * 16 + 64 <=
    limits.grpcMessageBytesMax - limits.peerEnvelopeFramingBytesMax,
)
assert(limits.peerBatchBytesMax + limits.peerEnvelopeFramingBytesMax <= limits.grpcMessageBytesMax)
assert(limits.grpcMessageBytesMax - limits.peerEnvelopeFramingBytesMax > limits.proposalBytesMax)
assert(limits.snapshotChunkBytes + limits.snapshotChunkFramingBytesMax <= limits.grpcMessageBytesMax)
assert(limits.peerReconnectBackoffMsMin <= limits.peerReconnectBackoffMsMax)
assert(limits.peerKeepaliveTimeoutMs <= limits.peerKeepaliveMs)
assert(limits.faultDelayMsMax <= limits.snapshotSendMsMax)
// Terms and indexes stay exact integers with room to count up; one jump is a sliver of the space.
assert(limits.raftTermMax < Number.MAX_SAFE_INTEGER / 2)
assert(limits.raftIndexMax < Number.MAX_SAFE_INTEGER / 2)
assert(limits.raftTermJumpMax * 1024 <= limits.raftTermMax)

/**
 * Returns `limits` with some values lowered. Raising a limit is a programmer error of the caller
 * (config validation turns user input into a clear KvError before it gets here).
 */
export function tightenLimits(overrides: Partial<Limits>): Readonly<Limits> {
  const out: Limits = { ...limits }
  for (const [name, value] of Object.entries(overrides) as [keyof Limits, number | undefined][]) {
    if (value === undefined) continue
    assert(Number.isSafeInteger(value) && value > 0, `limit ${name} must be a positive integer`)
    assert(value <= limits[name], `limit ${name} may only be tightened (max ${limits[name]})`)
    out[name] = value
  }
  return out
}
