/**
 * The membership changes a shard's leader carries out for the mover (cluster/), and the rules
 * that keep a shard safe while its replicas move (ARCHITECTURE.md section 4, "A node joins").
 * Pure: the leader's Raft view comes in as arguments.
 *
 *   addLearner X   X joins as a learner (no vote); it is caught up by a snapshot, then the log.
 *   promote X      a caught-up learner becomes a voter (a single-voter change, §4.1).
 *   replace X, Y   a caught-up learner X takes the place of voter Y through joint consensus (§4.3:
 *                  C_old,new, then C_new), never by removing first and adding later.
 *   remove X       a learner, or a voter that is not the leader, leaves.
 *
 * Rules checked before a change is proposed (each refusal is a KvError with a stable code):
 * - the change names the configuration it was planned against (the shard's epoch): planned
 *   against an older one it is STALE_EPOCH, unless its end state already holds (then it is done:
 *   every step is idempotent);
 * - one change at a time: while a configuration is joint or a change is in flight, SHARD_BUSY;
 * - a learner that has not caught up is never promoted (MOVE_REFUSED);
 * - the leader is never removed or replaced while it leads: leadership moves first (MOVE_REFUSED,
 *   field `remove`);
 * - after the change, the voters that are up to date (caught up and recently heard from; the
 *   leader itself counts) still form a quorum of every voter set of the new configuration
 *   (both halves while joint), so a shard never has fewer than a quorum of up-to-date voters.
 */
import { ErrorCode, KvError, type LogIndex, type NodeId } from '../common/index.ts'
import { ConfChangeTransition, ConfChangeType, type ConfChange, type ConfState } from '../raft/index.ts'

export type ReplicaChange =
  | { readonly kind: 'addLearner'; readonly node: NodeId }
  | { readonly kind: 'promote'; readonly node: NodeId }
  | { readonly kind: 'replace'; readonly add: NodeId; readonly remove: NodeId }
  | { readonly kind: 'remove'; readonly node: NodeId }

/** What the leader knows of one member's replication (raft Status progress). */
export interface MemberProgress {
  readonly match: LogIndex
  readonly recentActive: boolean
}

export interface LeaderView {
  readonly self: NodeId
  /** The applied configuration. */
  readonly conf: ConfState
  /** The leader's last log index. */
  readonly lastIndex: LogIndex
  readonly progress: ReadonlyMap<NodeId, MemberProgress>
}

/** Entries a member may lag the leader's last index by and still count as caught up. */
export const caughtUpLagEntriesMax = 64

/** Every member of a configuration (voters of both halves, learners, next learners). */
export function membersOf(cs: ConfState): Set<NodeId> {
  return new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext])
}

export function isJointConf(cs: ConfState): boolean {
  return cs.votersOutgoing.length > 0
}

/** True when the change's end state holds in `cs` (and `cs` is not joint): nothing is left to do. */
export function changeDone(cs: ConfState, change: ReplicaChange): boolean {
  if (isJointConf(cs)) return false
  switch (change.kind) {
    case 'addLearner':
      return cs.learners.includes(change.node) || cs.voters.includes(change.node)
    case 'promote':
      return cs.voters.includes(change.node)
    case 'replace':
      return cs.voters.includes(change.add) && !membersOf(cs).has(change.remove)
    case 'remove':
      return !membersOf(cs).has(change.node)
  }
}

/**
 * A member counts as up to date when it is the leader, or it acknowledged some state (a member
 * added later acknowledges nothing before its first snapshot is installed: every group's log
 * starts above index 0), is within caughtUpLagEntriesMax of the leader's last index, and was
 * heard from recently.
 */
export function isUpToDate(view: LeaderView, id: NodeId): boolean {
  if (id === view.self) return true
  const p = view.progress.get(id)
  return p !== undefined && p.recentActive && p.match > 0 && p.match + caughtUpLagEntriesMax >= view.lastIndex
}

