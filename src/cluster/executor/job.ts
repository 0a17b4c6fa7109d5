/**
 * The rebalancing job record (one at a time, meta key 'job'; records.ts style: JSON, every field
 * checked on decode, a record that is not what `encodeJob` writes is corruption and fails stop).
 *
 * A job is what an operator steers: it starts when the planner has work the executor may run (a
 * repair after a death, a drain, balance after a join), lists its moves (running first, then the
 * rest of the latest plan, at most rebalanceJobMovesListedMax; the rest counted in `planned`),
 * counts what ended, and ends `done` when the planner has nothing left, or `cancelled`.
 *
 *   running    the executor starts moves as the throttles allow
 *   paused     no move starts; the running ones finish their steps
 *   cancelled  ended by an operator; running moves finish (a move in joint consensus always does)
 *   done       nothing left to plan and nothing running
 */
import { assert } from '../../common/assert.ts'
import { NodeId, ShardId } from '../../common/ids.ts'
import { moveReasons, type MoveReason } from '../../planner/index.ts'

export type JobState = 'running' | 'paused' | 'cancelled' | 'done'
export const jobStates: readonly JobState[] = ['running', 'paused', 'cancelled', 'done']

/** A move of the job: planned (not started), running (recorded with the mover), or ended. */
export type JobMoveState = 'planned' | 'running' | 'done' | 'failed'
export const jobMoveStates: readonly JobMoveState[] = ['planned', 'running', 'done', 'failed']

export interface JobMove {
  readonly shardId: ShardId
  /** 0: a replica added (no source). */
  readonly from: number
  readonly to: NodeId
  readonly reason: MoveReason
  readonly state: JobMoveState
  /** Snapshot bytes the destination had received when last seen (running) or at its end. */
  readonly bytes: number
}

export interface JobRecord {
  /** Counts up from 1 over the cluster's life. */
  readonly id: number
  /** What started it: the reason of the first move of its first plan. */
  readonly trigger: MoveReason
  readonly state: JobState
  /** Wall-clock ms of the meta leader. */
  readonly createdMs: number
  readonly updatedMs: number
  /** 0 while it has not ended. */
  readonly finishedMs: number
  /** The node registry the job was planned for (states, zones, weights), as a key. */
  readonly registry: string
  /** Listed moves: running first, then planned (the latest plan's order). */
  readonly moves: readonly JobMove[]
  /** Moves of the latest plan not listed. */
  readonly unlisted: number
  /** Moves started by this job, and how they ended. */
  readonly started: number
  readonly done: number
  readonly failed: number
  /** Snapshot bytes of the moves that ended done. */
  readonly bytes: number
  /** Why it waits ('' while it progresses): blocked shards, safe mode, plan only. */
  readonly reason: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

export const jobKey = encoder.encode('job')

export function encodeJob(j: JobRecord): Uint8Array {
  return encoder.encode(
    JSON.stringify({
      id: j.id,
      trigger: j.trigger,
      state: j.state,
      createdMs: j.createdMs,
      updatedMs: j.updatedMs,
      finishedMs: j.finishedMs,
      registry: j.registry,
      moves: j.moves.map((m) => ({
        shardId: m.shardId,
        from: m.from,
        to: m.to,
        reason: m.reason,
        state: m.state,
        bytes: m.bytes,
      })),
      unlisted: j.unlisted,
      started: j.started,
      done: j.done,
      failed: j.failed,
      bytes: j.bytes,
      reason: j.reason,
    }),
  )
}

function corrupt(field: string): string {
  return `corrupt meta record (job.${field})`
}

function uint(o: Record<string, unknown>, field: string): number {
  const v = o[field]
  assert(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0, corrupt(field))
  return v
}

function str(o: Record<string, unknown>, field: string): string {
  const v = o[field]
  assert(typeof v === 'string', corrupt(field))
  return v
}

function obj(v: unknown, field: string): Record<string, unknown> {
  assert(typeof v === 'object' && v !== null && !Array.isArray(v), corrupt(field))
  return v as Record<string, unknown>
}

export function decodeJob(bytes: Uint8Array): JobRecord {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(bytes))
  } catch {
    assert(false, 'corrupt meta record (job): not JSON')
  }
  const o = obj(value, 'record')
  const trigger = str(o, 'trigger') as MoveReason
  assert(moveReasons.includes(trigger), corrupt('trigger'))
  const state = str(o, 'state') as JobState
  assert(jobStates.includes(state), corrupt('state'))
  const moves = o.moves
  assert(Array.isArray(moves), corrupt('moves'))
  return {
    id: uint(o, 'id'),
    trigger,
    state,
    createdMs: uint(o, 'createdMs'),
    updatedMs: uint(o, 'updatedMs'),
    finishedMs: uint(o, 'finishedMs'),
    registry: str(o, 'registry'),
    moves: moves.map((raw: unknown) => {
      const m = obj(raw, 'moves')
      const reason = str(m, 'reason') as MoveReason
      assert(moveReasons.includes(reason), corrupt('moves.reason'))
      const moveState = str(m, 'state') as JobMoveState
      assert(jobMoveStates.includes(moveState), corrupt('moves.state'))
      const to = uint(m, 'to')
      assert(to > 0, corrupt('moves.to'))
      return {
        shardId: ShardId(uint(m, 'shardId')),
        from: uint(m, 'from'),
        to: NodeId(to),
        reason,
        state: moveState,
        bytes: uint(m, 'bytes'),
      }
    }),
    unlisted: uint(o, 'unlisted'),
    started: uint(o, 'started'),
    done: uint(o, 'done'),
    failed: uint(o, 'failed'),
    bytes: uint(o, 'bytes'),
    reason: str(o, 'reason'),
  }
}
