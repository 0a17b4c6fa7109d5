/**
 * The node metric families read their sources at scrape time: names and types as Prometheus
 * wants them, values that follow the sources, bounded label sets, and nothing before a source exists.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { KvdMetrics } from '../../../src/server/http.ts'
import { registerNodeMetrics, type ReplicaMetricsView } from '../../../src/server/metrics-node.ts'
import { registerRebalanceMetrics } from '../../../src/server/metrics-rebalance.ts'
import type { TransportStats } from '../../../src/node/transport.ts'
import { NodeId } from '../../../src/common/ids.ts'
import { FixedHistogram, type HistogramSnapshot } from '../../../src/common/histogram.ts'
import type { HostRaftStats, HostStorageStats } from '../../../src/node/host.ts'
import type { RocksSizes } from '../../../src/storage/index.ts'

function histogram(bounds: number[], values: number[]): HistogramSnapshot {
  const h = new FixedHistogram(bounds)
  for (const v of values) h.observe(v)
  return h.snapshot()
}

function transportStats(over: Partial<TransportStats> = {}): TransportStats {
  return {
    sent: 0,
    sentBatches: 0,
    sentBytes: 0,
    dropped: 0,
    faultDropped: 0,
    received: 0,
    receivedBatches: 0,
    misaddressed: 0,
    droppedNotStarted: 0,
    droppedDelayFull: 0,
    connects: 0,
    reconnects: 0,
    connectFailures: 0,
    snapshotsSent: 0,
    snapshotsSendFailed: 0,
    snapshotsReceived: 0,
    snapshotsRefused: 0,
    peers: [],
    ...over,
  }
}

/** `name{labels} value` lines of one scrape, as a map. */
async function scrape(
  registry: Registry,
): Promise<{ text: string; value: (series: string) => number | undefined }> {
  const text = await registry.metrics()
  const values = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    values.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return { text, value: (series) => values.get(series) }
}

