/**
 * HostCluster: real NodeHost processes (src/node/host.ts) in one Node process, each on its own
 * MemoryEngine behind a simulated disk, talking through the simulated network, with node crashes
 * and restarts. Everything runs on the event queue of ../simulator.ts through the async driver
 * (driver.ts), so a seed replays exactly.
 *
 * Placement (options.ts `Placement`): `full` gives every node every data shard; `sharded` gives
 * each node the replicas kvd would create for it, `hostedOf(initialClusterMap(...), nodeId)`: data
 * shards on three nodes each, placed by the ring, and the meta shard. Replicas move at run time
 * (moves.ts drives the real mover), so who holds a shard is what its applied Raft configurations
 * say (configs.ts), not the bootstrap: every view below (leaders, convergence, state digests,
 * placement) follows the newest configuration, or every live active replica of the shard.
 *
 * With `sharded` placement every node process also runs its real Router and ClusterAgent
 * (services.ts: heartbeats, map refresh, marking nodes dead, serve-or-forward-once), and the
 * workload's clients route with the real SDK routing (sdk-path.ts) over a simulated KvService call
 * path. The map is not fixed: `changeShardRecord` rewrites a shard's record in the meta shard at
 * run time (a higher epoch, replicas in a new order), and every router and client must follow.
 *
 * A node slot outlives its processes: the MemoryEngine is the disk, and a crash (power cut) keeps
 * only what MemoryEngine.crash() says survives, kills every timer of the process, fails the disk
 * operations in flight, closes its transport and stops its host and its agent. A restart opens a
 * new NodeHost on the surviving state, with the newest map the node had seen (kvd keeps it on disk).
 */
import {
  NodeId,
  ShardId,
  type Limits,
  type Logger,
  type Random,
  type SeededRandom,
} from '../../../src/common/index.ts'
import { equalHashRanges, rangeIndexOf, type HashRange, type Hasher } from '../../../src/hashing/index.ts'
import { initialClusterMap, metaShardId, type ClusterMap } from '../../../src/cluster/index.ts'
import { decodeShard, encodeShard, metaKeys } from '../../../src/cluster/records.ts'
import {
  ErrorCode,
  deadlineSignal,
  isKvError,
  isKvErrorWithCode,
  type Clock,
} from '../../../src/common/index.ts'
import { NodeHost, everyMemberShards, type HostedShard, type ShardView } from '../../../src/node/host.ts'
import { preferredLeaderOf } from '../../../src/node/leader-balance.ts'
import { GrpcPeerTransport } from '../../../src/node/transport-grpc.ts'
import type { PeerTransport, TransportStats } from '../../../src/node/transport.ts'
import {
  dataRangeAll,
  dataRangeForHashRange,
  decodeDataKey,
  dedupRange,
  KeySpace,
  MemoryEngine,
  RaftKeyKind,
  shardDataRange,
  type KeyRange,
  type WriteBatch,
} from '../../../src/storage/index.ts'
import { hostedOf } from '../../../src/server/kvd.ts'
import { SimClock, SimLogger, hash32, hashBytes, type Simulator } from '../simulator.ts'
import { DelayedEngine, type DiskStats } from './disk.ts'
import { LifeClock, type AsyncDriver } from './driver.ts'
import { HostNet, SimPeerChannel, SimPeerTransport, type SimInbound } from './network.ts'
import { ConfigBook } from './configs.ts'
import type { HostSimOptions } from './options.ts'
import {
  SimRpc,
  emptyRoutingStats,
  simAddress,
  startServices,
  type NodeServices,
  type RoutingStats,
} from './services.ts'

export { simAddress }

/** One process lifetime of a node. */
export interface NodeLife {
  readonly incarnation: number
  readonly clock: LifeClock
  readonly engine: DelayedEngine
  readonly transport: PeerTransport & SimInbound
  /** Undefined while the host is opening. */
  host: NodeHost | undefined
  /** The router and agent of the process (sharded placement), once its host is up. */
  services: NodeServices | undefined
  dead: boolean
}

export interface HostCounters {
  iterations: number
  readies: number
  writes: number
  envelopesDropped: number
}

