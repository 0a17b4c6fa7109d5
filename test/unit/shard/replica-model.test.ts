/**
 * Oracle property (STYLE.md 7.9): random operations against the replica match a plain Map model
 * of versions, createVersions, CAS and batches. Operations are fired in concurrent groups so
 * group commit is exercised; the replica applies in call order, and so does the model.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, KvError } from '../../../src/common/index.ts'
import { ReadLevel, WriteLevel, type BatchOp } from '../../../src/shard/index.ts'
import { MemoryEngine } from '../../../src/storage/index.ts'
import { bytes, openTestReplica, text } from './helpers.ts'

interface ModelValue {
  value: string
  version: number
  createVersion: number
}

type Op =
  | { kind: 'put'; key: string; value: string; expected?: number }
  | { kind: 'delete'; key: string; expected?: number }
  | {
      kind: 'batch'
      ops: { kind: 'put' | 'delete'; key: string; value: string; expected?: number | undefined }[]
    }

const key = fc.constantFrom('a', 'b', 'c', 'd')
const expected = fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined })
const single = fc.record({
  kind: fc.constantFrom('put' as const, 'delete' as const),
  key,
  value: fc.string({ maxLength: 3 }),
  expected,
})
const op: fc.Arbitrary<Op> = fc.oneof(
  single.map((o): Op =>
    o.kind === 'put'
      ? { kind: 'put', key: o.key, value: o.value, ...opt(o.expected) }
      : { kind: 'delete', key: o.key, ...opt(o.expected) },
  ),
  fc.array(single, { minLength: 1, maxLength: 4 }).map((ops): Op => ({ kind: 'batch', ops })),
)

function opt(expectedVersion: number | undefined): { expected?: number } {
  return expectedVersion === undefined ? {} : { expected: expectedVersion }
}

type Outcome = { ok: unknown } | { mismatch: number }

class Model {
  readonly map = new Map<string, ModelValue>()
  index = 0

  apply(o: Op): Outcome {
    const index = ++this.index
    const ops = o.kind === 'batch' ? o.ops : [{ ...o, value: o.kind === 'put' ? o.value : '' }]
    const scratch = new Map(this.map)
    const results: unknown[] = []
    for (const x of ops) {
      const cur = scratch.get(x.key)
      if (x.expected !== undefined && (cur?.version ?? 0) !== x.expected)
        return { mismatch: cur?.version ?? 0 }
      if (x.kind === 'put') {
        scratch.set(x.key, { value: x.value, version: index, createVersion: cur?.createVersion ?? index })
        results.push({ kind: 'put', version: index })
      } else {
        scratch.delete(x.key)
        results.push({ kind: 'delete', deleted: cur !== undefined })
      }
    }
    this.map.clear()
    for (const [k, v] of scratch) this.map.set(k, v)
    if (o.kind === 'batch') return { ok: results }
    const only = results[0] as { version?: number; deleted?: boolean }
    return { ok: o.kind === 'put' ? only.version : only.deleted }
  }
}

describe('shard/replica model (one voter on a NodeHost)', () => {
  it('matches a Map model under random concurrent operations', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 10 }),
        async (groups) => {
          const replica = await openTestReplica(new MemoryEngine())
          const model = new Model()
          model.index = replica.base
          const W = { level: WriteLevel.Majority }
          for (const group of groups) {
            const expectedOutcomes = group.map((o) => model.apply(o))
            const actual = await Promise.all(
              group.map(async (o): Promise<Outcome> => {
                try {
                  switch (o.kind) {
                    case 'put':
                      return {
                        ok: (await replica.put(bytes(o.key), bytes(o.value), { ...W, ...cas(o.expected) }))
                          .version,
                      }
                    case 'delete':
                      return {
                        ok: (await replica.delete(bytes(o.key), { ...W, ...cas(o.expected) })).deleted,
                      }
                    case 'batch': {
                      const ops = o.ops.map((x): BatchOp =>
                        x.kind === 'put'
                          ? { kind: 'put', key: bytes(x.key), value: bytes(x.value), ...cas(x.expected) }
                          : { kind: 'delete', key: bytes(x.key), ...cas(x.expected) },
                      )
                      return { ok: (await replica.batch(ops, W)).results }
                    }
                  }
                } catch (err) {
                  if (err instanceof KvError && err.code === ErrorCode.VersionMismatch)
                    return { mismatch: err.details?.currentVersion ?? -1 }
                  throw err
                }
              }),
            )
            expect(actual).toEqual(expectedOutcomes)
          }
          for (const k of ['a', 'b', 'c', 'd']) {
            const { found } = await replica.get(bytes(k), { level: ReadLevel.Linearizable })
            const want = model.map.get(k)
            expect(
              found === null
                ? undefined
                : { value: text(found.value), version: found.version, createVersion: found.createVersion },
            ).toEqual(want)
          }
          expect(replica.status().appliedIndex).toBe(model.index)
          await replica.close()
        },
      ),
      { numRuns: 150 },
    )
  })
})

function cas(expectedVersion: number | undefined): { expectedVersion?: number } {
  return expectedVersion === undefined ? {} : { expectedVersion }
}
