/**
 * A plan's moves applied to a shard map as if the executor finished each one (pure): the replica
 * on `from` becomes one on `to` in the same place of the preference order, or `to` is appended.
 * For simulations and tests of convergence; the epoch rises by one per move (the real executor
 * raises it more, and the planner only carries it). `shards` are indexed by id (shard i at i).
 */
import { assert } from '../common/assert.ts'
import type { PlannedMove, PlannerShard } from './input.ts'

export function applyMoves(shards: readonly PlannerShard[], moves: readonly PlannedMove[]): PlannerShard[] {
  const out = [...shards]
  for (const m of moves) {
    const shard = out[m.shardId]
    assert(shard !== undefined && shard.shardId === m.shardId, `move of unknown shard ${m.shardId}`)
    assert(!shard.replicas.includes(m.to), `node ${m.to} already holds shard ${m.shardId}`)
    const replicas =
      m.from === undefined
        ? [...shard.replicas, m.to]
        : shard.replicas.map((id) => (id === m.from ? m.to : id))
    assert(
      m.from === undefined || shard.replicas.includes(m.from),
      `node ${m.from} holds no shard ${m.shardId}`,
    )
    out[m.shardId] = { shardId: shard.shardId, replicas, epoch: shard.epoch + 1 }
  }
  return out
}
