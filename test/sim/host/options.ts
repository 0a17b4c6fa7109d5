/**
 * The options of one host-simulator run, drawn from its seed (swarm testing, as ../options.ts):
 * shard count, transport mode, network and disk timing, tightened limits that push the host into
 * its rarer paths (log compaction and snapshots, split peer batches, full peer queues), the
 * workload and the faults.
 */
import { SeededRandom, tightenLimits, type Limits, type Random } from '../../../src/common/index.ts'
import { fmtSeed } from '../simulator.ts'

export const HostNemesis = {
  /** Crash a node (power cut: unsynced writes may be lost) and restart it later. */
  Crash: 'crash',
  /** Crash the node that leads the most shards. */
  CrashLeader: 'crash-leader',
  /** Cut one node off from the others, both ways. */
  Isolate: 'isolate',
  /** Cut one direction of one link. */
  OneWay: 'one-way',
  /** Raise the loss rate for a while. */
  LossBurst: 'loss-burst',
  /** Hold one link's traffic back. */
  Clog: 'clog',
  /** Make one node's fsyncs slow (more piles up per group commit). */
  SlowDisk: 'slow-disk',
  /** Reset every stream of one node (grpc mode: links back off and redial). */
  StreamReset: 'stream-reset',
  /** The transport's own fault table (PeerTransport.setFault): drop or delay towards one peer. */
  TransportFault: 'transport-fault',
  /**
   * Crash the node that leads the meta shard (sharded placement only: meta transactions in flight
   * end with an unknown outcome and are retried on the next leader).
   */
  CrashMetaLeader: 'crash-meta-leader',
  /**
   * Rewrite a shard's record in the meta shard (sharded placement only): a higher epoch and its
   * replicas in another preference order, as a move would change it. Routers learn it on their
   * next map refresh; clients with the old epoch get WRONG_SHARD and repair from its descriptor.
   */
  ShardRecordChange: 'shard-record-change',
} as const
export type HostNemesis = (typeof HostNemesis)[keyof typeof HostNemesis]
/** Nemeses of the sharded placement only (it adds them to what a seed draws). */
const shardedNemeses: readonly HostNemesis[] = [HostNemesis.CrashMetaLeader, HostNemesis.ShardRecordChange]
/** The kinds a seed draws from (the sharded placement adds its own). */
const nemesisKinds: readonly HostNemesis[] = Object.values(HostNemesis).filter(
  (k) => !shardedNemeses.includes(k),
)

export type TransportMode = 'grpc' | 'direct'

/**
 * Where the replicas live. `full`: every node holds every data shard (equal slices of the ring,
 * all members voting). `sharded`: the production layout, `hostedOf(initialClusterMap(...))` as
 * kvd computes it: each data shard on `replicaCount` nodes placed by the ring, so nodes hold
 * different subsets with different voter sets, plus the meta shard on `metaReplicaCount` nodes.
 */
export type Placement = 'full' | 'sharded'

/** Relative weights of the operation kinds a client picks from. */
export interface HostWorkloadMix {
  readonly put: number
  readonly cas: number
  readonly del: number
  readonly get: number
  readonly session: number
  readonly eventual: number
}

/**
 * A bug planted in the harness's disk, to show the checkers catch what it breaks:
 * `fsync-lies` acknowledges synced writes without making them durable (a disk with a volatile
 * write cache that ignores flushes), so a power cut loses acknowledged Raft state.
 */
export type PlantedFault = 'none' | 'fsync-lies'

