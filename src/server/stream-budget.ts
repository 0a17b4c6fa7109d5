/**
 * Bounds on what server streams (Scan) hold in memory for readers that do not read.
 *
 * grpc-js takes a message from `write()` at once and buffers it until HTTP/2 flow control lets it
 * go; `write()` says "wait" only after 16 messages, which for 4 MiB pages is 64 MiB per stream and
 * was 4.2 GB for 150 scans whose reader never read. Here every message written counts against
 *   - its stream: at most `streamBytesMax` written and not yet taken by the connection (one larger
 *     message may go alone), so a stream whose reader stops waits instead of buffering;
 *   - its client (principal): at most `principalBytesMax` across that client's streams, so one
 *     client cannot take the whole node's share;
 *   - the node: at most `nodeBytesMax` across every stream.
 * A message counts until grpc-js reports it handed to the connection (the write callback), or until
 * the stream ends or is cancelled, whichever comes first: a cancelled stream gives its share back at
 * once (grpc-js drops its buffered messages then, without calling their callbacks).
 *
 * Streams are also counted per connection and per principal (`openStream`), refused OVERLOADED
 * beyond `streamsPerConnectionMax` / `streamsPerPrincipalMax`.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'

/** Bytes shared by many streams; a request that does not fit waits (FIFO) for releases. */
export class ByteBudget {
  private used = 0
  private readonly waiters: { bytes: number; grant: () => void }[] = []

  constructor(readonly max: number) {
    assert(Number.isSafeInteger(max) && max > 0, 'byte budget must be positive')
  }

  get inUse(): number {
    return this.used
  }

  /**
   * Takes `bytes`, waiting while they do not fit. With nothing in use, any size is granted (one
   * message larger than the budget still goes, alone). Rejects with the signal's reason.
   */
  acquire(bytes: number, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted()
    if (this.waiters.length === 0 && (this.used === 0 || this.used + bytes <= this.max)) {
      this.used += bytes
      return Promise.resolve()
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        bytes,
        grant: (): void => {
          signal.removeEventListener('abort', onAbort)
          resolve()
        },
      }
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter)
        if (at >= 0) this.waiters.splice(at, 1)
        reject(signal.reason as Error)
        this.grantWaiting()
      }
      this.waiters.push(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  release(bytes: number): void {
    assert(bytes >= 0 && bytes <= this.used, `byte budget: releasing ${bytes} of ${this.used}`)
    this.used -= bytes
    this.grantWaiting()
  }

  private grantWaiting(): void {
    for (;;) {
      const next = this.waiters[0]
      if (next === undefined) return
      if (this.used !== 0 && this.used + next.bytes > this.max) return
      this.waiters.shift()
      this.used += next.bytes
      next.grant()
    }
  }
}

export interface StreamBudgetLimits {
  readonly streamUnsentBytesMax: number
  readonly principalUnsentBytesMax: number
  readonly nodeUnsentBytesMax: number
  readonly streamsPerConnectionMax: number
  readonly streamsPerPrincipalMax: number
}

/** Where one stream writes: `write(message, callback)` as a grpc-js ServerWritableStream has it. */
export interface MessageSink<T> {
  write(message: T, callback: () => void): boolean
}

/** The node's stream budgets and counts; one per service. */
export class StreamBudgets {
  private readonly node: ByteBudget
  private readonly principals = new Map<string, { budget: ByteBudget; streams: number }>()
  private readonly connections = new Map<string, number>()

  constructor(private readonly limits: StreamBudgetLimits) {
    // Any tightening works: a budget with nothing in use always lets one message through.
    this.node = new ByteBudget(limits.nodeUnsentBytesMax)
  }

  /** Bytes written to streams and not yet taken by their connections, node-wide. */
  get unsentBytes(): number {
    return this.node.inUse
  }

  /** Streams open now, node-wide. */
  get streams(): number {
    let n = 0
    for (const c of this.connections.values()) n += c
    return n
  }

