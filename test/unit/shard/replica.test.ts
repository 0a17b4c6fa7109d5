import { describe, expect, it } from 'vitest'
import {
  ErrorCode,
  KvError,
  LogIndex,
  isKvErrorWithCode,
  limits,
  tightenLimits,
} from '../../../src/common/index.ts'
import { DeadlineError } from '../../../src/common/clock.ts'
import {
  ReadLevel,
  WriteLevel,
  type Replica,
  type ScanEntry,
  type ScanPosition,
} from '../../../src/shard/index.ts'
import { MemoryEngine, isDataKey } from '../../../src/storage/index.ts'
import { CountingEngine, bytes, nodeId, openTestReplica, shardId, testHasher, text } from './helpers.ts'

// The replica contract (shard/api.ts) on the real replica: one shard's RaftReplica on a one-node
// NodeHost (helpers.ts). Versions are log indexes: a test's first write follows `r.base`, the
// index at which the replica began to lead.

const W = { level: WriteLevel.Majority } as const
const R = { level: ReadLevel.Linearizable } as const

async function codeOf(promise: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof promise === 'function' ? promise() : promise)
  } catch (err) {
    if (err instanceof KvError) return err.code
    throw err
  }
  return undefined
}

async function collect(stream: AsyncIterable<ScanEntry>): Promise<ScanEntry[]> {
  const out: ScanEntry[] = []
  for await (const e of stream) out.push(e)
  return out
}

