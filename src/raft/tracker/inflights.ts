/**
 * Inflights bounds the appends in flight to one follower (flow control; etcd-io/raft
 * tracker/inflights.go). Each in-flight append is remembered by its last index; an
 * acknowledgement up to index i frees every append ending at or below i.
 */
import { assert } from '../../common/index.ts'
import type { LogIndex } from '../../common/index.ts'

export class Inflights {
  /** A ring buffer of last indexes. Invariant: indexes increase from `start` around the ring. */
  private readonly ring: LogIndex[]
  private readonly bytesRing: number[]
  private start = 0
  /** Invariant: 0 <= count <= capacity. */
  private count = 0
  private bytesInflight = 0

  constructor(
    readonly capacity: number,
    /** 0 = no byte bound. */
    readonly bytesMax = 0,
  ) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, 'inflights capacity must be > 0')
    this.ring = new Array<LogIndex>(capacity)
    this.bytesRing = new Array<number>(capacity)
  }

  /** Records an append ending at `index`. Precondition: not full, and index above every recorded one. */
  add(index: LogIndex, bytes: number): void {
    assert(!this.full(), 'inflights: add when full')
    if (this.count > 0) {
      const last = this.ring[(this.start + this.count - 1) % this.capacity]
      assert(last !== undefined && index > last, `inflights: ${index} not above ${last}`)
    }
    const at = (this.start + this.count) % this.capacity
    this.ring[at] = index
    this.bytesRing[at] = bytes
    this.count++
    this.bytesInflight += bytes
  }

  /** Frees every append whose last index is <= `index`. */
  freeLE(index: LogIndex): void {
    while (this.count > 0) {
      const first = this.ring[this.start]
      assert(first !== undefined)
      if (first > index) break
      this.bytesInflight -= this.bytesRing[this.start] ?? 0
      this.start = (this.start + 1) % this.capacity
      this.count--
    }
    if (this.count === 0) this.start = 0
    assert(this.bytesInflight >= 0)
  }

  /**
   * Frees the oldest in-flight append, if any. Used when a heartbeat response shows the follower
   * alive while the window is full: the appends it holds may all have been lost (it was down),
   * and only a new append can draw the rejection that resets its progress.
   */
  freeFirstOne(): void {
    if (this.count === 0) return
    const first = this.ring[this.start]
    assert(first !== undefined)
    this.freeLE(first)
  }

  full(): boolean {
    return this.count === this.capacity || (this.bytesMax > 0 && this.bytesInflight >= this.bytesMax)
  }

  size(): number {
    return this.count
  }

  bytes(): number {
    return this.bytesInflight
  }

  reset(): void {
    this.count = 0
    this.start = 0
    this.bytesInflight = 0
  }
}