  /**
   * Opens a stream of `principal` on `connection`, or throws OVERLOADED (with the limit) when
   * either has as many open as allowed. Close the returned writer when the stream ends, however.
   */
  openStream<T>(principal: string, connection: string, sink: MessageSink<T>): StreamWriter<T> {
    const onConnection = this.connections.get(connection) ?? 0
    if (onConnection >= this.limits.streamsPerConnectionMax)
      throw new KvError(ErrorCode.Overloaded, 'too many streams open on this connection', {
        details: { limit: this.limits.streamsPerConnectionMax },
      })
    let p = this.principals.get(principal)
    if (p !== undefined && p.streams >= this.limits.streamsPerPrincipalMax)
      throw new KvError(ErrorCode.Overloaded, 'too many streams open for this client', {
        details: { limit: this.limits.streamsPerPrincipalMax },
      })
    if (p === undefined) {
      p = { budget: new ByteBudget(this.limits.principalUnsentBytesMax), streams: 0 }
      this.principals.set(principal, p)
    }
    p.streams++
    this.connections.set(connection, onConnection + 1)
    const owner = p
    return new StreamWriter(sink, this.limits.streamUnsentBytesMax, [owner.budget, this.node], () => {
      owner.streams--
      if (owner.streams === 0 && owner.budget.inUse === 0) this.principals.delete(principal)
      const left = (this.connections.get(connection) ?? 1) - 1
      if (left === 0) this.connections.delete(connection)
      else this.connections.set(connection, left)
    })
  }
}

/**
 * One stream's writer: waits instead of buffering beyond its budgets. A producer that reads before
 * it writes (a scan pulling entries from storage) calls `reserve` before reading a page, so a stream
 * whose reader stopped waits before it reads more, not after.
 */
export class StreamWriter<T> {
  private unsent = 0
  private reserved = 0
  private closed = false
  private readonly own: ByteBudget
  private readonly budgets: readonly ByteBudget[]

  constructor(
    private readonly sink: MessageSink<T>,
    streamBytesMax: number,
    shared: readonly ByteBudget[],
    private readonly onClose: () => void,
  ) {
    this.own = new ByteBudget(streamBytesMax)
    this.budgets = [this.own, ...shared]
  }

  /** Bytes this stream wrote that its connection has not taken yet. */
  get unsentBytes(): number {
    return this.unsent
  }

  /** Takes `bytes` from every budget, or none of them (rejects with the signal's reason). */
  private async acquire(bytes: number, signal: AbortSignal): Promise<void> {
    const taken: ByteBudget[] = []
    try {
      for (const b of this.budgets) {
        await b.acquire(bytes, signal)
        taken.push(b)
      }
    } catch (err) {
      for (const b of taken) b.release(bytes)
      throw err
    }
    if (this.closed) {
      for (const b of taken) b.release(bytes)
      signal.throwIfAborted()
      throw new KvError(ErrorCode.Cancelled, 'stream closed')
    }
  }

  private release(bytes: number): void {
    if (bytes > 0) for (const b of this.budgets) b.release(bytes)
  }

  /** Holds `bytes` of room for the next message, waiting for the budgets to have it. */
  async reserve(bytes: number, signal: AbortSignal): Promise<void> {
    assert(!this.closed, 'stream writer: reserve after close')
    if (this.reserved >= bytes) return
    const more = bytes - this.reserved
    await this.acquire(more, signal)
    this.reserved += more
  }

  /**
   * Writes `message` (about `bytes` on the wire) once the stream's, the client's and the node's
   * budgets have room for it (a reservation counts). Rejects with the signal's reason.
   */
  async write(message: T, bytes: number, signal: AbortSignal): Promise<void> {
    assert(!this.closed, 'stream writer: write after close')
    if (bytes > this.reserved) await this.acquire(bytes - this.reserved, signal)
    else this.release(this.reserved - bytes)
    this.reserved = 0
    this.unsent += bytes
    let done = false
    this.sink.write(message, () => {
      if (done || this.closed) return
      done = true
      this.unsent -= bytes
      this.release(bytes)
    })
  }

  /** Gives back everything still counted (the stream ended or was cancelled). Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.release(this.unsent + this.reserved)
    this.unsent = 0
    this.reserved = 0
    this.onClose()
  }
}