describe('shard/replica (one voter on a NodeHost)', () => {
  it('puts, gets, deletes with versions and receipts', async () => {
    const r = await openTestReplica()
    const b = r.base
    const { version, receipt } = await r.put(bytes('a'), bytes('1'), W)
    expect(version).toBe(b + 1)
    expect(receipt).toMatchObject({ nodeId, shardId, appliedIndex: b + 1, level: 'majority', stalenessMs: 0 })
    const got = await r.get(bytes('a'), { level: ReadLevel.Eventual })
    expect(got.found && text(got.found.value)).toBe('1')
    expect(got.found).toMatchObject({ version: b + 1, createVersion: b + 1 })
    expect(got.receipt).toMatchObject({ appliedIndex: b + 1, level: 'eventual', stalenessMs: 0 })
    await r.put(bytes('a'), bytes('2'), { level: WriteLevel.Leader })
    expect((await r.get(bytes('a'), R)).found).toMatchObject({ version: b + 2, createVersion: b + 1 })
    expect((await r.delete(bytes('a'), W)).deleted).toBe(true)
    expect((await r.delete(bytes('a'), W)).deleted).toBe(false)
    expect((await r.get(bytes('a'), R)).found).toBeNull()
    expect(r.status()).toMatchObject({ appliedIndex: b + 4, role: 'leader' })
    const many = await r.getMany([bytes('a'), bytes('zz')], R)
    expect(many.found).toEqual([null, null])
    await r.close()
  })

  it('serves every read level on one node, and checks session tokens', async () => {
    const r = await openTestReplica()
    await r.put(bytes('k'), bytes('v'), W)
    for (const level of Object.values(ReadLevel)) {
      const opts =
        level === ReadLevel.Session
          ? { level, sessionIndex: LogIndex(r.base + 1) }
          : level === ReadLevel.Bounded
            ? { level, stalenessMsMax: 0 }
            : { level }
      const { receipt } = await r.get(bytes('k'), opts)
      expect(receipt.level).toBe(level)
      // A leader's staleness is the time since a quorum (itself) was last heard: within a tick.
      expect(receipt.stalenessMs).toBeGreaterThanOrEqual(0)
    }
    expect(
      await codeOf(r.get(bytes('k'), { level: ReadLevel.Session, sessionIndex: LogIndex(r.base + 5) })),
    ).toBe(ErrorCode.SessionBehind)
    expect(await codeOf(r.get(bytes('k'), { level: ReadLevel.Session }))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.get(bytes('k'), { level: ReadLevel.Bounded }))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.get(bytes('k'), { level: 'strong' as ReadLevel }))).toBe(ErrorCode.InvalidArgument)
  })

  it('turns CAS mismatches into VERSION_MISMATCH with the current version', async () => {
    const r = await openTestReplica()
    const b = r.base
    await r.put(bytes('a'), bytes('1'), { ...W, expectedVersion: 0 })
    const err = await r.put(bytes('a'), bytes('2'), { ...W, expectedVersion: 0 }).catch((e: unknown) => e)
    expect(isKvErrorWithCode(err, ErrorCode.VersionMismatch)).toBe(true)
    expect((err as KvError).details?.currentVersion).toBe(b + 1)
    const batchErr = await r
      .batch(
        [
          { kind: 'put', key: bytes('b'), value: bytes('x') },
          { kind: 'delete', key: bytes('a'), expectedVersion: 9 },
        ],
        W,
      )
      .catch((e: unknown) => e)
    expect((batchErr as KvError).code).toBe(ErrorCode.VersionMismatch)
    expect((batchErr as KvError).details?.currentVersion).toBe(b + 1)
    expect((await r.get(bytes('b'), R)).found).toBeNull()
    const ok = await r.batch(
      [
        { kind: 'put', key: bytes('b'), value: bytes('x'), expectedVersion: 0 },
        { kind: 'delete', key: bytes('a'), expectedVersion: b + 1 },
      ],
      W,
    )
    // A refused compare-and-set still takes its index: the check is made when the entry applies.
    expect(ok.results).toEqual([
      { kind: 'put', version: b + 4 },
      { kind: 'delete', deleted: true },
    ])
  })

  it('group-commits: 64 concurrent puts cost a couple of fsyncs, not 64', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    const before = { syncs: engine.syncs, writes: engine.writes }
    const answers = await Promise.all(
      Array.from({ length: 64 }, (_, i) => r.put(bytes(`k${i}`), bytes(`v${i}`), W)),
    )
    // One batch appends all 64 (fsynced); the next applies them (a tick may add one).
    expect(engine.syncs - before.syncs).toBeLessThanOrEqual(3)
    expect(engine.writes - before.writes).toBeLessThanOrEqual(3)
    expect(answers.map((a) => a.version).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 64 }, (_, i) => r.base + i + 1),
    )
    expect(answers.every((a) => a.receipt.appliedIndex >= a.version)).toBe(true)
    await r.close()
  })

  it('group-commits writes that arrive while a write is in flight into the next batch', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    const before = engine.syncs
    engine.hold()
    const first = r.put(bytes('first'), bytes('1'), W)
    await new Promise((resolve) => setImmediate(resolve))
    const rest = Array.from({ length: 200 }, (_, i) => r.put(bytes(`k${i}`), bytes('v'), W))
    engine.release()
    await Promise.all([first, ...rest])
    expect(engine.syncs - before).toBeLessThanOrEqual(6)
    expect(engine.batchSizes.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(201)
    await r.close()
  })

  it("answers OVERLOADED when the node's inbox is full", async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine, { limits: tightenLimits({ hostInboxMax: 8 }) })
    engine.hold()
    const inFlight = r.put(bytes('x'), bytes('1'), W) // taken by the loop, parked in the write
    await new Promise((resolve) => setImmediate(resolve))
    const queued = Array.from({ length: 8 }, (_, i) => r.put(bytes(`q${i}`), bytes('v'), W))
    expect(await codeOf(r.put(bytes('over'), bytes('v'), W))).toBe(ErrorCode.Overloaded)
    engine.release()
    await Promise.all([inFlight, ...queued])
    expect((await r.put(bytes('after'), bytes('v'), W)).version).toBe(r.base + 10)
    await r.close()
  })

  it('validates input itself: empty key, oversized key and value, bad options', async () => {
    const r = await openTestReplica()
    const big = new Uint8Array(limits.keyBytesMax + 1)
    expect(await codeOf(r.put(new Uint8Array(), bytes('v'), W))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.put(big, bytes('v'), W))).toBe(ErrorCode.KeyTooLarge)
    expect(await codeOf(r.put(bytes('k'), new Uint8Array(limits.valueBytesMax + 1), W))).toBe(
      ErrorCode.ValueTooLarge,
    )
    expect(await codeOf(r.get(big, R))).toBe(ErrorCode.KeyTooLarge)
    expect(await codeOf(r.get(new Uint8Array(), R))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.getMany([bytes('a'), new Uint8Array()], R))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.delete(big, W))).toBe(ErrorCode.KeyTooLarge)
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { ...W, expectedVersion: -1 }))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { ...W, expectedVersion: 1.5 }))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { level: 'quorum' as WriteLevel }))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { ...W, clientId: 'c' }))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { ...W, clientId: 'c', seq: 1 }))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(
      await codeOf(r.put(bytes('k'), bytes('v'), { ...W, clientId: '', seq: 1, firstIncompleteSeq: 1 })),
    ).toBe(ErrorCode.InvalidArgument)
    expect(
      await codeOf(
        r.put(bytes('k'), bytes('v'), { ...W, clientId: 'x'.repeat(200), seq: 1, firstIncompleteSeq: 1 }),
      ),
    ).toBe(ErrorCode.InvalidArgument)
    // A write in flight is itself incomplete: firstIncompleteSeq above seq is a broken client.
    expect(
      await codeOf(r.put(bytes('k'), bytes('v'), { ...W, clientId: 'c', seq: 1, firstIncompleteSeq: 2 })),
    ).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(r.batch([], W))).toBe(ErrorCode.InvalidArgument)
    expect(
      await codeOf(
        r.batch(
          Array.from({ length: limits.batchOpsMax + 1 }, () => ({
            kind: 'delete' as const,
            key: bytes('k'),
          })),
          W,
        ),
      ),
    ).toBe(ErrorCode.InvalidArgument)
    expect(
      await codeOf(
        r.batch([{ kind: 'put', key: bytes('k'), value: new Uint8Array(limits.valueBytesMax + 1) }], W),
      ),
    ).toBe(ErrorCode.ValueTooLarge)
    expect(await codeOf(() => r.scan({ prefix: bytes(''), limit: 0 }, R))).toBe(ErrorCode.InvalidArgument)
    expect(await codeOf(() => r.scan({ prefix: bytes(''), limit: limits.scanLimitMax + 1 }, R))).toBe(
      ErrorCode.InvalidArgument,
    )
    expect(
      await codeOf(() => r.scan({ prefix: bytes(''), limit: 1, after: { hash: -1n, key: bytes('a') } }, R)),
    ).toBe(ErrorCode.InvalidArgument)
    expect(r.status().appliedIndex).toBe(r.base)
  })

  it('honours an aborted signal before queueing: CANCELLED, or DEADLINE_EXCEEDED for a deadline', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    const writesBefore = engine.writes
    const cancelled = new AbortController()
    cancelled.abort()
    expect(await codeOf(r.put(bytes('k'), bytes('v'), { ...W, signal: cancelled.signal }))).toBe(
      ErrorCode.Cancelled,
    )
    expect(await codeOf(r.get(bytes('k'), { ...R, signal: cancelled.signal }))).toBe(ErrorCode.Cancelled)
    const deadline = new AbortController()
    deadline.abort(new DeadlineError())
    expect(await codeOf(r.delete(bytes('k'), { ...W, signal: deadline.signal }))).toBe(
      ErrorCode.DeadlineExceeded,
    )
    expect(engine.writes).toBe(writesBefore)
    expect(r.status().appliedIndex).toBe(r.base)
  })

  it('applies a tagged write once and returns the original result to a retry', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    const tag = { clientId: 'sdk-1', seq: 1, firstIncompleteSeq: 1 }
    const first = await r.put(bytes('a'), bytes('1'), { ...W, ...tag })
    await r.put(bytes('a'), bytes('2'), W)
    const retry = await r.put(bytes('a'), bytes('1'), { ...W, ...tag })
    expect(retry.version).toBe(first.version)
    expect(retry.receipt.appliedIndex).toBe(r.base + 3)
    expect(text((await r.get(bytes('a'), R)).found?.value ?? new Uint8Array())).toBe('2')
    // The same seq used for a different kind of write is refused.
    expect(await codeOf(r.delete(bytes('a'), { ...W, ...tag }))).toBe(ErrorCode.InvalidArgument)
    // Once seq 5 says everything below 5 was answered, a retry of 4 is stale: INVALID_ARGUMENT.
    await r.batch([{ kind: 'delete', key: bytes('zz') }], {
      ...W,
      clientId: 'sdk-1',
      seq: 5,
      firstIncompleteSeq: 5,
    })
    const stale = await r
      .put(bytes('a'), bytes('x'), { ...W, clientId: 'sdk-1', seq: 4, firstIncompleteSeq: 4 })
      .catch((e: unknown) => e)
    expect(stale).toMatchObject({ code: ErrorCode.InvalidArgument, details: { field: 'seq' } })
    expect((stale as Error).message).toMatch(/stale seq/)
    expect(text((await r.get(bytes('a'), R)).found?.value ?? new Uint8Array())).toBe('2')
  })

  it('keeps many writes of one client in flight, and refuses a seq beyond the per-client bound with OVERLOADED', async () => {
    const r = await openTestReplica(new MemoryEngine(), {
      limits: tightenLimits({ dedupResultsPerClientMax: 4 }),
    })
    const tag = (seq: number, firstIncompleteSeq: number) => ({
      ...W,
      clientId: 'p',
      seq,
      firstIncompleteSeq,
    })
    // Four writes in flight at once, none answered yet: all apply, each once, in one entry (the
    // leader groups one client's writes of a loop turn), so they share its index as version.
    const puts = await Promise.all(
      [1, 2, 3, 4].map((seq) => r.put(bytes(`k${seq}`), bytes('v'), tag(seq, 1))),
    )
    expect(puts.map((p) => p.version - r.base)).toEqual([1, 1, 1, 1])
    expect(r.status().appliedIndex).toBe(r.base + 1)
    // A fifth while seq 1 is still unacknowledged: refused, not applied, retryable.
    const full = await r.put(bytes('k5'), bytes('v'), tag(5, 1)).catch((e: unknown) => e)
    expect(full).toMatchObject({ code: ErrorCode.Overloaded, details: { limit: 4 } })
    expect((await r.get(bytes('k5'), R)).found).toBeNull()
    // The retry says seq 1 was answered: it fits now. (The refused fifth took index base + 2.)
    expect((await r.put(bytes('k5'), bytes('v'), tag(5, 2))).version).toBe(r.base + 3)
    expect((await r.put(bytes('k3'), bytes('v'), tag(3, 2))).version).toBe(puts[2]!.version)
  })

  it('survives a crash: applied index and dedup table come back with the data', async () => {
    const memory = new MemoryEngine()
    const r = await openTestReplica(memory)
    const first = await r.put(bytes('a'), bytes('1'), { ...W, clientId: 'c', seq: 1, firstIncompleteSeq: 1 })
    const second = await r.put(bytes('b'), bytes('2'), W)
    await r.close()
    const after = memory.crash() // everything acknowledged was synced
    const r2 = await openTestReplica(after)
    expect(r2.base).toBeGreaterThan(second.version) // its own no-op of the new term follows
    expect((await r2.get(bytes('b'), R)).found).toMatchObject({ version: second.version })
    expect(
      (await r2.put(bytes('a'), bytes('1'), { ...W, clientId: 'c', seq: 1, firstIncompleteSeq: 1 })).version,
    ).toBe(first.version)
    expect((await r2.put(bytes('c'), bytes('3'), W)).version).toBe(r2.base + 2)
    await r2.close()
  })

  it('scans by prefix in hash order, resumes strictly after a position, and stops at the limit', async () => {
    const r = await openTestReplica()
    for (let i = 0; i < 40; i++) await r.put(bytes(`user:${i}`), bytes(`u${i}`), W)
    for (let i = 0; i < 10; i++) await r.put(bytes(`order:${i}`), bytes(`o${i}`), W)
    const all = await collect(r.scan({ prefix: bytes('user:'), limit: 1000 }, R))
    expect(all).toHaveLength(40)
    const hashes = all.map((e) => e.position.hash)
    expect([...hashes].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(hashes)
    const hasher = await testHasher()
    for (const e of all) expect(e.position.hash).toBe(hasher.hash64(e.key))
    // Page through with limit + after.
    const paged: ScanEntry[] = []
    let after: ScanPosition | undefined
    for (;;) {
      const page = await collect(
        r.scan(
          after === undefined
            ? { prefix: bytes('user:'), limit: 7 }
            : { prefix: bytes('user:'), limit: 7, after },
          R,
        ),
      )
      paged.push(...page)
      if (page.length < 7) break
      after = page.at(-1)?.position
    }
    expect(paged.map((e) => text(e.key))).toEqual(all.map((e) => text(e.key)))
    // The empty prefix matches everything; the receipt describes the view.
    const stream = r.scan({ prefix: new Uint8Array(), limit: 100 }, { level: ReadLevel.Eventual })
    expect(stream.receipt).toMatchObject({ appliedIndex: r.base + 50, level: 'eventual' })
    expect(await collect(stream)).toHaveLength(50)
  })

  it('scans one point-in-time view, taken once its read level is met', async () => {
    const r = await openTestReplica()
    await r.put(bytes('p:1'), bytes('old'), W)
    await r.put(bytes('p:0'), bytes('old'), W)
    const stream = r.scan({ prefix: bytes('p:'), limit: 10 }, R)[Symbol.asyncIterator]()
    const first = await stream.next() // the gate passed: the view is taken
    await r.put(bytes('p:1'), bytes('new'), W)
    await r.put(bytes('p:0'), bytes('new'), W)
    await r.put(bytes('p:2'), bytes('new'), W)
    const rest: string[] = []
    for (let e = await stream.next(); e.done !== true; e = await stream.next())
      rest.push(text(e.value.value.value))
    expect([first.done === true ? '' : text(first.value.value.value), ...rest]).toEqual(['old', 'old'])
    await r.close()
  })

  it('refuses keys outside its hash range with WRONG_SHARD', async () => {
    const hasher = await testHasher()
    const half = 1n << 63n
    const r = await openTestReplica(new MemoryEngine(), { hashRange: { start: 0n, end: half } })
    let inside = 0
    let outside = 0
    for (let i = 0; i < 20; i++) {
      const key = bytes(`key-${i}`)
      const mine = hasher.hash64(key) < half
      const code = await codeOf(r.put(key, bytes('v'), W))
      if (mine) {
        expect(code).toBeUndefined()
        inside++
      } else {
        expect(code).toBe(ErrorCode.WrongShard)
        outside++
      }
    }
    expect(inside).toBeGreaterThan(0)
    expect(outside).toBeGreaterThan(0)
    expect(await collect(r.scan({ prefix: new Uint8Array(), limit: 100 }, R))).toHaveLength(inside)
  })

  it('on close: refuses new work at once, and every write in flight ends (applied, or UNAVAILABLE)', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    engine.hold()
    const writes = Array.from({ length: 5 }, (_, i) => r.put(bytes(`k${i}`), bytes('v'), W))
    await new Promise((resolve) => setImmediate(resolve))
    const closing = r.close()
    expect(await codeOf(r.put(bytes('late'), bytes('v'), W))).toBe(ErrorCode.Unavailable)
    engine.release()
    await closing
    const ended = await Promise.allSettled(writes)
    for (const w of ended)
      if (w.status === 'rejected') expect((w.reason as KvError).code).toBe(ErrorCode.Unavailable)
    expect(await codeOf(r.get(bytes('k1'), R))).toBe(ErrorCode.Unavailable)
    await r.close()
  })

  it('on close: a write still in the inbox when the loop stops is answered UNAVAILABLE, not left waiting', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const r = await openTestReplica(engine)
    engine.hold()
    const first = r.put(bytes('first'), bytes('v'), W)
    // The loop takes the first write and waits in its disk write; the second waits in the inbox.
    await new Promise((resolve) => setImmediate(resolve))
    const second = r.put(bytes('second'), bytes('v'), W)
    const closing = r.close()
    engine.release()
    await closing
    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([
      second.then(
        () => 'applied',
        (err: unknown) => (err as KvError).code,
      ),
      new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 2_000))),
    ])
    clearTimeout(timer)
    expect(['applied', ErrorCode.Unavailable]).toContain(outcome)
    await Promise.allSettled([first])
  })

  it('stops on a storage failure: waiting writes fail INTERNAL and onFatal is called', async () => {
    const engine = new CountingEngine(new MemoryEngine())
    const fatal: unknown[] = []
    const r: Replica = await openTestReplica(engine, { onFatal: (err) => fatal.push(err) })
    await r.put(bytes('ok'), bytes('v'), W)
    engine.failNextWrite = new Error('EIO')
    const results = await Promise.allSettled([
      r.put(bytes('a'), bytes('1'), W),
      r.put(bytes('b'), bytes('2'), W),
    ])
    expect(results.map((x) => x.status)).toEqual(['rejected', 'rejected'])
    expect(fatal).toHaveLength(1)
    expect(await codeOf(r.put(bytes('c'), bytes('3'), W))).toBe(ErrorCode.Internal)
    expect(await codeOf(r.get(bytes('ok'), R))).toBe(ErrorCode.Internal)
    await r.close()
  })
})

