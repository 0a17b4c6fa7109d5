/**
 * The packet simulator (TigerBeetle `src/testing/packet_simulator.zig`): every Raft message
 * between two nodes is a packet with a one-way delay drawn from the run's options, and may be
 * dropped, duplicated, reordered (delays are independent, so later packets can overtake earlier
 * ones), held back by a clogged link, or blocked by a partition. Partitions are sets of blocked
 * directed links, so they can be symmetric or one-way.
 */
import { assert, type NodeId, type Random } from '../../src/common/index.ts'
import type { Simulator } from './simulator.ts'

export interface NetworkOptions {
  /** Mean one-way delay; actual delays are uniform in [mean/2, 3*mean/2] plus a rare spike. */
  readonly oneWayDelayMsMean: number
  /** Probability in parts per 10_000 that a packet is lost. */
  readonly packetLossPer10k: number
  /** Probability in parts per 10_000 that a packet is delivered twice. */
  readonly duplicatePer10k: number
  /** Probability in parts per 10_000 that a packet takes a long detour (reordering). */
  readonly reorderPer10k: number
}

export type Deliver<M> = (from: NodeId, to: NodeId, message: M) => void
/** Told when a packet is lost, so the sender's shell can report the peer unreachable. */
export type OnLoss<M> = (from: NodeId, to: NodeId, message: M, why: 'drop' | 'partition') => void

export class SimNetwork<M> {
  /** Directed links that are cut: "from>to". */
  private readonly blocked = new Set<string>()
  /** Directed links that hold packets until the given true time. */
  private readonly clogged = new Map<string, number>()
  private lossPer10k: number
  sent = 0
  delivered = 0
  dropped = 0

  constructor(
    private readonly sim: Simulator,
    private readonly random: Random,
    private readonly options: NetworkOptions,
    private readonly deliver: Deliver<M>,
    private readonly onLoss: OnLoss<M> | null = null,
  ) {
    this.lossPer10k = options.packetLossPer10k
  }

  send(from: NodeId, to: NodeId, message: M): void {
    assert(from !== to, 'a node does not send to itself')
    this.sent++
    if (this.blocked.has(linkKey(from, to))) {
      this.dropped++
      this.onLoss?.(from, to, message, 'partition')
      return
    }
    if (this.random.int(10_000) < this.lossPer10k) {
      this.dropped++
      this.onLoss?.(from, to, message, 'drop')
      return
    }
    const copies = this.random.int(10_000) < this.options.duplicatePer10k ? 2 : 1
    for (let i = 0; i < copies; i++) {
      const delay = this.delayMs(from, to)
      this.sim.schedule(delay, () => {
        // A partition that started while the packet was in flight also stops it.
        if (this.blocked.has(linkKey(from, to))) {
          this.dropped++
          this.onLoss?.(from, to, message, 'partition')
          return
        }
        this.delivered++
        this.deliver(from, to, message)
      })
    }
  }

  private delayMs(from: NodeId, to: NodeId): number {
    const mean = this.options.oneWayDelayMsMean
    let d = mean / 2 + (this.random.int(1000) / 1000) * mean
    if (this.random.int(10_000) < this.options.reorderPer10k) d += mean * (2 + this.random.int(8))
    const until = this.clogged.get(linkKey(from, to))
    if (until !== undefined && until > this.sim.nowMs) d = Math.max(d, until - this.sim.nowMs + d)
    return d
  }

  /** Cuts `from -> to` (one way). */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(linkKey(from, to))
  }

  /** Cuts both directions between every node of `a` and every node of `b`. */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a)
      for (const y of b) {
        this.block(x, y)
        this.block(y, x)
      }
  }

  /** Holds packets on `from -> to` until `durationMs` from now. */
  clog(from: NodeId, to: NodeId, durationMs: number): void {
    this.clogged.set(linkKey(from, to), this.sim.nowMs + durationMs)
  }

  setLossPer10k(per10k: number): void {
    this.lossPer10k = per10k
  }

  /** Removes every partition, clog and extra loss. */
  heal(): void {
    this.blocked.clear()
    this.clogged.clear()
    this.lossPer10k = this.options.packetLossPer10k
  }

  /** Removes faults and also stops random loss (the liveness phase wants a reliable core). */
  calm(): void {
    this.heal()
    this.lossPer10k = 0
  }

  isBlocked(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(linkKey(from, to))
  }

  describe(): string {
    return [...this.blocked].sort().join(' ')
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`
}