describe('server/metrics-node', () => {
  it('follows its sources at every scrape, with Prometheus names and types', async () => {
    const registry = new Registry()
    let replicas: ReplicaMetricsView[] = []
    let transport: TransportStats | undefined
    let host: { envelopesDropped: number; envelopesForNoReplica: number } | undefined = undefined
    const forwarded = new Map<string, number>()
    let raft: HostRaftStats | undefined = undefined
    let storage: HostStorageStats | undefined = undefined
    let rocks: RocksSizes | undefined = undefined
    let rtts: Map<NodeId, HistogramSnapshot> | undefined = undefined
    registerNodeMetrics(registry, {
      version: '1.2.3',
      forwarded: () => forwarded,
      replicas: () => replicas,
      hostCounters: () => host,
      transport: () => transport,
      raft: () => raft,
      storage: () => storage,
      rocks: () => rocks,
      peerRoundTrips: () => rtts,
    })

    // Before the host and transport exist: zeros, no peers.
    const empty = await scrape(registry)
    expect(empty.value(`ringkv_build_info{version="1.2.3",nodejs="${process.versions.node}"}`)).toBe(1)
    expect(empty.value('ringkv_shard_leaders')).toBe(0)
    expect(empty.value('ringkv_peer_sent_messages_total')).toBe(0)
    expect(empty.text).not.toContain('ringkv_peer_connected{')
    expect(empty.value('ringkv_raft_proposals_committed_total')).toBe(0)
    expect(empty.value('ringkv_raft_proposals_dropped_total{reason="lost"}')).toBe(0)
    expect(empty.text).not.toContain('ringkv_storage_sync_duration_seconds_count')
    expect(empty.value('ringkv_storage_live_data_bytes')).toBe(0)
    expect(empty.text).not.toContain('ringkv_peer_round_trip_seconds_bucket')
    for (const [name, type] of [
      ['ringkv_build_info', 'gauge'],
      ['ringkv_forwarded_requests_total', 'counter'],
      ['ringkv_shard_replicas', 'gauge'],
      ['ringkv_shard_leaders', 'gauge'],
      ['ringkv_shard_replicas_without_leader', 'gauge'],
      ['ringkv_raft_apply_lag_max_entries', 'gauge'],
      ['ringkv_raft_messages_dropped_total', 'counter'],
      ['ringkv_peer_sent_bytes_total', 'counter'],
      ['ringkv_peer_dropped_messages_total', 'counter'],
      ['ringkv_peer_reconnects_total', 'counter'],
      ['ringkv_peer_connected', 'gauge'],
      ['ringkv_peer_queued_bytes', 'gauge'],
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
      ['ringkv_storage_pending_compaction_bytes', 'gauge'],
      ['ringkv_peer_round_trip_seconds', 'histogram'],
    ])
      expect(empty.text, name).toContain(`# TYPE ${name} ${type}\n`)

    replicas = [
      { state: 'active', role: 'leader', leaderId: 1, appliedIndex: 10, commitIndex: 12 },
      { state: 'active', role: 'follower', leaderId: 2, appliedIndex: 7, commitIndex: 7 },
      { state: 'active', role: 'follower', leaderId: null, appliedIndex: 3, commitIndex: 3 },
      { state: 'installing', role: 'learner', leaderId: null, appliedIndex: 0, commitIndex: 0 },
    ]
    host = { envelopesDropped: 4, envelopesForNoReplica: 2 }
    transport = transportStats({
      sent: 50,
      sentBytes: 4096,
      dropped: 3,
      faultDropped: 9,
      reconnects: 1,
      snapshotsSent: 2,
      peers: [
        { peer: NodeId(2), address: 'a:1', state: 'connected', queuedEnvelopes: 0, queuedBytes: 0 },
        { peer: NodeId(3), address: 'b:1', state: 'backoff', queuedEnvelopes: 5, queuedBytes: 700 },
      ],
    })
    forwarded.set('put', 5)
    raft = {
      leaderChanges: 3,
      proposalsCommitted: 40,
      proposalsNotLeader: 2,
      proposalsRefused: 1,
      proposalsLost: 4,
      proposalsPending: 6,
      leadersWithUnreachableVoters: 1,
    }
    storage = {
      syncSeconds: histogram([0.001, 0.01], [0.0005, 0.002, 0.5]),
      batchOps: histogram([1, 4], [1, 3]),
      batchBytes: histogram([256], [100, 300]),
    }
    rocks = {
      liveDataBytes: 1000,
      sstFilesBytes: 2000,
      memtableBytes: 300,
      pendingCompactionBytes: 50,
      runningCompactions: 1,
    }
    // Peer 9 is not a peer of the cluster (any more): not exported.
    rtts = new Map([
      [NodeId(2), histogram([0.001, 0.002], [0.0015])],
      [NodeId(9), histogram([0.001], [0.5])],
    ])
    const s = await scrape(registry)
    expect(s.value('ringkv_raft_leader_changes_total')).toBe(3)
    expect(s.value('ringkv_raft_proposals_committed_total')).toBe(40)
    expect(s.value('ringkv_raft_proposals_dropped_total{reason="not_leader"}')).toBe(2)
    expect(s.value('ringkv_raft_proposals_dropped_total{reason="refused"}')).toBe(1)
    expect(s.value('ringkv_raft_proposals_dropped_total{reason="lost"}')).toBe(4)
    expect(s.value('ringkv_raft_proposals_pending')).toBe(6)
    expect(s.value('ringkv_shard_leaders_with_unreachable_voters')).toBe(1)
    expect(s.value('ringkv_storage_sync_duration_seconds_bucket{le="0.001"}')).toBe(1)
    expect(s.value('ringkv_storage_sync_duration_seconds_bucket{le="0.01"}')).toBe(2)
    expect(s.value('ringkv_storage_sync_duration_seconds_bucket{le="+Inf"}')).toBe(3)
    expect(s.value('ringkv_storage_sync_duration_seconds_count')).toBe(3)
    expect(s.value('ringkv_storage_sync_duration_seconds_sum')).toBeCloseTo(0.5025)
    expect(s.value('ringkv_storage_batch_ops_bucket{le="4"}')).toBe(2)
    expect(s.value('ringkv_storage_batch_bytes_sum')).toBe(400)
    expect(s.value('ringkv_storage_live_data_bytes')).toBe(1000)
    expect(s.value('ringkv_storage_sst_files_bytes')).toBe(2000)
    expect(s.value('ringkv_storage_running_compactions')).toBe(1)
    expect(s.value('ringkv_peer_round_trip_seconds_bucket{peer="2",le="0.001"}')).toBe(0)
    expect(s.value('ringkv_peer_round_trip_seconds_bucket{peer="2",le="0.002"}')).toBe(1)
    expect(s.value('ringkv_peer_round_trip_seconds_count{peer="2"}')).toBe(1)
    expect(s.text).not.toContain('peer="9"')
    expect(s.value('ringkv_shard_replicas{state="active"}')).toBe(3)
    expect(s.value('ringkv_shard_replicas{state="installing"}')).toBe(1)
    expect(s.value('ringkv_shard_replicas{state="tombstone"}')).toBe(0)
    expect(s.value('ringkv_shard_leaders')).toBe(1)
    expect(s.value('ringkv_shard_replicas_without_leader')).toBe(1)
    expect(s.value('ringkv_raft_apply_lag_max_entries')).toBe(2)
    expect(s.value('ringkv_raft_messages_dropped_total{reason="queue"}')).toBe(4)
    expect(s.value('ringkv_raft_messages_dropped_total{reason="no_replica"}')).toBe(2)
    expect(s.value('ringkv_forwarded_requests_total{method="put"}')).toBe(5)
    expect(s.value('ringkv_peer_sent_messages_total')).toBe(50)
    expect(s.value('ringkv_peer_sent_bytes_total')).toBe(4096)
    expect(s.value('ringkv_peer_dropped_messages_total{reason="unreachable"}')).toBe(3)
    expect(s.value('ringkv_peer_dropped_messages_total{reason="fault"}')).toBe(9)
    expect(s.value('ringkv_peer_reconnects_total')).toBe(1)
    expect(s.value('ringkv_snapshots_sent_total')).toBe(2)
    expect(s.value('ringkv_peer_connected{peer="2"}')).toBe(1)
    expect(s.value('ringkv_peer_connected{peer="3"}')).toBe(0)
    expect(s.value('ringkv_peer_queued_bytes{peer="3"}')).toBe(700)

    // A peer that left the cluster leaves the per-peer series.
    transport = transportStats({ sent: 60, peers: [transport.peers[0]!] })
    forwarded.set('put', 8)
    const later = await scrape(registry)
    expect(later.value('ringkv_peer_sent_messages_total')).toBe(60)
    expect(later.value('ringkv_forwarded_requests_total{method="put"}')).toBe(8)
    expect(later.value('ringkv_peer_connected{peer="3"}')).toBeUndefined()
  })

  it('the sample alert rules and docs/operations.md name only metrics kvd exports', async () => {
    const metrics = new KvdMetrics()
    metrics.exposeNode({
      version: '0.0.0',
      forwarded: () => new Map(),
      replicas: () => [],
      hostCounters: () => undefined,
      transport: () => undefined,
      raft: () => undefined,
      storage: () => undefined,
      rocks: () => undefined,
      peerRoundTrips: () => undefined,
    })
    registerRebalanceMetrics(metrics.registry, () => undefined)
    const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name))
    const root = join(import.meta.dirname, '../../..')
    for (const file of ['deploy/alerts.yml', 'docs/operations.md']) {
      const text = readFileSync(join(root, file), 'utf8')
      const named = new Set(
        [...text.matchAll(/\bringkv_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
      )
      expect(named.size, file).toBeGreaterThan(5)
      for (const name of named) expect(exported.has(name), `${file}: ${name}`).toBe(true)
    }
  })
})
