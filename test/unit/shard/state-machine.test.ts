import { beforeAll, describe, expect, it } from 'vitest'
import { AssertionError, LogIndex, ShardId } from '../../../src/common/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import type { Command } from '../../../src/shard/commands.ts'
import {
  decodeDedupHeader,
  decodeDedupResult,
  encodeDedupHeader,
  encodeDedupResult,
  type ApplyResult,
} from '../../../src/shard/dedup.ts'
import {
  ApplyOverlay,
  KvStateMachine,
  decodeAppliedIndex,
  type ApplyOutcome,
} from '../../../src/shard/state-machine.ts'
import {
  MemoryEngine,
  decodeValueRecord,
  decodeDedupKey,
  dedupRange,
  raftAppliedIndexKey,
  toHex,
  type Entry,
} from '../../../src/storage/index.ts'
import { bytes, testHasher } from './helpers.ts'

const shard = ShardId(5)

/** Drives a state machine the way the shell does: prefetch, apply into one batch, write. */
class Harness {
  readonly engine = new MemoryEngine()
  machine!: KvStateMachine
  constructor(
    private readonly hasher: Hasher,
    private readonly clientsMax = 100,
    private readonly resultsMax = 100,
    private readonly sessions: { perPrincipal?: number; idleMs?: number } = {},
  ) {}

  /** A harness over the same engine, loading the state machine from it (a restart). */
  async reopen(): Promise<Harness> {
    const again = new Harness(this.hasher, this.clientsMax, this.resultsMax, this.sessions)
    Object.assign(again, { engine: this.engine })
    return again.open()
  }

  async open(): Promise<this> {
    const raw = await this.engine.get(raftAppliedIndexKey(shard))
    const records: Entry[] = []
    for await (const e of this.engine.iterate(dedupRange(shard))) records.push(e)
    this.machine = new KvStateMachine(
      {
        shardId: shard,
        appliedIndex: raw === null ? LogIndex(0) : decodeAppliedIndex(raw),
        dedupRecords: records,
        dedupClientsMax: this.clientsMax,
        dedupResultsPerClientMax: this.resultsMax,
        ...(this.sessions.perPrincipal === undefined
          ? {}
          : { sessionsPerPrincipalMax: this.sessions.perPrincipal }),
        ...(this.sessions.idleMs === undefined ? {} : { sessionIdleMsMax: this.sessions.idleMs }),
      },
      { hasher: this.hasher },
    )
    return this
  }

  /** Applies `commands` as one group (one batch, one write). */
  async apply(...commands: Command[]): Promise<ApplyOutcome[]> {
    const keys = commands.flatMap((c) => this.machine.readKeys(c))
    const values = await this.engine.multiGet(keys)
    const batch = this.engine.batch()
    const overlay = new ApplyOverlay(
      batch,
      keys.map((k, i) => [k, values[i] ?? null] as const),
    )
    const outcomes = commands.map((c) =>
      this.machine.apply(LogIndex(this.machine.appliedIndex + 1), c, overlay, overlay),
    )
    await this.engine.write(batch, { sync: true })
    return outcomes
  }

  /** Applies `commands` as the commands of ONE entry (a grouped entry: applyEntry). */
  async entry(...commands: Command[]): Promise<ApplyOutcome[]> {
    const keys = commands.flatMap((c) => this.machine.readKeys(c))
    const values = await this.engine.multiGet(keys)
    const batch = this.engine.batch()
    const overlay = new ApplyOverlay(
      batch,
      keys.map((k, i) => [k, values[i] ?? null] as const),
    )
    const outcomes = this.machine.applyEntry(
      LogIndex(this.machine.appliedIndex + 1),
      commands,
      overlay,
      overlay,
    )
    await this.engine.write(batch, { sync: true })
    return outcomes
  }

  async one(command: Command): Promise<ApplyResult> {
    const [outcome] = await this.apply(command)
    if (outcome === undefined || !('result' in outcome)) throw new Error('no result')
    return outcome.result
  }

  async read(key: string): Promise<{ value: string; version: number; createVersion: number } | null> {
    const raw = await this.engine.get(this.machine.dataKey(bytes(key)))
    if (raw === null) return null
    const r = decodeValueRecord(raw)
    return { value: new TextDecoder().decode(r.value), version: r.version, createVersion: r.createVersion }
  }
}

const put = (key: string, value: string, expectedVersion?: number): Command =>
  expectedVersion === undefined
    ? { kind: 'put', key: bytes(key), value: bytes(value) }
    : { kind: 'put', key: bytes(key), value: bytes(value), expectedVersion }
const del = (key: string, expectedVersion?: number): Command =>
  expectedVersion === undefined
    ? { kind: 'delete', key: bytes(key) }
    : { kind: 'delete', key: bytes(key), expectedVersion }

/** `command` tagged with (clientId, seq, firstIncompleteSeq). */
const tagged = (command: Command, clientId: string, seq: number, firstIncompleteSeq = seq): Command => {
  if (command.kind === 'register') throw new Error('a registration carries no tag')
  return { ...command, tag: { clientId, seq, firstIncompleteSeq } }
}

