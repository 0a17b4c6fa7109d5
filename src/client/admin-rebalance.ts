/**
 * Rebalancing and node lifecycle through the admin API (admin.proto Rebalance, NodeAction): what
 * `kvctl rebalance` and `kvctl node` call. Any node takes the call (it passes it on to the meta
 * leader, whose executor answers), so each call goes to the endpoints in turn until one answers
 * (admin-call.ts adminCallAny). Pause, resume, cancel, undrain and a drain already recorded are
 * idempotent. Not re-exported from the package index: an operator tool.
 */
import type {
  NodeActionResponse,
  PlannedMoveInfo,
  RebalanceJobInfo,
  RebalanceResponse,
} from '../gen/ringkv/v1/admin.ts'
import { adminCallAny, type AdminCallOptions } from './admin-call.ts'

export type { AdminCallOptions } from './admin-call.ts'
export type { NodeActionResponse, PlannedMoveInfo, RebalanceJobInfo, RebalanceResponse }

export type RebalanceAction = 'status' | 'plan' | 'pause' | 'resume' | 'cancel'
export type NodeAction = 'drain' | 'undrain' | 'remove'

/**
 * The rebalancing job and plan after `action` (status and plan change nothing). Rejects with a
 * KvError: NOT_FOUND (pause, resume or cancel without an open job), UNAVAILABLE.
 */
export async function rebalance(
  endpoints: readonly string[],
  action: RebalanceAction,
  options: AdminCallOptions = {},
): Promise<RebalanceResponse> {
  return await adminCallAny<RebalanceResponse>(endpoints, options, (client, md, deadline, cb) =>
    client.rebalance({ action }, md, { deadline }, cb),
  )
}

/**
 * A node's drain (pre-flight first: `possible` false lists the blocking shards and changes
 * nothing), undrain or removal. Rejects with a KvError: NOT_FOUND (no such node), MOVE_REFUSED
 * (the node is not in a state for it, or still holds replicas), UNAVAILABLE.
 */
export async function nodeAction(
  endpoints: readonly string[],
  request: {
    readonly nodeId: number
    readonly action: NodeAction
    readonly dryRun?: boolean
    readonly force?: boolean
  },
  options: AdminCallOptions = {},
): Promise<NodeActionResponse> {
  if (!(Number.isSafeInteger(request.nodeId) && request.nodeId > 0))
    throw new TypeError(`bad node id ${request.nodeId}`)
  return await adminCallAny<NodeActionResponse>(endpoints, options, (client, md, deadline, cb) =>
    client.nodeAction(
      {
        nodeId: request.nodeId,
        action: request.action,
        dryRun: request.dryRun === true,
        force: request.force === true,
      },
      md,
      { deadline },
      cb,
    ),
  )
}
