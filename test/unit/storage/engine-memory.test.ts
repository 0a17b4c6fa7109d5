import { describe, expect, it } from 'vitest'
import { ErrorCode, KvError } from '../../../src/common/index.ts'
import { MemoryEngine, toHex, type Engine } from '../../../src/storage/index.ts'
import { engineCompliance } from './engine-compliance.ts'

engineCompliance('MemoryEngine', {
  open: () => Promise.resolve(new MemoryEngine()),
  reopen: async (engine: Engine) => {
    assertMemory(engine)
    await engine.close()
    return engine.crash({ loseUnsynced: false })
  },
})

function assertMemory(engine: Engine): asserts engine is MemoryEngine {
  expect(engine).toBeInstanceOf(MemoryEngine)
}

const s = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('storage/engine-memory', () => {
  it('loses unsynced writes on a crash, keeping whole batches up to the last sync', async () => {
    const e = new MemoryEngine()
    await e.write(e.batch().put(s('a'), s('1')), { sync: false })
    await e.write(e.batch().put(s('b'), s('2')).put(s('c'), s('3')), { sync: true })
    await e.write(e.batch().put(s('d'), s('4')).del(s('a')), { sync: false })
    const after = e.crash()
    const keys: string[] = []
    for await (const [k] of after.iterate({ gte: s('a'), lt: s('z') })) keys.push(new TextDecoder().decode(k))
    expect(keys).toEqual(['a', 'b', 'c'])
    await expect(e.get(s('a'))).rejects.toMatchObject({ code: ErrorCode.Unavailable })
    const kept = e.crash({ loseUnsynced: false })
    expect(kept.size).toBe(3)
  })

  it('applies nothing when the write hook fails (an I/O error)', async () => {
    const e = new MemoryEngine({
      hooks: {
        beforeWrite: (batch) => {
          if (batch.length > 1) throw new KvError(ErrorCode.Internal, 'simulated io error')
        },
      },
    })
    await e.write(e.batch().put(s('a'), s('1')), { sync: true })
    await expect(e.write(e.batch().put(s('b'), s('2')).del(s('a')), { sync: true })).rejects.toMatchObject({
      code: ErrorCode.Internal,
    })
    expect(toHex((await e.get(s('a'))) ?? new Uint8Array())).toBe(toHex(s('1')))
    expect(await e.get(s('b'))).toBeNull()
    expect(e.stats).toEqual({ writes: 1, syncs: 1 })
  })

  it('waits for a delayed write on close', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const e = new MemoryEngine({ hooks: { beforeWrite: () => gate } })
    const writing = e.write(e.batch().put(s('a'), s('1')), { sync: true })
    let closed = false
    const closing = e.close().then(() => (closed = true))
    await Promise.resolve()
    expect(closed).toBe(false)
    release()
    await writing
    await closing
    expect(e.crash().size).toBe(1)
  })
})