export interface HostSimOptions {
  readonly seed: number
  readonly plantedFault: PlantedFault
  readonly nodes: number
  readonly shardCount: number
  readonly placement: Placement
  /** Replicas per data shard (`full`: every node). */
  readonly replicaCount: number
  /** Virtual nodes per node on the placement ring (`sharded`). */
  readonly vnodesPerNode: number
  /** Replicas of the meta shard (`sharded`; `full` has no meta shard). */
  readonly metaReplicaCount: number
  /** Clients of the meta shard (MetaStore: bootstrap, register, heartbeat, read); 0 in `full`. */
  readonly metaClients: number
  /** New node addresses the meta clients register (besides re-registering the initial ones). */
  readonly metaAddresses: number
  /**
   * The cluster agents' heartbeat (and map refresh) interval; 0: no agents, routers or SDK routing
   * (`full` placement, whose clients call replicas directly).
   */
  readonly heartbeatMs: number
  readonly transport: TransportMode
  readonly tickMs: number
  readonly leaseReads: boolean
  readonly clockDriftPpmMax: number
  readonly oneWayDelayMsMean: number
  readonly lossPer10k: number
  readonly reorderPer10k: number
  readonly duplicatePer10k: number
  readonly streamWindowMessages: number
  readonly breakDetectMsMax: number
  readonly fsyncMsMean: number
  readonly writeMsMean: number
  readonly readMsMean: number
  /** Nodes a crash fault may leave down at once (2 of 3: no quorum until one returns). */
  readonly downMax: number
  /** Probability (per 4) that a crash loses the writes since the last fsync. */
  readonly loseUnsyncedPer4: number
  readonly limits: Readonly<Limits>
  readonly clients: number
  readonly keys: number
  readonly mix: HostWorkloadMix
  /** Of the puts, how many per 8 use write level `all` instead of `majority`. */
  readonly allWritesPer8: number
  readonly thinkMsMax: number
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
  readonly nemeses: readonly HostNemesis[]
  readonly faultIntervalMsMean: number
  readonly faultDurationMsMax: number
  readonly safetyPhaseMs: number
  readonly livenessPhaseMs: number
  readonly convergenceMsMax: number
  /**
   * Replica moves (sharded placement, moves.ts): the mean time between two move actions (a move
   * through the real mover, a refused one, a leader transfer) in the safety phase; 0: none. With
   * moves on, the record-change nemesis is left out (a record epoch ahead of the shard's own would
   * stop the mover's record updates: a harness artefact, not a production path).
   */
  readonly moveIntervalMsMean: number
  /**
   * Rebalancing (sharded placement, rebalance.ts): every node's agent runs the real executor (it
   * works while the node leads the meta shard), and the rebalancing nemesis drives joins, drains
   * and deaths as data. Off: the agents run no executor (moves only by hand, as before).
   */
  readonly rebalance: boolean
  /** Node slots beyond `nodes` that take no part at first and join the cluster at run time. */
  readonly joinNodes: number
  /** Silence after which the meta leader marks a node dead; 0: the agents' default (5 heartbeats). */
  readonly deadAfterMs: number
}

export type HostSimOverrides = Partial<Omit<HostSimOptions, 'seed'>>

function pick<T>(r: Random, xs: readonly T[]): T {
  const x = xs[r.int(xs.length)]
  if (x === undefined) throw new RangeError('pick from an empty list')
  return x
}

export function hostSwarmOptions(seed: number, overrides: HostSimOverrides = {}): HostSimOptions {
  const r = new SeededRandom(seed).fork('host-swarm')
  let nemeses = nemesisKinds.filter(() => r.int(2) === 0)
  if (nemeses.length === 0) nemeses = [pick(r, nemesisKinds)]
  const compact = pick(r, [32, 128, 4096])
  const transport: TransportMode = r.int(3) === 0 ? 'direct' : 'grpc'
  const leaseReads = r.int(3) === 0
  const base: HostSimOptions = {
    seed,
    plantedFault: 'none',
    nodes: 3,
    shardCount: 2 + r.int(3),
    placement: 'full',
    replicaCount: 3,
    vnodesPerNode: 16,
    metaReplicaCount: 0,
    metaClients: 0,
    metaAddresses: 0,
    heartbeatMs: 0,
    transport,
    tickMs: 10,
    leaseReads,
    // The lease is shorter than the election timeout by a margin far above this drift.
    clockDriftPpmMax: pick(r, [0, 200, 2000]),
    oneWayDelayMsMean: pick(r, [0.5, 1, 2, 5]),
    lossPer10k: pick(r, [0, 0, 20, 200]),
    reorderPer10k: pick(r, [0, 20, 300]),
    duplicatePer10k: transport === 'direct' ? pick(r, [0, 20, 200]) : 0,
    streamWindowMessages: pick(r, [4, 32, 1_000_000]),
    breakDetectMsMax: pick(r, [100, 500, 2000]),
    fsyncMsMean: pick(r, [0.2, 1, 3, 8]),
    writeMsMean: pick(r, [0, 0.05]),
    readMsMean: pick(r, [0, 0.05, 0.3]),
    loseUnsyncedPer4: r.int(5),
    downMax: r.int(4) === 0 ? 2 : 1,
    limits: tightenLimits({
      raftLogCompactEntries: compact,
      raftLogRetainEntries: compact === 32 ? 4 : 16,
      peerBatchBytesMax: pick(r, [512, 8192, 1024 * 1024]),
      peerSendQueueMax: pick(r, [64, 8192]),
      snapshotChunkBytes: pick(r, [256, 65_536]),
      exportChunkBytes: pick(r, [4096, 1024 * 1024]),
      hostInboxMax: pick(r, [256, 65_536]),
    }),
    clients: 3 + r.int(3),
    keys: 4 + r.int(9),
    mix: {
      put: 3 + r.int(4),
      cas: r.int(3),
      del: r.int(2),
      get: 3 + r.int(4),
      session: r.int(3),
      eventual: 1 + r.int(2),
    },
    allWritesPer8: r.int(2),
    thinkMsMax: pick(r, [2, 5, 20]),
    attemptTimeoutMs: pick(r, [200, 500]),
    deadlineMs: 1500,
    nemeses,
    faultIntervalMsMean: pick(r, [200, 500, 1000]),
    faultDurationMsMax: pick(r, [300, 1000, 2500]),
    safetyPhaseMs: 1500 + r.int(2000),
    livenessPhaseMs: 1000,
    convergenceMsMax: 20_000,
    moveIntervalMsMean: 0,
    rebalance: false,
    joinNodes: 0,
    deadAfterMs: 0,
  }
  if (overrides.placement === 'sharded') {
    const o: HostSimOptions = {
      ...base,
      nemeses: [...base.nemeses, ...shardedNemeses],
      ...shardedDefaults(seed),
      ...overrides,
    }
    // Moves and rebalancing follow the shards' own epochs: no record changed behind the mover.
    return o.moveIntervalMsMean === 0 && !o.rebalance
      ? o
      : { ...o, nemeses: o.nemeses.filter((k) => k !== HostNemesis.ShardRecordChange) }
  }
  return { ...base, ...overrides }
}

