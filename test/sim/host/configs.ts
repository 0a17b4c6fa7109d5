/**
 * Who holds each shard, as the shards themselves say: the harness's book of every Raft
 * configuration a replica was seen to have applied (status() of the live hosts, sampled while the
 * run goes on). An applied configuration is a committed one, so the book is a record of committed
 * configurations by epoch; the newest names the shard's replicas now (voters of both halves and
 * learners). Replicas move at run time (moves.ts), so every check that compares a shard's
 * replicas follows this book, not the placement the cluster was created with.
 *
 * Two different configurations at one epoch of one shard is a safety failure by itself (the epoch
 * names the configuration; replica-change.ts raises it by one per change).
 */
import type { NodeId, ShardId } from '../../../src/common/index.ts'

export interface ObservedConfig {
  readonly epoch: number
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
  readonly votersOutgoing: readonly NodeId[]
}

function key(c: ObservedConfig): string {
  const s = (xs: readonly NodeId[]): string => [...xs].sort((a, b) => a - b).join(',')
  return `${s(c.voters)}|${s(c.learners)}|${s(c.votersOutgoing)}`
}

export function describeConfig(c: ObservedConfig): string {
  const out = c.votersOutgoing.length === 0 ? '' : ` outgoing ${c.votersOutgoing.join(',')}`
  const l = c.learners.length === 0 ? '' : ` learners ${c.learners.join(',')}`
  return `epoch ${c.epoch} voters ${c.voters.join(',')}${out}${l}`
}

/** Every node a configuration names (voters of both halves and learners), in id order. */
export function membersOfConfig(c: ObservedConfig): NodeId[] {
  return [...new Set([...c.voters, ...c.votersOutgoing, ...c.learners])].sort((a, b) => a - b)
}

export class ConfigBook {
  private readonly byShard = new Map<ShardId, Map<number, ObservedConfig>>()
  private readonly newestOf = new Map<ShardId, ObservedConfig>()
  private readonly ever = new Map<ShardId, Set<NodeId>>()
  /** Configurations recorded after the initial ones (the run's membership changes). */
  changes = 0

  /** `initial`: each shard's bootstrap voters (epoch 0 here: any applied configuration is newer). */
  constructor(initial: ReadonlyMap<ShardId, readonly NodeId[]>) {
    for (const [shardId, voters] of initial) {
      const c: ObservedConfig = { epoch: 0, voters: [...voters], learners: [], votersOutgoing: [] }
      this.newestOf.set(shardId, c)
      this.ever.set(shardId, new Set(voters))
      this.byShard.set(shardId, new Map())
    }
  }

  /** Notes a configuration a replica applied; a description of the conflict, or null. */
  note(shardId: ShardId, c: ObservedConfig): string | null {
    const book = this.byShard.get(shardId)
    if (book === undefined) return `no shard ${shardId}`
    const seen = book.get(c.epoch)
    if (seen !== undefined)
      return key(seen) === key(c)
        ? null
        : `shard ${shardId}: two configurations at one epoch: ${describeConfig(seen)} and ${describeConfig(c)}`
    const copy: ObservedConfig = {
      epoch: c.epoch,
      voters: [...c.voters],
      learners: [...c.learners],
      votersOutgoing: [...c.votersOutgoing],
    }
    book.set(c.epoch, copy)
    const ever = this.ever.get(shardId)!
    for (const id of membersOfConfig(copy)) ever.add(id)
    const newest = this.newestOf.get(shardId)!
    if (c.epoch > newest.epoch) {
      if (newest.epoch > 0 || key(newest) !== key(copy)) this.changes++
      this.newestOf.set(shardId, copy)
    }
    return null
  }

  newest(shardId: ShardId): ObservedConfig {
    const c = this.newestOf.get(shardId)
    if (c === undefined) throw new RangeError(`no shard ${shardId}`)
    return c
  }

  /** The nodes the newest configuration names, in id order. */
  members(shardId: ShardId): NodeId[] {
    return membersOfConfig(this.newest(shardId))
  }

  /** Whether `id` was ever named by a configuration of `shardId` (a leader hint may be that old). */
  everHeld(id: NodeId, shardId: ShardId): boolean {
    return this.ever.get(shardId)?.has(id) ?? false
  }

  /** Whether some applied configuration of `shardId` at `epoch` or later leaves `id` out. */
  removedAtOrAfter(shardId: ShardId, id: NodeId, epoch: number): boolean {
    for (const c of this.byShard.get(shardId)?.values() ?? [])
      if (c.epoch >= epoch && !membersOfConfig(c).includes(id)) return true
    return false
  }

  /** The configuration applied at `epoch`, if one was seen. */
  at(shardId: ShardId, epoch: number): ObservedConfig | undefined {
    return this.byShard.get(shardId)?.get(epoch)
  }
}
