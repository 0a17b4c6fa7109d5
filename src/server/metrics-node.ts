/**
 * The node's own state as Prometheus metrics, read at scrape time from the counters the rooms
 * already keep (the host's shard views, the peer transport's stats, the forwarder's counts), so
 * that no room but this one knows prom-client. Names follow Prometheus conventions: units in the
 * name, `_total` for counters, label sets bounded (lifecycle states, drop reasons, peers of the
 * cluster; never a shard id or a key).
 *
 * - `ringkv_build_info{version, nodejs}` gauge, always 1
 * - `ringkv_forwarded_requests_total{method}` counter: requests forwarded to the node serving them
 * - `ringkv_shard_replicas{state}` gauge: replicas on this node by lifecycle state
 * - `ringkv_shard_leaders` gauge: replicas on this node that lead their shard
 * - `ringkv_shard_replicas_without_leader` gauge: active replicas that know no leader
 * - `ringkv_raft_apply_lag_max_entries` gauge: the largest commit - applied over this node's replicas
 * - `ringkv_raft_messages_dropped_total{reason}` counter: Raft messages the host dropped
 *   (`queue`: no room; `no_replica`: for a shard it does not hold)
 * - `ringkv_peer_sent_messages_total`, `ringkv_peer_sent_batches_total`, `ringkv_peer_sent_bytes_total`,
 *   `ringkv_peer_received_messages_total`, `ringkv_peer_received_batches_total` counters
 * - `ringkv_peer_dropped_messages_total{reason}` counter: `unreachable` (reported to Raft),
 *   `fault` (injected), `misaddressed`, `not_started`, `delay_full`
 * - `ringkv_peer_connects_total`, `ringkv_peer_reconnects_total`, `ringkv_peer_connect_failures_total`
 * - `ringkv_peer_connected{peer}` gauge: 1 while the stream to that peer is up
 * - `ringkv_peer_queued_bytes{peer}` gauge: bytes waiting to be sent to that peer
 * - `ringkv_snapshots_sent_total`, `ringkv_snapshots_send_failed_total`,
 *   `ringkv_snapshots_received_total`, `ringkv_snapshots_refused_total` counters
 * - `ringkv_raft_leader_changes_total` counter: leaders this node's groups saw arrive
 * - `ringkv_raft_proposals_committed_total` counter, `ringkv_raft_proposals_dropped_total{reason}`
 *   counter (`not_leader`, `refused`, `lost`), `ringkv_raft_proposals_pending` gauge: writes
 * - `ringkv_shard_leaders_with_unreachable_voters` gauge: shards led here with a voter not heard
 *   from within an election timeout (summed over nodes: the under-replicated shards)
 * - `ringkv_storage_sync_duration_seconds` histogram: a synced write batch (write + WAL fsync)
 * - `ringkv_storage_batch_ops`, `ringkv_storage_batch_bytes` histograms: per written batch
 * - `ringkv_storage_live_data_bytes`, `ringkv_storage_sst_files_bytes`,
 *   `ringkv_storage_memtable_bytes`, `ringkv_storage_pending_compaction_bytes`,
 *   `ringkv_storage_running_compactions` gauges: RocksDB's own view (0 with another engine)
 * - `ringkv_peer_round_trip_seconds{peer}` histogram: Raft heartbeat round trips per peer
 *
 * The histograms are kept by the rooms as fixed buckets (common/histogram.ts) and exported as
 * they are at each scrape (ReadHistogram).
 */
import { Counter, Gauge, type Metric, type Registry } from 'prom-client'
import type { HistogramSnapshot } from '../common/histogram.ts'
import type { NodeId } from '../common/ids.ts'
import type { HostRaftStats, HostStorageStats } from '../node/host.ts'
import type { TransportStats } from '../node/transport.ts'
import type { RocksSizes } from '../storage/index.ts'

/** One replica as the metrics need it (node/host.ts ShardView has these fields). */
export interface ReplicaMetricsView {
  readonly state: string
  readonly role: string
  readonly leaderId: number | null
  readonly appliedIndex: number
  readonly commitIndex: number
}

