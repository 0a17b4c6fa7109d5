/**
 * One compliance suite for every Engine (Level/abstract-level's test suite; STYLE.md 7.9). Run by
 * engine-memory.test.ts (unit) and test/integration/storage/engine-rocksdb.test.ts (real dirs).
 */
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { AssertionError, ErrorCode, isKvErrorWithCode } from '../../../src/common/index.ts'
import { compareBytes, toHex, type Engine, type Entry } from '../../../src/storage/index.ts'

export interface EngineHarness {
  /** A fresh, empty engine. */
  open(): Promise<Engine>
  /** Cleanly closes `engine` and opens the same store again (everything written must be there). */
  reopen(engine: Engine): Promise<Engine>
  /** After each test: release what `open` created (engines the test did not close are closed here). */
  cleanup?(): Promise<void>
}

const b = (...bytes: number[]): Uint8Array => Uint8Array.from(bytes)
const s = (text: string): Uint8Array => new TextEncoder().encode(text)
const hex = (bytes: Uint8Array | null): string | null => (bytes === null ? null : toHex(bytes))

async function collect(iterable: AsyncIterable<Entry>): Promise<[string, string][]> {
  const out: [string, string][] = []
  for await (const [k, v] of iterable) out.push([toHex(k), toHex(v)])
  return out
}

async function put(
  engine: Engine,
  pairs: readonly (readonly [Uint8Array, Uint8Array])[],
  sync = true,
): Promise<void> {
  const batch = engine.batch()
  for (const [k, v] of pairs) batch.put(k, v)
  await engine.write(batch, { sync })
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(isKvErrorWithCode(err, code), `expected KvError ${code}, got ${String(err)}`).toBe(true)
}

const all = { gte: b(0x00), lt: b(0xff, 0xff, 0xff) }

