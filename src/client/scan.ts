/**
 * A scan as an async iterator. The server streams pages of entries, each with a cursor that
 * resumes strictly after the page's last entry. When the stream breaks with a retryable error
 * (a node died, the shard moved), the scan reopens it from the last page's cursor, asking for
 * only the entries still owed, so the caller sees every entry exactly once and no error.
 *
 * A node serves one shard per stream (or a page limit's worth) and ends the stream without
 * `done`; its last cursor points past what it served, into the next shard's range when the shard
 * is finished. The scan then opens the next stream from that cursor, routed by the shard map for
 * the next shard in hash order (the cursor is opaque, so that is the client's guess from the last
 * receipt's shard): at 'linearizable' on its leader, else on a nearby replica, with the shard's
 * route hint (a wrong guess costs a forward, or one NOT_LEADER or WRONG_SHARD repair). Without a
 * map, on the current endpoint. Only a message with `done` ends the scan.
 */
import type { Clock } from '../common/clock.ts'
import { deadlineSignal } from '../common/clock.ts'
import { AssertionError } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { Random } from '../common/random.ts'
import type {
  ReadOptions as WireReadOptions,
  Receipt as WireReceipt,
  RouteHint,
  ScanResponse,
} from '../gen/ringkv/v1/kv.ts'
import { fromWire, utf8 } from './codec.ts'
import type { EndpointPool } from './endpoints.ts'
import {
  backoffDelayMs,
  decideRetry,
  sleep,
  type RetryConfig,
  type RetryPace,
  type RetryRoute,
} from './retry.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'
import type { Entry, Receipt } from './types.ts'

/** Where one stream of a scan (or one attempt of a call) goes. */
export interface ScanTarget {
  readonly endpoint: string
  /** The shard it was routed for, when the shard map knew it. */
  readonly shardId: number | undefined
  /** The node of the map it goes to (undefined: the current endpoint, whoever that is). */
  readonly nodeId: number | undefined
  /**
   * 'leader': to the shard's leader (or first usable replica) by the map; 'replica': to a nearby
   * replica by the map; 'pool': to the current endpoint.
   */
  readonly via: 'leader' | 'replica' | 'pool'
  /** Sent as the request's `route` (the shard and epoch the map has for it); undefined: no check. */
  readonly route: RouteHint | undefined
}

/** What a scan needs from the client that started it. */
export interface ScanContext {
  readonly pool: EndpointPool
  readonly clock: Clock
  readonly random: Random
  readonly retry: RetryConfig
  readonly deadlineMs: number
  readonly signal: AbortSignal
  readonly readOptions: WireReadOptions
  readonly prefix: Uint8Array
  readonly limit: number | undefined
  readonly observe: (receipt: WireReceipt | undefined) => Receipt
  /** Waits (briefly) for the shard map before a stream is opened. */
  readonly ready: (signal: AbortSignal) => Promise<void>
  /** The shard a scan from the start serves first, when routed by shard. */
  readonly firstShard: () => number | undefined
  /** The shard after `shardId` in hash order, when routed by shard. */
  readonly nextShard: (shardId: number) => number | undefined
  /** Where a stream serving `shardId` (undefined: not known) goes. */
  readonly target: (shardId: number | undefined) => ScanTarget
  /** Repairs routes after a stream to `target` failed; says how soon to reopen. */
  readonly repair: (err: KvError, target: ScanTarget, route: RetryRoute) => RetryPace
}

/**
 * The entries of one scan. Iterate it once with `for await`; breaking out of the loop cancels the
 * stream. `receipt` is the receipt of the latest page, `resumes` how often a broken stream was
 * reopened.
 */
export class KvScan implements AsyncIterable<Entry> {
  private readonly context: ScanContext
  private started = false
  private lastReceipt: Receipt | undefined
  private readonly receiptByShard = new Map<number, Receipt>()
  private resumeCount = 0

  constructor(context: ScanContext) {
    this.context = context
  }

  /** The receipt of the latest page received (undefined before the first). */
  get receipt(): Receipt | undefined {
    return this.lastReceipt
  }

  /** The latest receipt of each shard that served part of the scan, in the order first served. */
  get receipts(): readonly Receipt[] {
    return [...this.receiptByShard.values()]
  }

