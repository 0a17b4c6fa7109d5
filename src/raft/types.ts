/**
 * The results and output values of the Raft core: `Ready`, `SoftState`, `ReadState`, and the
 * result unions returned by `RawNode` methods. Expected outcomes are values, not throws
 * (STYLE.md 7.4).
 */
import type { LogIndex, NodeId, Term } from '../common/index.ts'
import type { ConfState, Entry, HardState, Message, Snapshot } from './messages.ts'

/** A node's role. `preCandidate` is the pre-vote phase (§9.6). */
export const Role = {
  Follower: 'follower',
  PreCandidate: 'preCandidate',
  Candidate: 'candidate',
  Leader: 'leader',
} as const
export type Role = (typeof Role)[keyof typeof Role]

/** Volatile state worth showing (not persisted). */
export interface SoftState {
  readonly leaderId: NodeId | null
  readonly role: Role
}

/**
 * A linearizable read is safe once the applied index reaches `index` (§6.4). `context` is what
 * the caller passed to `readIndex`, so it can match the answer to its request.
 */
export interface ReadState {
  readonly index: LogIndex
  readonly context: Uint8Array
}

/**
 * Ready is everything the core wants done, produced by `RawNode.ready()` and acknowledged by
 * `RawNode.advance(ready)`. The shell handles one Ready in this order:
 * 1. send `messages` (may happen at once, in parallel with step 2; e.g. the leader's appends);
 * 2. persist `snapshot`, then `entries` (replacing any stored suffix from the first entry's
 *    index on), then `hardState`; fsync when `mustSync`;
 * 3. only then send `messagesAfterPersist` (votes and append acknowledgements, §3.8);
 * 4. apply `snapshot` then `committedEntries` to the state machine, and answer `readStates`
 *    once applied reaches their index;
 * 5. call `advance(ready)`.
 * Ready values are owned by the caller after `ready()`; the core does not mutate them.
 */
export interface Ready {
  /** 1, 2, 3...: advance() must be called with the Ready it got, in order. */
  readonly number: number
  /** The current soft state. */
  readonly softState: SoftState
  /** The hard state to persist, or null when unchanged. */
  readonly hardState: HardState | null
  /** Entries to append to storage (after the snapshot, if any). */
  readonly entries: readonly Entry[]
  /** A snapshot to install (replaces the whole log and the state machine), or null. */
  readonly snapshot: Snapshot | null
  /** Entries to apply, in order. Every one is in storage once steps 2-3 are done. */
  readonly committedEntries: readonly Entry[]
  /** Messages that may be sent before the persistence of this Ready. */
  readonly messages: readonly Message[]
  /** Messages that may be sent only after this Ready's hard state, entries and snapshot are durable. */
  readonly messagesAfterPersist: readonly Message[]
  /** Confirmed reads. */
  readonly readStates: readonly ReadState[]
  /** True when the hard state or entries changed, so the write must be fsynced. */
  readonly mustSync: boolean
}

/** Why `step` did not take a message. Peer input never throws. */
export type StepRejection =
  | 'stale-term'
  | 'peer-unknown'
  | 'malformed'
  | 'not-addressed'
  /** The term is above `termMax` or more than `termJumpMax` ahead of ours: never adopted. */
  | 'term-absurd'
  /** A leader-only message (append, heartbeat, snapshot, timeout-now, read answer) not from the known leader. */
  | 'not-leader'
  /** An append carrying an entry the state machine could not apply; nothing was appended. */
  | 'entry-unacceptable'
export type StepResult = { readonly ok: true } | { readonly ok: false; readonly reason: StepRejection }

/** The answer to `propose` and `proposeConfChange`. On success, the entry's position. */
export type ProposeResult =
  | { readonly ok: true; readonly index: LogIndex; readonly term: Term }
  /** Not the leader; `leaderHint` is the leader this node knows of, if any. */
  | { readonly ok: false; readonly reason: 'not-leader'; readonly leaderHint: NodeId | null }
  /** A leader transfer is in progress; `leaderHint` is the transferee. */
  | { readonly ok: false; readonly reason: 'transferring'; readonly leaderHint: NodeId }
  /** The uncommitted budget is full; retry with backoff. */
  | { readonly ok: false; readonly reason: 'overloaded' }
  /** The proposal exceeds proposalBytesMax. */
  | { readonly ok: false; readonly reason: 'too-large' }
  /** A configuration change is still uncommitted or unapplied (one at a time, §4.1). */
  | { readonly ok: false; readonly reason: 'conf-change-pending' }
  /** The leader has not yet committed an entry of its own term (§4.1 "bug in single-server changes"). */
  | { readonly ok: false; readonly reason: 'conf-change-early' }
  /** The change is not valid against the current configuration. */
  | { readonly ok: false; readonly reason: 'conf-change-invalid'; readonly detail: string }

export type ProposeRejection = Extract<ProposeResult, { ok: false }>['reason']

/** The answer to `readIndex`. On success the ReadState arrives in a later Ready (or never, if leadership is lost). */
export type ReadIndexResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'no-leader' }
  /** Too many reads are waiting for confirmation. */
  | { readonly ok: false; readonly reason: 'overloaded' }

/** The answer to `transferLeader`. */
export type TransferResult =
  | { readonly ok: true }
  | {
      readonly ok: false
      readonly reason: 'no-leader' | 'peer-unknown' | 'learner' | 'already-leader'
    }

/** The answer to `campaign`. */
export type CampaignResult =
  | { readonly ok: true }
  | {
      readonly ok: false
      readonly reason: 'not-promotable' | 'already-leader' | 'conf-change-unapplied' | 'term-exhausted'
    }

/** Progress of one peer as seen by the leader (for status and tests). */
export interface ProgressStatus {
  readonly match: LogIndex
  readonly next: LogIndex
  readonly state: 'probe' | 'replicate' | 'snapshot'
  readonly pendingSnapshot: LogIndex
  readonly recentActive: boolean
  readonly inflight: number
  readonly isLearner: boolean
}

/** A read-only view of the node for status pages, tests and the simulator's checkers. */
export interface Status {
  readonly id: NodeId
  readonly term: Term
  readonly vote: NodeId | null
  readonly commit: LogIndex
  readonly applied: LogIndex
  readonly lastIndex: LogIndex
  readonly role: Role
  readonly leaderId: NodeId | null
  readonly leadTransferee: NodeId | null
  /** The configuration in effect (as of the applied index). */
  readonly config: ConfState
  /** Per-peer progress when leader, else null. */
  readonly progress: ReadonlyMap<NodeId, ProgressStatus> | null
}
