/**
 * Session tokens: read-your-writes and monotonic reads across calls (ARCHITECTURE.md section 2,
 * level `session`). A tracker keeps the highest applied index seen per shard in any receipt and
 * sends all of it as the SessionToken of session reads; a replica serves such a read only once
 * its applied index has reached the token's entry for its shard.
 */
import type { SessionToken as WireSessionToken } from '../gen/ringkv/v1/kv.ts'
import type { Receipt } from './types.ts'

/** A session's position: shard id -> highest applied index seen. Serializable as JSON. */
export type SessionToken = Readonly<Record<number, number>>

export class SessionTracker {
  // Invariant: values only grow (a receipt with a lower index never lowers an entry).
  private readonly appliedByShard = new Map<number, number>()

  constructor(initial?: SessionToken) {
    if (initial !== undefined) {
      for (const [shard, index] of Object.entries(initial)) this.observeIndex(Number(shard), index)
    }
  }

  /** Folds a receipt into the session. */
  observe(receipt: Receipt | undefined): void {
    if (receipt === undefined) return
    this.observeIndex(receipt.shardId, receipt.appliedIndex)
  }

  private observeIndex(shardId: number, appliedIndex: number): void {
    if (!Number.isSafeInteger(shardId) || shardId < 0) return
    if (!Number.isSafeInteger(appliedIndex) || appliedIndex <= 0) return
    const seen = this.appliedByShard.get(shardId) ?? 0
    if (appliedIndex > seen) this.appliedByShard.set(shardId, appliedIndex)
  }

  /** A copy of the session's position. */
  token(): SessionToken {
    return Object.fromEntries(this.appliedByShard)
  }

  /** The token as the wire message. */
  toWire(): WireSessionToken {
    return { appliedIndexByShard: Object.fromEntries(this.appliedByShard) }
  }
}