/**
 * An engine that holds back the first batch writing user data once armed, until released:
 * - `visible-first`: the batch reaches the inner engine, then the write does not return (as
 *   RocksDB's memtable shows a write before its callback runs), so the replica's durable applied
 *   index is still below data a read can already see;
 * - `held-first`: the batch reaches the inner engine only on release, so the state machine has
 *   applied (staged) an entry that no read can see yet.
 */
class HoldDataWriteEngine extends CountingEngine {
  private armed = false
  private openHeld: (() => void) | undefined
  held = false

  constructor(
    inner: MemoryEngine,
    private readonly mode: 'visible-first' | 'held-first',
  ) {
    super(inner)
  }

  arm(): void {
    this.armed = true
  }

  releaseHeld(): void {
    this.armed = false
    this.openHeld?.()
  }

  override async write(...args: Parameters<CountingEngine['write']>): Promise<void> {
    const [batch] = args
    const hold = this.armed && !this.held && batch.ops().some((op) => op.kind === 'put' && isDataKey(op.key))
    if (hold) this.held = true
    if (this.mode === 'visible-first') await super.write(...args)
    if (hold) await new Promise<void>((resolve) => (this.openHeld = resolve))
    if (this.mode === 'held-first') await super.write(...args)
  }
}

describe('read receipts cover what the read returned', () => {
  it('a value applied but not yet durable is read with a receipt at or above its version (a valid session token)', async () => {
    const engine = new HoldDataWriteEngine(new MemoryEngine(), 'visible-first')
    const r = await openTestReplica(engine)
    try {
      engine.arm()
      const key = bytes('visible-first')
      const put = r.put(key, bytes('v'), { level: 'leader' })
      let seen: Awaited<ReturnType<typeof r.get>> | undefined
      for (let i = 0; i < 1000 && (seen?.found ?? null) === null; i++) {
        seen = await r.get(key, { level: 'eventual' })
        if (seen.found === null) await new Promise((res) => setTimeout(res, 2))
      }
      const found = seen?.found ?? null
      if (found === null) throw new Error('the write never became visible')
      // The write has not completed, so the durable applied index is below it: the receipt
      // must still cover the version it returned.
      expect(seen!.receipt.appliedIndex).toBeGreaterThanOrEqual(found.version)
      const many = await r.getMany([key], { level: 'eventual' })
      expect(many.receipt.appliedIndex).toBeGreaterThanOrEqual(many.found[0]!.version)
      engine.releaseHeld()
      await put
    } finally {
      engine.releaseHeld()
      await r.close()
    }
  })
})