  /** How many times the scan reopened a broken stream from its cursor. */
  get resumes(): number {
    return this.resumeCount
  }

  /** Collects every entry (convenient for small scans). */
  async toArray(): Promise<Entry[]> {
    const out: Entry[] = []
    for await (const entry of this) out.push(entry)
    return out
  }

  [Symbol.asyncIterator](): AsyncIterator<Entry> {
    if (this.started) throw new TypeError('a scan can be iterated only once; call scan() again')
    this.started = true
    return this.run()
  }

  private async *run(): AsyncGenerator<Entry, void, undefined> {
    const c = this.context
    const deadlineAtMs = c.clock.nowMs() + c.deadlineMs
    const deadline = deadlineSignal(c.clock, c.deadlineMs, c.signal)
    const signal = deadline.signal
    let cursor: Uint8Array = new Uint8Array()
    let owed = c.limit
    // Failures since the last page that made progress; a scan that keeps moving is not cut off
    // by failures spread over a long run, one that is stuck is.
    let failures = 0
    // The shard the next stream serves, when known (routed scans only).
    let shardId: number | undefined
    // The last reopen followed a leader hint at once; the next one waits its backoff.
    let hinted = false
    try {
      while (true) {
        if (signal.aborted) throw abortError(signal)
        await c.ready(signal)
        if (shardId === undefined && cursor.length === 0) shardId = c.firstShard()
        const target = c.target(shardId)
        const cursorBefore = cursor
        let servedShard: number | undefined
        const stream = c.pool.kv(target.endpoint).scan(
          {
            prefix: toBuffer(c.prefix),
            cursor: toBuffer(cursor),
            limit: owed ?? 0,
            options: { ...c.readOptions, route: target.route },
          },
          { deadline: new Date(c.clock.wallMs() + Math.max(1, deadlineAtMs - c.clock.nowMs())) },
        )
        const onAbort = (): void => stream.cancel()
        signal.addEventListener('abort', onAbort, { once: true })
        try {
          for await (const page of stream as AsyncIterable<ScanResponse>) {
            failures = 0
            hinted = false
            const receipt = c.observe(page.receipt)
            this.lastReceipt = receipt
            this.receiptByShard.set(receipt.shardId, receipt)
            servedShard = receipt.shardId
            for (const kv of page.entries) {
              const key = fromWire(kv.key)
              const value = fromWire(kv.value)
              yield {
                key,
                value,
                version: kv.version,
                createVersion: kv.createVersion,
                keyText: () => utf8(key),
                valueText: () => utf8(value),
              }
            }
            // Only after the whole page went out: a resume starts strictly after its last entry.
            cursor = fromWire(page.cursor)
            if (owed !== undefined) {
              owed -= page.entries.length
              if (owed <= 0) return
            }
            if (page.done) return
          }
          // Ended without `done`: this node served what it had (one shard) and the cursor points
          // past it. Go on from there; a stream that moved nothing is a failure, or we would loop.
          if (sameBytes(cursor, cursorBefore)) {
            throw new KvError(ErrorCode.Unavailable, 'scan stream ended without progress or done')
          }
          shardId = servedShard === undefined ? undefined : c.nextShard(servedShard)
        } catch (e) {
          if (e instanceof AssertionError) throw e
          const err = kvErrorFromGrpc(e, signal)
          const decision = decideRetry(err, { kind: 'read', deduplicated: false })
          failures += 1
          if (!decision.retry || failures >= c.retry.attemptsMax) throw err
          // A redirect names the shard the cursor is in: the next stream is routed for it.
          if (err.details?.shardId !== undefined) shardId = err.details.shardId
          let pace = c.repair(err, target, decision.route)
          if (pace === 'now' && hinted) pace = 'backoff'
          hinted = pace === 'now'
          const delayMs = pace === 'now' ? 0 : backoffDelayMs(failures - 1, c.retry, c.random)
          if (c.clock.nowMs() + delayMs >= deadlineAtMs) throw err
          if (delayMs > 0) await sleep(c.clock, delayMs, signal)
          this.resumeCount += 1
        } finally {
          signal.removeEventListener('abort', onAbort)
          // A consumer that breaks out early leaves the stream open: close it (a no-op once ended).
          stream.cancel()
        }
      }
    } finally {
      deadline.dispose()
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