/** The dedup records on disk, as `client:header(watermark)` and `client:seq`. */
async function storedDedup(h: Harness): Promise<string[]> {
  const out: string[] = []
  for await (const [k, v] of h.engine.iterate(dedupRange(shard))) {
    const { clientId, seq } = decodeDedupKey(k)
    out.push(seq === undefined ? `${clientId}:w${decodeDedupHeader(v).watermark}` : `${clientId}:${seq}`)
  }
  return out
}

describe('shard/state-machine', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await testHasher()
  })

  it('versions a key by the index that wrote it and keeps createVersion across overwrites', async () => {
    const h = await new Harness(hasher).open()
    expect(await h.one(put('a', '1'))).toEqual({ kind: 'put', version: 1 })
    await h.one(put('b', 'x'))
    expect(await h.one(put('a', '2'))).toEqual({ kind: 'put', version: 3 })
    expect(await h.read('a')).toEqual({ value: '2', version: 3, createVersion: 1 })
  })

  it('deletes, reports whether the key existed, and starts createVersion anew after a delete', async () => {
    const h = await new Harness(hasher).open()
    await h.one(put('a', '1'))
    expect(await h.one(del('a'))).toEqual({ kind: 'delete', deleted: true })
    expect(await h.one(del('a'))).toEqual({ kind: 'delete', deleted: false })
    expect(await h.read('a')).toBeNull()
    await h.one(put('a', 'again'))
    expect(await h.read('a')).toEqual({ value: 'again', version: 4, createVersion: 4 })
  })

  it('compares and sets: 0 means absent, n means version n, a mismatch writes nothing', async () => {
    const h = await new Harness(hasher).open()
    expect(await h.one(put('a', '1', 0))).toEqual({ kind: 'put', version: 1 })
    expect(await h.one(put('a', '2', 0))).toEqual({ kind: 'versionMismatch', opIndex: 0, currentVersion: 1 })
    expect(await h.one(put('a', '2', 7))).toEqual({ kind: 'versionMismatch', opIndex: 0, currentVersion: 1 })
    expect(await h.read('a')).toEqual({ value: '1', version: 1, createVersion: 1 })
    expect(await h.one(put('a', '2', 1))).toEqual({ kind: 'put', version: 4 })
    expect(await h.one(del('a', 1))).toEqual({ kind: 'versionMismatch', opIndex: 0, currentVersion: 4 })
    expect(await h.one(del('a', 4))).toEqual({ kind: 'delete', deleted: true })
    expect(await h.one(del('zz', 0))).toEqual({ kind: 'delete', deleted: false })
    expect(await h.one(put('b', 'x', 3))).toEqual({ kind: 'versionMismatch', opIndex: 0, currentVersion: 0 })
    // A failed CAS still consumes its index and persists the applied index.
    expect(h.machine.appliedIndex).toBe(8)
    expect(decodeAppliedIndex((await h.engine.get(raftAppliedIndexKey(shard))) ?? new Uint8Array())).toBe(8)
  })

  it('applies a batch atomically: any mismatch writes none of it', async () => {
    const h = await new Harness(hasher).open()
    await h.one(put('a', '1'))
    const failed = await h.one({
      kind: 'batch',
      ops: [
        { kind: 'put', key: bytes('b'), value: bytes('new') },
        { kind: 'delete', key: bytes('a') },
        { kind: 'put', key: bytes('c'), value: bytes('x'), expectedVersion: 5 },
      ],
    })
    expect(failed).toEqual({ kind: 'versionMismatch', opIndex: 2, currentVersion: 0 })
    expect(await h.read('a')).toEqual({ value: '1', version: 1, createVersion: 1 })
    expect(await h.read('b')).toBeNull()
    const ok = await h.one({
      kind: 'batch',
      ops: [
        { kind: 'put', key: bytes('b'), value: bytes('new'), expectedVersion: 0 },
        { kind: 'delete', key: bytes('a'), expectedVersion: 1 },
        { kind: 'put', key: bytes('c'), value: bytes('x') },
      ],
    })
    expect(ok).toEqual({
      kind: 'batch',
      results: [
        { kind: 'put', version: 3 },
        { kind: 'delete', deleted: true },
        { kind: 'put', version: 3 },
      ],
    })
    expect(await h.read('a')).toBeNull()
    expect(await h.read('b')).toEqual({ value: 'new', version: 3, createVersion: 3 })
  })

  it('applies the ops of one batch in order (a later op sees an earlier one)', async () => {
    const h = await new Harness(hasher).open()
    const result = await h.one({
      kind: 'batch',
      ops: [
        { kind: 'put', key: bytes('k'), value: bytes('1'), expectedVersion: 0 },
        { kind: 'put', key: bytes('k'), value: bytes('2'), expectedVersion: 1 },
        { kind: 'delete', key: bytes('k') },
        { kind: 'delete', key: bytes('k') },
      ],
    })
    expect(result).toEqual({
      kind: 'batch',
      results: [
        { kind: 'put', version: 1 },
        { kind: 'put', version: 1 },
        { kind: 'delete', deleted: true },
        { kind: 'delete', deleted: false },
      ],
    })
    expect(await h.read('k')).toBeNull()
  })

  it('sees earlier commands of the same group (one batch, one write)', async () => {
    const h = await new Harness(hasher).open()
    const outcomes = await h.apply(put('a', '1', 0), put('a', '2', 1), put('a', '3', 1), del('a', 2))
    expect(outcomes.map((o) => ('result' in o ? o.result : o.kind))).toEqual([
      { kind: 'put', version: 1 },
      { kind: 'put', version: 2 },
      { kind: 'versionMismatch', opIndex: 0, currentVersion: 2 },
      { kind: 'delete', deleted: true },
    ])
    expect(h.engine.stats.writes).toBe(1)
  })

  it('applies a tagged write once and replays its original result to a retry (Raft thesis §6.3)', async () => {
    const h = await new Harness(hasher).open()
    const first = await h.apply(tagged(put('a', '1'), 'client-1', 1))
    await h.one(put('a', 'other'))
    const retry = await h.apply(tagged(put('a', '1'), 'client-1', 1))
    expect(first[0]).toMatchObject({ kind: 'applied', result: { kind: 'put', version: 1 } })
    expect(retry[0]).toMatchObject({ kind: 'duplicate', index: 3, result: { kind: 'put', version: 1 } })
    expect(await h.read('a')).toMatchObject({ value: 'other', version: 2 })
    // A CAS failure is an answer too, and is replayed.
    const cas = tagged(put('a', 'x', 99), 'client-1', 2)
    expect((await h.apply(cas))[0]).toMatchObject({
      kind: 'applied',
      result: { kind: 'versionMismatch', currentVersion: 2 },
    })
    expect((await h.apply(cas))[0]).toMatchObject({
      kind: 'duplicate',
      result: { kind: 'versionMismatch', currentVersion: 2 },
    })
    // Seq 2 carried firstIncompleteSeq 2: seq 1 is acknowledged, so a retry of it is stale.
    expect((await h.apply(tagged(put('a', 'old'), 'client-1', 1)))[0]).toEqual({
      kind: 'staleSeq',
      index: 6,
      watermark: 2,
    })
    expect(await h.read('a')).toMatchObject({ value: 'other', version: 2 })
  })

  it('applies pipelined seqs of one client in any order, each once, and replays each', async () => {
    const h = await new Harness(hasher).open()
    // Seqs 10..14 in flight at once (firstIncompleteSeq 10), arriving out of order.
    const order = [13, 10, 14, 11, 12]
    const outcomes = await h.apply(...order.map((seq) => tagged(put(`k${seq}`, `v${seq}`), 'p', seq, 10)))
    expect(outcomes.map((o) => o.kind)).toEqual(order.map(() => 'applied'))
    const versionOf = new Map(order.map((seq, i) => [seq, i + 1]))
    // Every retry, in yet another order and in one group with a new write, applies nothing.
    const retries = await h.apply(
      ...[12, 14, 10].map((seq) => tagged(put(`k${seq}`, 'retry'), 'p', seq, 10)),
      tagged(put('k15', 'v15'), 'p', 15, 10),
      tagged(put('k11', 'retry'), 'p', 11, 10),
    )
    expect(retries.map((o) => ('result' in o ? [o.kind, o.result] : o.kind))).toEqual([
      ['duplicate', { kind: 'put', version: versionOf.get(12) }],
      ['duplicate', { kind: 'put', version: versionOf.get(14) }],
      ['duplicate', { kind: 'put', version: versionOf.get(10) }],
      ['applied', { kind: 'put', version: 9 }],
      ['duplicate', { kind: 'put', version: versionOf.get(11) }],
    ])
    for (const seq of order) expect(await h.read(`k${seq}`)).toMatchObject({ value: `v${seq}` })
    expect(h.machine.dedupClient('p')).toMatchObject({ watermark: 10, seqs: [10, 11, 12, 13, 14, 15] })
  })

  it('discards results below a rising watermark, on disk too, and refuses seqs below it as stale', async () => {
    const h = await new Harness(hasher).open()
    for (const seq of [1, 2, 3]) await h.apply(tagged(put('k', `${seq}`), 'c', seq, 1))
    expect(await storedDedup(h)).toEqual(['c:w1', 'c:1', 'c:2', 'c:3'])
    // Seq 4 says: everything below 3 was answered. 1 and 2 go; 3 (still in flight) stays.
    await h.apply(tagged(put('k', '4'), 'c', 4, 3))
    expect(await storedDedup(h)).toEqual(['c:w3', 'c:3', 'c:4'])
    expect(h.machine.dedupClient('c')).toMatchObject({ watermark: 3, seqs: [3, 4], lastIndex: 4 })
    // A retry of 2 (already answered): stale, nothing applied, no record changed.
    const stale = await h.apply(tagged(put('k', 'again'), 'c', 2, 2))
    expect(stale[0]).toEqual({ kind: 'staleSeq', index: 5, watermark: 3 })
    expect(await h.read('k')).toMatchObject({ value: '4', version: 4 })
    expect(h.machine.dedupClient('c')?.lastIndex).toBe(4)
    // A retry of 3 is still answered; a retry carrying a higher firstIncompleteSeq advances it.
    expect((await h.apply(tagged(put('k', '3'), 'c', 3, 3)))[0]).toMatchObject({ kind: 'duplicate' })
    expect((await h.apply(tagged(put('k', '4'), 'c', 4, 4)))[0]).toMatchObject({ kind: 'duplicate' })
    expect(await storedDedup(h)).toEqual(['c:w4', 'c:4'])
    // An older firstIncompleteSeq (a delayed command) never lowers the watermark.
    await h.apply(tagged(put('k', '6'), 'c', 6, 2))
    expect(h.machine.dedupClient('c')).toMatchObject({ watermark: 4, seqs: [4, 6] })
  })

  it('bounds the saved results per client: a new seq beyond it is refused and applies nothing', async () => {
    const h = await new Harness(hasher, 100, 3).open()
    for (const seq of [1, 2, 3]) await h.apply(tagged(put(`k${seq}`, 'v'), 'c', seq, 1))
    const full = await h.apply(tagged(put('k4', 'v'), 'c', 4, 1))
    expect(full[0]).toEqual({ kind: 'resultsFull', index: 4, limit: 3 })
    expect(await h.read('k4')).toBeNull()
    // Retries of saved seqs are still answered, and other clients are not affected.
    expect((await h.apply(tagged(put('k2', 'v'), 'c', 2, 1)))[0]?.kind).toBe('duplicate')
    expect((await h.apply(tagged(put('x', 'v'), 'other', 1)))[0]?.kind).toBe('applied')
    // Once the client acknowledges seq 1, seq 4 fits (and is applied once).
    const retried = await h.apply(tagged(put('k4', 'v'), 'c', 4, 2))
    expect(retried[0]).toMatchObject({ kind: 'applied', result: { kind: 'put', version: 7 } })
    expect(h.machine.dedupClient('c')?.seqs).toEqual([2, 3, 4])
  })

  it('keeps the dedup table across a reopen: results, watermark and recency', async () => {
    const h = await new Harness(hasher).open()
    await h.apply(tagged(put('a', '1'), 'c', 7, 7), tagged(put('b', '1'), 'c', 9, 7))
    await h.apply(tagged(put('a', '2'), 'c', 8, 8))
    const reopened = await h.reopen()
    expect(reopened.machine.appliedIndex).toBe(3)
    expect(reopened.machine.dedupClient('c')).toEqual({
      watermark: 8,
      lastIndex: 3,
      principal: null,
      lastActiveMs: 0,
      seqs: [8, 9],
    })
    expect((await reopened.apply(tagged(put('b', '1'), 'c', 9, 8)))[0]).toMatchObject({
      kind: 'duplicate',
      result: { version: 2 },
    })
    expect((await reopened.apply(tagged(put('a', '1'), 'c', 7, 7)))[0]?.kind).toBe('staleSeq')
  })

  it('bounds the clients, forgetting the least recently active one with all its records', async () => {
    const h = await new Harness(hasher, 3).open()
    for (const id of ['a', 'b', 'c']) await h.apply(tagged(put('k', id), id, 1))
    await h.apply(tagged(put('k', 'b2'), 'b', 2, 1)) // b holds results 1 and 2
    await h.apply(tagged(put('k', 'a2'), 'a', 2, 1)) // a is now the most recent
    await h.apply(tagged(put('k', 'd'), 'd', 1)) // evicts c, the least recently active
    expect(h.machine.dedupClients).toBe(3)
    expect(h.machine.dedupClient('c')).toBeUndefined()
    expect(await storedDedup(h)).toEqual(['a:w1', 'a:1', 'a:2', 'b:w1', 'b:1', 'b:2', 'd:w1', 'd:1'])
    // A retry of a duplicate counts as activity: b is now the most recent, so e evicts a.
    expect((await h.apply(tagged(put('k', 'b2'), 'b', 2, 1)))[0]?.kind).toBe('duplicate')
    await h.apply(tagged(put('k', 'e'), 'e', 1))
    expect(await storedDedup(h)).toEqual(['b:w1', 'b:1', 'b:2', 'd:w1', 'd:1', 'e:w1', 'e:1'])
    // c was forgotten: its retry applies again (the documented cost of the bound).
    expect((await h.apply(tagged(put('k', 'c'), 'c', 1)))[0]?.kind).toBe('applied')
  })

  it('is deterministic: replicas applying the same commands store the same bytes and evict alike', async () => {
    const commands: Command[] = []
    // Six clients over a table of four, pipelined and out of order, with retries, stale seqs, CAS
    // failures and untagged writes in between.
    for (let round = 0; round < 6; round++)
      for (const [i, id] of ['a', 'b', 'c', 'd', 'e', 'f'].entries()) {
        if ((round + i) % 3 === 0) continue
        const base = round * 10
        commands.push(tagged(put(`${id}${round}`, `${round}`), id, base + 2, base))
        commands.push(tagged(put(`${id}${round}`, 'x', 99), id, base + 1, base))
        commands.push(tagged(put(`${id}${round}`, `${round}`), id, base + 2, base + 1))
        commands.push(put('shared', `${id}${round}`))
        if (round > 0) commands.push(tagged(del(`${id}${round}`), id, base - 9, base - 10))
      }
    const one = await new Harness(hasher, 4, 8).open()
    let two = await new Harness(hasher, 4, 8).open()
    const outcomesOne = await one.apply(...commands)
    const outcomesTwo: ApplyOutcome[] = []
    for (const [i, c] of commands.entries()) {
      outcomesTwo.push(...(await two.apply(c)))
      // Replica two restarts now and then: a table loaded from disk must evict like one built in memory.
      if (i % 17 === 16) two = await two.reopen()
    }
    expect(outcomesTwo).toEqual(outcomesOne)
    expect(new Set(outcomesOne.map((o) => o.kind))).toEqual(new Set(['applied', 'duplicate', 'staleSeq']))
    const dump = async (h: Harness): Promise<string[]> => {
      const out: string[] = []
      for await (const [k, v] of h.engine.iterate({ gte: Uint8Array.of(0), lt: Uint8Array.of(0xff) }))
        out.push(`${toHex(k)}=${toHex(v)}`)
      return out
    }
    expect(await dump(one)).toEqual(await dump(two))
    expect(one.machine.dedupClients).toBe(4)
  })

  it('asserts that indexes are applied in order', async () => {
    const h = await new Harness(hasher).open()
    const batch = h.engine.batch()
    const overlay = new ApplyOverlay(batch, [])
    expect(() => h.machine.apply(LogIndex(2), del('a'), overlay, overlay)).toThrow(AssertionError)
    // And that apply only reads prefetched keys.
    expect(() => h.machine.apply(LogIndex(1), del('a'), overlay, overlay)).toThrow(AssertionError)
  })

  it('round-trips dedup records and fails stop on corrupt ones', () => {
    const results: ApplyResult[] = [
      { kind: 'put', version: LogIndex(9) },
      { kind: 'delete', deleted: true },
      {
        kind: 'batch',
        results: [
          { kind: 'put', version: LogIndex(3) },
          { kind: 'delete', deleted: false },
        ],
      },
      { kind: 'versionMismatch', opIndex: 2, currentVersion: 0 },
    ]
    for (const result of results) expect(decodeDedupResult(encodeDedupResult(result))).toEqual(result)
    const header = { watermark: 12, lastIndex: LogIndex(40), principal: null, lastActiveMs: 0 }
    expect(decodeDedupHeader(encodeDedupHeader(header))).toEqual(header)
    const session = { watermark: 12, lastIndex: LogIndex(40), principal: 'alice', lastActiveMs: 5 }
    expect(decodeDedupHeader(encodeDedupHeader(session))).toEqual(session)
    // A format 2 header (before sessions) reads as an unregistered client.
    expect(decodeDedupHeader(Uint8Array.of(2, 12, 40))).toEqual(header)
    expect(() => decodeDedupResult(Uint8Array.of(2, 9))).toThrow(AssertionError)
    expect(() => decodeDedupResult(Uint8Array.of(1, 1, 1))).toThrow(AssertionError)
    expect(() => decodeDedupHeader(Uint8Array.of(2, 1, 1, 0))).toThrow(AssertionError)
  })
})

