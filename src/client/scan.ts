/**
 * A scan as an async iterator. The server streams pages of entries, each with a cursor that
 * resumes strictly after the page's last entry. When the stream breaks with a retryable error
 * (a node died, the shard moved), the scan reopens it from the last page's cursor, asking for
 * only the entries still owed, so the caller sees every entry exactly once and no error.
 */
import type { Clock } from '../common/clock.ts'
import { deadlineSignal } from '../common/clock.ts'
import { AssertionError } from '../common/assert.ts'
import type { KvError } from '../common/errors.ts'
import type { Random } from '../common/random.ts'
import type {
  ReadOptions as WireReadOptions,
  Receipt as WireReceipt,
  ScanResponse,
} from '../gen/ringkv/v1/kv.ts'
import { fromWire, utf8 } from './codec.ts'
import type { EndpointPool } from './endpoints.ts'
import { backoffDelayMs, decideRetry, sleep, type RetryConfig, type RetryRoute } from './retry.ts'
import { abortError, kvErrorFromGrpc } from './status.ts'
import type { Entry, Receipt } from './types.ts'

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
  readonly onRetry: (endpoint: string, err: KvError, route: RetryRoute) => void
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
  private resumeCount = 0

  constructor(context: ScanContext) {
    this.context = context
  }

  /** The receipt of the latest page received (undefined before the first). */
  get receipt(): Receipt | undefined {
    return this.lastReceipt
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
    let endpoint = c.pool.current
    try {
      while (true) {
        if (signal.aborted) throw abortError(signal)
        const stream = c.pool.kv(endpoint).scan(
          {
            prefix: toBuffer(c.prefix),
            cursor: toBuffer(cursor),
            limit: owed ?? 0,
            options: c.readOptions,
          },
          { deadline: new Date(c.clock.wallMs() + Math.max(1, deadlineAtMs - c.clock.nowMs())) },
        )
        const onAbort = (): void => stream.cancel()
        signal.addEventListener('abort', onAbort, { once: true })
        try {
          for await (const page of stream as AsyncIterable<ScanResponse>) {
            failures = 0
            this.lastReceipt = c.observe(page.receipt)
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
          return
        } catch (e) {
          if (e instanceof AssertionError) throw e
          const err = kvErrorFromGrpc(e, signal)
          const decision = decideRetry(err, { kind: 'read', deduplicated: false })
          failures += 1
          if (!decision.retry || failures >= c.retry.attemptsMax) throw err
          const delayMs = backoffDelayMs(failures - 1, c.retry, c.random)
          if (c.clock.nowMs() + delayMs >= deadlineAtMs) throw err
          await sleep(c.clock, delayMs, signal)
          c.onRetry(endpoint, err, decision.route)
          endpoint = c.pool.current
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

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}
