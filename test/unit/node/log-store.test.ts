/**
 * ShardLogStore: an oracle property against MemoryLogStorage (STYLE.md 7.9) over random Ready
 * writes, snapshots, compactions and configuration changes on two shards sharing one Engine,
 * reopening from the Engine at random points; recovery refusing corrupt storage; and a Raft group
 * running on the store across a restart.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { ErrorCode, SeededRandom, silentLogger } from '../../../src/common/index.ts'
import type { LogIndex, NodeId, ShardId, Term } from '../../../src/common/index.ts'
import { ShardLogStore, type ShardLogWrite } from '../../../src/node/log-store.ts'
import {
  encodeEntry,
  encodeHardState,
  encodeSnapshotMeta,
  raftCodecFormat,
} from '../../../src/node/raft-codec.ts'
import { EntryType, MemoryLogStorage, RawNode, emptyConfState } from '../../../src/raft/index.ts'
import type { ConfState, Entry, HardState, LogStorage, SnapshotMeta } from '../../../src/raft/index.ts'
import {
  MemoryEngine,
  openRocksEngine,
  raftHardStateKey,
  raftLogKey,
  raftSnapshotMetaKey,
} from '../../../src/storage/index.ts'
import type { Engine, WriteBatch } from '../../../src/storage/index.ts'

const shardA = 3 as ShardId
const shardB = 4 as ShardId
const sync = { sync: true }
const noData = new Uint8Array(0)

const ids = (...xs: number[]): NodeId[] => xs as NodeId[]
const voters123: ConfState = { ...emptyConfState, voters: ids(1, 2, 3) }

function entry(index: number, term: number, data: Uint8Array = noData): Entry {
  return { index: index as LogIndex, term: term as Term, type: EntryType.Normal, data }
}

// ---------------------------------------------------------------------------------------------
// Observing a store: everything the core and the shell can read, as one plain value.

interface Observed {
  readonly firstIndex: number
  readonly lastIndex: number
  readonly terms: readonly (number | string)[]
  readonly entries: readonly Entry[]
  /** Entries returned for a few byte budgets: how maxBytes is honoured. */
  readonly budgeted: readonly number[]
  readonly hardState: HardState
  readonly confState: ConfState
  readonly snapshotMeta: SnapshotMeta
}

const budgetsBytes = [0, 5, 12, 30]

function observe(s: LogStorage, hardState: HardState, confState: ConfState): Observed {
  const first = s.firstIndex()
  const last = s.lastIndex()
  const terms: (number | string)[] = []
  for (let i = Math.max(0, first - 2); i <= last; i++) {
    const t = s.term(i as LogIndex)
    terms.push(t.ok ? t.value : t.reason)
  }
  const all = s.entries(first, (last + 1) as LogIndex, Number.POSITIVE_INFINITY)
  const budgeted = budgetsBytes.map((b) => {
    const r = s.entries(first, (last + 1) as LogIndex, b)
    return r.ok ? r.value.length : -1
  })
  const snap = s.snapshot()
  expect(snap.ok).toBe(true)
  return {
    firstIndex: first,
    lastIndex: last,
    terms,
    entries: all.ok ? all.value : [],
    budgeted,
    hardState,
    confState,
    snapshotMeta: snap.ok ? snap.value.meta : { index: -1 as LogIndex, term: -1 as Term, confState },
  }
}

const observeStore = (s: ShardLogStore): Observed => {
  expect(s.initialState()).toEqual({ hardState: s.hardState(), confState: s.confState() })
  expect(s.snapshot()).toMatchObject({ ok: true, value: { data: noData } })
  return observe(s, s.hardState(), s.confState())
}

// ---------------------------------------------------------------------------------------------
// The model: MemoryLogStorage, plus the applied configuration it does not keep.

class Model {
  readonly log: MemoryLogStorage
  conf: ConfState

  constructor(conf: ConfState) {
    this.log = MemoryLogStorage.bootstrap(conf)
    this.conf = conf
  }

  observe(): Observed {
    return observe(this.log, this.log.hardState(), this.conf)
  }

  get commit(): number {
    return this.log.hardState().commit
  }

