/**
 * NodeHost's side of backup and restore, on memory engines: exportShard answers on the leader only,
 * at an applied index that holds every acknowledged write, from views that later writes do not
 * change, and at most limits.exportStreamsMax at once; a new host opened with `restore` seeds its
 * replicas from a backup written from such an export, starts each shard at its backup index (new
 * writes get higher versions), and refuses a used data directory or another shard count.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import {
  ShardFileWriter,
  encodeEntries,
  encodeManifest,
  fileFacts,
  manifestFile,
  mapFile,
  openRestoreSource,
  shardFileName,
  type RestoreSource,
  type ShardBackup,
} from '../../../src/backup/index.ts'
import { NodeId, ShardId, silentLogger } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { limits, tightenLimits } from '../../../src/common/limits.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import { NodeHost, everyMemberShards, type ShardExport } from '../../../src/node/host.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import {
  dataRangeForHashRange,
  decodeValueRecord,
  loadHasher,
  type Entry,
} from '../../../src/storage/index.ts'
import { MemoryNetwork } from './memory-transport.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const shards = 2
const root = mkdtempSync(join(tmpdir(), 'ringkv-host-backup-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

async function openHosts(
  n: number,
  options: {
    engines?: MemoryEngine[]
    restore?: RestoreSource
    shardCount?: number
    exportsMax?: number
  } = {},
): Promise<{ hosts: NodeHost[]; hasher: Hasher; engines: MemoryEngine[] }> {
  const hasher = await loadHasher()
  const net = new MemoryNetwork()
  const members = Array.from({ length: n }, (_, i) => NodeId(i + 1))
  const engines = options.engines ?? members.map(() => new MemoryEngine())
  const shardCount = options.shardCount ?? shards
  const hosts = await Promise.all(
    members.map((id, i) =>
      NodeHost.open(
        {
          nodeId: id,
          bootstrap: everyMemberShards(members, shardCount),
          shardCount,
          tickMs: 10,
          leaseReads: false,
          ...(options.restore !== undefined ? { restore: options.restore } : {}),
        },
        {
          engine: engines[i]!,
          hasher,
          clock: new SystemClock(),
          random: new SeededRandom(i + 1),
          logger: silentLogger,
          limits: tightenLimits({ exportStreamsMax: options.exportsMax ?? limits.exportStreamsMax }),
          transport: net.transport(id),
          onFatal: (err) => {
            throw err
          },
        },
      ),
    ),
  )
  for (const h of hosts) h.start()
  return { hosts, hasher, engines }
}

async function until<T>(what: string, f: () => T | undefined, ms = 5000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = f()
    if (v !== undefined) return v
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const leaderOf = (hosts: NodeHost[], shardId: number): Promise<NodeHost> =>
  until(`a leader of shard ${shardId}`, () =>
    hosts.find((h) => h.replica(ShardId(shardId))?.status().role === 'leader'),
  )

async function drain(ex: ShardExport): Promise<Entry[]> {
  const out: Entry[] = []
  try {
    for await (const chunk of ex.chunks) out.push(...chunk)
  } finally {
    await ex.release()
  }
  return out
}

/** User keys and values among `entries` (the shard's data range), decoded. */
function userData(
  entries: readonly Entry[],
  shardId: number,
): Map<string, { value: string; version: number }> {
  const range = everyMemberShards([NodeId(1)], shards)[shardId]!
  const data = dataRangeForHashRange(range.hashStart, range.hashEnd)
  const out = new Map<string, { value: string; version: number }>()
  for (const [k, v] of entries) {
    if (
      Buffer.compare(Buffer.from(k), Buffer.from(data.gte)) < 0 ||
      Buffer.compare(Buffer.from(k), Buffer.from(data.lt)) >= 0
    )
      continue
    const r = decodeValueRecord(v)
    out.set(dec.decode(k.subarray(9)), { value: dec.decode(r.value), version: r.version })
  }
  return out
}