/**
 * Why a slot runs no process and none may start on it: `joiner` (rebalance.ts: it has not joined
 * the cluster yet), `gone` (it died for good: power-cut and never restarted).
 */
export type Parked = 'joiner' | 'gone'

export class NodeSlot {
  memory: MemoryEngine
  life: NodeLife | null = null
  /** Null: the slot takes part (its process may be down for a while, as a crash leaves it). */
  parked: Parked | null = null
  /** The newest map this node's agent had (the next process starts from it, as kvd's stored map). */
  storedMap: ClusterMap | null = null
  incarnation = 0
  crashes = 0
  readonly disk: DiskStats = { writes: 0, syncs: 0, multiGets: 0, lostInFlight: 0 }
  /** Counters of the processes that already died. */
  readonly pastHost: HostCounters = { iterations: 0, readies: 0, writes: 0, envelopesDropped: 0 }
  readonly pastTransport = { sent: 0, sentBatches: 0, dropped: 0, faultDropped: 0, reconnects: 0 }

  constructor(
    readonly id: NodeId,
    readonly clock: SimClock,
    readonly random: Random,
  ) {
    this.memory = new MemoryEngine()
  }

  get host(): NodeHost | undefined {
    const life = this.life
    return life === null || life.dead ? undefined : life.host
  }
}

/** Group commit as the disks saw it (every batch, decoded by key). */
export interface GroupCommitStats {
  /** Batches that appended Raft entries or applied commands for two or more shards. */
  multiShardBatches: number
  /** Batches that appended two or more entries of one shard (proposals that piled up). */
  multiEntryBatches: number
  /** The most log entries one batch appended. */
  entriesPerBatchMax: number
  /** Batches that appended entries, and the entries they appended. */
  entryBatches: number
  entries: number
}

export interface HostClusterInit {
  readonly options: HostSimOptions
  readonly sim: Simulator
  readonly driver: AsyncDriver
  readonly hasher: Hasher
  readonly random: SeededRandom
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn'
}

export class HostCluster {
  readonly options: HostSimOptions
  readonly sim: Simulator
  readonly driver: AsyncDriver
  readonly hasher: Hasher
  readonly net: HostNet
  readonly slots: NodeSlot[] = []
  readonly members: NodeId[]
  readonly ranges: readonly HashRange[]
  /** The initial cluster map (`sharded` placement), null with `full` placement. */
  readonly map: ClusterMap | null
  /** Every shard the cluster runs: the data shards in id order, then the meta shard if any. */
  readonly shardIds: readonly ShardId[]
  /** The replicas each node creates on its first start. */
  private readonly bootstraps = new Map<NodeId, readonly HostedShard[]>()
  /**
   * The configurations the shards applied (configs.ts): who holds each shard now. Replicas move
   * at run time, so this, not the bootstrap, is the truth every check follows.
   */
  readonly configs: ConfigBook
  /**
   * Every record the harness put in the meta shard per data shard, oldest first (the initial one,
   * then each `changeShardRecord`, whether or not it was acknowledged): what a map read may show.
   */
  readonly shardRecords = new Map<
    ShardId,
    { readonly epoch: number; readonly replicas: readonly NodeId[] }[]
  >()
  /** The highest epoch a PrepareReplica for `node:shard` reached that node with (services.ts). */
  readonly prepared = new Map<string, number>()
  /** Record changes acknowledged by the meta shard. */
  recordChanges = 0
  /** Calls between processes (clients, forwards, the agents' meta calls), and what routing did. */
  readonly routingStats: RoutingStats = emptyRoutingStats()
  readonly rpc: SimRpc
  readonly groupCommit: GroupCommitStats = {
    multiShardBatches: 0,
    multiEntryBatches: 0,
    entriesPerBatchMax: 0,
    entryBatches: 0,
    entries: 0,
  }
  /** The first failure a live process reported (onFatal, a failed open): the run fails with it. */
  failure: { readonly property: string; readonly detail: string } | null = null
  private readonly logger: Logger
  private readonly random: SeededRandom
  private readonly limits: Readonly<Limits>