export function engineCompliance(name: string, harness: EngineHarness): void {
  describe(`storage/engine compliance: ${name}`, () => {
    const opened: Engine[] = []
    const open = async (): Promise<Engine> => {
      const engine = await harness.open()
      opened.push(engine)
      return engine
    }
    const reopen = async (engine: Engine): Promise<Engine> => {
      const next = await harness.reopen(engine)
      opened.push(next)
      return next
    }
    afterEach(async () => {
      for (const engine of opened.splice(0)) await engine.close()
      await harness.cleanup?.()
    })

    it('returns null for a missing key and the value for a present one', async () => {
      const e = await open()
      expect(await e.get(s('a'))).toBeNull()
      await put(e, [[s('a'), s('1')]])
      expect(hex(await e.get(s('a')))).toBe(toHex(s('1')))
      await put(e, [[s('a'), s('2')]])
      expect(hex(await e.get(s('a')))).toBe(toHex(s('2')))
      await e.write(e.batch().del(s('a')), { sync: true })
      expect(await e.get(s('a'))).toBeNull()
    })

    it('multiGet answers in order, with null for missing keys', async () => {
      const e = await open()
      await put(e, [
        [s('x'), s('1')],
        [s('z'), s('3')],
      ])
      const values = await e.multiGet([s('z'), s('y'), s('x'), s('z')])
      expect(values.map(hex)).toEqual([toHex(s('3')), null, toHex(s('1')), toHex(s('3'))])
      expect(await e.multiGet([])).toEqual([])
    })

    it('orders keys bytewise (unsigned, prefix first)', async () => {
      const e = await open()
      const keys = [
        b(0xff),
        b(0x01, 0x00),
        b(0x80),
        b(0x01),
        b(0x7f, 0xff),
        b(0x00, 0xff),
        b(0x00),
        b(0x01, 0x00, 0x00),
      ]
      await put(
        e,
        keys.map((k) => [k, b(k.length)]),
      )
      const got = (await collect(e.iterate({ gte: b(0x00), lt: b(0xff, 0x00) }))).map(([k]) => k)
      const sorted = [...keys].sort(compareBytes).map(toHex)
      expect(got).toEqual(sorted)
      expect(sorted[0]).toBe('00')
      expect(sorted.at(-1)).toBe('ff')
    })

    it('iterates [gte, lt) with an optional limit', async () => {
      const e = await open()
      await put(
        e,
        ['a', 'b', 'c', 'd', 'e'].map((k) => [s(k), s(k.toUpperCase())]),
      )
      const keys = async (gte: string, lt: string, limit?: number): Promise<string[]> =>
        (
          await collect(
            e.iterate(limit === undefined ? { gte: s(gte), lt: s(lt) } : { gte: s(gte), lt: s(lt), limit }),
          )
        ).map(([k]) => Buffer.from(k, 'hex').toString())
      expect(await keys('b', 'd')).toEqual(['b', 'c'])
      expect(await keys('b', 'd\x00')).toEqual(['b', 'c', 'd'])
      expect(await keys('a\x00', 'z')).toEqual(['b', 'c', 'd', 'e'])
      expect(await keys('a', 'z', 2)).toEqual(['a', 'b'])
      expect(await keys('a', 'z', 0)).toEqual([])
      expect(await keys('c', 'c')).toEqual([])
      expect(await keys('d', 'b')).toEqual([])
      expect(await keys('f', 'z')).toEqual([])
    })

    it('applies a batch in order: the last operation on a key wins', async () => {
      const e = await open()
      await e.write(
        e.batch().put(s('k'), s('1')).del(s('k')).put(s('k'), s('2')).put(s('j'), s('x')).del(s('j')),
        {
          sync: true,
        },
      )
      expect(hex(await e.get(s('k')))).toBe(toHex(s('2')))
      expect(await e.get(s('j'))).toBeNull()
    })

    it('deleteRange removes exactly [gte, lt), including earlier puts of the same batch', async () => {
      const e = await open()
      await put(
        e,
        ['a', 'b', 'c', 'd', 'e'].map((k) => [s(k), s(k)]),
      )
      await e.write(e.batch().put(s('cc'), s('new')).deleteRange(s('b'), s('d')).put(s('bb'), s('after')), {
        sync: true,
      })
      const keys = (await collect(e.iterate(all))).map(([k]) => Buffer.from(k, 'hex').toString())
      expect(keys).toEqual(['a', 'bb', 'd', 'e'])
      // An empty or inverted range is a no-op.
      await e.write(e.batch().deleteRange(s('d'), s('d')).deleteRange(s('e'), s('a')), { sync: true })
      expect(await collect(e.iterate(all))).toHaveLength(4)
      // A range over nothing.
      await e.write(e.batch().deleteRange(s('x'), s('y')), { sync: true })
      expect(await collect(e.iterate(all))).toHaveLength(4)
    })

    it('deleteRangeChunk drops a range in bounded steps and says when it is empty', async () => {
      const e = await open()
      await put(
        e,
        ['a', 'b1', 'b2', 'b3', 'b4', 'b5', 'c'].map((k) => [s(k), s(k)]),
      )
      const range = { gte: s('b'), lt: s('c') }
      const steps: { keys: number; done: boolean }[] = []
      for (let i = 0; i < 10; i++) {
        const step = await e.deleteRangeChunk(range, { keysMax: 2 })
        steps.push(step)
        if (step.done) break
      }
      // Every call deleted at most keysMax keys, the steps add up to the range, and it ended.
      expect(steps.every((st) => st.keys <= 2)).toBe(true)
      expect(steps.reduce((n, st) => n + st.keys, 0)).toBe(5)
      expect(steps.at(-1)?.done).toBe(true)
      const keys = (await collect(e.iterate(all))).map(([k]) => Buffer.from(k, 'hex').toString())
      expect(keys).toEqual(['a', 'c'])
      // An empty range is done at once.
      expect(await e.deleteRangeChunk(range, { keysMax: 2 })).toEqual({ keys: 0, done: true })
    })

    it('makes a batch visible all at once (atomicity seen by readers)', async () => {
      const e = await open()
      const n = 500
      const batch = e.batch()
      for (let i = 0; i < n; i++) batch.put(s(`k${String(i).padStart(4, '0')}`), s(String(i)))
      const before = e.iterate(all)
      const writing = e.write(batch, { sync: true })
      // A snapshot taken while the write is in flight sees none or all of it.
      const during = e.iterate(all)
      await writing
      const after = e.iterate(all)
      expect(await collect(before)).toHaveLength(0)
      expect([0, n]).toContain((await collect(during)).length)
      expect(await collect(after)).toHaveLength(n)
    })

    it('iterate sees the state at call time, not later writes', async () => {
      const e = await open()
      await put(e, [
        [s('a'), s('1')],
        [s('b'), s('2')],
        [s('c'), s('3')],
      ])
      const it0 = e.iterate(all)
      const first = await it0.next()
      expect(first.done).toBe(false)
      await e.write(e.batch().put(s('b'), s('changed')).del(s('c')).put(s('bb'), s('new')), { sync: true })
      await e.write(e.batch().deleteRange(s('a'), s('z')), { sync: true })
      const rest = await collect(it0)
      expect(rest).toEqual([
        [toHex(s('b')), toHex(s('2'))],
        [toHex(s('c')), toHex(s('3'))],
      ])
      expect(await collect(e.iterate(all))).toEqual([])
    })

    it('exportRange is a consistent snapshot taken at call time, in bounded chunks', async () => {
      const e = await open()
      const pairs = Array.from(
        { length: 100 },
        (_, i) => [s(`k${String(i).padStart(3, '0')}`), new Uint8Array(100).fill(i)] as const,
      )
      await put(e, pairs)
      const exported = e.exportRange({ gte: s('k010'), lt: s('k090') }, { chunkBytes: 1000 })
      await e.write(e.batch().deleteRange(s('k'), s('l')).put(s('k050'), s('x')), { sync: true })
      const chunks: (readonly Entry[])[] = []
      for await (const chunk of exported) chunks.push(chunk)
      expect(chunks.length).toBeGreaterThan(5)
      for (const chunk of chunks.slice(0, -1)) {
        const bytes = chunk.reduce((n, [k, v]) => n + k.length + v.length, 0)
        expect(bytes).toBeGreaterThanOrEqual(1000)
        expect(bytes).toBeLessThan(1000 + 104)
      }
      const flat = chunks.flat()
      expect(flat).toHaveLength(80)
      expect(toHex(flat[0]?.[0] ?? b())).toBe(toHex(s('k010')))
      expect(toHex(flat[40]?.[1] ?? b())).toBe(toHex(new Uint8Array(100).fill(50)))
    })

    it('importRange replaces the range with the stream and leaves other keys alone', async () => {
      const source = await open()
      const target = await open()
      await put(
        source,
        Array.from({ length: 50 }, (_, i) => [s(`m${String(i).padStart(2, '0')}`), s(`v${i}`)] as const),
      )
      await put(target, [
        [s('a'), s('outside')],
        [s('m99'), s('stale')],
        [s('z'), s('outside')],
      ])
      const range = { gte: s('m'), lt: s('n') }
      const stats = await target.importRange(range, source.exportRange(range, { chunkBytes: 64 }), {
        sync: true,
      })
      expect(stats.entries).toBe(50)
      expect(await collect(target.iterate(range))).toEqual(await collect(source.iterate(range)))
      expect(hex(await target.get(s('a')))).toBe(toHex(s('outside')))
      expect(hex(await target.get(s('z')))).toBe(toHex(s('outside')))
      expect(await target.get(s('m99'))).toBeNull()
      // Importing nothing clears the range.
      await target.importRange(range, (async function* () {})(), { sync: true })
      expect(await collect(target.iterate(range))).toEqual([])
    })

    it('importRange refuses a key outside the range', async () => {
      const e = await open()
      async function* stream(): AsyncGenerator<readonly Entry[]> {
        yield [[s('q'), s('1')]]
      }
      await expectCode(
        e.importRange({ gte: s('a'), lt: s('b') }, stream(), { sync: true }),
        ErrorCode.InvalidArgument,
      )
      expect(await e.get(s('q'))).toBeNull()
    })

    it('stores empty values, and treats an empty key as a programmer error', async () => {
      const e = await open()
      await put(e, [[s('k'), b()]])
      const v = await e.get(s('k'))
      expect(v).not.toBeNull()
      expect(v?.length).toBe(0)
      expect(await collect(e.iterate(all))).toEqual([[toHex(s('k')), '']])
      expect(() => e.batch().put(b(), s('v'))).toThrow(AssertionError)
      expect(() => e.batch().del(b())).toThrow(AssertionError)
      expect(() => e.get(b())).toThrow(AssertionError)
    })

    it('stores large values', async () => {
      const e = await open()
      const big = new Uint8Array(4 * 1024 * 1024 + 3)
      for (let i = 0; i < big.length; i++) big[i] = (i * 7 + 3) & 0xff
      await put(e, [[s('big'), big]])
      const got = await e.get(s('big'))
      expect(got?.length).toBe(big.length)
      expect(Buffer.compare(Buffer.from(got ?? b()), Buffer.from(big))).toBe(0)
    })

    it('owns its copies: mutating inputs or outputs does not change what is stored', async () => {
      const e = await open()
      const key = s('k')
      const value = s('value')
      const batch = e.batch().put(key, value)
      key[0] = 0x7a
      value[0] = 0x58
      await e.write(batch, { sync: true })
      const got = await e.get(s('k'))
      expect(hex(got)).toBe(toHex(s('value')))
      if (got !== null) got[0] = 0
      expect(hex(await e.get(s('k')))).toBe(toHex(s('value')))
    })

    it('keeps concurrent writes', async () => {
      const e = await open()
      await Promise.all(
        Array.from({ length: 64 }, (_, i) =>
          e.write(e.batch().put(s(`c${String(i).padStart(2, '0')}`), s(`${i}`)), { sync: i % 2 === 0 }),
        ),
      )
      expect(await collect(e.iterate(all))).toHaveLength(64)
    })

    it('honours an aborted signal in iterate', async () => {
      const e = await open()
      await put(e, [
        [s('a'), s('1')],
        [s('b'), s('2')],
      ])
      const controller = new AbortController()
      const iterator = e.iterate({ ...all, signal: controller.signal })
      expect((await iterator.next()).done).toBe(false)
      controller.abort()
      await expectCode(iterator.next(), ErrorCode.Cancelled)
    })

    it('rejects every operation after close, ends open iterators, and closes idempotently', async () => {
      const e = await open()
      await put(e, [
        [s('a'), s('1')],
        [s('b'), s('2')],
      ])
      const iterator = e.iterate(all)
      expect((await iterator.next()).done).toBe(false)
      await e.close()
      await e.close()
      await expectCode(e.get(s('a')), ErrorCode.Unavailable)
      await expectCode(e.multiGet([s('a')]), ErrorCode.Unavailable)
      await expectCode(e.write(e.batch().put(s('c'), s('3')), { sync: true }), ErrorCode.Unavailable)
      await expectCode(iterator.next(), ErrorCode.Unavailable)
      await expectCode(e.iterate(all).next(), ErrorCode.Unavailable)
    })

    it('a batch is written once', async () => {
      const e = await open()
      const batch = e.batch().put(s('a'), s('1'))
      await e.write(batch, { sync: true })
      expect(() => batch.put(s('b'), s('2'))).toThrow(AssertionError)
      expect(() => e.write(batch, { sync: true })).toThrow(AssertionError)
    })

    it('keeps synced writes across a reopen', async () => {
      let e = await open()
      await put(e, [
        [s('a'), s('1')],
        [s('b'), b()],
      ])
      await e.write(e.batch().deleteRange(s('b'), s('c')).put(s('c'), s('3')), { sync: true })
      e = await reopen(e)
      expect(await collect(e.iterate(all))).toEqual([
        [toHex(s('a')), toHex(s('1'))],
        [toHex(s('c')), toHex(s('3'))],
      ])
    })

    it('matches a sorted-map model under random batches (property)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.array(
              fc.oneof(
                fc.record({
                  kind: fc.constant('put' as const),
                  key: fc.uint8Array({ minLength: 1, maxLength: 3, max: 3 }),
                  value: fc.uint8Array({ maxLength: 3 }),
                }),
                fc.record({
                  kind: fc.constant('del' as const),
                  key: fc.uint8Array({ minLength: 1, maxLength: 3, max: 3 }),
                }),
                fc.record({
                  kind: fc.constant('range' as const),
                  gte: fc.uint8Array({ minLength: 1, maxLength: 2, max: 3 }),
                  lt: fc.uint8Array({ minLength: 1, maxLength: 2, max: 4 }),
                }),
              ),
              { maxLength: 8 },
            ),
            { maxLength: 8 },
          ),
          async (batches) => {
            const e = await harness.open()
            try {
              const model = new Map<string, string>()
              for (const ops of batches) {
                const batch = e.batch()
                for (const op of ops) {
                  if (op.kind === 'put') {
                    batch.put(op.key, op.value)
                    model.set(toHex(op.key), toHex(op.value))
                  } else if (op.kind === 'del') {
                    batch.del(op.key)
                    model.delete(toHex(op.key))
                  } else {
                    batch.deleteRange(op.gte, op.lt)
                    for (const k of [...model.keys()]) {
                      const kb = Buffer.from(k, 'hex')
                      if (compareBytes(kb, op.gte) >= 0 && compareBytes(kb, op.lt) < 0) model.delete(k)
                    }
                  }
                }
                await e.write(batch, { sync: false })
              }
              const expected = [...model.entries()].sort(([x], [y]) =>
                compareBytes(Buffer.from(x, 'hex'), Buffer.from(y, 'hex')),
              )
              expect(await collect(e.iterate({ gte: b(0), lt: b(0xff) }))).toEqual(expected)
            } finally {
              await e.close()
            }
          },
        ),
        { numRuns: 40 },
      )
    })
  })
}
