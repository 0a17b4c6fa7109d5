/**
 * Moves and replica control on the wire (admin.proto MoveInfo, replica.proto) and back: the one
 * place both sides map them. Everything from the wire is checked like any input: a malformed
 * value is INVALID_ARGUMENT (the field named), never trusted.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId, ShardId, isSafeUint } from '../common/ids.ts'
import {
  moveSteps,
  type MoveRecord,
  type MoveStep,
  type MoveView,
  type ReplicaChangeSpec,
  type ReplicaStateInfo,
  type ShardConfigInfo,
} from '../cluster/index.ts'
import type { MoveInfo } from '../gen/ringkv/v1/admin.ts'
import type {
  ReplicaChangeSpec as ReplicaChangeSpecProto,
  ReplicaStateResponse,
  ShardConfig,
} from '../gen/ringkv/v1/replica.ts'

function bad(field: string, what = field): KvError {
  return new KvError(ErrorCode.InvalidArgument, `malformed ${what}`, { details: { field } })
}

function nodeIds(ids: readonly number[], field: string): NodeId[] {
  return ids.map((id) => {
    if (!isSafeUint(id) || id === 0) throw bad(field)
    return NodeId(id)
  })
}

export function moveToProto(m: MoveView | MoveRecord): MoveInfo {
  const v = m as Partial<MoveView>
  return {
    shardId: m.shardId,
    fromNode: m.from ?? 0,
    toNode: m.to,
    step: m.step,
    epoch: m.epoch,
    startedMs: m.startedMs,
    updatedMs: m.updatedMs,
    reason: m.reason,
    bytesSent: v.bytesSent ?? 0,
    bytesTotal: v.bytesTotal ?? 0,
    finishedMs: m.finishedMs,
  }
}

export function moveFromProto(p: MoveInfo): MoveView {
  if (!moveSteps.includes(p.step as MoveStep)) throw bad('step', 'move step')
  // from_node 0: the move adds a replica (no source).
  if (!isSafeUint(p.fromNode) || !isSafeUint(p.toNode) || p.toNode === 0) throw bad('node', 'move node')
  return {
    shardId: ShardId(p.shardId),
    ...(p.fromNode === 0 ? {} : { from: NodeId(p.fromNode) }),
    to: NodeId(p.toNode),
    step: p.step as MoveStep,
    epoch: p.epoch,
    startedMs: p.startedMs,
    updatedMs: p.updatedMs,
    finishedMs: p.finishedMs,
    reason: p.reason,
    bytesSent: p.bytesSent,
    bytesTotal: p.bytesTotal,
  }
}

export function configToProto(shardId: number, c: ShardConfigInfo): ShardConfig {
  return {
    shardId,
    epoch: c.epoch,
    voters: [...c.voters],
    learners: [...c.learners],
    votersOutgoing: [...c.votersOutgoing],
    leaderId: c.leaderId,
    term: c.term,
  }
}

export function configFromProto(p: ShardConfig | undefined): ShardConfigInfo {
  if (p === undefined) throw bad('config', 'shard configuration (missing)')
  return {
    epoch: p.epoch,
    voters: nodeIds(p.voters, 'config.voters'),
    learners: nodeIds(p.learners, 'config.learners'),
    votersOutgoing: nodeIds(p.votersOutgoing, 'config.votersOutgoing'),
    leaderId: p.leaderId,
    term: p.term,
  }
}

const changeKinds = {
  addLearner: 'add_learner',
  promote: 'promote',
  replace: 'replace',
  remove: 'remove',
} as const

export function changeToProto(c: ReplicaChangeSpec): ReplicaChangeSpecProto {
  return c.kind === 'replace'
    ? { kind: changeKinds.replace, node: c.add, remove: c.remove }
    : { kind: changeKinds[c.kind], node: c.node, remove: 0 }
}

export function changeFromProto(p: ReplicaChangeSpecProto | undefined): ReplicaChangeSpec {
  if (p === undefined) throw bad('change', 'replica change (missing)')
  const [node] = nodeIds([p.node], 'change.node')
  switch (p.kind) {
    case changeKinds.addLearner:
      return { kind: 'addLearner', node: node! }
    case changeKinds.promote:
      return { kind: 'promote', node: node! }
    case changeKinds.remove:
      return { kind: 'remove', node: node! }
    case changeKinds.replace: {
      const [remove] = nodeIds([p.remove], 'change.remove')
      return { kind: 'replace', add: node!, remove: remove! }
    }
    default:
      throw bad('change.kind', `replica change kind "${p.kind}"`)
  }
}

export function replicaStateToProto(shardId: number, s: ReplicaStateInfo): ReplicaStateResponse {
  return {
    found: s.found,
    state: s.state,
    role: s.role,
    config: configToProto(shardId, s.config),
    appliedIndex: s.appliedIndex,
    commitIndex: 0,
    lastIndex: s.lastIndex,
    progress: s.progress.map((p) => ({
      nodeId: p.nodeId,
      match: p.match,
      isLearner: p.isLearner,
      recentActive: p.recentActive,
      snapshotBytesSent: p.snapshotBytesSent,
    })),
    installBytes: s.installBytes,
    approximateBytes: s.approximateBytes,
  }
}

export function replicaStateFromProto(p: ReplicaStateResponse): ReplicaStateInfo {
  return {
    found: p.found,
    state: p.state,
    role: p.role,
    config: p.found ? configFromProto(p.config) : emptyConfig,
    appliedIndex: p.appliedIndex,
    lastIndex: p.lastIndex,
    progress: p.progress.map((x) => {
      if (!isSafeUint(x.nodeId) || x.nodeId === 0) throw bad('progress.nodeId')
      return {
        nodeId: NodeId(x.nodeId),
        match: x.match,
        isLearner: x.isLearner,
        recentActive: x.recentActive,
        snapshotBytesSent: x.snapshotBytesSent,
      }
    }),
    installBytes: p.installBytes,
    approximateBytes: p.approximateBytes,
  }
}

const emptyConfig: ShardConfigInfo = {
  epoch: 0,
  voters: [],
  learners: [],
  votersOutgoing: [],
  leaderId: 0,
  term: 0,
}
