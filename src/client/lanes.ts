/**
 * Write lanes: how one client keeps many writes in flight under an exactly-once table that
 * remembers one seq per client id (Raft thesis §6.3, shard/dedup.ts: a retry of the client's last
 * seq is answered from the table, an older seq is stale and never applied).
 *
 * Each lane is a dedup identity `<clientId>.<lane>` with its own increasing seq, and carries at
 * most one write at a time: a lane is held from a write's first attempt until its outcome is
 * settled (success, or a final error after which the SDK will never send that seq again). So on
 * every shard a lane's seqs arrive in order, and a retry always repeats the lane's newest seq.
 * Lanes are reused (last released, first taken), so a client needs as many dedup slots per shard
 * as it has writes in flight at once, never more than `writeLanesMax`.
 *
 * Seqs start from the wall clock in microseconds (about 1.7e15 today, below 2^53), so a process
 * restarted with the same explicit clientId continues above the seqs of its previous life instead
 * of having its writes refused as stale.
 */
import { assert } from '../common/assert.ts'
import { limits } from '../common/limits.ts'
import { abortError } from './status.ts'

/** Writes one client keeps in flight at once; more wait for a free lane. */
export const writeLanesMax = 1024
// Every lane of a busy client must fit the server's dedup table next to other clients.
assert(writeLanesMax <= limits.dedupClientsMax)

/** Longest explicit clientId: room is left for the `.<lane>` suffix. */
export const clientIdBytesMax = limits.clientIdBytesMax - 8

export interface Lane {
  /** The dedup identity sent as WriteOptions.client_id. */
  readonly clientId: string
  /** Takes the lane's next seq (one per logical write; its retries reuse it). */
  nextSeq(): number
}

class LaneImpl implements Lane {
  readonly clientId: string
  private seq: number

  constructor(clientId: string, seqStart: number) {
    this.clientId = clientId
    this.seq = seqStart
  }

  nextSeq(): number {
    this.seq += 1
    assert(Number.isSafeInteger(this.seq), 'write seq overflow')
    return this.seq
  }
}

export class WriteLanes {
  private readonly baseId: string
  private readonly seqStart: number
  private readonly lanesMax: number
  private readonly free: LaneImpl[] = []
  private created = 0
  private readonly waiters: { resolve: (lane: LaneImpl) => void }[] = []

  constructor(init: { readonly clientId: string; readonly seqStart: number; readonly lanesMax?: number }) {
    this.baseId = init.clientId
    this.seqStart = init.seqStart
    this.lanesMax = init.lanesMax ?? writeLanesMax
    assert(this.lanesMax >= 1 && this.lanesMax <= writeLanesMax, 'bad lanesMax')
    assert(Number.isSafeInteger(this.seqStart) && this.seqStart >= 0, 'bad seqStart')
  }

  /** Lanes created so far (= the most writes this client had in flight at once). */
  get size(): number {
    return this.created
  }

  /** A free lane, waiting for one when all are busy. Rejects with the abort's KvError on `signal`. */
  acquire(signal: AbortSignal): Promise<Lane> {
    if (signal.aborted) return Promise.reject(abortError(signal))
    const lane = this.free.pop()
    if (lane !== undefined) return Promise.resolve(lane)
    if (this.created < this.lanesMax) {
      const fresh = new LaneImpl(`${this.baseId}.${this.created.toString(36)}`, this.seqStart)
      this.created += 1
      return Promise.resolve(fresh)
    }
    return new Promise<Lane>((resolve, reject) => {
      const waiter = {
        resolve: (l: LaneImpl): void => {
          signal.removeEventListener('abort', onAbort)
          resolve(l)
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

  /** Returns a lane whose write is settled. */
  release(lane: Lane): void {
    assert(lane instanceof LaneImpl, 'foreign lane')
    const waiter = this.waiters.shift()
    if (waiter !== undefined) waiter.resolve(lane)
    else this.free.push(lane)
  }
}