  get snapIndex(): number {
    const s = this.log.snapshot()
    return s.ok ? s.value.meta.index : 0
  }

  termAt(index: number): number {
    const t = this.log.term(index as LogIndex)
    expect(t.ok).toBe(true)
    return t.ok ? t.value : 0
  }

  /** The highest term seen anywhere: a new leader's term must be at least this. */
  get topTerm(): number {
    return Math.max(this.log.hardState().term, this.termAt(this.log.lastIndex()))
  }
}

// ---------------------------------------------------------------------------------------------
// Random steps. Each step is drawn as seeds and interpreted against the model's current state, so
// every generated operation is one the core could ask for.

const ReadyShape = { Append: 0, Overwrite: 1, HardState: 2, Install: 3 } as const

interface ReadySeed {
  readonly shape: number
  readonly count: number
  readonly pick: number
  readonly bump: number
  readonly vote: number
  readonly conf: ConfState
}

type Step =
  | {
      readonly kind: 'ready'
      readonly shard: number
      readonly compact: number | null
      readonly ready: ReadySeed
      readonly conf: ConfState | null
    }
  | { readonly kind: 'snapshot'; readonly shard: number; readonly pick: number; readonly conf: ConfState }
  | { readonly kind: 'reopen' }

const confArb: fc.Arbitrary<ConfState> = fc.subarray([1, 2, 3, 4, 5], { minLength: 1 }).chain((vs) =>
  fc.record({
    voters: fc.constant(ids(...vs)),
    learners: fc.subarray(ids(6, 7)),
    votersOutgoing: fc.constant(ids()),
    learnersNext: fc.constant(ids()),
    autoLeave: fc.constant(false),
  }),
)

const readySeed: fc.Arbitrary<ReadySeed> = fc.record({
  shape: fc.constantFrom(...Object.values(ReadyShape)),
  count: fc.nat(3),
  pick: fc.nat(1000),
  bump: fc.nat(1),
  vote: fc.integer({ min: 0, max: 3 }),
  conf: confArb,
})

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('ready' as const),
      shard: fc.nat(1),
      compact: fc.option(fc.nat(1000)),
      ready: readySeed,
      conf: fc.option(confArb),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('snapshot' as const),
      shard: fc.nat(1),
      pick: fc.nat(1000),
      conf: confArb,
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
)

/** Entry payloads of varied sizes, so the byte budgets of `entries()` cut at different places. */
function payload(index: number, pick: number): Uint8Array {
  return new Uint8Array((index * 7 + pick) % 13).fill(index & 0xff)
}

function entriesFrom(start: number, count: number, term: number, pick: number): Entry[] {
  return Array.from({ length: count }, (_, i) => entry(start + i, term, payload(start + i, pick)))
}

/** Picks in [lo, hi] (assumes lo <= hi). */
const within = (lo: number, hi: number, pick: number): number => lo + (pick % (hi - lo + 1))

/** The Ready a seed stands for, valid against `m` (MemoryLogStorage order: snapshot, entries, hard state). */
function readyFor(m: Model, seed: ReadySeed): ShardLogWrite {
  const hs = m.log.hardState()
  const last = m.log.lastIndex()
  const stable = Math.max(m.commit, m.snapIndex)
  const shape = seed.shape === ReadyShape.Overwrite && stable >= last ? ReadyShape.Append : seed.shape
  switch (shape) {
    case ReadyShape.Append: {
      const term = m.topTerm + seed.bump
      const entries = entriesFrom(last + 1, seed.count + 1, term, seed.pick)
      const commit = within(hs.commit, last + entries.length, seed.pick)
      const vote = term === hs.term ? hs.vote : null
      return { snapshot: null, entries, hardState: { term: term as Term, vote, commit: commit as LogIndex } }
    }
    case ReadyShape.Overwrite: {
      // A new leader's entries replace an uncommitted suffix (§5.3); possibly a shorter log.
      const term = m.topTerm + 1
      const start = within(stable + 1, last, seed.pick)
      const entries = entriesFrom(start, seed.count + 1, term, seed.pick)
      return { snapshot: null, entries, hardState: { term: term as Term, vote: null, commit: hs.commit } }
    }
    case ReadyShape.HardState: {
      const term = hs.term + seed.bump
      const vote = seed.vote === 0 ? null : (seed.vote as NodeId)
      const commit = within(hs.commit, last, seed.pick)
      return {
        snapshot: null,
        entries: [],
        hardState: { term: term as Term, vote, commit: commit as LogIndex },
      }
    }
    default: {
      // A follower installs a leader's snapshot beyond its commit, maybe below its last index.
      const index = stable + 1 + (seed.pick % 4)
      const term = m.topTerm + seed.bump
      const snapshot = { index: index as LogIndex, term: term as Term, confState: seed.conf }
      const entries = entriesFrom(index + 1, seed.count, term, seed.pick)
      const hardState = { term: term as Term, vote: null, commit: index as LogIndex }
      return { snapshot, entries, hardState }
    }
  }
}

