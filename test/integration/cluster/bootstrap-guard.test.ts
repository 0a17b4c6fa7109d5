/**
 * The bootstrap guard on real processes (src/server/bootstrap-guard.ts): a member of a 3-node
 * --initial-cluster that ran, then lost its data directory, refuses to start as new (exit code 1,
 * one line saying why and what to do) instead of coming back with empty votes and logs in groups
 * that count it as a voter; the other two keep serving; and with its data back it starts again.
 */
import { cpSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 2 })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

describe('bootstrap guard', () => {
  it('a member that lost its data directory refuses to start as new; with its data back it starts', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    try {
      await client.put('guard/a', '1')
      // Every member's first heartbeat is in the meta shard once the map shows it.
      await eventually('node 2 heard by the meta leader', async () => {
        const map = await client.shardMap()
        return map.nodes.find((n) => n.nodeId === 2 && n.lastHeartbeatMs > 0) !== undefined ? true : undefined
      })
      const victim = cluster.node(2)
      await victim.stop()
      const saved = `${victim.dataDir}.saved`
      cpSync(victim.dataDir, saved, { recursive: true })
      for (const entry of readdirSync(victim.dataDir))
        rmSync(join(victim.dataDir, entry), { recursive: true })

      await expect(victim.restart()).rejects.toThrow(/exited before ready \(code 1/)
      expect(victim.logs()).toMatch(/kvd: node 2 ran in cluster [0-9a-f]{32} before .* is empty/)
      expect(victim.logs()).toMatch(/kvctl node remove 2 --force/)
      // Nothing of a new member was created.
      expect(readdirSync(victim.dataDir)).not.toContain('cluster-id')
      // The other two serve majority writes meanwhile.
      await client.put('guard/b', '2')
      expect((await client.get('guard/a')).valueText()).toBe('1')

      rmSync(victim.dataDir, { recursive: true })
      cpSync(saved, victim.dataDir, { recursive: true })
      await victim.restart()
      await client.put('guard/c', '3')
      expect((await client.get('guard/b')).valueText()).toBe('2')
    } finally {
      client.close()
    }
  }, 120_000)
})
