/**
 * The values that cross the boundary of the Raft core: log entries, hard state, configuration,
 * snapshots and the peer messages (a discriminated union on `type`). Everything here is
 * `readonly`: the core hands these values out and promises not to mutate them, and callers must
 * not mutate what they hand in (STYLE.md 7.11).
 */
import type { LogIndex, NodeId, Term } from '../common/index.ts'

/** What an entry carries: application data, or an encoded `ConfChange` (see `encodeConfChange`). */
export const EntryType = {
  Normal: 'normal',
  ConfChange: 'confChange',
} as const
export type EntryType = (typeof EntryType)[keyof typeof EntryType]

/** One log entry. An entry with empty `data` and type `normal` is a leader's no-op (§5.4.2, §8). */
export interface Entry {
  readonly term: Term
  readonly index: LogIndex
  readonly type: EntryType
  readonly data: Uint8Array
}

/**
 * The state that must be durable before a node answers a vote or acknowledges an append
 * (§3.8, Figure 3.1 "persistent state on all servers"). `commit` is persisted so a restart does
 * not have to relearn it; it is safe to lose it.
 */
export interface HardState {
  readonly term: Term
  /** The candidate this node voted for in `term`, or null. */
  readonly vote: NodeId | null
  readonly commit: LogIndex
}

/**
 * The membership configuration at some log position (§4.3 joint consensus, §4.2.1 learners).
 * `votersOutgoing` is non-empty exactly while the configuration is joint. `learnersNext` holds
 * nodes that are voters in the outgoing half and become learners when the joint state is left.
 */
export interface ConfState {
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
  readonly votersOutgoing: readonly NodeId[]
  readonly learnersNext: readonly NodeId[]
  /** True when the joint configuration is left automatically once it commits. */
  readonly autoLeave: boolean
}

export const emptyConfState: ConfState = {
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
}

/** Where a snapshot sits in the log and the configuration committed at that point (§5.1 of ch. 5, "log compaction"). */
export interface SnapshotMeta {
  readonly index: LogIndex
  readonly term: Term
  readonly confState: ConfState
}

/** A snapshot of the application state at `meta.index`. `data` is opaque to the core. */
export interface Snapshot {
  readonly meta: SnapshotMeta
  readonly data: Uint8Array
}

/** The kinds of single membership change. */
export const ConfChangeType = {
  AddNode: 'addNode',
  AddLearner: 'addLearner',
  RemoveNode: 'removeNode',
} as const
export type ConfChangeType = (typeof ConfChangeType)[keyof typeof ConfChangeType]

export interface ConfChangeSingle {
  readonly type: ConfChangeType
  readonly nodeId: NodeId
}

/**
 * How a `ConfChange` is carried out (§4.3):
 * - `auto`: one voter change at a time is applied directly ("simple"); anything more goes
 *   through joint consensus and the joint state is left automatically.
 * - `implicit`: always joint, left automatically.
 * - `explicit`: always joint, left only when the application proposes an empty `ConfChange`.
 */
export const ConfChangeTransition = {
  Auto: 'auto',
  Implicit: 'implicit',
  Explicit: 'explicit',
} as const
export type ConfChangeTransition = (typeof ConfChangeTransition)[keyof typeof ConfChangeTransition]

/**
 * A membership change. An empty `changes` list means "leave the joint configuration".
 * Proposed with `RawNode.proposeConfChange`; carried in an entry of type `confChange`; applied by
 * the core itself when the application advances past the committed entry.
 */
export interface ConfChange {
  readonly changes: readonly ConfChangeSingle[]
  readonly transition: ConfChangeTransition
}

// ---------------------------------------------------------------------------------------------
// Peer messages.

interface MessageBase {
  readonly from: NodeId
  readonly to: NodeId
  /** The sender's term. Every message carries one; see `RawNode.step` for how terms are compared. */
  readonly term: Term
}

/** Append entries after (index, logTerm); also carries the leader's commit index (§3.5). */
export interface MsgApp extends MessageBase {
  readonly type: 'MsgApp'
  /** Term of the entry at `index`, the entry just before `entries`. */
  readonly logTerm: Term
  readonly index: LogIndex
  readonly entries: readonly Entry[]
  readonly commit: LogIndex
}

/**
 * The answer to a MsgApp (or MsgSnap). On success `index` is the last index the follower now
 * holds that matches the leader. On rejection `index` is the rejected `MsgApp.index`, and
 * (`rejectHint`, `logTerm`) point at the follower's last entry at or below it whose term is
 * at most the leader's term there (fast backtracking, §5.3 "optimization").
 */
export interface MsgAppResp extends MessageBase {
  readonly type: 'MsgAppResp'
  readonly index: LogIndex
  readonly reject: boolean
  readonly rejectHint: LogIndex
  readonly logTerm: Term
}

/** Request a vote (§3.4). `leaderTransfer` is set when campaigning after MsgTimeoutNow (§3.10). */
export interface MsgVote extends MessageBase {
  readonly type: 'MsgVote'
  readonly logTerm: Term
  readonly index: LogIndex
  readonly leaderTransfer: boolean
}

