import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/common/index.ts'
import { ReadLevel, WriteLevel } from '../../../src/shard/index.ts'
import { openRocksEngine } from '../../../src/storage/index.ts'
import { CountingEngine, bytes, openTestReplica, text } from '../../unit/shard/helpers.ts'

const root = mkdtempSync(join(tmpdir(), 'ringkv-replica-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const W = { level: WriteLevel.Majority } as const

// The replica of one shard on a one-node NodeHost (test/unit/shard/helpers.ts), on a real disk.
describe('shard/replica on RocksDB', () => {
  it('keeps data, applied index and the dedup table across a reopen', async () => {
    const dir = join(root, 'reopen')
    let engine = await openRocksEngine({ dir }, { logger: silentLogger })
    let replica = await openTestReplica(engine)
    const first = await replica.put(bytes('a'), bytes('1'), {
      ...W,
      clientId: 'c1',
      seq: 1,
      firstIncompleteSeq: 1,
    })
    await Promise.all(Array.from({ length: 20 }, (_, i) => replica.put(bytes(`k${i}`), bytes(`${i}`), W)))
    const deleted = await replica.delete(bytes('k3'), W)
    await replica.close()
    await engine.close()

    engine = await openRocksEngine({ dir }, { logger: silentLogger })
    replica = await openTestReplica(engine)
    // Everything acknowledged came back (the new term's own entry follows it).
    expect(replica.base).toBeGreaterThan(deleted.receipt.appliedIndex)
    expect(
      text(
        (await replica.get(bytes('k7'), { level: ReadLevel.Linearizable })).found?.value ?? new Uint8Array(),
      ),
    ).toBe('7')
    expect((await replica.get(bytes('k3'), { level: ReadLevel.Linearizable })).found).toBeNull()
    // The retry is recognised after the reopen.
    expect(
      (await replica.put(bytes('a'), bytes('1'), { ...W, clientId: 'c1', seq: 1, firstIncompleteSeq: 1 }))
        .version,
    ).toBe(first.version)
    expect((await replica.put(bytes('b'), bytes('2'), W)).version).toBe(replica.base + 2)
    await replica.close()
    await engine.close()
  })

  it('group-commits concurrent puts into few fsyncs on a real disk', async () => {
    const dir = join(root, 'group')
    const rocks = await openRocksEngine({ dir }, { logger: silentLogger })
    const engine = new CountingEngine(rocks)
    const replica = await openTestReplica(engine)
    const syncsBefore = engine.syncs
    const n = 256
    const started = performance.now()
    await Promise.all(
      Array.from({ length: n }, (_, i) => replica.put(bytes(`k${i}`), new Uint8Array(100), W)),
    )
    const ms = performance.now() - started
    // One batch appends them all, the next applies them; a tick's batch may fall in between.
    const syncs = engine.syncs - syncsBefore
    expect(syncs).toBeLessThanOrEqual(4)
    console.log(`group commit on rocksdb: ${n} concurrent puts -> ${syncs} fsyncs in ${ms.toFixed(1)} ms`)
    await replica.close()
    await rocks.close()
  })
})