  constructor(init: HostClusterInit) {
    this.options = init.options
    this.sim = init.sim
    this.driver = init.driver
    this.hasher = init.hasher
    this.random = init.random
    this.limits = init.options.limits
    this.logger = new SimLogger(init.sim, init.logLevel)
    const o = this.options
    this.net = new HostNet(this.sim, this.random.fork('net'), {
      oneWayDelayMsMean: o.oneWayDelayMsMean,
      lossPer10k: o.lossPer10k,
      reorderPer10k: o.reorderPer10k,
      duplicatePer10k: o.duplicatePer10k,
      streamWindowMessages: o.streamWindowMessages,
      breakDetectMsMax: o.breakDetectMsMax,
      snapshotChunkBytes: o.limits.snapshotChunkBytes,
    })
    this.rpc = new SimRpc(this, this.routingStats)
    // Joiners (rebalance.ts) have slots from the start, outside the first map, parked until they join.
    this.members = Array.from({ length: o.nodes + o.joinNodes }, (_, i) => NodeId(i + 1))
    const initialMembers = this.members.slice(0, o.nodes)
    this.ranges = equalHashRanges(o.shardCount)
    if (o.placement === 'sharded') {
      this.map = initialClusterMap(
        {
          clusterId: o.seed.toString(16).padStart(32, '0').slice(-32),
          nodes: initialMembers.map((id) => ({ id, address: simAddress(id), zone: '', weight: 1 })),
          shardCount: o.shardCount,
          replicaCount: o.replicaCount,
          vnodesPerNode: o.vnodesPerNode,
          metaReplicaCount: o.metaReplicaCount,
        },
        this.hasher,
      )
      for (const id of this.members) this.bootstraps.set(id, hostedOf(this.map, id))
      this.shardIds = [...this.map.shards.map((s) => s.shardId), metaShardId]
      for (const s of this.map.shards)
        this.shardRecords.set(s.shardId, [{ epoch: s.epoch, replicas: s.replicas }])
    } else {
      this.map = null
      for (const id of this.members) this.bootstraps.set(id, everyMemberShards(this.members, o.shardCount))
      this.shardIds = this.ranges.map((_, i) => ShardId(i))
    }
    this.configs = new ConfigBook(
      new Map(
        this.shardIds.map((shardId) => [
          shardId,
          this.members.filter((id) => this.bootstraps.get(id)!.some((h) => h.shardId === shardId)),
        ]),
      ),
    )
    for (const id of this.members) {
      const r = this.random.fork(`node-${id}`)
      const drift = o.clockDriftPpmMax === 0 ? 0 : r.int(2 * o.clockDriftPpmMax + 1) - o.clockDriftPpmMax
      const slot = new NodeSlot(id, new SimClock(this.sim, drift, r.int(1_000_000)), r)
      if (id > o.nodes) slot.parked = 'joiner'
      this.slots.push(slot)
    }
  }

  slot(id: NodeId): NodeSlot {
    const s = this.slots[id - 1]
    if (s === undefined) throw new RangeError(`no node ${id}`)
    return s
  }

  hostOf(id: NodeId): NodeHost | undefined {
    return this.slot(id).host
  }

  /** The replicas `id` creates on its first start. */
  bootstrapOf(id: NodeId): readonly HostedShard[] {
    return this.bootstraps.get(id)!
  }

  /** The nodes the newest applied configuration of `shardId` names (voters and learners), in id order. */
  replicasOf(shardId: ShardId): readonly NodeId[] {
    return this.configs.members(shardId)
  }

  holds(id: NodeId, shardId: ShardId): boolean {
    return this.replicasOf(shardId).includes(id)
  }

  /** Whether some configuration of `shardId` ever named `id` (a leader hint or a map may be that old). */
  everHeld(id: NodeId, shardId: ShardId): boolean {
    return this.configs.everHeld(id, shardId)
  }

  /**
   * Notes the configuration every live active replica applied (configs.ts); two configurations at
   * one epoch fail the run. Cheap: status() reads memory only.
   */
  observeConfigs(): void {
    for (const s of this.slots) {
      const h = s.host
      if (h === undefined) continue
      for (const v of h.status()) {
        if (v.state !== 'active' || v.voters.length === 0 || v.epoch === 0) continue
        const conflict = this.configs.note(v.shardId, v)
        if (conflict !== null) return this.fail('config-epoch', `node ${s.id}: ${conflict}`)
      }
    }
  }

