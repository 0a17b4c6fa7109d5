/**
 * The exactly-once sessions of one client, one per shard (Raft thesis §6.3 RegisterClient; the
 * shard side is shard/dedup.ts). A shard applies tagged writes only on a session registered on it
 * for the caller, so before the first tagged write to a shard the client registers its id there
 * (`ensure`), once, and then tags every write to that shard with it.
 *
 * When a shard answers SESSION_EXPIRED (the session expired, or was given up under the caller's
 * quota), the write that got it fails: it may have applied before the session was lost, so it is
 * never retried. Later writes to that shard use a fresh id (`expire`), registered anew with the
 * client's first incomplete seq as its floor, so no retry of an earlier write can apply under it.
 */

interface ShardSession {
  readonly id: string
  /** The registration in flight or done; undefined until the first write, and after a failure. */
  ready: Promise<void> | undefined
}

export class ShardSessions {
  private readonly byShard = new Map<number, ShardSession>()

  /**
   * `baseId`: the id every shard's session starts with (the client's id). `freshId`: a new random
   * id, for a session that replaces an expired one.
   */
  constructor(
    private readonly baseId: string,
    private readonly freshId: () => string,
  ) {}

  /**
   * The id to tag a write to `shardId` with, once it is registered there (by `register`, which
   * must be idempotent). With the shard unknown (no shard map yet), registers at every call.
   */
  async ensure(shardId: number | undefined, register: (id: string) => Promise<void>): Promise<string> {
    if (shardId === undefined) {
      await register(this.baseId)
      return this.baseId
    }
    let s = this.byShard.get(shardId)
    if (s === undefined) {
      s = { id: this.baseId, ready: undefined }
      this.byShard.set(shardId, s)
    }
    const session = s
    session.ready ??= register(session.id).catch((err: unknown) => {
      session.ready = undefined
      throw err
    })
    await session.ready
    return session.id
  }

  /** `shardId` refused `id` (SESSION_EXPIRED): its later writes go on a fresh session. */
  expire(shardId: number | undefined, id: string): void {
    if (shardId === undefined) return
    const s = this.byShard.get(shardId)
    if (s === undefined || s.id !== id) return
    this.byShard.set(shardId, { id: this.freshId(), ready: undefined })
  }

  /** The id writes to `shardId` use now (for tests and logs). */
  idFor(shardId: number): string {
    return this.byShard.get(shardId)?.id ?? this.baseId
  }
}