/** A registration, and writes on registered sessions (stamped with a principal and a log time). */
const register = (clientId: string, principal: string, atMs: number, floor = 0): Command => ({
  kind: 'register',
  clientId,
  floor,
  session: { principal, atMs },
})
const onSession = (
  command: Command,
  clientId: string,
  principal: string,
  atMs: number,
  seq: number,
  firstIncompleteSeq = seq,
): Command => {
  if (command.kind === 'register') throw new Error('a registration carries no tag')
  return { ...command, tag: { clientId, seq, firstIncompleteSeq, session: { principal, atMs } } }
}

describe('shard/state-machine registered sessions (§6.3): games other clients play change nothing', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await testHasher()
  })
  const kinds = (outcomes: ApplyOutcome[]): string[] => outcomes.map((o) => o.kind)

  it('a write on a session that was never registered is refused and not applied', async () => {
    const h = await new Harness(hasher).open()
    expect(kinds(await h.apply(onSession(put('k', 'v'), 'c1', 'alice', 1, 5)))).toEqual(['sessionUnknown'])
    expect(await h.read('k')).toBeNull()
  })

  it('hijack: another principal can neither register my id, write on it, nor pre-empt my seq', async () => {
    const h = await new Harness(hasher).open()
    expect(kinds(await h.apply(register('mine', 'alice', 1)))).toEqual(['registered'])
    // Mallory names my id and my next seq: refused, not applied, and not remembered as my answer.
    expect(kinds(await h.apply(register('mine', 'mallory', 2)))).toEqual(['sessionConflict'])
    expect(kinds(await h.apply(onSession(put('k', 'evil'), 'mine', 'mallory', 2, 7)))).toEqual([
      'sessionUnknown',
    ])
    // My write with that seq is applied (not answered with someone else's result).
    const [mine] = await h.apply(onSession(put('k', 'good'), 'mine', 'alice', 3, 7))
    expect(mine?.kind).toBe('applied')
    expect((await h.read('k'))?.value).toBe('good')
  })

  it('watermark: another principal cannot raise my watermark and have my later seqs refused', async () => {
    const h = await new Harness(hasher).open()
    await h.apply(register('mine', 'alice', 1, 10))
    await h.apply(onSession(put('x', '1'), 'mine', 'mallory', 2, 1_000_000, 1_000_000))
    await h.apply(register('mine', 'mallory', 2, 1_000_000))
    expect(h.machine.dedupClient('mine')?.watermark).toBe(10)
    const [ok] = await h.apply(onSession(put('k', 'v'), 'mine', 'alice', 3, 11, 10))
    expect(ok?.kind).toBe('applied')
  })

  it("eviction: a flood of other principals' registrations never evicts my session; the table refuses instead", async () => {
    const h = await new Harness(hasher, 8, 100, { perPrincipal: 3 }).open()
    await h.apply(register('mine', 'alice', 1))
    const [first] = await h.apply(onSession(put('k', 'v1'), 'mine', 'alice', 2, 1))
    expect(first?.kind).toBe('applied')
    // Mallory registers many ids: each beyond her quota gives up one of HER sessions.
    for (let i = 0; i < 50; i++) await h.apply(register(`m${i}`, 'mallory', 3))
    expect(h.machine.dedupClient('mine')).toBeDefined()
    // Many principals fill the table: registrations are refused, nobody is evicted.
    const outcomes: string[] = []
    for (let p = 0; p < 10; p++) outcomes.push(...kinds(await h.apply(register(`p${p}`, `principal${p}`, 4))))
    expect(outcomes).toContain('sessionsFull')
    expect(h.machine.dedupClient('mine')).toBeDefined()
    // My retry of seq 1 is answered from the saved result, not applied again.
    const [retry] = await h.apply(onSession(put('k', 'v1'), 'mine', 'alice', 5, 1))
    expect(retry?.kind).toBe('duplicate')
    expect((await h.read('k'))?.version).toBe(2)
  })

  it('my own quota gives up my least recently active session; its writes then fail, never re-apply', async () => {
    const h = await new Harness(hasher, 100, 100, { perPrincipal: 2 }).open()
    await h.apply(register('old', 'alice', 1))
    const [applied] = await h.apply(onSession(put('k', 'once'), 'old', 'alice', 1, 1))
    expect(applied?.kind).toBe('applied')
    await h.apply(register('b', 'alice', 2))
    await h.apply(register('c', 'alice', 3)) // gives up 'old'
    expect(h.machine.dedupClient('old')).toBeUndefined()
    const version = (await h.read('k'))?.version
    expect(kinds(await h.apply(onSession(put('k', 'once'), 'old', 'alice', 4, 1)))).toEqual([
      'sessionUnknown',
    ])
    expect((await h.read('k'))?.version).toBe(version)
  })

  it("sessions expire by the log's clock, alike on every replica and across a restart", async () => {
    const h = await new Harness(hasher, 100, 100, { idleMs: 1_000 }).open()
    await h.apply(register('s', 'alice', 10_000))
    await h.apply(onSession(put('k', 'v'), 's', 'alice', 10_500, 1))
    // Another client's command moves the log's clock past the idle bound.
    await h.apply(register('other', 'bob', 12_000))
    const again = await h.reopen()
    expect(kinds(await again.apply(onSession(put('k', 'v'), 's', 'alice', 12_001, 1)))).toEqual([
      'sessionUnknown',
    ])
    expect(again.machine.dedupClient('s')).toBeUndefined()
    expect((await again.read('k'))?.version).toBe(2)
  })

  it('a session survives a restart with its principal, watermark and results', async () => {
    const h = await new Harness(hasher).open()
    await h.apply(register('s', 'alice', 1, 5))
    await h.apply(onSession(put('k', 'v'), 's', 'alice', 2, 6, 5))
    const again = await h.reopen()
    expect(again.machine.dedupClient('s')).toMatchObject({ principal: 'alice', watermark: 5, seqs: [6] })
    expect(kinds(await again.apply(onSession(put('k', 'v'), 's', 'alice', 3, 6, 5)))).toEqual(['duplicate'])
    expect(kinds(await again.apply(onSession(put('k', 'v'), 's', 'bob', 3, 7)))).toEqual(['sessionUnknown'])
  })
  it('applies a grouped entry: every command at the entry index, each with its own dedup result', async () => {
    const h = await new Harness(hasher).open()
    await h.one(put('a', '0'))
    const outcomes = await h.entry(
      tagged(put('a', '1', 1), 'c', 1),
      tagged(put('b', '2'), 'c', 2, 1),
      tagged(put('z', '9', 7), 'c', 3, 1), // a CAS mismatch fails alone
      tagged(del('d'), 'c', 4, 1),
    )
    expect(outcomes).toEqual([
      { kind: 'applied', index: 2, result: { kind: 'put', version: 2 } },
      { kind: 'applied', index: 2, result: { kind: 'put', version: 2 } },
      { kind: 'applied', index: 2, result: { kind: 'versionMismatch', opIndex: 0, currentVersion: 0 } },
      { kind: 'applied', index: 2, result: { kind: 'delete', deleted: false } },
    ])
    expect(h.machine.appliedIndex).toBe(2)
    expect(decodeAppliedIndex((await h.engine.get(raftAppliedIndexKey(shard)))!)).toBe(2)
    expect(await h.read('a')).toEqual({ value: '1', version: 2, createVersion: 1 })
    expect(await h.read('z')).toBeNull()
    expect(await storedDedup(h)).toEqual(['c:w1', 'c:1', 'c:2', 'c:3', 'c:4'])
    // A retry of any of them, alone or grouped again, replays its saved result and applies nothing.
    const again = await h.entry(tagged(put('b', 'X'), 'c', 2, 1), tagged(put('e', '5'), 'c', 5, 1))
    expect(again).toEqual([
      { kind: 'duplicate', index: 3, result: { kind: 'put', version: 2 } },
      { kind: 'applied', index: 3, result: { kind: 'put', version: 3 } },
    ])
    expect(await h.read('b')).toEqual({ value: '2', version: 2, createVersion: 2 })
    // A restart loads the same table (the client's last activity is the group's index).
    const h2 = await h.reopen()
    expect(h2.machine.dedupClient('c')).toEqual(h.machine.dedupClient('c'))
    expect(h2.machine.dedupClient('c')?.lastIndex).toBe(3)
    expect(await h2.one(tagged(put('b', 'Y'), 'c', 2, 1))).toEqual({ kind: 'put', version: 2 })
  })

  it("writes a client's dedup header once per entry, holding the entry's last state", async () => {
    const h = await new Harness(hasher).open()
    await h.entry(tagged(put('a', '0'), 'c', 1))
    await h.entry(tagged(put('x', '0'), 'd', 1))
    // One entry of five commands of client c, the watermark rising within it.
    const keys = ['a', 'b', 'e', 'f', 'g']
    const commands = keys.map((k, i) => tagged(put(k, String(i)), 'c', i + 2, i + 1))
    const read = commands.flatMap((c) => h.machine.readKeys(c))
    const values = await h.engine.multiGet(read)
    const batch = h.engine.batch()
    const overlay = new ApplyOverlay(
      batch,
      read.map((k, i) => [k, values[i] ?? null] as const),
    )
    h.machine.applyEntry(LogIndex(h.machine.appliedIndex + 1), commands, overlay, overlay)
    const range = dedupRange(shard)
    const inRange = (k: Uint8Array): boolean =>
      Buffer.compare(k, range.gte) >= 0 && Buffer.compare(k, range.lt) < 0
    const ops = batch.ops().filter((op) => op.kind !== 'deleteRange' && inRange(op.key))
    const headers = ops.filter((op) => op.kind === 'put' && decodeDedupKey(op.key).seq === undefined)
    expect(headers).toHaveLength(1)
    const header = headers[0]!
    if (header.kind !== 'put') throw new Error('not a put')
    expect(decodeDedupKey(header.key).clientId).toBe('c')
    expect(decodeDedupHeader(header.value)).toMatchObject({ watermark: 5, lastIndex: 3 })
    // One result per command, and the results below the final watermark deleted.
    const results = ops.filter((op) => op.kind === 'put' && decodeDedupKey(op.key).seq !== undefined)
    expect(results).toHaveLength(commands.length)
    await h.engine.write(batch, { sync: true })
    expect(await storedDedup(h)).toEqual(['c:w5', 'c:5', 'c:6', 'd:w1', 'd:1'])
    const h2 = await h.reopen()
    expect(h2.machine.dedupClient('c')).toEqual(h.machine.dedupClient('c'))
    expect(h2.machine.dedupClient('d')).toEqual(h.machine.dedupClient('d'))
  })

  it('applies a grouped entry exactly as its commands one entry each would, but for versions', async () => {
    const commands = [
      tagged(put('a', '1'), 'c', 1),
      tagged(put('b', '2', 0), 'c', 2, 1),
      tagged(del('a'), 'c', 3, 2),
      tagged(put('b', 'x', 0), 'c', 2, 1), // a repeat of seq 2 inside the same entry
      tagged(put('q', '1'), 'c', 1), // below the watermark by now: stale
    ]
    const grouped = await new Harness(hasher).open()
    const single = await new Harness(hasher).open()
    const g = await grouped.entry(...commands)
    const s: ApplyOutcome[] = []
    for (const c of commands) s.push(...(await single.apply(c)))
    const strip = (o: ApplyOutcome): string =>
      JSON.stringify({ ...o, index: 0 }).replace(/"version":\d+/g, '')
    expect(g.map(strip)).toEqual(s.map(strip))
    expect(await storedDedup(grouped)).toEqual(await storedDedup(single))
    for (const k of ['a', 'b', 'q'])
      expect((await grouped.read(k))?.value).toBe((await single.read(k))?.value)
  })
})