  /** The live slots with an active replica of `shardId` (members or not: a removed one may not know yet). */
  activeSlotsOf(shardId: ShardId): NodeSlot[] {
    return this.slots.filter((s) => {
      const h = s.host
      return h !== undefined && this.viewOf(h, shardId)?.state === 'active'
    })
  }

  /** `host`'s view of `shardId` (status() lists the node's own replicas, not every shard). */
  viewOf(host: NodeHost, shardId: ShardId): ShardView | undefined {
    return host.status().find((v) => v.shardId === shardId)
  }

  /** The slots of the nodes holding `shardId`. */
  slotsOf(shardId: ShardId): NodeSlot[] {
    return this.replicasOf(shardId).map((id) => this.slot(id))
  }

  /** The key ranges of `shardId`'s applied state: its user data (a ring slice, or the meta shard's own space). */
  dataRangeOf(shardId: ShardId): KeyRange {
    if (shardId === metaShardId) return shardDataRange(shardId)
    const range = this.ranges[shardId]
    if (range === undefined) throw new RangeError(`no data shard ${shardId}`)
    return dataRangeForHashRange(range.start, range.end)
  }

  /** Nodes down for a while (a parked slot, not joined yet or gone for good, does not count). */
  get downCount(): number {
    return this.slots.filter((s) => s.life === null && s.parked === null).length
  }

  /** The slots that take part now (not parked: joined, and not gone for good). */
  get taking(): NodeSlot[] {
    return this.slots.filter((s) => s.parked === null)
  }

  // ---- lifecycle ----

  /** Opens and starts every node; resolves when all are up (runs the simulation meanwhile). */
  async bootAll(): Promise<void> {
    for (const s of this.slots) this.start(s)
    const up = await this.driver.runFor(5_000, () => this.taking.every((s) => s.host !== undefined))
    if (!up) throw new Error('nodes did not open within 5 s of simulated time')
  }

  /** Starts a process on `slot`'s disk (in the background: opening takes simulated time). */
  start(slot: NodeSlot): void {
    if (slot.life !== null || slot.parked !== null) return
    const o = this.options
    const incarnation = ++slot.incarnation
    const clock = new LifeClock(slot.clock)
    const engine = new DelayedEngine(
      slot.memory,
      this.sim,
      slot.random.fork(`disk-${incarnation}`),
      { fsyncMsMean: o.fsyncMsMean, writeMsMean: o.writeMsMean, readMsMean: o.readMsMean },
      slot.disk,
      (batch) => this.noteBatch(batch),
      o.plantedFault === 'fsync-lies',
    )
    const logger = this.logger.child({ n: slot.id })
    const transport: PeerTransport & SimInbound =
      o.transport === 'grpc'
        ? new GrpcPeerTransport(
            { nodeId: slot.id, limits: this.limits },
            {
              clock,
              random: slot.random.fork(`transport-${incarnation}`),
              logger,
              channelFactory: ({ peer }) => new SimPeerChannel(this.net, slot.id, peer),
            },
          )
        : new SimPeerTransport(slot.id, this.net, clock)
    const life: NodeLife = {
      incarnation,
      clock,
      engine,
      transport,
      host: undefined,
      services: undefined,
      dead: false,
    }
    slot.life = life
    this.net.register(slot.id, incarnation, transport)
    this.sim.record(`node ${slot.id} starts (life ${incarnation})`)
    void this.open(slot, life, logger)
  }

