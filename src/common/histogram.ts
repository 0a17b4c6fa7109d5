/**
 * Fixed-bucket histograms kept as plain numbers by the rooms that observe (the node host's storage
 * writes and peer round trips), read by server/metrics-node.ts at scrape time, so that no room
 * but server/ knows prom-client (the same design as the rooms' counters).
 *
 * Every bucket layout is a constant here, in one place: the metrics show the same `le` bounds on
 * every node and every release, so dashboards and alert rules stay valid. Observing costs a scan
 * of at most ~16 bounds and no allocation.
 *
 * Invariant: `counts[i]` is the number of observations v with bounds[i-1] < v <= bounds[i]
 * (`counts[bounds.length]`: above the last bound); `count` is their sum.
 */
import { assert } from './assert.ts'

/** 2^i * `first` for i in 0..n-1 (etcd's exponential buckets). */
function exponential(first: number, n: number): readonly number[] {
  return Array.from({ length: n }, (_, i) => first * 2 ** i)
}

/** The bucket bounds of every histogram the rooms keep. */
export const histogramBuckets = {
  /** A synced write batch (write + WAL fsync), seconds: 0.5 ms .. 8.2 s (etcd's WAL fsync layout from 0.5 ms). */
  syncSeconds: exponential(0.0005, 15),
  /** Operations per write batch: 1 .. 16384. */
  batchOps: exponential(1, 15),
  /** Bytes of keys and values per write batch: 256 B .. 64 MiB. */
  batchBytes: exponential(256, 19),
  /** A Raft heartbeat's round trip to a peer, seconds: 0.1 ms .. 3.3 s (etcd's peer RTT layout). */
  peerRttSeconds: exponential(0.0001, 16),
} as const

/** A histogram's state at one moment: cumulative counts per bound (Prometheus `le`), sum and count. */
export interface HistogramSnapshot {
  readonly bounds: readonly number[]
  /** cumulative[i]: observations <= bounds[i]. */
  readonly cumulative: readonly number[]
  readonly sum: number
  readonly count: number
}

export class FixedHistogram {
  readonly bounds: readonly number[]
  private readonly counts: number[]
  private sumNow = 0
  private countNow = 0

  constructor(bounds: readonly number[]) {
    assert(bounds.length > 0, 'a histogram needs bounds')
    for (let i = 1; i < bounds.length; i++) assert(bounds[i]! > bounds[i - 1]!, 'histogram bounds must rise')
    this.bounds = bounds
    this.counts = new Array<number>(bounds.length + 1).fill(0)
  }

  /** Counts one observation (NaN is ignored: it would poison the sum). */
  observe(value: number): void {
    if (Number.isNaN(value)) return
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.counts[i]!++
    this.sumNow += value
    this.countNow++
  }

  get count(): number {
    return this.countNow
  }

  snapshot(): HistogramSnapshot {
    const cumulative: number[] = []
    let running = 0
    for (let i = 0; i < this.bounds.length; i++) {
      running += this.counts[i]!
      cumulative.push(running)
    }
    return { bounds: this.bounds, cumulative, sum: this.sumNow, count: this.countNow }
  }
}
