/**
 * The request gate: a bounded count of requests in flight (limits.requestsInFlightMax; one more
 * is OVERLOADED, STYLE.md 7.5) and the drain switch of a graceful shutdown (after `drain()` every
 * new request is UNAVAILABLE, and `idle()` resolves once the ones in flight have finished).
 */
import { ErrorCode, KvError } from '../common/errors.ts'

export class RequestGate {
  private count = 0
  private draining = false
  private readonly inFlightMax: number
  private idleWaiters: (() => void)[] = []

  constructor(inFlightMax: number) {
    this.inFlightMax = inFlightMax
  }

  get inFlight(): number {
    return this.count
  }

  get isDraining(): boolean {
    return this.draining
  }

  /** Admits one request or throws UNAVAILABLE (draining) / OVERLOADED (full). Pair with leave(). */
  enter(): void {
    if (this.draining) throw new KvError(ErrorCode.Unavailable, 'node is shutting down')
    if (this.count >= this.inFlightMax)
      throw new KvError(ErrorCode.Overloaded, `${this.count} requests in flight`, {
        details: { limit: this.inFlightMax },
      })
    this.count++
  }

  leave(): void {
    this.count--
    if (this.count === 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const wake of waiters) wake()
    }
  }

  /** Refuses new requests from now on. */
  drain(): void {
    this.draining = true
  }

  /** Resolves when no request is in flight. */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }
}
