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
      ['ringkv_raft_leader_changes_total', 'counter'],
      ['ringkv_raft_proposals_committed_total', 'counter'],
      ['ringkv_raft_proposals_dropped_total', 'counter'],
      ['ringkv_raft_proposals_pending', 'gauge'],
      ['ringkv_shard_leaders_with_unreachable_voters', 'gauge'],
      ['ringkv_storage_sync_duration_seconds', 'histogram'],
      ['ringkv_storage_batch_ops', 'histogram'],
      ['ringkv_storage_batch_bytes', 'histogram'],
      ['ringkv_storage_live_data_bytes', 'gauge'],
      ['ringkv_storage_sst_files_bytes', 'gauge'],
      ['ringkv_storage_memtable_bytes', 'gauge'],
      ['ringkv_storage_pending_compaction_bytes', 'gauge'],
      ['ringkv_storage_running_compactions', 'gauge'],
      ['ringkv_peer_round_trip_seconds', 'histogram'],
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
      // Every node saw the leader of each of its 5 groups arrive at least once; none is cut off.
      for (const s of scrapes) {
        expect(s.value('ringkv_raft_leader_changes_total')).toBeGreaterThanOrEqual(5)
        expect(s.value('ringkv_shard_leaders_with_unreachable_voters')).toBe(0)
      }
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
    // Each put committed one proposal on its shard's leader, through synced batches there and on
    // the followers; RocksDB holds the data (in memtables at least).
    const committed = 'ringkv_raft_proposals_committed_total'
    expect(sum(after, committed) - sum(before, committed)).toBeGreaterThanOrEqual(40)
    expect(sum(after, 'ringkv_raft_proposals_pending')).toBe(0)
    for (const [i, s] of after.entries()) {
      const syncs = s.value('ringkv_storage_sync_duration_seconds_count') ?? 0
      expect(syncs).toBeGreaterThan(before[i]!.value('ringkv_storage_sync_duration_seconds_count') ?? 0)
      expect(s.value('ringkv_storage_sync_duration_seconds_bucket{le="+Inf"}')).toBe(syncs)
      expect(s.value('ringkv_storage_sync_duration_seconds_sum')).toBeGreaterThan(0)
      expect(s.value('ringkv_storage_batch_ops_count')).toBeGreaterThanOrEqual(syncs)
      expect(s.value('ringkv_storage_batch_bytes_sum')).toBeGreaterThan(0)
      expect(
        (s.value('ringkv_storage_memtable_bytes') ?? 0) + (s.value('ringkv_storage_sst_files_bytes') ?? 0),
      ).toBeGreaterThan(0)
    }
  })

  it('measures heartbeat round trips from each leader to its peers', async () => {
    await eventually('round trips measured', async () => {
      const scrapes = await Promise.all(cluster.nodes.map((n) => scrape(n.http)))
      // Leaders heartbeat their followers every tick: some node measured a round trip to each peer.
      let measured = 0
      for (const [i, s] of scrapes.entries())
        for (const peer of cluster.nodes.filter((_, j) => j !== i)) {
          const count = s.value(`ringkv_peer_round_trip_seconds_count{peer="${peer.nodeId}"}`) ?? 0
          const sum = s.value(`ringkv_peer_round_trip_seconds_sum{peer="${peer.nodeId}"}`) ?? 0
          if (count > 0) {
            measured++
            expect(sum / count).toBeGreaterThan(0)
            expect(sum / count).toBeLessThan(60)
          }
        }
      expect(measured).toBeGreaterThan(0)
      return true
    })
  })
})