/** What the node metrics read at scrape time; a source that is not there yet reads as nothing. */
export interface NodeMetricsSource {
  readonly version: string
  readonly forwarded: () => ReadonlyMap<string, number>
  readonly replicas: () => readonly ReplicaMetricsView[]
  readonly hostCounters: () =>
    { readonly envelopesDropped: number; readonly envelopesForNoReplica: number } | undefined
  readonly transport: () => TransportStats | undefined
  readonly raft: () => HostRaftStats | undefined
  readonly storage: () => HostStorageStats | undefined
  /** RocksDB's sizes; undefined with another engine (tests) or before it is open. */
  readonly rocks: () => RocksSizes | undefined
  readonly peerRoundTrips: () => ReadonlyMap<NodeId, HistogramSnapshot> | undefined
}

type Labels = Record<string, string>
type HistogramValue = { value: number; labels: Record<string, string | number>; metricName: string }

/**
 * A histogram whose buckets a room keeps (common/histogram.ts): at each scrape it exports the
 * snapshots `read` returns, one series per label set, in Prometheus's cumulative form. It is a
 * metric object of prom-client's registry contract (name, help, type, get), not a prom-client
 * Histogram, whose buckets can only be filled by observing.
 */
class ReadHistogram {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly name: string
  readonly help: string
  private readonly read: () => Iterable<readonly [Labels, HistogramSnapshot]>

  constructor(
    config: { name: string; help: string; registers: Registry[] },
    read: () => Iterable<readonly [Labels, HistogramSnapshot]>,
  ) {
    this.name = config.name
    this.help = config.help
    this.read = read
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric)
  }

  get(): Promise<{
    name: string
    help: string
    type: string
    aggregator: string
    values: HistogramValue[]
  }> {
    const values: HistogramValue[] = []
    for (const [labels, h] of this.read()) {
      h.bounds.forEach((le, i) =>
        values.push({
          value: h.cumulative[i] ?? 0,
          labels: { ...labels, le },
          metricName: `${this.name}_bucket`,
        }),
      )
      values.push({ value: h.count, labels: { ...labels, le: '+Inf' }, metricName: `${this.name}_bucket` })
      values.push({ value: h.sum, labels, metricName: `${this.name}_sum` })
      values.push({ value: h.count, labels, metricName: `${this.name}_count` })
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    })
  }

  /** Nothing to reset: the room owns the counts. */
  reset(): void {}
}

/** The lifecycle states a replica can be in (node/replica-record.ts): every one is exported, 0 included. */
const replicaStates = ['empty', 'installing', 'active', 'removing', 'tombstone'] as const