function refused(message: string, field: string): KvError {
  return new KvError(ErrorCode.MoveRefused, message, { details: { field } })
}

/** Voters of the configuration after `change` (undefined for changes that keep the voters). */
function votersAfter(cs: ConfState, change: ReplicaChange): readonly NodeId[] {
  switch (change.kind) {
    case 'addLearner':
      return cs.voters
    case 'promote':
      return [...cs.voters, change.node]
    case 'replace':
      return [...cs.voters.filter((id) => id !== change.remove), change.add]
    case 'remove':
      return cs.voters.filter((id) => id !== change.node)
  }
}

/**
 * Checks `change` against the rules (see the file comment) and returns the Raft conf change that
 * carries it out. Throws KvError MOVE_REFUSED or SHARD_BUSY. Call `changeDone` first.
 */
export function planConfChange(view: LeaderView, change: ReplicaChange): ConfChange {
  const cs = view.conf
  if (isJointConf(cs))
    throw new KvError(ErrorCode.ShardBusy, 'the shard is between two configurations (joint consensus)')
  const members = membersOf(cs)
  switch (change.kind) {
    case 'addLearner':
      if (members.has(change.node))
        throw refused(`node ${change.node} is already a member of the shard`, 'node')
      return {
        changes: [{ type: ConfChangeType.AddLearner, nodeId: change.node }],
        transition: ConfChangeTransition.Auto,
      }
    case 'promote': {
      if (!cs.learners.includes(change.node))
        throw refused(`node ${change.node} is not a learner of the shard`, 'node')
      if (!isUpToDate(view, change.node))
        throw refused(`learner ${change.node} has not caught up yet`, 'node')
      checkQuorum(view, votersAfter(cs, change))
      return {
        changes: [{ type: ConfChangeType.AddNode, nodeId: change.node }],
        transition: ConfChangeTransition.Auto,
      }
    }
    case 'replace': {
      if (change.add === change.remove) throw refused('a node cannot replace itself', 'add')
      if (!cs.learners.includes(change.add))
        throw refused(`node ${change.add} must be a learner of the shard first`, 'add')
      if (!cs.voters.includes(change.remove))
        throw refused(`node ${change.remove} is not a voter of the shard`, 'remove')
      if (change.remove === view.self)
        throw refused(`node ${change.remove} leads the shard: transfer leadership first`, 'remove')
      if (!isUpToDate(view, change.add)) throw refused(`learner ${change.add} has not caught up yet`, 'add')
      // Joint: both the outgoing voters (today's) and the incoming ones must keep an up-to-date quorum.
      checkQuorum(view, cs.voters)
      checkQuorum(view, votersAfter(cs, change))
      return {
        changes: [
          { type: ConfChangeType.AddNode, nodeId: change.add },
          { type: ConfChangeType.RemoveNode, nodeId: change.remove },
        ],
        transition: ConfChangeTransition.Implicit,
      }
    }
    case 'remove': {
      if (!members.has(change.node)) throw refused(`node ${change.node} is not a member of the shard`, 'node')
      if (change.node === view.self)
        throw refused(`node ${change.node} leads the shard: transfer leadership first`, 'node')
      if (cs.voters.includes(change.node)) {
        const after = votersAfter(cs, change)
        if (after.length === 0) throw refused('a shard cannot lose its last voter', 'node')
        checkQuorum(view, after)
      }
      return {
        changes: [{ type: ConfChangeType.RemoveNode, nodeId: change.node }],
        transition: ConfChangeTransition.Auto,
      }
    }
  }
}

function checkQuorum(view: LeaderView, voters: readonly NodeId[]): void {
  const upToDate = voters.filter((id) => isUpToDate(view, id)).length
  const quorum = Math.floor(voters.length / 2) + 1
  if (upToDate < quorum)
    throw refused(
      `only ${upToDate} of the ${voters.length} voters after the change are up to date; a quorum needs ${quorum}`,
      'quorum',
    )
}
