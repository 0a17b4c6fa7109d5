/**
 * AdminService Rebalance and NodeAction (kvctl rebalance, kvctl node): served by the meta leader's
 * executor (cluster/executor), passed on once from any other node (ClusterAgent.serveRebalancing).
 * Wiring only: requests are checked here (INVALID_ARGUMENT with the field), decisions are the
 * executor's, and answers are converted to the proto.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { NodeId } from '../common/ids.ts'
import type { ClusterAgent } from '../cluster/index.ts'
import type { NodeActionResult, RebalanceStatus, WaitReason } from '../cluster/executor/index.ts'
import type {
  NodeActionRequest,
  NodeActionResponse,
  PlannedMoveInfo,
  RebalanceRequest,
  RebalanceResponse,
} from '../gen/ringkv/v1/admin.ts'
import { moveToProto } from '../router/index.ts'
import { unary, type Handler } from '../net/index.ts'
import type { PlannedMove } from '../planner/index.ts'

/** Planned moves one Rebalance answer lists (planned_total counts them all). */
export const rebalancePlannedListedMax = 512

export const rebalanceActions = ['status', 'plan', 'pause', 'resume', 'cancel'] as const
export const nodeActions = ['drain', 'undrain', 'remove'] as const

/** Passing a call on to the meta leader (router/meta-remote.ts GrpcMetaRemote). */
export interface RebalancePassOn {
  rebalance(address: string, request: RebalanceRequest, signal: AbortSignal): Promise<RebalanceResponse>
  nodeAction(address: string, request: NodeActionRequest, signal: AbortSignal): Promise<NodeActionResponse>
}

export interface RebalanceHandlerComponents {
  readonly cluster?: () => ClusterAgent | undefined
  readonly passOn?: RebalancePassOn
}

export function createRebalanceHandlers(c: RebalanceHandlerComponents): {
  rebalance: Handler
  nodeAction: Handler
} {
  const agent = (): ClusterAgent => {
    const a = c.cluster?.()
    if (a === undefined || c.passOn === undefined)
      throw new KvError(ErrorCode.Unavailable, 'this node has no control plane yet')
    return a
  }
  const rebalance = unary<RebalanceRequest, RebalanceResponse>(async (request, ctx) => {
    const action = request.action === '' ? 'status' : request.action
    if (!(rebalanceActions as readonly string[]).includes(action))
      throw invalid('action', `action must be one of ${rebalanceActions.join(', ')}`)
    return await agent().serveRebalancing(
      ctx.forwarded,
      async (executor, signal) => {
        if (action === 'pause' || action === 'resume' || action === 'cancel')
          await executor.steer(action, signal)
        return rebalanceToProto(await executor.status(signal))
      },
      (address, signal) => c.passOn!.rebalance(address, { action }, signal),
    )
  })
  const nodeAction = unary<NodeActionRequest, NodeActionResponse>(async (request, ctx) => {
    if (!(nodeActions as readonly string[]).includes(request.action))
      throw invalid('action', `action must be one of ${nodeActions.join(', ')}`)
    if (!Number.isSafeInteger(request.nodeId) || request.nodeId <= 0)
      throw invalid('node_id', `bad node id ${request.nodeId}`)
    return await agent().serveRebalancing(
      ctx.forwarded,
      async (executor, signal) =>
        nodeActionToProto(
          await executor.nodeAction(
            {
              nodeId: NodeId(request.nodeId),
              action: request.action as (typeof nodeActions)[number],
              dryRun: request.dryRun,
              force: request.force,
            },
            signal,
          ),
        ),
      (address, signal) => c.passOn!.nodeAction(address, request, signal),
    )
  })
  return { rebalance, nodeAction }
}

function plannedToProto(
  m: PlannedMove,
  wait: WaitReason | 'plan-only' | undefined,
  bytes: number | undefined,
): PlannedMoveInfo {
  return {
    shardId: m.shardId,
    fromNode: m.from ?? 0,
    toNode: m.to,
    reason: m.reason,
    wait: wait ?? '',
    bytes: bytes ?? 0,
  }
}

export function rebalanceToProto(s: RebalanceStatus): RebalanceResponse {
  const job = s.job
  const planned = s.plan.moves
    .slice(0, rebalancePlannedListedMax)
    .map((m) =>
      plannedToProto(
        m,
        s.waiting.get(m.shardId) ?? (!s.autoRebalance && m.reason === 'balance' ? 'plan-only' : undefined),
        s.bytesOf(m.shardId),
      ),
    )
  return {
    job:
      job === undefined
        ? undefined
        : {
            id: job.id,
            trigger: job.trigger,
            state: job.state,
            createdMs: job.createdMs,
            updatedMs: job.updatedMs,
            finishedMs: job.finishedMs,
            started: job.started,
            done: job.done,
            failed: job.failed,
            bytes: job.bytes,
            reason: job.reason,
          },
    running: s.running.map(moveToProto),
    planned,
    plannedTotal: s.plan.moves.length,
    safeMode: s.plan.safeMode?.message ?? '',
    blocked: s.plan.blocked.length,
    underReplicated: s.underReplicated,
    autoRebalance: s.autoRebalance,
    plannedBytes: s.estimate.bytes,
    plannedMs: s.estimate.ms,
    plannedUnsized: s.estimate.unsized,
    snapshotRateBps: s.snapshotRateBps,
  }
}

export function nodeActionToProto(r: NodeActionResult): NodeActionResponse {
  return {
    state: r.state,
    possible: r.possible,
    replicas: r.replicas,
    blockingShards: r.blocking.map((b) => b.shardId),
    blockingReasons: r.blocking.map((b) => b.reason),
    blockingCount: r.blockingCount,
    safeMode: r.safeMode,
    moves: r.moves.map((m) => plannedToProto(m, undefined, undefined)),
  }
}

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}
