/**
 * /metrics of a real three-node cluster: every node family is there with its Prometheus type, the
 * numbers agree with the cluster (leaders, replicas, peers connected), and they move with traffic.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { repoRoot } from '../helpers/kvd.ts'

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 4 })
}, 120_000)
afterAll(async () => {
  await cluster?.stop()
})

interface Scrape {
  readonly text: string
  value(series: string): number | undefined
}

async function scrape(http: string): Promise<Scrape> {
  const text = await (await fetch(`http://${http}/metrics`)).text()
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    values.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return { text, value: (series) => values.get(series) }
}

describe('server/metrics of a real cluster', () => {
  it('exports every node family with its type, and build info', async () => {
    const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string })
      .version
    const s = await scrape(cluster.nodes[0]!.http)
    for (const [name, type] of [
      ['ringkv_build_info', 'gauge'],
      ['ringkv_requests_total', 'counter'],
      ['ringkv_forwarded_requests_total', 'counter'],
      ['ringkv_shard_replicas', 'gauge'],
      ['ringkv_shard_leaders', 'gauge'],
      ['ringkv_shard_replicas_without_leader', 'gauge'],
      ['ringkv_raft_apply_lag_max_entries', 'gauge'],
      ['ringkv_raft_messages_dropped_total', 'counter'],
      ['ringkv_peer_sent_messages_total', 'counter'],
      ['ringkv_peer_received_messages_total', 'counter'],
      ['ringkv_peer_dropped_messages_total', 'counter'],
      ['ringkv_peer_connected', 'gauge'],
      ['ringkv_snapshots_sent_total', 'counter'],
    ])
      expect(s.text, name).toContain(`# TYPE ${name} ${type}\n`)
    expect(s.text).not.toMatch(/^ringkv_forwarded_requests\{/m)
    expect(s.value(`ringkv_build_info{version="${version}",nodejs="${process.versions.node}"}`)).toBe(1)
  })

  it('agrees with the cluster: 5 groups (4 data + meta) of 3 replicas, one leader each, peers connected', async () => {
    await eventually('leaders and peers settled', async () => {
      const scrapes = await Promise.all(cluster.nodes.map((n) => scrape(n.http)))
      for (const s of scrapes) {
        expect(s.value('ringkv_shard_replicas{state="active"}')).toBe(5)
        expect(s.value('ringkv_shard_replicas_without_leader')).toBe(0)
      }
      const leaders = scrapes.reduce((sum, s) => sum + (s.value('ringkv_shard_leaders') ?? 0), 0)
      expect(leaders).toBe(5)
      for (const [i, s] of scrapes.entries()) {
        for (const peer of cluster.nodes.filter((_, j) => j !== i))
          expect(s.value(`ringkv_peer_connected{peer="${peer.nodeId}"}`)).toBe(1)
      }
      return true
    })
  })

  it('moves with traffic: requests, peer messages and bytes', async () => {
    const before = await Promise.all(cluster.nodes.map((n) => scrape(n.http)))
    const sum = (scrapes: readonly Scrape[], series: string): number =>
      scrapes.reduce((total, s) => total + (s.value(series) ?? 0), 0)
    const client = new KvClient({ endpoints: cluster.endpoints })
    try {
      for (let i = 0; i < 40; i++) await client.put(`metrics/${i}`, 'v')
    } finally {
      client.close()
    }
    const after = await Promise.all(cluster.nodes.map((n) => scrape(n.http)))
    const puts = 'ringkv_requests_total{method="Put",consistency="majority",code="OK"}'
    expect(sum(after, puts) - sum(before, puts)).toBeGreaterThanOrEqual(40)
    expect(sum(after, 'ringkv_peer_sent_messages_total')).toBeGreaterThan(
      sum(before, 'ringkv_peer_sent_messages_total'),
    )
    expect(sum(after, 'ringkv_peer_sent_bytes_total')).toBeGreaterThan(
      sum(before, 'ringkv_peer_sent_bytes_total'),
    )
    expect(sum(after, 'ringkv_peer_received_messages_total')).toBeGreaterThan(
      sum(before, 'ringkv_peer_received_messages_total'),
    )
  })
})