  private async open(slot: NodeSlot, life: NodeLife, logger: Logger): Promise<void> {
    const o = this.options
    let host: NodeHost
    try {
      host = await NodeHost.open(
        {
          nodeId: slot.id,
          bootstrap: this.bootstrapOf(slot.id),
          shardCount: o.shardCount,
          tickMs: o.tickMs,
          leaseReads: o.leaseReads,
        },
        {
          engine: life.engine,
          hasher: this.hasher,
          clock: life.clock,
          random: slot.random.fork(`host-${life.incarnation}`),
          logger,
          limits: this.limits,
          transport: life.transport,
          onFatal: (err) => {
            if (!life.dead)
              this.fail('fatal', `node ${slot.id} (life ${life.incarnation}) stopped: ${describeErr(err)}`)
          },
        },
      )
    } catch (err) {
      // A crash while opening fails the open; anything else is a bug.
      if (!life.dead) this.fail('open', `node ${slot.id} failed to open: ${describeErr(err)}`)
      return
    }
    if (life.dead) {
      await host.close().catch(() => {})
      return
    }
    life.host = host
    if (life.transport instanceof GrpcPeerTransport)
      life.transport.setPeers(new Map(this.members.map((id) => [id, `sim-node-${id}`])))
    host.start()
    if (this.map !== null)
      life.services = startServices({
        nodeId: slot.id,
        host,
        clock: life.clock,
        logger,
        hasher: this.hasher,
        rpc: this.rpc,
        initialMap: slot.storedMap ?? this.map,
        limits: this.limits,
        timing: {
          heartbeatMs: o.heartbeatMs,
          nodeDeadAfterHeartbeats: agentDeadAfterHeartbeats,
          metaCallMs: agentMetaCallMs,
          movePollMs: 2 * o.heartbeatMs,
          moveStallMsMax: agentMoveStallMsMax,
          // As kvd: the executor keeps up to rebalanceMovesMax moves running; the mover steps them all.
          movesConcurrentMax: o.rebalance
            ? Math.max(this.limits.movesConcurrentMax, this.limits.rebalanceMovesMax)
            : this.limits.movesConcurrentMax,
          ...(o.deadAfterMs > 0 ? { deadAfterMs: o.deadAfterMs } : {}),
          ...(o.rebalance ? { rebalance: { pollMs: 2 * o.heartbeatMs } } : {}),
        },
        onMap: (map) => {
          if (!life.dead) slot.storedMap = map
        },
      })
    this.sim.record(`node ${slot.id} up (life ${life.incarnation})`)
  }

  /**
   * Power cut on `slot`: its timers die, disk operations in flight fail, and what survives is what
   * MemoryEngine.crash keeps (`loseUnsynced`: the writes since the last fsync are gone).
   */
  crash(slot: NodeSlot, loseUnsynced: boolean, atEnd = false): void {
    const life = slot.life
    if (life === null) return
    life.dead = true
    slot.life = null
    if (!atEnd) slot.crashes++
    this.net.unregister(slot.id)
    life.clock.kill()
    life.engine.crash()
    slot.memory = slot.memory.crash({ loseUnsynced })
    this.sim.record(`node ${slot.id} crashes (life ${life.incarnation}, loseUnsynced=${loseUnsynced})`)
    // Its agent stops with it (the timers are dead already; a round in flight ends with the host).
    if (life.services !== undefined) void life.services.agent.stop().catch(() => {})
    const host = life.host
    if (host !== undefined) {
      const c = host.counters()
      slot.pastHost.iterations += c.iterations
      slot.pastHost.readies += c.readies
      slot.pastHost.writes += c.writes
      slot.pastHost.envelopesDropped += c.envelopesDropped
      // Its waiters fail (the clients see an unknown outcome); its loop is already failing.
      void host.close().catch(() => {})
    }
    const t = life.transport.stats()
    slot.pastTransport.sent += t.sent
    slot.pastTransport.sentBatches += t.sentBatches
    slot.pastTransport.dropped += t.dropped
    slot.pastTransport.faultDropped += t.faultDropped
    slot.pastTransport.reconnects += t.reconnects
    void life.transport.close()
  }

  /** Stops every process at the end of a run (as crashes: nothing may wait on simulated time). */
  async shutdown(): Promise<void> {
    const hosts: NodeHost[] = []
    for (const s of this.slots) {
      const h = s.life?.host
      if (h !== undefined) hosts.push(h)
      this.crash(s, false, true)
    }
    await this.driver.until(Promise.allSettled(hosts.map((h) => h.close())), 60_000, 'closing the hosts')
  }

