/**
 * The membership changer (§4.3, etcd-io/raft confchange/confchange.go): computes the
 * configuration and progress map that result from a `ConfChange`, without touching the live
 * tracker. Invalid changes come back as an error string (they arrive in committed entries, so
 * they are operating errors, not bugs).
 */
import type { LogIndex, NodeId } from '../../common/index.ts'
import { ConfChangeTransition, ConfChangeType } from '../messages.ts'
import type { ConfChange, ConfChangeSingle } from '../messages.ts'
import { isJoint } from '../quorum/joint.ts'
import { Progress } from '../tracker/progress.ts'
import { checkConfigInvariants } from '../tracker/tracker.ts'
import type { TrackerConfig } from '../tracker/tracker.ts'

export type ChangeResult =
  | { readonly ok: true; readonly config: TrackerConfig; readonly progress: Map<NodeId, Progress> }
  | { readonly ok: false; readonly error: string }

interface MutableConfig {
  incoming: Set<NodeId>
  outgoing: Set<NodeId>
  learners: Set<NodeId>
  learnersNext: Set<NodeId>
  autoLeave: boolean
}

export interface ChangerInit {
  readonly config: TrackerConfig
  readonly progress: ReadonlyMap<NodeId, Progress>
  /** The leader's (or this node's) last index: new members start probing from here. */
  readonly lastIndex: LogIndex
  readonly inflightAppendsMax: number
}

/** Whether a ConfChange leaves a joint state, enters one, or is a simple change. */
export function changeKind(cc: ConfChange): 'leave-joint' | 'enter-joint' | 'simple' {
  if (cc.changes.length === 0) return 'leave-joint'
  if (cc.transition === ConfChangeTransition.Auto && cc.changes.length <= 1) return 'simple'
  return 'enter-joint'
}

/** Applies `cc` as the core does when the entry that carries it is applied. */
export function applyConfChange(init: ChangerInit, cc: ConfChange): ChangeResult {
  switch (changeKind(cc)) {
    case 'leave-joint':
      return leaveJoint(init)
    case 'simple':
      return simple(init, cc.changes)
    case 'enter-joint':
      return enterJoint(init, cc.transition !== ConfChangeTransition.Explicit, cc.changes)
  }
}

function copy(init: ChangerInit): { cfg: MutableConfig; progress: Map<NodeId, Progress> } {
  const c = init.config
  const cfg: MutableConfig = {
    incoming: new Set(c.voters.incoming),
    outgoing: new Set(c.voters.outgoing),
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  }
  // Progress objects are shared (they carry live replication state); only the map is copied.
  return { cfg, progress: new Map(init.progress) }
}

function freeze(cfg: MutableConfig, progress: Map<NodeId, Progress>): ChangeResult {
  const config: TrackerConfig = {
    voters: { incoming: cfg.incoming, outgoing: cfg.outgoing },
    learners: cfg.learners,
    learnersNext: cfg.learnersNext,
    autoLeave: cfg.autoLeave,
  }
  checkConfigInvariants(config, progress)
  return { ok: true, config, progress }
}

/** Enters a joint configuration: outgoing = current voters, incoming = voters after `changes`. */
export function enterJoint(
  init: ChangerInit,
  autoLeave: boolean,
  changes: readonly ConfChangeSingle[],
): ChangeResult {
  if (isJoint(init.config.voters)) return { ok: false, error: 'configuration is already joint' }
  if (init.config.voters.incoming.size === 0)
    return { ok: false, error: 'cannot make a zero-voter configuration joint' }
  const { cfg, progress } = copy(init)
  cfg.outgoing = new Set(cfg.incoming)
  const err = applyChanges(init, cfg, progress, changes)
  if (err !== null) return { ok: false, error: err }
  cfg.autoLeave = autoLeave
  return freeze(cfg, progress)
}