describe('shard/state-machine: the versions of recently applied keys', () => {
  let hasher: Hasher
  beforeAll(async () => {
    hasher = await testHasher()
  })

  const machine = (recentKeysMax: number): KvStateMachine =>
    new KvStateMachine(
      {
        shardId: shard,
        appliedIndex: LogIndex(0),
        dedupRecords: [],
        dedupClientsMax: 10,
        dedupResultsPerClientMax: 10,
        recentKeysMax,
      },
      { hasher },
    )
  /** Applies `commands` as one entry each, reading only what readKeys asked for (none: throws). */
  const applyAll = (m: KvStateMachine, engine: Map<string, Uint8Array | null>, ...commands: Command[]) => {
    const keys = commands.flatMap((c) => m.readKeys(c))
    const batch = new MemoryEngine().batch()
    const overlay = new ApplyOverlay(
      batch,
      keys.map((k) => [k, engine.get(toHex(k)) ?? null] as const),
    )
    const outcomes = commands.map((c) => m.apply(LogIndex(m.appliedIndex + 1), c, overlay, overlay))
    for (const op of batch.ops())
      if (op.kind === 'put') engine.set(toHex(op.key), op.value)
      else if (op.kind === 'del') engine.set(toHex(op.key), null)
    return { keys, outcomes }
  }
  const results = (outcomes: readonly ApplyOutcome[]) =>
    outcomes.map((o) => ('result' in o ? o.result : o.kind))

  it('applies a write to a key it wrote recently without reading it, with the same versions', async () => {
    const m = machine(8)
    const stored = new Map<string, Uint8Array | null>()
    expect(applyAll(m, stored, put('a', '1')).keys).toHaveLength(1)
    // Every later write of `a` is applied from memory: readKeys asks for nothing, and the overlay
    // (which asserts on a key that was not prefetched) is never asked.
    const second = applyAll(m, stored, put('a', '2'), put('a', '3', 2), del('a'), put('a', '4'), del('a', 9))
    expect(second.keys).toEqual([])
    expect(results(second.outcomes)).toEqual([
      { kind: 'put', version: 2 },
      { kind: 'put', version: 3 },
      { kind: 'delete', deleted: true },
      { kind: 'put', version: 5 },
      { kind: 'versionMismatch', opIndex: 0, currentVersion: 5 },
    ])
    const raw = stored.get(toHex(m.dataKey(bytes('a'))))
    // createVersion starts anew after the delete: 5, not 1.
    expect(raw === null || raw === undefined ? null : decodeValueRecord(raw)).toMatchObject({
      version: 5,
      createVersion: 5,
    })
  })

  it('forgets the oldest keys beyond its bound, only when the next readKeys comes', async () => {
    const m = machine(2)
    const stored = new Map<string, Uint8Array | null>()
    applyAll(m, stored, put('a', '1'), put('b', '1'), put('c', '1'))
    // Three remembered until the next readKeys: nothing is forgotten between a readKeys and its applies.
    expect(m.recentKeys).toBe(3)
    const next = applyAll(m, stored, put('a', '2'), put('c', '2'))
    expect(next.keys.map(toHex)).toEqual([toHex(m.dataKey(bytes('a')))])
    expect(results(next.outcomes)).toEqual([
      { kind: 'put', version: 4 },
      { kind: 'put', version: 5 },
    ])
    const a = stored.get(toHex(m.dataKey(bytes('a'))))
    expect(a === null || a === undefined ? null : decodeValueRecord(a).createVersion).toBe(1)
  })

  it('learns versions read early, but never over a newer apply, nor after forgetting anything', async () => {
    const m = machine(4)
    const stored = new Map<string, Uint8Array | null>()
    applyAll(m, stored, put('a', '1'), put('b', '1')) // a@1, b@2, both remembered
    const keyOf = (k: string): Uint8Array => m.dataKey(bytes(k))
    const read = (...ks: string[]) => ks.map((k) => stored.get(toHex(keyOf(k))) ?? null)
    // An early read of a and b, then b is written again before the read lands: b's read is older.
    const token = m.learnToken()
    const early = read('a', 'b')
    applyAll(m, stored, put('b', '2')) // b@3
    m.learn(token, [keyOf('a'), keyOf('b')], early)
    const next = applyAll(m, stored, put('b', '3', 3))
    expect(results(next.outcomes)).toEqual([{ kind: 'put', version: 4 }])
    // A fresh key read early and learned: its apply reads nothing.
    stored.set(toHex(keyOf('c')), null)
    const t2 = m.learnToken()
    m.learn(t2, [keyOf('c')], read('c'))
    expect(m.readKeys(put('c', '1'))).toEqual([])
    // A key unknown at the token, applied after it and already forgotten again, looks unknown
    // when the early read lands: that read is older than the apply, so nothing is learned.
    const m2 = machine(1)
    const s2 = new Map<string, Uint8Array | null>()
    const x = m2.dataKey(bytes('x'))
    applyAll(m2, s2, put('y', '1'))
    const t3 = m2.learnToken()
    const earlyX = [s2.get(toHex(x)) ?? null] // x does not exist yet
    applyAll(m2, s2, put('x', '1')) // x@2, remembered after the token
    applyAll(m2, s2, put('w', '1')) // its readKeys forgets y; then w@3
    m2.readKeys(put('v', '1')) // forgets x
    m2.learn(t3, [x], earlyX)
    expect(m2.readKeys(put('x', '2')).map(toHex)).toEqual([toHex(x)])
    // Keys forgotten that were remembered before the token do not stop a learn.
    const t4 = m2.learnToken()
    m2.readKeys(put('u', '1'))
    const c = m2.dataKey(bytes('c'))
    m2.learn(t4, [c], [null])
    expect(m2.readKeys(put('c', '1'))).toEqual([])
  })

  it('learns no more keys than twice its bound, however many appended entries never commit', async () => {
    const m = machine(2)
    const keys = ['p', 'q', 'r', 's', 't'].map((k) => m.dataKey(bytes(k)))
    m.learn(
      m.learnToken(),
      keys,
      keys.map(() => null),
    )
    expect(m.recentKeys).toBe(4)
  })

  it('remembers nothing with a bound of 0: every apply reads what it needs', async () => {
    const m = machine(0)
    const stored = new Map<string, Uint8Array | null>()
    applyAll(m, stored, put('a', '1'))
    expect(applyAll(m, stored, put('a', '2')).keys).toHaveLength(1)
    expect(m.recentKeys).toBe(0)
  })
})