/** Puts `count` keys through their shards' leaders; the keys of `shardId` with their versions. */
async function putKeys(
  hosts: NodeHost[],
  hasher: Hasher,
  prefix: string,
  count: number,
): Promise<Map<string, number>> {
  const versions = new Map<string, number>()
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`
    const hash = hasher.hash64(enc.encode(key))
    const leader = await until('a leader for the key', () =>
      hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
    )
    const { version } = await leader
      .replicaForHash(hash)
      .put(enc.encode(key), enc.encode(`v-${key}`), { level: 'majority' })
    versions.set(key, version)
  }
  return versions
}

let stop: (() => Promise<void>) | undefined
afterEach(async () => {
  await stop?.()
  stop = undefined
})

describe('NodeHost backup and restore', () => {
  it('exports on the leader at an index holding every acknowledged write, from views later writes do not change', async () => {
    const { hosts, hasher } = await openHosts(3)
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    await putKeys(hosts, hasher, 'a/', 40)
    const leader = await leaderOf(hosts, 0)
    const follower = hosts.find((h) => h !== leader)!
    await expect(follower.exportShard(ShardId(0), new AbortController().signal)).rejects.toMatchObject({
      code: 'NOT_LEADER',
    })
    const before = leader.replica(ShardId(0))!.status().appliedIndex
    const ex = await leader.exportShard(ShardId(0), new AbortController().signal)
    expect(ex.appliedIndex).toBeGreaterThanOrEqual(before)
    expect(ex.readIndex).toBeLessThanOrEqual(ex.appliedIndex)
    // Written after the views were taken: not in the export.
    await putKeys(hosts, hasher, 'b/', 20)
    const exported = userData(await drain(ex), 0)
    const expected = [...Array(40).keys()]
      .map((i) => `a/${i}`)
      .filter((k) => hasher.hash64(enc.encode(k)) < everyMemberShards([NodeId(1)], shards)[0]!.hashEnd)
    expect([...exported.keys()].sort()).toEqual(expected.sort())
    for (const { version } of exported.values()) expect(version).toBeLessThanOrEqual(ex.appliedIndex)
  })

  it('holds at most exportStreamsMax exports open; a released one makes room', async () => {
    const { hosts } = await openHosts(1, { exportsMax: 2 })
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const host = hosts[0]!
    await leaderOf(hosts, 1)
    const signal = new AbortController().signal
    const a = await host.exportShard(ShardId(1), signal)
    const b = await host.exportShard(ShardId(1), signal)
    await expect(host.exportShard(ShardId(1), signal)).rejects.toMatchObject({ code: 'OVERLOADED' })
    await a.release()
    await a.release()
    const c = await host.exportShard(ShardId(1), signal)
    await b.release()
    await c.release()
  })

  it('a new cluster restored from an export holds its keys, continues above its index, and refuses a used directory', async () => {
    const src = await openHosts(3)
    const srcHosts = src.hosts
    stop = async () => {
      for (const h of srcHosts) await h.close()
    }
    const written = await putKeys(srcHosts, src.hasher, 'k/', 30)
    // A backup directory from the leaders' exports.
    const dir = join(root, 'restore')
    mkdirSync(dir)
    writeFileSync(join(dir, mapFile), '{}\n')
    const backed: ShardBackup[] = []
    for (let s = 0; s < shards; s++) {
      const ex = await (await leaderOf(srcHosts, s)).exportShard(ShardId(s), new AbortController().signal)
      const w = await ShardFileWriter.create(join(dir, shardFileName(s)))
      try {
        for await (const chunk of ex.chunks) await w.writeEntries(encodeEntries(chunk), chunk)
      } finally {
        await ex.release()
      }
      const facts = await w.finish()
      backed.push({
        shardId: s,
        file: shardFileName(s),
        fileBytes: facts.fileBytes,
        sha256: facts.sha256,
        hashStart: ex.hashStart.toString(),
        hashEnd: ex.hashEnd.toString(),
        appliedIndex: ex.appliedIndex,
        term: ex.term,
        readIndex: ex.readIndex,
        epoch: ex.epoch,
        nodeId: 1,
        entryCount: facts.entryCount,
        entryBytes: facts.entryBytes,
      })
    }
    writeFileSync(
      join(dir, manifestFile),
      encodeManifest({
        format: 1,
        clusterId: 'cd'.repeat(16),
        shardCount: shards,
        replicaCount: 3,
        startedMs: 1,
        finishedMs: 2,
        map: { file: mapFile, ...(await fileFacts(join(dir, mapFile))) },
        shards: backed,
      }),
    )
    await stop()
    stop = undefined
    const source = await openRestoreSource(dir)

    const dst = await openHosts(1, { restore: source })
    const host = dst.hosts[0]!
    for (let s = 0; s < shards; s++) {
      await leaderOf(dst.hosts, s)
      expect(host.replica(ShardId(s))!.status().appliedIndex).toBeGreaterThanOrEqual(backed[s]!.appliedIndex)
    }
    for (const [key, version] of written) {
      const got = await host
        .replicaForHash(dst.hasher.hash64(enc.encode(key)))
        .get(enc.encode(key), { level: 'linearizable' })
      expect(dec.decode(got.found!.value)).toBe(`v-${key}`)
      expect(got.found!.version).toBe(version)
    }
    const fresh = await host
      .replicaForHash(dst.hasher.hash64(enc.encode('k/0')))
      .put(enc.encode('k/0'), enc.encode('new'), {
        level: 'majority',
      })
    const shardOfK0 = fresh.receipt.shardId
    expect(fresh.version).toBeGreaterThan(backed[shardOfK0]!.appliedIndex)
    await host.close()

    // The same directory with the same backup: starts as it is. Another backup, or another shard count: refused.
    const again = await openHosts(1, { engines: dst.engines, restore: source })
    await again.hosts[0]!.close()
    await expect(
      openHosts(1, { engines: dst.engines, restore: { ...source, id: 'f'.repeat(64) } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/already holds data/) as unknown,
    })
    await expect(openHosts(1, { restore: source, shardCount: 4 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/backup holds 2 shards; this cluster has 4/) as unknown,
    })
  })
})