  /**
   * Rewrites data shard `shardId`'s record in the meta shard, as a move would (compare-and-set,
   * through the meta leader): the epoch rises by one and the replicas rotate by one place (the same
   * nodes, another preferred leader: the Raft configuration does not change; the move suite leaves
   * this nemesis out, since a record epoch ahead of the shard's stops the mover's record updates).
   * True when the meta shard acknowledged it; false when no meta leader answered in time.
   */
  async changeShardRecord(shardId: ShardId, clock: Clock): Promise<boolean> {
    const leader = this.leaderOf(metaShardId)
    const replica = leader?.replica(metaShardId)
    if (replica === undefined) return false
    const key = metaKeys.shard(shardId)
    const d = deadlineSignal(clock, 1_000)
    try {
      for (let attempt = 0; attempt < 4; attempt++) {
        const [raw] = (await replica.getMany([key], { level: 'linearizable', signal: d.signal })).found
        if (raw === null || raw === undefined) return false
        const current = decodeShard(raw.value)
        const next = {
          ...current,
          replicas: [...current.replicas.slice(1), ...current.replicas.slice(0, 1)],
          epoch: current.epoch + 1,
        }
        this.shardRecords.get(shardId)?.push({ epoch: next.epoch, replicas: next.replicas })
        try {
          await replica.batch(
            [{ kind: 'put', key, value: encodeShard(next), expectedVersion: raw.version }],
            {
              level: 'majority',
              signal: d.signal,
            },
          )
        } catch (err) {
          if (isKvErrorWithCode(err, ErrorCode.VersionMismatch)) continue
          throw err
        }
        this.recordChanges++
        this.sim.record(
          `record change: shard ${shardId} epoch ${next.epoch} replicas ${next.replicas.join(',')}`,
        )
        return true
      }
      return false
    } catch (err) {
      if (isKvError(err)) return false
      throw err
    } finally {
      d.dispose()
    }
  }

  fail(property: string, detail: string): void {
    if (this.failure !== null) return
    this.failure = { property, detail }
    this.sim.record(`FAILURE ${property}: ${detail}`)
  }

  // ---- views ----

  /** The live host that leads `shardId` at the highest term, if any. */
  leaderOf(shardId: ShardId): NodeHost | undefined {
    let best: { host: NodeHost; term: number } | undefined
    for (const s of this.slots) {
      const h = s.host
      if (h === undefined) continue
      const v = this.viewOf(h, shardId)
      if (v?.state === 'active' && v.role === 'leader' && (best === undefined || v.term > best.term))
        best = { host: h, term: v.term }
    }
    return best?.host
  }

  /**
   * Shards whose leader is not the voter leader balancing prefers (leader-balance.ts), as
   * `shard s: led by a, prefers b` lines; shards without a leader or changing replicas are left out.
   */
  misled(): string[] {
    const out: string[] = []
    for (const shardId of this.shardIds) {
      const leader = this.leaderOf(shardId)
      const view = leader === undefined ? undefined : this.viewOf(leader, shardId)
      if (leader === undefined || view === undefined) continue
      const preferred = preferredLeaderOf(shardId, view)
      if (preferred !== undefined && preferred !== leader.nodeId)
        out.push(`shard ${shardId}: led by ${leader.nodeId}, prefers ${preferred}`)
    }
    return out
  }

  /** The shard of `key` (the host's own layout: equal hash ranges). */
  shardOfKey(key: Uint8Array): ShardId {
    return ShardId(rangeIndexOf(this.ranges, this.hasher.hash64(key)))
  }

  /** Host counters over every process so far (group commit: writes vs readies). */
  hostCounters(): HostCounters {
    const sum: HostCounters = { iterations: 0, readies: 0, writes: 0, envelopesDropped: 0 }
    for (const s of this.slots) {
      sum.iterations += s.pastHost.iterations
      sum.readies += s.pastHost.readies
      sum.writes += s.pastHost.writes
      sum.envelopesDropped += s.pastHost.envelopesDropped
      const c = s.life?.host?.counters()
      if (c === undefined) continue
      sum.iterations += c.iterations
      sum.readies += c.readies
      sum.writes += c.writes
      sum.envelopesDropped += c.envelopesDropped
    }
    return sum
  }

  /** Disk counters over every process so far. */
  diskCounters(): DiskStats {
    const sum: DiskStats = { writes: 0, syncs: 0, multiGets: 0, lostInFlight: 0 }
    for (const s of this.slots) {
      sum.writes += s.disk.writes
      sum.syncs += s.disk.syncs
      sum.multiGets += s.disk.multiGets
      sum.lostInFlight += s.disk.lostInFlight
    }
    return sum
  }