function applyReady(m: Model, w: ShardLogWrite): void {
  if (w.snapshot !== null) {
    m.log.applySnapshot({ meta: w.snapshot, data: noData })
    m.conf = w.snapshot.confState
  }
  m.log.append(w.entries)
  if (w.hardState !== null) m.log.setHardState(w.hardState)
}

// ---------------------------------------------------------------------------------------------
// The run: stage into one batch, write, commit; the model applies the same. Reopen compares the
// reopened stores with the live ones, then carries on with the reopened ones.

interface EngineHarness {
  open(): Promise<Engine>
  reopen(engine: Engine): Promise<Engine>
}

interface Shard {
  readonly id: ShardId
  store: ShardLogStore
  readonly model: Model
}

async function bootstrap(engine: Engine, id: ShardId, conf: ConfState): Promise<Shard> {
  const batch = engine.batch()
  ShardLogStore.stageBootstrap(batch, id, conf, 0 as LogIndex, 0 as Term)
  await engine.write(batch, sync)
  return { id, store: await ShardLogStore.open(engine, id), model: new Model(conf) }
}

async function runSteps(harness: EngineHarness, steps: readonly Step[]): Promise<void> {
  let engine = await harness.open()
  const shards = [await bootstrap(engine, shardA, voters123), await bootstrap(engine, shardB, voters123)]
  const check = (): void => {
    for (const s of shards) expect(observeStore(s.store)).toEqual(s.model.observe())
  }
  try {
    for (const st of steps) {
      if (st.kind === 'reopen') {
        engine = await harness.reopen(engine)
        for (const s of shards) {
          const reopened = await ShardLogStore.open(engine, s.id)
          expect(observeStore(reopened)).toEqual(observeStore(s.store))
          s.store = reopened
        }
      } else {
        const s = shards[st.shard]!
        await (st.kind === 'ready' ? readyStep(engine, s, st) : snapshotStep(engine, s, st.pick, st.conf))
      }
      check()
    }
    engine = await harness.reopen(engine)
    for (const s of shards)
      expect(observeStore(await ShardLogStore.open(engine, s.id))).toEqual(s.model.observe())
  } finally {
    await engine.close()
  }
}

/** A compaction, a Ready and a configuration, all in one batch (one fsync), as the ready loop does. */
async function readyStep(engine: Engine, s: Shard, st: Extract<Step, { kind: 'ready' }>): Promise<void> {
  const batch = engine.batch()
  const commits: (() => void)[] = []
  const m = s.model
  if (st.compact !== null) {
    const index = within(m.log.firstIndex() - 1, m.snapIndex, st.compact) as LogIndex
    s.store.stageCompact(batch, index)
    commits.push(() => s.store.commitCompact(index))
    m.log.compact(index)
  }
  const w = readyFor(m, st.ready)
  s.store.stage(batch, w)
  commits.push(() => s.store.commit(w))
  applyReady(m, w)
  const conf = st.conf
  if (conf !== null) {
    s.store.stageConfState(batch, conf)
    commits.push(() => s.store.commitConfState(conf))
    m.conf = conf
  }
  // Memory is untouched until the batch is durable.
  const before = observeStore(s.store)
  await engine.write(batch, sync)
  expect(observeStore(s.store)).toEqual(before)
  for (const c of commits) c()
}

