/**
 * The exactly-once tags of one client's writes (Raft thesis §6.3 for pipelined clients; the shard
 * side is shard/dedup.ts). Every logical write takes one seq for its whole life, retries included,
 * and every attempt also carries `firstIncomplete()`: the lowest seq still in flight, i.e. the
 * lowest seq this client has no settled answer for. Everything below it is settled (answered, or
 * given up on for good and never sent again), so the shard may discard those saved results and
 * refuses those seqs from then on.
 *
 * Many writes are in flight at once under ONE client id, so a client costs one dedup-table entry
 * per shard however busy it is. The shard keeps at most `limits.dedupResultsPerClientMax` saved
 * results per client; the window here keeps every seq sent below firstIncomplete() + that bound,
 * which (since each attempt's firstIncompleteSeq never lags the seqs it covers) keeps the shard's
 * count within it too: a write waits for room instead of being refused. The window is head-of-line:
 * one slow write holds back seqs more than the bound above it, as a TCP window does.
 *
 * Seqs are issued in increasing order and a Set iterates in insertion order, so the first element
 * of `inFlight` is always its minimum.
 */
import { assert } from '../common/assert.ts'
import { limits } from '../common/limits.ts'
import { abortError } from './status.ts'

export interface WriteSeqsInit {
  /** The first seq to issue (see KvClient: the wall clock in microseconds). */
  readonly seqStart: number
  /** Seqs that may be outstanding above firstIncomplete(); default limits.dedupResultsPerClientMax. */
  readonly windowMax?: number
}

interface Waiter {
  readonly grant: (seq: number) => void
}

export class WriteSeqs {
  private readonly windowMax: number
  private next: number
  // Invariant: ascending in insertion order; every element < next.
  private readonly inFlight = new Set<number>()
  private readonly waiters: Waiter[] = []

  constructor(init: WriteSeqsInit) {
    assert(Number.isSafeInteger(init.seqStart) && init.seqStart >= 0, 'bad seqStart')
    this.windowMax = init.windowMax ?? limits.dedupResultsPerClientMax
    assert(
      Number.isSafeInteger(this.windowMax) &&
        this.windowMax >= 1 &&
        this.windowMax <= limits.dedupResultsPerClientMax,
      'bad windowMax',
    )
    this.next = init.seqStart
  }

  /** Writes holding a seq now. */
  get size(): number {
    return this.inFlight.size
  }

  /** The lowest seq in flight, or the next seq to issue when none is: send it on every attempt. */
  firstIncomplete(): number {
    const first = this.inFlight.values().next()
    return first.done === true ? this.next : first.value
  }

  /** A seq at once when the window has room and nobody waits before us; else undefined (call acquire). */
  tryAcquire(): number | undefined {
    return this.waiters.length === 0 && this.hasRoom() ? this.issue() : undefined
  }

  /**
   * A seq for a new write, waiting (first come, first served) while the window is full. Rejects
   * with the abort's KvError when `signal` fires first.
   */
  acquire(signal: AbortSignal): Promise<number> {
    if (signal.aborted) return Promise.reject(abortError(signal))
    if (this.waiters.length === 0 && this.hasRoom()) return Promise.resolve(this.issue())
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (seq) => {
          signal.removeEventListener('abort', onAbort)
          resolve(seq)
        },
      }
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  /**
   * The write of `seq` is settled: answered, or failed for good (the SDK will never send `seq`
   * again). Lets waiting writes in when the window moves.
   */
  release(seq: number): void {
    assert(this.inFlight.delete(seq), 'release of a seq not in flight')
    while (this.waiters.length > 0 && this.hasRoom()) {
      const waiter = this.waiters.shift() as Waiter
      waiter.grant(this.issue())
    }
  }

  private hasRoom(): boolean {
    return this.next - this.firstIncomplete() < this.windowMax
  }

  private issue(): number {
    const seq = this.next
    assert(Number.isSafeInteger(seq + 1), 'write seq overflow')
    this.next = seq + 1
    this.inFlight.add(seq)
    return seq
  }
}