export interface MsgVoteResp extends MessageBase {
  readonly type: 'MsgVoteResp'
  readonly reject: boolean
}

/** A pre-vote (§9.6): `term` is the term the sender would campaign in; nobody's term changes. */
export interface MsgPreVote extends MessageBase {
  readonly type: 'MsgPreVote'
  readonly logTerm: Term
  readonly index: LogIndex
  readonly leaderTransfer: boolean
}

export interface MsgPreVoteResp extends MessageBase {
  readonly type: 'MsgPreVoteResp'
  readonly reject: boolean
}

/**
 * The leader's heartbeat (§3.4). `commit` is at most what the follower is known to hold.
 * `round` is the heartbeat round (the context), echoed in the response; a quorum of echoes for
 * a round confirms leadership for ReadIndex (§6.4) and starts a lease (§6.4.1).
 * `leaderCommit` is the leader's own commit index: never committed from (`commit` is), only
 * told to the shell so a follower that lags knows it does (its staleness, shard/raft-group.ts);
 * absent in a heartbeat from a node that predates it.
 */
export interface MsgHeartbeat extends MessageBase {
  readonly type: 'MsgHeartbeat'
  readonly commit: LogIndex
  readonly round: number
  readonly leaderCommit?: LogIndex
}

export interface MsgHeartbeatResp extends MessageBase {
  readonly type: 'MsgHeartbeatResp'
  readonly round: number
}

/** Install a snapshot (§5 of ch. 5 "InstallSnapshot"). The shell may stream `snapshot.data` itself. */
export interface MsgSnap extends MessageBase {
  readonly type: 'MsgSnap'
  readonly snapshot: Snapshot
}

/** Tells the target to campaign at once, ignoring leases (leader transfer, §3.10). */
export interface MsgTimeoutNow extends MessageBase {
  readonly type: 'MsgTimeoutNow'
}

/** A follower asks the leader to transfer leadership to `transferee`. */
export interface MsgTransferLeader extends MessageBase {
  readonly type: 'MsgTransferLeader'
  readonly transferee: NodeId
}

/** A follower forwards a ReadIndex request to the leader (§6.4). */
export interface MsgReadIndex extends MessageBase {
  readonly type: 'MsgReadIndex'
  readonly context: Uint8Array
}

/** The leader's answer: read once the applied index reaches `index`. `reject` means retry elsewhere. */
export interface MsgReadIndexResp extends MessageBase {
  readonly type: 'MsgReadIndexResp'
  readonly context: Uint8Array
  readonly index: LogIndex
  readonly reject: boolean
}

/** Every message one Raft node sends another. Exhaustive switches end in `unreachable(m)`. */
export type Message =
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgPreVote
  | MsgPreVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgTransferLeader
  | MsgReadIndex
  | MsgReadIndexResp

export type MessageType = Message['type']

/** Every message type, in a fixed order (for tables and validation). */
export const messageTypes: readonly MessageType[] = [
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgSnap',
  'MsgTimeoutNow',
  'MsgTransferLeader',
  'MsgReadIndex',
  'MsgReadIndexResp',
]

/** Responses are the messages a node may receive from a lower-term peer only to be ignored. */
export function isResponse(m: Message): boolean {
  return (
    m.type === 'MsgAppResp' ||
    m.type === 'MsgVoteResp' ||
    m.type === 'MsgPreVoteResp' ||
    m.type === 'MsgHeartbeatResp' ||
    m.type === 'MsgReadIndexResp'
  )
}

/** Bytes an entry counts for in batching and in the uncommitted budget: its payload only. */
export function entryBytes(e: Entry): number {
  return e.data.byteLength
}

// ---------------------------------------------------------------------------------------------
// ConfChange encoding. The entry data is JSON in UTF-8; small, stable and readable in dumps.

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify({ changes: cc.changes, transition: cc.transition }))
}

/** Decodes the data of a `confChange` entry; null when it is not a well-formed ConfChange. */
export function decodeConfChange(data: Uint8Array): ConfChange | null {
  let raw: unknown
  try {
    raw = JSON.parse(decoder.decode(data))
  } catch {
    return null
  }
  if (typeof raw !== 'object' || raw === null) return null
  const { changes, transition } = raw as { changes?: unknown; transition?: unknown }
  if (!Array.isArray(changes)) return null
  if (!Object.values(ConfChangeTransition).includes(transition as ConfChangeTransition)) return null
  const out: ConfChangeSingle[] = []
  for (const c of changes as unknown[]) {
    if (typeof c !== 'object' || c === null) return null
    const { type, nodeId } = c as { type?: unknown; nodeId?: unknown }
    if (!Object.values(ConfChangeType).includes(type as ConfChangeType)) return null
    if (typeof nodeId !== 'number' || !Number.isSafeInteger(nodeId) || nodeId <= 0) return null
    out.push({ type: type as ConfChangeType, nodeId: nodeId as NodeId })
  }
  return { changes: out, transition: transition as ConfChangeTransition }
}
