import { beforeAll, describe, expect, it } from 'vitest'
import { AssertionError, LogIndex, ShardId } from '../../../src/common/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import type { Command } from '../../../src/shard/commands.ts'
import { decodeDedupEntry, encodeDedupEntry, type ApplyResult } from '../../../src/shard/dedup.ts'
import {
  ApplyOverlay,
  KvStateMachine,
  decodeAppliedIndex,
  type ApplyOutcome,
} from '../../../src/shard/state-machine.ts'
import {
  MemoryEngine,
  decodeValueRecord,
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
  ) {}

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

  async one(command: Command): Promise<ApplyResult> {
    const [outcome] = await this.apply(command)
    if (outcome === undefined || outcome.kind === 'staleSeq') throw new Error('no result')
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
    expect(outcomes.map((o) => (o.kind === 'staleSeq' ? o.kind : o.result))).toEqual([
      { kind: 'put', version: 1 },
      { kind: 'put', version: 2 },
      { kind: 'versionMismatch', opIndex: 0, currentVersion: 2 },
      { kind: 'delete', deleted: true },
    ])
    expect(h.engine.stats.writes).toBe(1)
  })

  it('applies a tagged write once and replays its original result to a retry (Raft thesis §6.3)', async () => {
    const h = await new Harness(hasher).open()
    const tag = { clientId: 'client-1', seq: 1 }
    const first = await h.apply({ ...put('a', '1'), tag })
    await h.one(put('a', 'other'))
    const retry = await h.apply({ ...put('a', '1'), tag })
    expect(first[0]).toMatchObject({ kind: 'applied', result: { kind: 'put', version: 1 } })
    expect(retry[0]).toMatchObject({ kind: 'duplicate', index: 3, result: { kind: 'put', version: 1 } })
    expect(await h.read('a')).toMatchObject({ value: 'other', version: 2 })
    // A CAS failure is an answer too, and is replayed.
    const cas = { ...put('a', 'x', 99), tag: { clientId: 'client-1', seq: 2 } }
    expect((await h.apply(cas))[0]).toMatchObject({
      kind: 'applied',
      result: { kind: 'versionMismatch', currentVersion: 2 },
    })
    expect((await h.apply(cas))[0]).toMatchObject({
      kind: 'duplicate',
      result: { kind: 'versionMismatch', currentVersion: 2 },
    })
    // Older than the last seq: not applied, no result.
    expect((await h.apply({ ...put('a', 'old'), tag }))[0]).toEqual({
      kind: 'staleSeq',
      index: 6,
      lastSeq: 2,
    })
    expect(await h.read('a')).toMatchObject({ value: 'other' })
  })

  it('keeps the dedup table across a reopen', async () => {
    const h = await new Harness(hasher).open()
    const tag = { clientId: 'c', seq: 7 }
    await h.apply({ ...put('a', '1'), tag })
    const reopened = new Harness(hasher)
    Object.assign(reopened, { engine: h.engine })
    await reopened.open()
    expect(reopened.machine.appliedIndex).toBe(1)
    expect((await reopened.apply({ ...put('a', '1'), tag }))[0]).toMatchObject({
      kind: 'duplicate',
      result: { version: 1 },
    })
  })

  it('bounds the dedup table, forgetting the least recently written client, on disk too', async () => {
    const h = await new Harness(hasher, 3).open()
    for (const id of ['a', 'b', 'c']) await h.apply({ ...put('k', id), tag: { clientId: id, seq: 1 } })
    await h.apply({ ...put('k', 'a2'), tag: { clientId: 'a', seq: 2 } }) // a is now the most recent
    await h.apply({ ...put('k', 'd'), tag: { clientId: 'd', seq: 1 } }) // evicts b
    expect(h.machine.dedupClients).toBe(3)
    const stored: string[] = []
    for await (const [, v] of h.engine.iterate(dedupRange(shard)))
      stored.push(String(decodeDedupEntry(v).lastIndex))
    expect(stored.sort()).toEqual(['3', '4', '5'])
    // b was forgotten: its retry applies again (the documented cost of the bound), evicting c.
    expect((await h.apply({ ...put('k', 'b'), tag: { clientId: 'b', seq: 1 } }))[0]?.kind).toBe('applied')
    // a and d are still remembered.
    expect((await h.apply({ ...put('k', 'a2'), tag: { clientId: 'a', seq: 2 } }))[0]?.kind).toBe('duplicate')
    expect((await h.apply({ ...put('k', 'd'), tag: { clientId: 'd', seq: 1 } }))[0]?.kind).toBe('duplicate')
  })

  it('is deterministic: two replicas applying the same commands store the same bytes', async () => {
    const commands: Command[] = [
      { ...put('a', '1'), tag: { clientId: 'x', seq: 1 } },
      put('b', '2', 0),
      {
        kind: 'batch',
        ops: [
          { kind: 'delete', key: bytes('a') },
          { kind: 'put', key: bytes('c'), value: bytes('3') },
        ],
      },
      put('b', '4', 9),
      { ...put('a', '1'), tag: { clientId: 'x', seq: 1 } },
    ]
    const one = await new Harness(hasher).open()
    const two = await new Harness(hasher).open()
    await one.apply(...commands)
    for (const c of commands) await two.apply(c)
    const dump = async (h: Harness): Promise<string[]> => {
      const out: string[] = []
      for await (const [k, v] of h.engine.iterate({ gte: Uint8Array.of(0), lt: Uint8Array.of(0xff) }))
        out.push(`${toHex(k)}=${toHex(v)}`)
      return out
    }
    expect(await dump(one)).toEqual(await dump(two))
  })

  it('asserts that indexes are applied in order', async () => {
    const h = await new Harness(hasher).open()
    const batch = h.engine.batch()
    const overlay = new ApplyOverlay(batch, [])
    expect(() => h.machine.apply(LogIndex(2), del('a'), overlay, overlay)).toThrow(AssertionError)
    // And that apply only reads prefetched keys.
    expect(() => h.machine.apply(LogIndex(1), del('a'), overlay, overlay)).toThrow(AssertionError)
  })

  it('round-trips dedup records', () => {
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
    for (const result of results) {
      const entry = { seq: 12, lastIndex: LogIndex(40), result }
      expect(decodeDedupEntry(encodeDedupEntry(entry))).toEqual(entry)
    }
    expect(() => decodeDedupEntry(Uint8Array.of(1, 1, 1, 9))).toThrow(AssertionError)
  })
})