/**
 * The sharded layout's options, drawn from their own fork of the seed (so the `full` options of a
 * seed stay what they were): five nodes, 8 to 12 data shards at three replicas each, the meta
 * shard on three nodes, more keys (spread over more shards), the meta workload, and the agents'
 * heartbeat (each node runs its router and agent; the clients route with the SDK's routing).
 */
function shardedDefaults(seed: number): HostSimOverrides {
  const r = new SeededRandom(seed).fork('host-sharded')
  return {
    placement: 'sharded',
    nodes: 5,
    shardCount: 8 + r.int(5),
    replicaCount: 3,
    vnodesPerNode: 16,
    metaReplicaCount: 3,
    metaClients: 1 + r.int(2),
    metaAddresses: 2 + r.int(3),
    clients: 4 + r.int(3),
    keys: 12 + r.int(13),
    safetyPhaseMs: 1500 + r.int(1500),
    heartbeatMs: pick(r, [200, 400]),
  }
}

/** The options as printed under SEED= (STYLE.md 7.6). */
export function describeHostOptions(o: HostSimOptions): string[] {
  const l = o.limits
  return [
    `SEED=${fmtSeed(o.seed)} (host sim)${o.plantedFault === 'none' ? '' : ` planted=${o.plantedFault}`}`,
    `  nodes=${o.nodes} shards=${o.shardCount} transport=${o.transport} leaseReads=${o.leaseReads} clockDriftPpm=±${o.clockDriftPpmMax} clients=${o.clients} keys=${o.keys}`,
    `  oneWayDelayMsMean=${o.oneWayDelayMsMean} lossRatio=${o.lossPer10k / 10_000} reorderRatio=${o.reorderPer10k / 10_000} duplicateRatio=${o.duplicatePer10k / 10_000} streamWindow=${o.streamWindowMessages} breakDetectMsMax=${o.breakDetectMsMax}`,
    `  fsyncMsMean=${o.fsyncMsMean} writeMsMean=${o.writeMsMean} readMsMean=${o.readMsMean} loseUnsynced=${o.loseUnsyncedPer4}/4 compact=${l.raftLogCompactEntries}/${l.raftLogRetainEntries} peerBatchBytesMax=${l.peerBatchBytesMax} peerSendQueueMax=${l.peerSendQueueMax} snapshotChunkBytes=${l.snapshotChunkBytes} hostInboxMax=${l.hostInboxMax} downMax=${o.downMax}`,
    `  nemeses=${o.nemeses.join(',')} faultIntervalMsMean=${o.faultIntervalMsMean} faultDurationMsMax=${o.faultDurationMsMax} safetyPhaseMs=${o.safetyPhaseMs}`,
    // Printed only for the sharded layout: the `full` runs keep their trace hashes.
    ...(o.placement === 'full'
      ? []
      : [
          `  placement=${o.placement} replicas=${o.replicaCount} vnodesPerNode=${o.vnodesPerNode} metaReplicas=${o.metaReplicaCount} metaClients=${o.metaClients} metaAddresses=${o.metaAddresses} heartbeatMs=${o.heartbeatMs}`,
        ]),
    ...(o.moveIntervalMsMean === 0 ? [] : [`  moveIntervalMsMean=${o.moveIntervalMsMean}`]),
    ...(o.rebalance ? [`  rebalance joinNodes=${o.joinNodes} deadAfterMs=${o.deadAfterMs}`] : []),
  ]
}
