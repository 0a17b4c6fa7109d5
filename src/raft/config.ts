/**
 * RaftConfig (the tunables of one Raft group member) and RaftComponents (what is injected).
 * `resolveConfig` fills defaults from `limits` and validates with assert: a bad configuration
 * is a programmer error of the shell, which turns user input into a KvError before this point.
 */
import { assert, limits } from '../common/index.ts'
import type { LogIndex, Logger, NodeId, Random } from '../common/index.ts'
import type { LogStorage } from './storage.ts'

/** How ReadIndex requests are confirmed (§6.4). */
export const ReadOnlyOption = {
  /** A quorum heartbeat round per batch of reads (the default). */
  Safe: 'safe',
  /** Answer at once while the leader lease holds (§6.4.1); needs checkQuorum. */
  LeaseBased: 'lease-based',
} as const
export type ReadOnlyOption = (typeof ReadOnlyOption)[keyof typeof ReadOnlyOption]

/**
 * Deliberate bugs, for proving that the simulator's checkers catch them. Never set outside
 * tests. Each switch really does the wrong thing when on.
 */
export interface TestingFaults {
  /** Grant votes (and pre-votes) without the up-to-date log check of §3.6. */
  readonly grantVoteWithoutLogCheck?: boolean
  /** Commit entries of previous terms by counting replicas (the Figure 3.7 / Figure 8 bug). */
  readonly commitPreviousTermByCounting?: boolean
}

export interface RaftConfig {
  /** This node's id; never 0. */
  readonly id: NodeId
  /** Ticks a follower waits without hearing from a leader before campaigning; the randomized
   *  timeout is drawn from [electionTicks, 2 * electionTicks). Default 10. */
  readonly electionTicks?: number
  /** Ticks between leader heartbeats. Must be < electionTicks. Default 1. */
  readonly heartbeatTicks?: number
  /** The index the state machine has applied already (on restart). Default: the snapshot index. */
  readonly applied?: LogIndex
  /** Run a pre-vote round before a real election (§9.6). Default true. */
  readonly preVote?: boolean
  /** Leaders step down without a quorum of contact within an election timeout, and followers
   *  that heard from a leader recently refuse votes (§6.2, §4.2.3). Default true. */
  readonly checkQuorum?: boolean
  /** Default 'safe'. 'lease-based' needs checkQuorum. */
  readonly readOnly?: ReadOnlyOption
  /** The clock drift bound in ticks for leases: leaseTicks = electionTicks - driftTicks (>= 1). Default 1. */
  readonly driftTicks?: number
  /**
   * With lease reads, a node that restarts with history refuses votes for its first election
   * timeout, since it may have helped grant a lease it no longer remembers (§6.4.1). Default:
   * on exactly when readOnly is 'lease-based'. Turning it off trades lease safety for a faster
   * first election; tests that start nodes "with history" at once do.
   */
  readonly restartVoteFence?: boolean
  /**
   * The member holds no state of the group yet (a new replica, or one whose snapshot install was
   * cut short and whose log was reset): it neither votes nor campaigns until a snapshot has been
   * restored. A voter that lost entries it acknowledged must not help elect a leader that lacks
   * them. Default false.
   */
  readonly awaitingSnapshot?: boolean
  /** Per-message batching and flow control; may only tighten `limits`. */
  readonly appendBytesMax?: number
  readonly appendEntriesMax?: number
  readonly inflightAppendsMax?: number
  /** The leader refuses proposals ('overloaded') above this many uncommitted payload bytes. */
  readonly uncommittedBytesMax?: number
  /** Larger proposals are refused ('too-large'). */
  readonly proposalBytesMax?: number
  /** ReadIndex requests waiting for confirmation before 'overloaded'. */
  readonly readIndexPendingMax?: number
  /** Bytes of committed entries handed out per Ready (at least one entry is always handed out). */
  readonly committedBytesPerReadyMax?: number
  /**
   * Highest term this node accepts from a message or reaches by campaigning; may only tighten
   * `limits.raftTermMax`. A stored term above it is recovered at start (see `Raft`).
   */
  readonly termMax?: number
  /** How far one message may raise this node's term; may only tighten `limits.raftTermJumpMax`. */
  readonly termJumpMax?: number
  /** Highest log index a message may name; may only tighten `limits.raftIndexMax`. */
  readonly indexMax?: number
  /** Tests only. */
  readonly testingFaults?: TestingFaults
}

export interface RaftComponents {
  readonly storage: LogStorage
  /** Election jitter comes only from here (STYLE.md 7.6). */
  readonly random: Random
  readonly logger: Logger
  /**
   * Whether the data of a normal entry is something the state machine can apply. A follower
   * refuses an append carrying an entry that fails it, before anything is appended, so a buggy or
   * hostile leader cannot plant an entry that stops every replica applying it. Pure and
   * deterministic (a decode, no I/O). Default: every entry is acceptable.
   */
  readonly entryAcceptable?: (data: Uint8Array) => boolean
}

