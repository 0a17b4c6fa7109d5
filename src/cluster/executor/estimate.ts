/**
 * Bytes and time of planned moves (pure). A move copies its shard: a snapshot of about the shard's
 * size, as its leader last reported it (heartbeats carry it; the meta leader keeps it in memory).
 * The snapshot is streamed by the shard's leader, throttled per sending node (kvd
 * --snapshot-rate, all its streams together), with at most `movesMax` moves at once:
 *
 *   time = max( the busiest sender's bytes / rate,  all bytes / (rate * min(movesMax, senders)) )
 *
 * A lower bound in practice (catching up with the log, the configuration changes and the polls
 * add a few seconds a move); moves of shards of unknown size are counted apart, not guessed.
 */
import type { NodeId, ShardId } from '../../common/ids.ts'
import type { PlannedMove } from '../../planner/index.ts'

export interface PlanEstimate {
  /** Snapshot bytes of the moves whose shard's size is known. */
  readonly bytes: number
  /** Milliseconds at the snapshot throttle (0 when nothing is known or the rate is 0). */
  readonly ms: number
  /** Moves whose shard's size is unknown. */
  readonly unsized: number
}

export interface EstimateInput {
  readonly moves: readonly PlannedMove[]
  /** A shard's size in bytes, undefined when unknown. */
  readonly bytesOf: (shardId: ShardId) => number | undefined
  /** The node that streams the shard's snapshot: its leader (or, unknown, the move's source). */
  readonly senderOf: (move: PlannedMove) => NodeId | undefined
  /** Snapshot bytes per second of one sending node. */
  readonly rateBps: number
  readonly movesMax: number
}

export function estimatePlan(input: EstimateInput): PlanEstimate {
  let bytes = 0
  let unsized = 0
  const perSender = new Map<number, number>()
  for (const m of input.moves) {
    const size = input.bytesOf(m.shardId)
    if (size === undefined) {
      unsized++
      continue
    }
    bytes += size
    const sender = input.senderOf(m) ?? 0
    perSender.set(sender, (perSender.get(sender) ?? 0) + size)
  }
  if (bytes === 0 || !(input.rateBps > 0)) return { bytes, ms: 0, unsized }
  const busiest = Math.max(...perSender.values())
  const lanes = Math.max(1, Math.min(input.movesMax, perSender.size))
  const seconds = Math.max(busiest / input.rateBps, bytes / (input.rateBps * lanes))
  return { bytes, ms: Math.ceil(seconds * 1000), unsized }
}