/** Leaves the joint configuration: the outgoing half is dropped, next learners become learners. */
export function leaveJoint(init: ChangerInit): ChangeResult {
  if (!isJoint(init.config.voters)) return { ok: false, error: 'configuration is not joint' }
  const { cfg, progress } = copy(init)
  for (const id of cfg.learnersNext) {
    cfg.learners.add(id)
    ensureProgress(init, progress, id, true)
  }
  cfg.learnersNext = new Set()
  for (const id of cfg.outgoing) {
    if (!cfg.incoming.has(id) && !cfg.learners.has(id)) progress.delete(id)
  }
  cfg.outgoing = new Set()
  cfg.autoLeave = false
  return freeze(cfg, progress)
}

/** A change of at most one voter, applied directly (§4.1 single-server change). */
export function simple(init: ChangerInit, changes: readonly ConfChangeSingle[]): ChangeResult {
  if (isJoint(init.config.voters))
    return { ok: false, error: 'cannot apply a simple change to a joint configuration' }
  const { cfg, progress } = copy(init)
  const err = applyChanges(init, cfg, progress, changes)
  if (err !== null) return { ok: false, error: err }
  let changed = 0
  for (const id of cfg.incoming) if (!init.config.voters.incoming.has(id)) changed++
  for (const id of init.config.voters.incoming) if (!cfg.incoming.has(id)) changed++
  if (changed > 1) return { ok: false, error: 'more than one voter changed without joint consensus' }
  return freeze(cfg, progress)
}

function applyChanges(
  init: ChangerInit,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  changes: readonly ConfChangeSingle[],
): string | null {
  for (const c of changes) {
    switch (c.type) {
      case ConfChangeType.AddNode:
        makeVoter(init, cfg, progress, c.nodeId)
        break
      case ConfChangeType.AddLearner:
        makeLearner(init, cfg, progress, c.nodeId)
        break
      case ConfChangeType.RemoveNode:
        remove(cfg, progress, c.nodeId)
        break
    }
  }
  if (cfg.incoming.size === 0) return 'removed all voters'
  return null
}

function ensureProgress(
  init: ChangerInit,
  progress: Map<NodeId, Progress>,
  id: NodeId,
  isLearner: boolean,
): void {
  const p = progress.get(id)
  if (p !== undefined) {
    // A fresh object, so the live tracker's entry is not changed until the result is adopted.
    const q = new Progress({
      match: p.match,
      next: p.next,
      isLearner,
      inflightAppendsMax: init.inflightAppendsMax,
      recentActive: p.recentActive,
    })
    q.state = p.state
    q.pendingSnapshot = p.pendingSnapshot
    q.probeSent = p.probeSent
    q.ackedRound = p.ackedRound
    progress.set(id, q)
    return
  }
  // A new member: probe from the leader's last index. It counts as recently active so that the
  // leader does not step down (check-quorum) before it had a chance to hear from it.
  progress.set(
    id,
    new Progress({
      match: 0 as LogIndex,
      next: Math.max(init.lastIndex, 1) as LogIndex,
      isLearner,
      inflightAppendsMax: init.inflightAppendsMax,
      recentActive: true,
    }),
  )
}

function makeVoter(init: ChangerInit, cfg: MutableConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  ensureProgress(init, progress, id, false)
  cfg.learners.delete(id)
  cfg.learnersNext.delete(id)
  cfg.incoming.add(id)
}

function makeLearner(
  init: ChangerInit,
  cfg: MutableConfig,
  progress: Map<NodeId, Progress>,
  id: NodeId,
): void {
  if (cfg.learners.has(id)) return
  cfg.incoming.delete(id)
  if (cfg.outgoing.has(id)) {
    // Still a voter in the outgoing half: it becomes a learner when the joint state is left.
    ensureProgress(init, progress, id, false)
    cfg.learnersNext.add(id)
  } else {
    ensureProgress(init, progress, id, true)
    cfg.learners.add(id)
  }
}

function remove(cfg: MutableConfig, progress: Map<NodeId, Progress>, id: NodeId): void {
  cfg.incoming.delete(id)
  cfg.learners.delete(id)
  cfg.learnersNext.delete(id)
  // An outgoing voter keeps its progress until the joint state is left.
  if (!cfg.outgoing.has(id)) progress.delete(id)
}