  /** Transport counters over every process so far (batching: envelopes vs batches). */
  transportCounters(): {
    sent: number
    sentBatches: number
    dropped: number
    faultDropped: number
    reconnects: number
  } {
    const sum = { sent: 0, sentBatches: 0, dropped: 0, faultDropped: 0, reconnects: 0 }
    for (const s of this.slots) {
      const past = s.pastTransport
      const now: Partial<TransportStats> = s.life?.transport.stats() ?? {}
      sum.sent += past.sent + (now.sent ?? 0)
      sum.sentBatches += past.sentBatches + (now.sentBatches ?? 0)
      sum.dropped += past.dropped + (now.dropped ?? 0)
      sum.faultDropped += past.faultDropped + (now.faultDropped ?? 0)
      sum.reconnects += past.reconnects + (now.reconnects ?? 0)
    }
    return sum
  }

  /**
   * Whether every shard converged: all nodes up, one leader, every replica applied up to the
   * highest commit index, and the applied state (user data and dedup table) is byte-identical.
   * Each shard compares the replicas its newest configuration names (no learner, not joint, every
   * replica at that epoch); no node may still hold a replica the shards dropped, or be dropping one.
   */
  async convergence(): Promise<{ readonly converged: boolean; readonly detail: string }> {
    const parts: string[] = []
    let converged = true
    if (this.taking.some((s) => s.host === undefined)) return { converged: false, detail: 'a node is down' }
    this.observeConfigs()
    for (const s of this.taking) {
      // Replicas the shards no longer have are gone, their data dropped (the agents collect them).
      const stale = s
        .host!.status()
        .filter((v) => v.state === 'removing' || (v.state !== 'tombstone' && !this.holds(s.id, v.shardId)))
      if (stale.length > 0) {
        converged = false
        parts.push(`node ${s.id} still has ${stale.map((v) => `shard ${v.shardId} ${v.state}`).join(', ')}`)
      }
    }
    for (const shardId of this.shardIds) {
      const leader = this.leaderOf(shardId)
      const slots = this.slotsOf(shardId)
      // A node gone for good stays named until a repair replaces its replica.
      const gone = slots.filter((s) => s.host === undefined)
      if (gone.length > 0) {
        converged = false
        parts.push(`shard ${shardId}: still on ${gone.map((s) => `n${s.id}`).join('/')}, which is down`)
        continue
      }
      const views = slots.map((s) => this.viewOf(s.host!, shardId))
      if (views.some((v) => v === undefined)) {
        converged = false
        parts.push(`shard ${shardId}: a replica is missing on ${slots.map((s) => `n${s.id}`).join('/')}`)
        continue
      }
      const commit = Math.max(...views.map((v) => v!.commitIndex))
      const digests: string[] = []
      for (const s of slots) digests.push(await this.stateDigest(s, shardId))
      const applied = views.map((v) => v!.appliedIndex)
      const config = this.configs.newest(shardId)
      const same =
        new Set(digests).size === 1 &&
        applied.every((a) => a === commit) &&
        views.every((v) => v!.state === 'active' && v!.epoch === config.epoch) &&
        config.votersOutgoing.length === 0 &&
        config.learners.length === 0
      if (leader === undefined || !same) converged = false
      const on = this.map === null ? '' : ` on=${slots.map((s) => s.id).join('/')}`
      parts.push(
        `shard ${shardId}:${on} leader=${leader?.nodeId ?? 'none'} commit=${commit} applied=${applied.join('/')} state=${digests.join('/')}`,
      )
    }
    return { converged, detail: parts.join('; ') }
  }

