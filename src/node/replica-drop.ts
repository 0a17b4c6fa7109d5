/**
 * Dropping a removed replica's data in the background (ARCHITECTURE.md section 4: "remove the old
 * replica (tombstone), and drop its data in the background"): its replicated ranges and its Raft
 * keys go in paced chunks through Engine.deleteRangeChunk (a native range delete where the engine
 * has one), so the node's other shards keep their disk and loop time. Only called once the
 * removal is committed (the replica is `removing`). Resumable: a crash leaves the record
 * `removing`, and the next start drops what is left; the tombstone is written after, synced,
 * which also makes the unsynced deletes durable.
 */
import type { Clock } from '../common/index.ts'
import { raftRange, type Engine } from '../storage/index.ts'
import { replicatedRanges, type ReplicaRecord } from './replica-record.ts'

export interface DropComponents {
  readonly engine: Engine
  readonly clock: Clock
  /** Keys per step. */
  readonly chunkKeys: number
  /** Pause between steps. */
  readonly pauseMs: number
  /** The node stopping: the drop ends, to resume at the next start. */
  readonly signal: AbortSignal
}

export async function dropReplicaData(record: ReplicaRecord, c: DropComponents): Promise<void> {
  for (const range of [...replicatedRanges(record), raftRange(record.shardId)]) {
    for (;;) {
      c.signal.throwIfAborted()
      const step = await c.engine.deleteRangeChunk(range, { keysMax: c.chunkKeys })
      if (step.done) break
      await pause(c)
    }
  }
}

function pause(c: DropComponents): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      timer.cancel()
      reject(c.signal.reason as Error)
    }
    const timer = c.clock.setTimer(c.pauseMs, () => {
      c.signal.removeEventListener('abort', onAbort)
      resolve()
    })
    c.signal.addEventListener('abort', onAbort, { once: true })
  })
}
