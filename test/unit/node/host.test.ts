import { afterEach, describe, expect, it } from 'vitest'
import { NodeId, silentLogger } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { limits } from '../../../src/common/limits.ts'
import { NodeHost, everyMemberShards } from '../../../src/node/host.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import { loadHasher } from '../../../src/storage/index.ts'
import { MemoryNetwork } from './memory-transport.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

async function cluster(n: number, shards: number) {
  const hasher = await loadHasher()
  const net = new MemoryNetwork()
  const members = Array.from({ length: n }, (_, i) => NodeId(i + 1))
  const engines = members.map(() => new MemoryEngine())
  const hosts = await Promise.all(
    members.map((id, i) =>
      NodeHost.open(
        {
          nodeId: id,
          bootstrap: everyMemberShards(members, shards),
          shardCount: shards,
          tickMs: 10,
          leaseReads: false,
        },
        {
          engine: engines[i]!,
          hasher,
          clock: new SystemClock(),
          random: new SeededRandom(i + 1),
          logger: silentLogger,
          limits,
          transport: net.transport(id),
          onFatal: (err) => {
            throw err
          },
        },
      ),
    ),
  )
  for (const h of hosts) h.start()
  return { hosts, net, hasher, engines }
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

let stop: (() => Promise<void>) | undefined
afterEach(async () => {
  await stop?.()
  stop = undefined
})

describe('NodeHost', () => {
  it('elects a leader per shard, replicates majority writes, serves reads at every level', async () => {
    const { hosts, hasher } = await cluster(3, 4)
    stop = async () => {
      for (const h of hosts) await h.close()
    }
    const key = enc.encode('hello')
    const hash = hasher.hash64(key)
    const leader = await until('a leader', () =>
      hosts.find((h) => h.replicaForHash(hash).status().role === 'leader'),
    )
    const r = leader.replicaForHash(hash)
    const { version, receipt } = await r.put(key, enc.encode('world'), { level: 'majority' })
    expect(version).toBeGreaterThan(0)
    expect(receipt.appliedIndex).toBe(version)
    const got = await r.get(key, { level: 'linearizable' })
    expect(dec.decode(got.found!.value)).toBe('world')
    // Every replica applies it; an eventual read on a follower sees it once applied.
    for (const h of hosts) {
      const fr = h.replicaForHash(hash)
      await until('applied', () => (fr.status().appliedIndex >= version ? true : undefined))
      const e = await fr.get(key, { level: 'eventual' })
      expect(dec.decode(e.found!.value)).toBe('world')
      const s = await fr.get(key, { level: 'session', sessionIndex: version })
      expect(s.found?.version).toBe(version)
    }
    const follower = hosts.find((h) => h !== leader)!
    await expect(
      follower.replicaForHash(hash).put(key, enc.encode('x'), { level: 'majority' }),
    ).rejects.toMatchObject({
      code: 'NOT_LEADER',
    })
    const all = await r.put(key, enc.encode('all'), { level: 'all' })
    for (const h of hosts) {
      const e = await h.replicaForHash(hash).get(key, { level: 'eventual' })
      expect(e.found?.version).toBe(all.version)
    }
  })
})
