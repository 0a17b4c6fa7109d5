/**
 * A large replica moves with bounded memory: a shard of about 128 MiB (the issue asks 50 MB at least) moves to a joined node,
 * whose snapshot install writes each chunk into place as it arrives (no whole-snapshot buffer).
 * The receiver's resident memory is sampled from /proc during the move and its peak compared with
 * the size of the shard: the test log shows the figures, and the assertion bound is generous
 * (the machines are shared), but a receiver that held the snapshot in memory would exceed it.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listMoves, moveReplica } from '../../../src/client/admin-moves.ts'
import { KvClient } from '../../../src/client/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { keysOfShard } from '../helpers/shard-keys.ts'
import { freePort, startKvd, type KvdHandle } from '../helpers/kvd.ts'

/** The shard's size; RINGKV_TEST_LARGE_MB raises it for a manual run (the growth should not follow). */
const shardBytesMin = Number(process.env['RINGKV_TEST_LARGE_MB'] ?? 128) * 1024 * 1024
const valueBytes = 16 * 1024
// Moves by hand only: the executor would balance onto the new node by itself.
const args = ['--heartbeat-ms', '250', '--auto-rebalance', 'false']

let cluster: Cluster
let four: KvdHandle
let client: KvClient

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 4, extraArgs: args, readyTimeoutMs: 90_000 })
  four = await startKvd({ port: await freePort(), args: ['--join', cluster.endpoints[0]!, ...args] })
  client = new KvClient({ endpoints: [...cluster.endpoints] })
  await eventually(
    'node 4 active in the map',
    async () =>
      (await client.shardMap()).nodes.find((n) => n.nodeId === 4)?.state === 'active' ? true : undefined,
    30_000,
  )
}, 120_000)

afterAll(async () => {
  client?.close()
  await four?.stop()
  await cluster?.stop()
})

/** Resident and peak resident memory of a process, in bytes (Linux /proc). */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string): number =>
    Number(/(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(field)) ?? '')?.[1] ?? 0) * 1024
  return { rss: kb('VmRSS:'), peak: kb('VmHWM:') }
}

describe('a large replica moves with bounded memory', () => {
  it('moves a shard of about 128 MiB; the receiver writes it in place without buffering it', async () => {
    // Keys of shard 0 only: hash each candidate as the nodes do and keep those in its range.
    const map = await client.shardMap()
    const shard = map.shards.find((s) => s.shardId === 0)!
    const keys = await keysOfShard(shard, 'large/', Math.ceil(shardBytesMin / valueBytes))
    const value = Buffer.alloc(valueBytes, 7)
    for (let i = 0; i < keys.length; i += 64)
      await Promise.all(keys.slice(i, i + 64).map((k) => client.put(k, value, { deadlineMs: 30_000 })))
    const dataBytes = keys.length * valueBytes
    const from = shard.replicas[0]!

    const before = memoryOf(four.pid)
    let peakRss = before.rss
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, memoryOf(four.pid).rss)
      } catch {
        // the process is gone: the test fails below
      }
    }, 50)
    const startedAt = Date.now()
    try {
      const move = await moveReplica(cluster.endpoints, { shardId: 0, from, to: 4 })
      const end = await eventually(
        'the large move to end',
        async () => (await listMoves(cluster.endpoints)).recent.find((m) => m.startedMs === move.startedMs),
        180_000,
      )
      expect(end.step, end.reason).toBe('done')
    } finally {
      clearInterval(sampler)
    }
    const seconds = (Date.now() - startedAt) / 1000
    const after = memoryOf(four.pid)
    const growth = Math.max(peakRss, after.peak) - before.rss
    console.log(
      `large move: ${(dataBytes / 2 ** 20).toFixed(1)} MiB (${keys.length} keys) in ${seconds.toFixed(1)} s; ` +
        `receiver RSS ${(before.rss / 2 ** 20).toFixed(0)} MiB before, peak ${(Math.max(peakRss, after.peak) / 2 ** 20).toFixed(0)} MiB, ` +
        `growth ${(growth / 2 ** 20).toFixed(0)} MiB`,
    )
    // Every key is on node 4 now (read there, eventual: its own replica).
    const direct = new KvClient({ endpoints: [four.address], routing: { enabled: false } })
    try {
      const sample = keys.filter((_, i) => i % 97 === 0)
      for (const k of sample) {
        const got = await direct.get(k, { consistency: 'eventual' })
        expect(got.found, k).toBe(true)
        expect(got.receipt.nodeId).toBe(4)
      }
    } finally {
      direct.close()
    }
    // A receiver holding the snapshot would grow by more than the data; in place it grows by
    // RocksDB's buffers and the stream's few chunks.
    expect(growth).toBeLessThan(dataBytes)
  }, 300_000)
})
