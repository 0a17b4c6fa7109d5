/**
 * Backup and restore with real processes: 100,000 keys written to a 3-node cluster (some then
 * overwritten, some deleted), `kvctl backup create` (the compiled CLI) while the cluster serves,
 * `kvctl backup verify`, then a NEW 3-node cluster started with `kvd --restore DIR`. Every key is
 * compared: the restored cluster holds exactly the keys the source held when the backup began,
 * with their values and versions, and nothing written after the backup; it has its own cluster id,
 * takes new writes at versions above the backup's, and refuses a restore into a directory that
 * holds data (one line).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { runKvctl } from '../cli/run-kvctl.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { startKvd } from '../helpers/kvd.ts'

const keyCount = Number(process.env['RINGKV_TEST_BACKUP_KEYS'] ?? 100_000)
const shards = 8
const inFlight = 512
const prefix = 'bk/'
const keyOf = (i: number): string => `${prefix}${String(i).padStart(6, '0')}`
const valueOf = (i: number, round: number): string => `value-${i}-${round}-${'x'.repeat(i % 64)}`

let source: Cluster
let restored: Cluster | undefined
let backupDir: string

/** Runs `work(i)` for i in [0, n) with at most `inFlight` at once. */
async function pool(n: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(inFlight, n) }, async () => {
      for (let i = next++; i < n; i = next++) await work(i)
    }),
  )
}

/** Every key under the prefix with its value and version, by scanning the whole cluster. */
async function contents(client: KvClient): Promise<Map<string, { value: string; version: number }>> {
  const out = new Map<string, { value: string; version: number }>()
  // The deadline bounds the whole scan: generous, for a shared machine under load.
  for await (const e of client.scan({ prefix, deadlineMs: 600_000 }))
    out.set(e.keyText() ?? '', { value: e.valueText() ?? '', version: e.version })
  return out
}

beforeAll(async () => {
  source = await startCluster({ nodes: 3, shards, readyTimeoutMs: 90_000 })
  backupDir = join(source.dir, 'backup')
}, 120_000)

afterAll(async () => {
  await restored?.stop()
  await source?.stop()
})

describe('backup and restore (real processes)', () => {
  it(`round-trips ${keyCount} keys into a new cluster and compares every key`, async () => {
    const client = new KvClient({ endpoints: [...source.endpoints], deadlineMs: 30_000 })
    try {
      const t0 = performance.now()
      await pool(keyCount, async (i) => {
        await client.put(keyOf(i), valueOf(i, 0))
      })
      // Some keys change and some go: the backup must hold the latest state, not the first.
      await pool(Math.floor(keyCount / 10), async (j) => {
        const i = j * 10
        if (j % 2 === 0) await client.put(keyOf(i), valueOf(i, 1))
        else await client.delete(keyOf(i))
      })
      console.log(
        `backup test: ${keyCount} keys written in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      )
      const before = await contents(client)
      expect(before.size).toBe(keyCount - Math.floor(keyCount / 20))

      const t1 = performance.now()
      const created = await runKvctl(
        ['--endpoints', source.endpoints.join(','), 'backup', 'create', backupDir, '-o', 'json'],
        { timeoutMs: 240_000 },
      )
      expect(created.code, created.stderr).toBe(0)
      const summary = JSON.parse(created.stdout) as { shards: number; entries: number; bytes: number }
      const createS = (performance.now() - t1) / 1000
      console.log(
        `backup test: create ${summary.shards} shards, ${summary.entries} records, ${(summary.bytes / 1e6).toFixed(1)} MB in ${createS.toFixed(1)} s`,
      )
      expect(summary.shards).toBe(shards)
      expect(summary.entries).toBeGreaterThanOrEqual(before.size)
      // Written after the backup: must not be in the restore.
      await client.put(`${prefix}after`, 'late')

      const verified = await runKvctl(['backup', 'verify', backupDir, '-o', 'json'], { timeoutMs: 120_000 })
      expect(verified.code, verified.stderr).toBe(0)
      expect(JSON.parse(verified.stdout)).toMatchObject({ ok: true, shards, entries: summary.entries })

      const t2 = performance.now()
      restored = await startCluster({
        nodes: 3,
        shards,
        extraArgs: ['--restore', backupDir],
        readyTimeoutMs: 180_000,
      })
      console.log(`backup test: restored cluster ready in ${((performance.now() - t2) / 1000).toFixed(1)} s`)
      const target = new KvClient({ endpoints: [...restored.endpoints], deadlineMs: 30_000 })
      try {
        const after = await contents(target)
        expect(after.size).toBe(before.size)
        let differing = 0
        for (const [key, v] of before) {
          const got = after.get(key)
          if (got === undefined || got.value !== v.value || got.version !== v.version) differing++
        }
        expect(differing).toBe(0)
        expect(after.has(`${prefix}after`)).toBe(false)
        // A sample read one by one (linearizable gets, not only the scan).
        for (const i of [1, 2, 10, 20, 12_345 % keyCount, keyCount - 1]) {
          const got = await target.get(keyOf(i))
          const want = before.get(keyOf(i))
          expect(got.found).toBe(want !== undefined)
          if (want !== undefined) expect(got.valueText()).toBe(want.value)
        }
        // A new cluster: its own id; a write continues above the versions it holds.
        const map = await target.shardMap()
        const sourceMap = await client.shardMap()
        expect(map.clusterId).not.toBe(sourceMap.clusterId)
        // Each shard restarts at its backup index: a new write's version is above every version
        // the shard held (versions are log indexes; a version reused would fool compare-and-set).
        const manifest = JSON.parse(readFileSync(join(backupDir, 'manifest.json'), 'utf8')) as {
          shards: { shardId: number; appliedIndex: number }[]
        }
        const highest = Math.max(...[...before.values()].map((v) => v.version))
        expect(highest).toBeLessThanOrEqual(Math.max(...manifest.shards.map((sh) => sh.appliedIndex)))
        for (let i = 0; i < 16; i++) {
          const put = await target.put(`${prefix}new/${i}`, 'fresh')
          const backedUp = manifest.shards.find((sh) => sh.shardId === put.receipt.shardId)
          expect(backedUp).toBeDefined()
          expect(put.version).toBeGreaterThan(backedUp!.appliedIndex)
        }
      } finally {
        target.close()
      }
    } finally {
      client.close()
    }
  }, 1_800_000)

  it('refuses a restore into a data directory that holds another cluster, with one line', async () => {
    expect(existsSync(join(backupDir, 'manifest.json'))).toBe(true)
    const node = source.node(1)
    await node.stop()
    const kvd = await startKvd({
      dataDir: node.dataDir,
      args: ['--restore', backupDir, '--shards', String(shards)],
    }).catch((err: unknown) => err as Error)
    expect(kvd).toBeInstanceOf(Error)
    expect(String((kvd as Error).message)).toMatch(/--restore .*(already holds|belongs)/)
  })
})