describe('read receipts name exactly the state the read shows', () => {
  it('a point read while an applied batch is still being written claims no more than it shows', async () => {
    const engine = new HoldDataWriteEngine(new MemoryEngine(), 'held-first')
    const r = await openTestReplica(engine)
    try {
      const key = bytes('held-first')
      engine.arm()
      const put = r.put(key, bytes('v'), { level: 'majority' })
      for (let i = 0; i < 1000 && !engine.held; i++) await new Promise((res) => setTimeout(res, 2))
      expect(engine.held).toBe(true)
      // The entry is applied in memory; its batch has not reached the engine.
      const one = await r.get(key, { level: 'eventual' })
      const many = await r.getMany([key], { level: 'eventual' })
      expect(one.found).toBeNull()
      expect(many.found[0]).toBeNull()
      engine.releaseHeld()
      const written = await put
      // A receipt at the write's index would claim a state that holds the value it did not show.
      expect(one.receipt.appliedIndex).toBeLessThan(written.version)
      expect(many.receipt.appliedIndex).toBeLessThan(written.version)
      const after = await r.get(key, { level: 'eventual' })
      expect(after.receipt.appliedIndex).toBeGreaterThanOrEqual(written.version)
    } finally {
      engine.releaseHeld()
      await r.close()
    }
  })
})
