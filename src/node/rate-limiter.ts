/**
 * A token bucket for bytes (snapshot streams, `--snapshot-rate`): callers take what they are
 * about to send and wait while the bucket is in debt. One bucket per node, shared by every stream
 * it sends, so the node's total rate holds however many streams run. A take larger than the burst
 * is allowed and paid back by waiting (one chunk may exceed the burst). Waits are timers of the
 * injected clock and end early, with the signal's reason, when the signal aborts.
 */
import { assert, type Clock } from '../common/index.ts'

export class RateLimiter {
  private tokens: number
  private lastMs: number

  constructor(
    private readonly bytesPerSecond: number,
    private readonly burstBytes: number,
    private readonly clock: Clock,
  ) {
    assert(Number.isFinite(bytesPerSecond) && bytesPerSecond > 0, 'rate must be positive')
    assert(Number.isFinite(burstBytes) && burstBytes > 0, 'burst must be positive')
    this.tokens = burstBytes
    this.lastMs = clock.nowMs()
  }

  /** Takes `bytes` from the bucket; resolves once the bucket is out of debt again. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    this.refill()
    this.tokens -= bytes
    if (this.tokens >= 0) return
    const waitMs = Math.ceil((-this.tokens / this.bytesPerSecond) * 1000)
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        timer.cancel()
        reject(signal?.reason as Error)
      }
      const timer = this.clock.setTimer(waitMs, () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private refill(): void {
    const now = this.clock.nowMs()
    const elapsedMs = Math.max(0, now - this.lastMs)
    this.lastMs = now
    this.tokens = Math.min(this.burstBytes, this.tokens + (elapsedMs / 1000) * this.bytesPerSecond)
  }
}