  /**
   * State machine safety, checked while the run goes on: replicas of a shard at the same applied
   * index hold byte-identical applied state (the apply is deterministic). A divergence is a safety
   * bug at once, whatever happens later.
   */
  async checkSameIndexSameState(): Promise<void> {
    this.observeConfigs()
    for (const shardId of this.shardIds) {
      if (this.failure !== null) return
      const byIndex = new Map<number, { id: NodeId; digest: string }[]>()
      for (const s of this.activeSlotsOf(shardId)) {
        const view = this.viewOf(s.host!, shardId)!
        const applied = view.appliedIndex
        let group = byIndex.get(applied)
        if (group === undefined) byIndex.set(applied, (group = []))
        group.push({ id: s.id, digest: await this.stateDigest(s, shardId) })
      }
      for (const [index, group] of byIndex) {
        if (new Set(group.map((g) => g.digest)).size > 1)
          this.fail(
            'state-machine-safety',
            `shard ${shardId}: replicas at applied index ${index} differ: ${group.map((g) => `n${g.id}=${g.digest}`).join(' ')}`,
          )
      }
    }
  }

  /**
   * Every live node holds the replicas its shards' newest configurations name and no others, and its user data lies only in
   * the ring slices of the data shards it holds (a write routed to a node without the key's shard,
   * or a snapshot of another shard's range, would leave data there).
   */
  async checkPlacement(): Promise<void> {
    for (const s of this.slots) {
      const host = s.host
      if (host === undefined || this.failure !== null) continue
      const held = host.hostedShards.map((h) => h.shardId).sort((a, b) => a - b)
      const placed = this.shardIds.filter((shardId) => this.holds(s.id, shardId)).sort((a, b) => a - b)
      if (held.join(',') !== placed.join(','))
        return this.fail(
          'placement',
          `node ${s.id} holds shards ${held.join(',')}, placed ${placed.join(',')}`,
        )
      for await (const [k] of s.memory.iterate(dataRangeAll())) {
        const shardId = ShardId(rangeIndexOf(this.ranges, decodeDataKey(k).hash))
        if (!this.holds(s.id, shardId))
          return this.fail(
            'placement',
            `node ${s.id} stores a key of shard ${shardId}, which is placed on ${this.replicasOf(shardId).join(',')}`,
          )
      }
    }
  }

  /** A digest of one replica's applied state of `shardId`: its user data and dedup records. */
  async stateDigest(slot: NodeSlot, shardId: ShardId): Promise<string> {
    const host = slot.host
    if (host === undefined) return 'down'
    let h = 0x811c9dc5
    let n = 0
    for (const r of [this.dataRangeOf(shardId), dedupRange(shardId)]) {
      for await (const [k, v] of slot.memory.iterate(r)) {
        h = hashBytes(v, hashBytes(k, h))
        n++
      }
    }
    return `${n}:${hash32(String(h)).toString(16)}`
  }

  // ---- group commit ----

  private noteBatch(batch: WriteBatch): void {
    const entriesByShard = new Map<number, number>()
    const shards = new Set<number>()
    let entries = 0
    for (const op of batch.ops()) {
      if (op.kind !== 'put') continue
      const k = op.key
      if (k[0] !== KeySpace.Raft || k.length < 6) continue
      const shard = ((k[1]! << 24) | (k[2]! << 16) | (k[3]! << 8) | k[4]!) >>> 0
      if (k[5] === RaftKeyKind.LogEntry) {
        entries++
        entriesByShard.set(shard, (entriesByShard.get(shard) ?? 0) + 1)
        shards.add(shard)
      } else if (k[5] === RaftKeyKind.AppliedIndex) shards.add(shard)
    }
    const g = this.groupCommit
    if (shards.size >= 2) g.multiShardBatches++
    if ([...entriesByShard.values()].some((n) => n >= 2)) g.multiEntryBatches++
    if (entries > 0) {
      g.entryBatches++
      g.entries += entries
      g.entriesPerBatchMax = Math.max(g.entriesPerBatchMax, entries)
    }
  }
}

/**
 * Missed heartbeats before the meta leader marks a node dead (kvd waits 10; fewer here, so that a
 * crash of a second or two gets a node marked dead and routed around, and marked active again).
 */
const agentDeadAfterHeartbeats = 5
/** The budget of one agent call to the meta shard. */
const agentMetaCallMs = 1_000
/** How long a move may make no progress before the mover rolls it back. */
const agentMoveStallMsMax = 10_000

export function describeErr(err: unknown): string {
  if (err instanceof Error)
    return `${err.name}: ${err.message}${'code' in err ? ` (${String(err.code)})` : ''}`
  return String(err)
}