/** The application records a snapshot point at an index it has applied (<= commit). */
async function snapshotStep(engine: Engine, s: Shard, pick: number, conf: ConfState): Promise<void> {
  const m = s.model
  const hi = Math.min(m.commit, m.log.lastIndex())
  if (m.snapIndex > hi) return
  const index = within(m.snapIndex, hi, pick)
  const meta: SnapshotMeta = { index: index as LogIndex, term: m.termAt(index) as Term, confState: conf }
  const batch = engine.batch()
  s.store.stageSnapshotMeta(batch, meta)
  await engine.write(batch, sync)
  s.store.commitSnapshotMeta(meta)
  m.log.createSnapshot(meta.index, conf, noData)
}

const memoryHarness: EngineHarness = {
  open: () => Promise.resolve(new MemoryEngine()),
  reopen: async (engine) => {
    expect(engine).toBeInstanceOf(MemoryEngine)
    await engine.close()
    return (engine as MemoryEngine).crash({ loseUnsynced: false })
  },
}

const rocksRoot = mkdtempSync(join(tmpdir(), 'ringkv-log-store-'))
let rocksDirs = 0
afterAll(() => rmSync(rocksRoot, { recursive: true, force: true }))

function rocksHarness(): EngineHarness {
  const dir = join(rocksRoot, `db-${++rocksDirs}`)
  return {
    open: () => openRocksEngine({ dir }, { logger: silentLogger }),
    reopen: async (engine) => {
      await engine.close()
      return openRocksEngine({ dir }, { logger: silentLogger })
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Corrupt storage, written key by key.

const corruptShard = 7 as ShardId

interface RawState {
  readonly hardState?: HardState
  readonly snapshot?: SnapshotMeta
  readonly entries?: readonly Entry[]
}

function putRaw(batch: WriteBatch, shardId: ShardId, state: RawState): WriteBatch {
  if (state.hardState !== undefined) batch.put(raftHardStateKey(shardId), encodeHardState(state.hardState))
  if (state.snapshot !== undefined)
    batch.put(raftSnapshotMetaKey(shardId), encodeSnapshotMeta(state.snapshot))
  for (const e of state.entries ?? []) batch.put(raftLogKey(shardId, e.index), encodeEntry(e))
  return batch
}

async function openRaw(state: RawState, more?: (batch: WriteBatch) => void): Promise<ShardLogStore> {
  const engine = new MemoryEngine()
  const batch = putRaw(engine.batch(), corruptShard, state)
  more?.(batch)
  await engine.write(batch, sync)
  return ShardLogStore.open(engine, corruptShard)
}

const hs = (term: number, commit: number): HardState => ({
  term: term as Term,
  vote: null,
  commit: commit as LogIndex,
})
const snapAt = (index: number, term: number): SnapshotMeta => ({
  index: index as LogIndex,
  term: term as Term,
  confState: voters123,
})

async function expectCorrupt(opening: Promise<unknown>, why: RegExp): Promise<void> {
  const err = await opening.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toMatchObject({ name: 'KvError', code: ErrorCode.Internal, details: { shardId: corruptShard } })
  expect((err as Error).message).toMatch(/^shard 7: /)
  expect((err as Error).message).toMatch(why)
}

// ---------------------------------------------------------------------------------------------

describe('node/log-store', () => {
  describe('against MemoryLogStorage', () => {
    it('reads the same after any sequence of Ready writes, snapshots, compactions and reopens (MemoryEngine)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), (steps) =>
          runSteps(memoryHarness, steps),
        ),
        { numRuns: 150 },
      )
    })

    it('reads the same after a sequence of writes and reopens (RocksEngine)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 20, maxLength: 40 }), (steps) =>
          runSteps(rocksHarness(), steps),
        ),
        { numRuns: 3, seed: 42 },
      )
    })
  })

  describe('open', () => {
    it('opens a shard with nothing stored as empty', async () => {
      const store = await ShardLogStore.open(new MemoryEngine(), shardA)
      expect(store.isEmpty()).toBe(true)
      expect(store.hardState()).toEqual(hs(0, 0))
      expect(store.snapshotMeta()).toEqual({ index: 0, term: 0, confState: emptyConfState })
      expect([store.firstIndex(), store.lastIndex()]).toEqual([1, 0])
    })

    it('opens a bootstrapped shard at index 0 with its configuration', async () => {
      const engine = new MemoryEngine()
      const { store } = await bootstrap(engine, shardA, voters123)
      expect(store.isEmpty()).toBe(false)
      expect(store.initialState()).toEqual({ hardState: hs(0, 0), confState: voters123 })
      expect(store.snapshotMeta()).toEqual(snapAt(0, 0))
      expect(await ShardLogStore.open(engine, shardB)).toMatchObject({ shardId: shardB })
      expect((await ShardLogStore.open(engine, shardB)).isEmpty()).toBe(true)
    })

    it('keeps the term of the compaction point across a reopen', async () => {
      const engine = new MemoryEngine()
      const { store } = await bootstrap(engine, shardA, voters123)
      const w: ShardLogWrite = {
        snapshot: null,
        entries: [entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 3), entry(5, 3)],
        hardState: hs(3, 5),
      }
      const b1 = engine.batch()
      store.stage(b1, w)
      await engine.write(b1, sync)
      store.commit(w)
      const meta = snapAt(4, 3)
      const b2 = engine.batch()
      store.stageSnapshotMeta(b2, meta)
      await engine.write(b2, sync)
      store.commitSnapshotMeta(meta)
      const b3 = engine.batch()
      store.stageCompact(b3, 3 as LogIndex)
      await engine.write(b3, sync)
      store.commitCompact(3 as LogIndex)
      const reopened = await ShardLogStore.open(engine, shardA)
      expect(reopened.firstIndex()).toBe(4)
      expect(reopened.term(3 as LogIndex)).toEqual({ ok: true, value: 2 })
      expect(reopened.term(2 as LogIndex)).toEqual({ ok: false, reason: 'compacted' })
      expect(observeStore(reopened)).toEqual(observeStore(store))
    })

    it('drops every entry, even beyond the snapshot, when a snapshot is installed', async () => {
      const engine = new MemoryEngine()
      const { store } = await bootstrap(engine, shardA, voters123)
      const append: ShardLogWrite = {
        snapshot: null,
        entries: [entry(1, 1), entry(2, 1), entry(3, 1)],
        hardState: hs(1, 1),
      }
      const install: ShardLogWrite = { snapshot: snapAt(2, 2), entries: [entry(3, 2)], hardState: hs(2, 2) }
      for (const w of [append, install]) {
        const batch = engine.batch()
        store.stage(batch, w)
        await engine.write(batch, sync)
        store.commit(w)
      }
      const reopened = await ShardLogStore.open(engine, shardA)
      expect(reopened.entries(3 as LogIndex, 4 as LogIndex, 100)).toEqual({ ok: true, value: [entry(3, 2)] })
      expect(reopened.term(2 as LogIndex)).toEqual({ ok: true, value: 2 })
      expect(reopened.firstIndex()).toBe(3)
    })

    it('refuses a second stage before the first is committed', async () => {
      const engine = new MemoryEngine()
      const { store } = await bootstrap(engine, shardA, voters123)
      const w: ShardLogWrite = { snapshot: null, entries: [entry(1, 1)], hardState: null }
      store.stage(engine.batch(), w)
      expect(() => store.stage(engine.batch(), w)).toThrow(/awaits its commit/)
    })
  })

  describe('corrupt storage', () => {
    it('refuses a gap in the log', async () => {
      await expectCorrupt(
        openRaw({
          hardState: hs(1, 1),
          snapshot: snapAt(0, 0),
          entries: [entry(1, 1), entry(2, 1), entry(4, 1)],
        }),
        /gap in the log between 2 and 4/,
      )
    })

    it('refuses a commit beyond the last index', async () => {
      await expectCorrupt(
        openRaw({ hardState: hs(1, 5), entries: [entry(1, 1), entry(2, 1), entry(3, 1)] }),
        /commit 5 beyond the last index 3/,
      )
    })

    it('refuses a commit below the compaction point', async () => {
      await expectCorrupt(openRaw({ hardState: hs(1, 3), snapshot: snapAt(5, 1) }), /commit 3 below/)
    })

    it('refuses a first entry beyond snapshot index + 1', async () => {
      await expectCorrupt(
        openRaw({ hardState: hs(1, 5), snapshot: snapAt(5, 1), entries: [entry(7, 1), entry(8, 1)] }),
        /gap between the snapshot at 5 and the first entry 7/,
      )
    })

    it('refuses a log that ends before the snapshot', async () => {
      await expectCorrupt(
        openRaw({ hardState: hs(2, 10), snapshot: snapAt(10, 2), entries: [entry(3, 1), entry(4, 1)] }),
        /log ends at 4, before the snapshot at 10/,
      )
    })

    it("refuses an entry at the snapshot index with another term than the snapshot's", async () => {
      await expectCorrupt(
        openRaw({
          hardState: hs(2, 4),
          snapshot: snapAt(3, 2),
          entries: [entry(2, 1), entry(3, 1), entry(4, 2)],
        }),
        /entry 3 has term 1, the snapshot says 2/,
      )
    })

    it('refuses terms that go back along the log', async () => {
      await expectCorrupt(
        openRaw({ hardState: hs(3, 1), entries: [entry(1, 3), entry(2, 2)] }),
        /term goes back from 3 at 1 to 2 at 2/,
      )
      await expectCorrupt(
        openRaw({ hardState: hs(3, 5), snapshot: snapAt(5, 3), entries: [entry(6, 2)] }),
        /term goes back from 3 at 5 to 2 at 6/,
      )
    })

    it('refuses a record that does not decode', async () => {
      await expectCorrupt(
        openRaw({}, (b) => b.put(raftHardStateKey(corruptShard), Uint8Array.of(raftCodecFormat, 1))),
        /hard state does not decode/,
      )
      await expectCorrupt(
        openRaw({}, (b) => b.put(raftLogKey(corruptShard, 1 as LogIndex), Uint8Array.of(9, 9, 9))),
        /log entry does not decode/,
      )
    })

    it('refuses an entry stored under another index', async () => {
      await expectCorrupt(
        openRaw({}, (b) => b.put(raftLogKey(corruptShard, 1 as LogIndex), encodeEntry(entry(2, 1)))),
        /entry 2 under another key/,
      )
    })
  })

  describe('under a Raft group', () => {
    it('persists a single-voter group and restarts it with its log', async () => {
      let engine: Engine = new MemoryEngine()
      let { store } = await bootstrap(engine, shardA, { ...emptyConfState, voters: ids(1) })
      const applied: string[] = []
      const start = (s: ShardLogStore): RawNode =>
        new RawNode({ id: 1 as NodeId }, { storage: s, random: new SeededRandom(1), logger: silentLogger })
      const drain = async (raw: RawNode): Promise<void> => {
        while (raw.hasReady()) {
          const rd = raw.ready()
          const w: ShardLogWrite = {
            hardState: rd.hardState,
            entries: rd.entries,
            snapshot: rd.snapshot?.meta ?? null,
          }
          const batch = engine.batch()
          store.stage(batch, w)
          await engine.write(batch, { sync: rd.mustSync })
          store.commit(w)
          for (const e of rd.committedEntries)
            if (e.data.length > 0) applied.push(new TextDecoder().decode(e.data))
          raw.advance(rd)
        }
      }
      let raw = start(store)
      raw.campaign()
      await drain(raw)
      expect(raw.status().role).toBe('leader')
      for (const text of ['a', 'b', 'c']) expect(raw.propose(new TextEncoder().encode(text)).ok).toBe(true)
      await drain(raw)
      expect(applied).toEqual(['a', 'b', 'c'])

      engine = await memoryHarness.reopen(engine)
      store = await ShardLogStore.open(engine, shardA)
      expect(store.hardState().commit).toBe(store.lastIndex())
      raw = start(store)
      raw.campaign()
      await drain(raw)
      expect(raw.status().role).toBe('leader')
      expect(raw.propose(new TextEncoder().encode('d')).ok).toBe(true)
      await drain(raw)
      // The restarted node applies its whole committed log again, then the new entry.
      expect(applied).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'd'])
    })
  })
})
