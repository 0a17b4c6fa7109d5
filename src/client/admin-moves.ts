/**
 * Moving replicas through the admin API (admin.proto MoveReplica, ListMoves,
 * TransferShardLeader): what `kvctl shards move`, `kvctl shards moves` and `kvctl shards
 * transfer-leader` call. Any node takes the call (it passes moves to the meta leader), so each
 * call goes to the endpoints in turn until one answers: an endpoint that cannot be reached
 * (UNAVAILABLE, DEADLINE_EXCEEDED) is skipped, any other answer (a refusal included) is final.
 * One attempt per endpoint: a move is not retried blindly (a retry of a move that was recorded
 * would meet SHARD_BUSY). Not re-exported from the package index: an operator tool.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import {
  type ListMovesResponse,
  type MoveInfo,
  type MoveReplicaResponse,
  type TransferShardLeaderResponse,
} from '../gen/ringkv/v1/admin.ts'
import { adminCallAny, type AdminCallOptions } from './admin-call.ts'

export type { AdminCallOptions } from './admin-call.ts'

/** One move as the meta leader reports it. */
export interface MoveStatus {
  readonly shardId: number
  readonly from: number
  readonly to: number
  /** prepare | learner | catchup | transfer | replace | cleanup | done | failed | cancelled */
  readonly step: string
  readonly epoch: number
  readonly startedMs: number
  readonly updatedMs: number
  /** 0 while running. */
  readonly finishedMs: number
  /** Why it waits or failed ('' while it progresses). */
  readonly reason: string
  readonly bytesSent: number
  /** 0 when unknown. */
  readonly bytesTotal: number
}

/** A move as the admin API sends it, as the operator tools show it. */
export function moveFromWire(m: MoveInfo): MoveStatus {
  return {
    shardId: m.shardId,
    from: m.fromNode,
    to: m.toNode,
    step: m.step,
    epoch: m.epoch,
    startedMs: m.startedMs,
    updatedMs: m.updatedMs,
    finishedMs: m.finishedMs,
    reason: m.reason,
    bytesSent: m.bytesSent,
    bytesTotal: m.bytesTotal,
  }
}

function checkId(value: number, what: string): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new TypeError(`bad ${what} ${value}`)
}

/**
 * Asks the cluster to move the replica of `shardId` on node `from` to node `to`; resolves once the
 * move is recorded (its progress is in `listMoves`). Rejects with a KvError: NOT_FOUND,
 * MOVE_REFUSED (details.field names the argument), STALE_EPOCH (`epoch` given and not the
 * shard's), SHARD_BUSY, UNAVAILABLE.
 */
export async function moveReplica(
  endpoints: readonly string[],
  request: { readonly shardId: number; readonly from: number; readonly to: number; readonly epoch?: number },
  options: AdminCallOptions = {},
): Promise<MoveStatus> {
  checkId(request.shardId, 'shard id')
  checkId(request.from, 'node id')
  checkId(request.to, 'node id')
  checkId(request.epoch ?? 0, 'epoch')
  const res = await adminCallAny<MoveReplicaResponse>(endpoints, options, (client, md, deadline, cb) =>
    client.moveReplica(
      { shardId: request.shardId, fromNode: request.from, toNode: request.to, epoch: request.epoch ?? 0 },
      md,
      { deadline },
      cb,
    ),
  )
  if (res.move === undefined) throw new KvError(ErrorCode.Internal, 'move answer without the move')
  return moveFromWire(res.move)
}

/** The moves in progress and the latest finished ones (newest first). */
export async function listMoves(
  endpoints: readonly string[],
  options: AdminCallOptions = {},
): Promise<{ running: MoveStatus[]; recent: MoveStatus[] }> {
  const res = await adminCallAny<ListMovesResponse>(endpoints, options, (client, md, deadline, cb) =>
    client.listMoves({}, md, { deadline }, cb),
  )
  return { running: res.running.map(moveFromWire), recent: res.recent.map(moveFromWire) }
}

/** Moves the leadership of `shardId` to node `to`; resolves once it leads. */
export async function transferShardLeader(
  endpoints: readonly string[],
  request: { readonly shardId: number; readonly to: number },
  options: AdminCallOptions = {},
): Promise<{ leaderId: number; term: number }> {
  checkId(request.shardId, 'shard id')
  checkId(request.to, 'node id')
  return await adminCallAny<TransferShardLeaderResponse>(endpoints, options, (client, md, deadline, cb) =>
    client.transferShardLeader({ shardId: request.shardId, toNode: request.to }, md, { deadline }, cb),
  )
}