/** Registers the node metric families on `registry`. */
export function registerNodeMetrics(registry: Registry, source: NodeMetricsSource): void {
  const registers = [registry]
  new Gauge({
    name: 'ringkv_build_info',
    help: 'Always 1; the labels say which ringkv and which Node.js this node runs.',
    labelNames: ['version', 'nodejs'],
    registers,
  }).set({ version: source.version, nodejs: process.versions.node }, 1)

  new Counter({
    name: 'ringkv_forwarded_requests_total',
    help: 'Requests this node forwarded to the node that serves them, by method (a warm smart client causes almost none).',
    labelNames: ['method'],
    registers,
    collect() {
      this.reset()
      for (const [method, count] of source.forwarded()) this.inc({ method }, count)
    },
  })

  new Gauge({
    name: 'ringkv_shard_replicas',
    help: 'Replicas on this node by lifecycle state (empty, installing, active, removing, tombstone).',
    labelNames: ['state'],
    registers,
    collect() {
      const counts = new Map<string, number>(replicaStates.map((s) => [s, 0]))
      for (const r of source.replicas()) counts.set(r.state, (counts.get(r.state) ?? 0) + 1)
      for (const [state, n] of counts) this.set({ state }, n)
    },
  })
  new Gauge({
    name: 'ringkv_shard_leaders',
    help: 'Replicas on this node that lead their shard.',
    registers,
    collect() {
      this.set(source.replicas().filter((r) => r.role === 'leader' || r.role === 'single').length)
    },
  })
  new Gauge({
    name: 'ringkv_shard_replicas_without_leader',
    help: 'Active replicas on this node that know no leader of their shard (an election, or a shard cut off from its quorum).',
    registers,
    collect() {
      this.set(source.replicas().filter((r) => r.state === 'active' && (r.leaderId ?? 0) <= 0).length)
    },
  })
  new Gauge({
    name: 'ringkv_raft_apply_lag_max_entries',
    help: 'The largest number of committed but not yet applied entries over the replicas of this node.',
    registers,
    collect() {
      let lag = 0
      for (const r of source.replicas()) lag = Math.max(lag, r.commitIndex - r.appliedIndex)
      this.set(lag)
    },
  })
  new Counter({
    name: 'ringkv_raft_messages_dropped_total',
    help: 'Raft messages the host dropped: queue (no room), no_replica (for a shard this node does not hold).',
    labelNames: ['reason'],
    registers,
    collect() {
      const c = source.hostCounters()
      this.reset()
      this.inc({ reason: 'queue' }, c?.envelopesDropped ?? 0)
      this.inc({ reason: 'no_replica' }, c?.envelopesForNoReplica ?? 0)
    },
  })

  const raftCounter = (name: string, help: string, read: (s: HostRaftStats) => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        const s = source.raft()
        this.reset()
        this.inc(s === undefined ? 0 : read(s))
      },
    })
  }
  raftCounter(
    'ringkv_raft_leader_changes_total',
    "Leaders this node's replicas saw arrive (a new leader, or one after a time without).",
    (s) => s.leaderChanges,
  )
  raftCounter(
    'ringkv_raft_proposals_committed_total',
    'Writes proposed here whose entry applied at the index and term they were proposed at.',
    (s) => s.proposalsCommitted,
  )
  new Counter({
    name: 'ringkv_raft_proposals_dropped_total',
    help: 'Writes that did not commit as proposed here, by reason: not_leader (NOT_LEADER; the client retries elsewhere), refused (overloaded, too large, level all with a voter unreachable), lost (a new leader or a snapshot replaced the entry).',
    labelNames: ['reason'],
    registers,
    collect() {
      const s = source.raft()
      this.reset()
      this.inc({ reason: 'not_leader' }, s?.proposalsNotLeader ?? 0)
      this.inc({ reason: 'refused' }, s?.proposalsRefused ?? 0)
      this.inc({ reason: 'lost' }, s?.proposalsLost ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_raft_proposals_pending',
    help: 'Writes proposed here waiting for their entry to apply.',
    registers,
    collect() {
      this.set(source.raft()?.proposalsPending ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_shard_leaders_with_unreachable_voters',
    help: 'Shards this node leads that have a voter it has not heard from within an election timeout (summed over the nodes: the under-replicated shards).',
    registers,
    collect() {
      this.set(source.raft()?.leadersWithUnreachableVoters ?? 0)
    },
  })

  const storageHistogram = (
    name: string,
    help: string,
    read: (s: HostStorageStats) => HistogramSnapshot,
  ): void => {
    new ReadHistogram({ name, help, registers }, () => {
      const s = source.storage()
      return s === undefined ? [] : [[{}, read(s)] as const]
    })
  }
  storageHistogram(
    'ringkv_storage_sync_duration_seconds',
    'Seconds per synced write batch of the node (the write and its WAL fsync; one per loop iteration with durable work).',
    (s) => s.syncSeconds,
  )
  storageHistogram(
    'ringkv_storage_batch_ops',
    'Operations per write batch (every shard of one loop iteration together).',
    (s) => s.batchOps,
  )
  storageHistogram('ringkv_storage_batch_bytes', 'Key and value bytes per write batch.', (s) => s.batchBytes)
  const rocksGauge = (name: string, help: string, read: (s: RocksSizes) => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const s = source.rocks()
        this.set(s === undefined ? 0 : read(s))
      },
    })
  }
  rocksGauge(
    'ringkv_storage_live_data_bytes',
    "RocksDB's estimate of the live data in its files (rocksdb.estimate-live-data-size).",
    (s) => s.liveDataBytes,
  )
  rocksGauge(
    'ringkv_storage_sst_files_bytes',
    'Bytes of every RocksDB SST file, obsolete versions included (rocksdb.total-sst-files-size).',
    (s) => s.sstFilesBytes,
  )
  rocksGauge(
    'ringkv_storage_memtable_bytes',
    'Bytes in RocksDB memtables not yet flushed (rocksdb.cur-size-all-mem-tables).',
    (s) => s.memtableBytes,
  )
  rocksGauge(
    'ringkv_storage_pending_compaction_bytes',
    'Bytes RocksDB compaction must still rewrite (rocksdb.estimate-pending-compaction-bytes).',
    (s) => s.pendingCompactionBytes,
  )
  rocksGauge(
    'ringkv_storage_running_compactions',
    'RocksDB compactions running now.',
    (s) => s.runningCompactions,
  )
  new ReadHistogram(
    {
      name: 'ringkv_peer_round_trip_seconds',
      help: 'Round trips of Raft heartbeats to each peer (sent by shards this node leads), inbox waits included.',
      registers,
    },
    () => {
      // Only the peers of the cluster now: a node that left leaves the series.
      const current = new Set((source.transport()?.peers ?? []).map((p) => p.peer))
      const out: [Labels, HistogramSnapshot][] = []
      for (const [peer, h] of source.peerRoundTrips() ?? [])
        if (current.has(peer)) out.push([{ peer: String(peer) }, h])
      return out
    },
  )

  const transportCounter = (name: string, help: string, read: (s: TransportStats) => number): void => {
    new Counter({
      name,
      help,
      registers,
      collect() {
        const s = source.transport()
        this.reset()
        this.inc(s === undefined ? 0 : read(s))
      },
    })
  }
  transportCounter('ringkv_peer_sent_messages_total', 'Raft messages written to peer streams.', (s) => s.sent)
  transportCounter(
    'ringkv_peer_sent_batches_total',
    'Stream messages (batches of Raft messages) written to peers.',
    (s) => s.sentBatches,
  )
  transportCounter(
    'ringkv_peer_sent_bytes_total',
    'Raft message payload bytes written to peers.',
    (s) => s.sentBytes,
  )
  transportCounter(
    'ringkv_peer_received_messages_total',
    'Raft messages received from peers.',
    (s) => s.received,
  )
  transportCounter(
    'ringkv_peer_received_batches_total',
    'Stream messages (batches) received from peers.',
    (s) => s.receivedBatches,
  )
  transportCounter('ringkv_peer_connects_total', 'Streams opened to peers.', (s) => s.connects)
  transportCounter(
    'ringkv_peer_reconnects_total',
    'Streams opened to a peer that had been connected before.',
    (s) => s.reconnects,
  )
  transportCounter(
    'ringkv_peer_connect_failures_total',
    'Failed attempts to open a stream to a peer, and streams that broke.',
    (s) => s.connectFailures,
  )
  transportCounter('ringkv_snapshots_sent_total', 'Snapshots sent to peers.', (s) => s.snapshotsSent)
  transportCounter(
    'ringkv_snapshots_send_failed_total',
    'Snapshot sends that failed.',
    (s) => s.snapshotsSendFailed,
  )
  transportCounter(
    'ringkv_snapshots_received_total',
    'Snapshots received from peers.',
    (s) => s.snapshotsReceived,
  )
  transportCounter('ringkv_snapshots_refused_total', 'Snapshots refused.', (s) => s.snapshotsRefused)

  new Counter({
    name: 'ringkv_peer_dropped_messages_total',
    help: 'Raft messages dropped on the way to or from peers, by reason: unreachable (reported to Raft), fault (injected), misaddressed, not_started, delay_full.',
    labelNames: ['reason'],
    registers,
    collect() {
      const s = source.transport()
      this.reset()
      this.inc({ reason: 'unreachable' }, s?.dropped ?? 0)
      this.inc({ reason: 'fault' }, s?.faultDropped ?? 0)
      this.inc({ reason: 'misaddressed' }, s?.misaddressed ?? 0)
      this.inc({ reason: 'not_started' }, s?.droppedNotStarted ?? 0)
      this.inc({ reason: 'delay_full' }, s?.droppedDelayFull ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_peer_connected',
    help: 'Per peer: 1 while the stream to it is up, else 0.',
    labelNames: ['peer'],
    registers,
    collect() {
      this.reset()
      for (const p of source.transport()?.peers ?? [])
        this.set({ peer: String(p.peer) }, p.state === 'connected' ? 1 : 0)
    },
  })
  new Gauge({
    name: 'ringkv_peer_queued_bytes',
    help: 'Per peer: Raft message bytes waiting to be sent.',
    labelNames: ['peer'],
    registers,
    collect() {
      this.reset()
      for (const p of source.transport()?.peers ?? []) this.set({ peer: String(p.peer) }, p.queuedBytes)
    },
  })
}