/** RaftConfig with every default filled in. */
export interface ResolvedConfig {
  readonly id: NodeId
  readonly electionTicks: number
  readonly heartbeatTicks: number
  readonly applied: LogIndex | null
  readonly preVote: boolean
  readonly checkQuorum: boolean
  readonly readOnly: ReadOnlyOption
  readonly driftTicks: number
  readonly leaseTicks: number
  readonly restartVoteFence: boolean
  readonly awaitingSnapshot: boolean
  readonly appendBytesMax: number
  readonly appendEntriesMax: number
  readonly inflightAppendsMax: number
  readonly uncommittedBytesMax: number
  readonly proposalBytesMax: number
  readonly readIndexPendingMax: number
  readonly committedBytesPerReadyMax: number
  readonly termMax: number
  readonly termJumpMax: number
  readonly indexMax: number
  readonly grantVoteWithoutLogCheck: boolean
  readonly commitPreviousTermByCounting: boolean
}

function tightened(name: string, value: number | undefined, max: number): number {
  if (value === undefined) return max
  assert(Number.isSafeInteger(value) && value > 0, `raft config: ${name} must be a positive integer`)
  assert(value <= max, `raft config: ${name} may only tighten the limit ${max}`)
  return value
}

/** Fills defaults and validates. Throws AssertionError on a bad configuration. */
export function resolveConfig(c: RaftConfig): ResolvedConfig {
  assert(Number.isSafeInteger(c.id) && c.id > 0, 'raft config: id must be a positive integer')
  const electionTicks = c.electionTicks ?? 10
  const heartbeatTicks = c.heartbeatTicks ?? 1
  assert(
    Number.isSafeInteger(heartbeatTicks) && heartbeatTicks > 0,
    'raft config: heartbeatTicks must be > 0',
  )
  assert(Number.isSafeInteger(electionTicks), 'raft config: electionTicks must be an integer')
  assert(electionTicks > heartbeatTicks, 'raft config: electionTicks must be > heartbeatTicks')
  const checkQuorum = c.checkQuorum ?? true
  const readOnly = c.readOnly ?? ReadOnlyOption.Safe
  const driftTicks = c.driftTicks ?? 1
  assert(Number.isSafeInteger(driftTicks) && driftTicks >= 0, 'raft config: driftTicks must be >= 0')
  const leaseTicks = electionTicks - driftTicks
  assert(leaseTicks >= 1, 'raft config: leaseTicks = electionTicks - driftTicks must be >= 1')
  if (readOnly === ReadOnlyOption.LeaseBased) {
    assert(
      checkQuorum,
      'raft config: lease-based reads need checkQuorum (the lease is the stickiness of §4.2.3)',
    )
    assert(driftTicks >= 1, 'raft config: lease-based reads need a drift bound of at least one tick')
  }
  const appendBytesMax = tightened('appendBytesMax', c.appendBytesMax, limits.appendBytesMax)
  const proposalBytesMax = tightened('proposalBytesMax', c.proposalBytesMax, limits.proposalBytesMax)
  const uncommittedBytesMax = tightened(
    'uncommittedBytesMax',
    c.uncommittedBytesMax,
    limits.uncommittedBytesMax,
  )
  return {
    id: c.id,
    electionTicks,
    heartbeatTicks,
    applied: c.applied ?? null,
    preVote: c.preVote ?? true,
    checkQuorum,
    readOnly,
    driftTicks,
    leaseTicks,
    restartVoteFence: c.restartVoteFence ?? readOnly === ReadOnlyOption.LeaseBased,
    awaitingSnapshot: c.awaitingSnapshot ?? false,
    appendBytesMax,
    appendEntriesMax: tightened('appendEntriesMax', c.appendEntriesMax, limits.appendEntriesMax),
    inflightAppendsMax: tightened('inflightAppendsMax', c.inflightAppendsMax, limits.inflightAppendsMax),
    uncommittedBytesMax,
    proposalBytesMax,
    readIndexPendingMax: tightened('readIndexPendingMax', c.readIndexPendingMax, limits.readIndexPendingMax),
    committedBytesPerReadyMax: tightened(
      'committedBytesPerReadyMax',
      c.committedBytesPerReadyMax,
      limits.appendBytesMax,
    ),
    termMax: tightened('termMax', c.termMax, limits.raftTermMax),
    termJumpMax: tightened('termJumpMax', c.termJumpMax, limits.raftTermJumpMax),
    indexMax: tightened('indexMax', c.indexMax, limits.raftIndexMax),
    grantVoteWithoutLogCheck: c.testingFaults?.grantVoteWithoutLogCheck ?? false,
    commitPreviousTermByCounting: c.testingFaults?.commitPreviousTermByCounting ?? false,
  }
}
