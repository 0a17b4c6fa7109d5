/**
 * The meta workload of the sharded host simulator: clients of the meta shard running the
 * control plane's transactions (src/cluster/meta-store.ts) through the real NodeHost, as the
 * cluster agent and the admin API do: `MetaStore` over `host.replica(metaShardId)` on the node the
 * client believes leads the meta shard (NOT_LEADER hints, else any meta replica).
 *
 * - `bootstrap(map)` with the initial map until one call returns (two clients may race);
 * - `register(address)` of a small pool of addresses: the initial nodes' (the answer must be their
 *   id) and a few new ones, often the same address from two clients at once and again after an
 *   attempt with an unknown outcome (a crash, a lost answer): idempotency by address must hand
 *   out one id per address, whatever happened;
 * - `heartbeat(nodeId, host.leaderships(), now)` for registered nodes (leader hints move);
 * - nodes that are down (crashed, or never started) marked dead (MetaStore.setNodeStates) now and then (states move; heartbeats bring nodes back);
 * - `read()`: checked on the spot (`checkMap`).
 *
 * Checks: every map read (and the last one, on the meta leader after healing) is well formed: the
 * cluster record is the initial one, each shard record is one the harness wrote (the initial one,
 * or a run-time change: a higher epoch, replicas in another order; leader hints move freely),
 * leader hints name a replica, every address has exactly one id, ids are distinct and contiguous
 * from 1, states are valid; a read never goes back (node count, leader terms and epochs only grow
 * between reads that do not overlap); every acknowledged registration's id is the one in the map; at most one bootstrap
 * wrote the map. Failures name the property `meta`.
 */
import { MetaStore, metaShardId, nodeStates, type ClusterMap } from '../../../src/cluster/index.ts'
import {
  ErrorCode,
  deadlineSignal,
  errorCodeTable,
  isKvError,
  type Clock,
  type NodeId,
  type Random,
  type ShardId,
} from '../../../src/common/index.ts'
import type { NodeHost } from '../../../src/node/host.ts'
import type { RaftReplica } from '../../../src/shard/index.ts'
import { describeErr, simAddress, type HostCluster } from './cluster.ts'
import type { ConfigBook } from './configs.ts'

export interface MetaWorkloadOptions {
  readonly metaClients: number
  readonly metaAddresses: number
  readonly thinkMsMax: number
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
}

/** Attempts per meta operation, within its deadline. */
const attemptsMax = 8
const backoffMsMax = 40

type MetaOp = 'bootstrap' | 'register' | 'heartbeat' | 'read' | 'mark-dead'
const opWeights: readonly (readonly [MetaOp, number])[] = [
  ['register', 4],
  ['heartbeat', 4],
  ['read', 2],
  ['mark-dead', 1],
]

type Attempted<T> =
  | {
      readonly ok: true
      readonly value: T
      readonly node: NodeId
      /** An earlier attempt of this operation ended with an unknown outcome (it may have applied). */
      readonly unknownBefore: boolean
    }
  | { readonly ok: false; readonly unknown: boolean }

export interface MetaStats {
  ok: number
  failed: number
  bootstraps: number
  registers: number
  /** Registrations acknowledged for an address some earlier attempt left with an unknown outcome. */
  registersAfterUnknown: number
  heartbeats: number
  reads: number
  markDeads: number
}

export class MetaWorkload {
  /** The addresses the clients register: the initial nodes' and `metaAddresses` new ones. */
  readonly addresses: readonly string[]
  /** Some bootstrap returned: the map is in the meta shard from then on. */
  bootstrapAckedMs: number | null = null
  /** Bootstrap calls that answered "I wrote the map" (at most one may). */
  bootstrapWrote = 0
  /** Addresses some register was sent for. */
  readonly attempted = new Set<string>()
  /** Addresses some register attempt left with an unknown outcome. */
  readonly unknown = new Set<string>()
  /** The id acknowledged per address, and when it was first acknowledged. */
  readonly registered = new Map<string, { readonly id: NodeId; readonly returnMs: number }>()
  readonly stats: MetaStats = {
    ok: 0,
    failed: 0,
    bootstraps: 0,
    registers: 0,
    registersAfterUnknown: 0,
    heartbeats: 0,
    reads: 0,
    markDeads: 0,
  }
  /** Completed reads: what a read that starts later must see at least. */
  private readonly readLog: MetaRead[] = []
  private readonly clients: MetaClient[] = []
  private readonly initial: ClusterMap

  constructor(
    readonly cluster: HostCluster,
    clock: Clock,
    random: Random,
    readonly options: MetaWorkloadOptions,
  ) {
    if (cluster.map === null) throw new RangeError('the meta workload needs the sharded placement')
    this.initial = cluster.map
    this.addresses = [
      ...cluster.members.map((id) => simAddress(id)),
      ...Array.from({ length: options.metaAddresses }, (_, i) => `sim-new-${i + 1}`),
    ]
    for (let i = 1; i <= options.metaClients; i++)
      this.clients.push(new MetaClient(i, this, clock, random.fork(`m${i}`)))
  }

  get map(): ClusterMap {
    return this.initial
  }

  get idle(): boolean {
    return this.clients.every((c) => c.idle)
  }

  start(): void {
    for (const c of this.clients) c.start()
  }

  /**
   * Starts a registration at once on an idle meta client (the nemesis then crashes the meta
   * leader under it: a control-plane transaction in flight when its leader dies, whose retry on
   * the next leader must answer the first id). False when every client is busy or stopped.
   */
  registerNow(): boolean {
    return this.clients.some((c) => c.registerNow())
  }

  stop(): void {
    for (const c of this.clients) c.stop()
  }

  // ---- what the clients saw ----

  noteBootstrap(wrote: boolean, by: string): void {
    this.stats.bootstraps++
    this.bootstrapAckedMs ??= this.cluster.sim.nowMs
    if (wrote) this.bootstrapWrote++
    this.trace(`${by} bootstrap -> ${wrote ? 'wrote the map' : 'already there'}`)
    if (this.bootstrapWrote > 1) this.cluster.fail('meta', `${this.bootstrapWrote} bootstraps wrote the map`)
  }

  noteRegistered(address: string, id: NodeId, recordAddress: string, by: string): void {
    this.stats.registers++
    if (this.unknown.has(address)) this.stats.registersAfterUnknown++
    this.trace(
      `${by} register ${address} -> n${id}${this.unknown.has(address) ? ' (after an unknown outcome)' : ''}`,
    )
    if (recordAddress !== address)
      return this.cluster.fail('meta', `register ${address} answered the record of ${recordAddress} (n${id})`)
    const initial = [...this.initial.nodes.values()].find((n) => n.address === address)
    if (initial !== undefined && initial.id !== id)
      return this.cluster.fail(
        'meta',
        `register ${address} answered n${id}; the initial map gave it n${initial.id}`,
      )
    const before = this.registered.get(address)
    if (before !== undefined && before.id !== id)
      return this.cluster.fail(
        'meta',
        `register ${address} answered n${id}, after n${before.id} was acknowledged for it (not exactly once)`,
      )
    if (before === undefined) this.registered.set(address, { id, returnMs: this.cluster.sim.nowMs })
  }

  /** Ids a heartbeat may name: the initial nodes and every acknowledged registration. */
  registeredIds(): NodeId[] {
    const ids = new Set<NodeId>(this.initial.nodes.keys())
    for (const r of this.registered.values()) ids.add(r.id)
    return [...ids].sort((a, b) => a - b)
  }

  /** Checks one map read that was called at `callMs`: a description of the first problem, or null. */
  checkMap(map: ClusterMap | undefined, callMs: number): string | null {
    // A record a move wrote may name a configuration applied since the last sample.
    this.cluster.observeConfigs()
    return checkMetaMap(
      {
        initial: this.initial,
        addresses: this.addresses,
        bootstrapAckedMs: this.bootstrapAckedMs,
        registered: this.registered,
        reads: this.readLog,
        records: this.cluster.shardRecords,
        configs: this.cluster.configs,
      },
      map,
      callMs,
    )
  }

  noteRead(map: ClusterMap | undefined, callMs: number, by: string): void {
    this.stats.reads++
    const problem = this.checkMap(map, callMs)
    if (problem !== null) return this.cluster.fail('meta', `${by} read: ${problem}`)
    if (map === undefined) return
    this.readLog.push({
      returnMs: this.cluster.sim.nowMs,
      nodes: map.nodes.size,
      terms: new Map([...map.shards, map.meta].map((s) => [s.shardId, s.leaderTerm])),
      epochs: new Map(map.shards.map((s) => [s.shardId, s.epoch])),
    })
    const states = [...map.nodes.values()].map((n) => `n${n.id}:${n.state}`).join(' ')
    this.trace(`${by} read -> ${map.nodes.size} nodes (${states})`)
  }

  // ---- after the clients stopped ----

  /**
   * After healing: through the meta leader, bootstrap if no bootstrap was acknowledged, and
   * register again every address whose registration was never acknowledged (an attempt that may
   * have applied must now answer its first id). Returns a problem, or null.
   */
  async finish(clock: Clock, deadlineMs: number): Promise<string | null> {
    const c = this.cluster
    const until = c.sim.nowMs + deadlineMs
    const pending = (): string[] =>
      this.addresses.filter((a) => this.attempted.has(a) && !this.registered.has(a))
    while (c.sim.nowMs < until && c.failure === null) {
      if (this.bootstrapAckedMs !== null && pending().length === 0) return null
      const leader = c.leaderOf(metaShardId)
      if (leader !== undefined) {
        const d = deadlineSignal(clock, 1_000)
        try {
          const store = new MetaStore(metaReplicaOf(c, leader), d.signal)
          if (this.bootstrapAckedMs === null)
            this.noteBootstrap(
              await c.driver.until(store.bootstrap(this.initial), 2_000, 'final bootstrap'),
              'final',
            )
          for (const address of pending()) {
            const r = await c.driver.until(
              store.register(address, '', 1),
              2_000,
              `final register of ${address}`,
            )
            this.noteRegistered(address, r.id, r.address, 'final')
          }
        } catch (err) {
          if (!isKvError(err)) throw err
        } finally {
          d.dispose()
        }
      }
      await c.driver.runFor(20)
    }
    if (c.failure !== null) return null
    return `the meta shard did not finish: bootstrapped=${this.bootstrapAckedMs !== null} pending=${pending().join(',')}`
  }

  /** The final check, on the converged meta shard: the map, through its leader. */
  async checkFinal(clock: Clock, deadlineMs: number): Promise<void> {
    const c = this.cluster
    const until = c.sim.nowMs + deadlineMs
    while (c.sim.nowMs < until && c.failure === null) {
      const leader = c.leaderOf(metaShardId)
      if (leader !== undefined) {
        const callMs = c.sim.nowMs
        const d = deadlineSignal(clock, 1_000)
        try {
          const map = await c.driver.until(
            new MetaStore(metaReplicaOf(c, leader), d.signal).read(),
            2_000,
            'final meta read',
          )
          if (map === undefined) return c.fail('meta', 'the final read found no map')
          this.noteRead(map, callMs, 'final')
          if (c.failure !== null) return
          const missing = this.addresses.filter((a) => this.attempted.has(a) && !this.registered.has(a))
          if (missing.length > 0)
            return c.fail('meta', `registrations never acknowledged: ${missing.join(',')}`)
          const expected = new Set([...this.initial.nodes.values()].map((n) => n.address))
          for (const a of this.attempted) expected.add(a)
          if (map.nodes.size !== expected.size)
            return c.fail(
              'meta',
              `the map has ${map.nodes.size} nodes: ${[...map.nodes.values()].map((n) => `n${n.id}=${n.address}`).join(' ')}; expected ${[...expected].join(',')}`,
            )
          c.sim.record(
            `meta final: ${[...map.nodes.values()].map((n) => `n${n.id}=${n.address}:${n.state}`).join(' ')} hints=${map.shards.map((s) => s.leaderHint).join(',')}`,
          )
          return
        } catch (err) {
          if (!isKvError(err)) throw err
        } finally {
          d.dispose()
        }
      }
      await c.driver.runFor(20)
    }
    if (c.failure === null) c.fail('liveness', 'the final meta read found no leader answering')
  }

  trace(line: string): void {
    this.cluster.sim.record(`meta ${line}`)
  }
}

/** A completed map read: what a read that starts after `returnMs` must see at least. */
export interface MetaRead {
  readonly returnMs: number
  readonly nodes: number
  readonly terms: ReadonlyMap<ShardId, number>
  readonly epochs: ReadonlyMap<ShardId, number>
}

/** What the meta clients know when a map read returns. */
export interface MetaKnowledge {
  /** The map the cluster was created with. */
  readonly initial: ClusterMap
  /** Every address any client registers. */
  readonly addresses: readonly string[]
  readonly bootstrapAckedMs: number | null
  /** The id acknowledged per address, and when. */
  readonly registered: ReadonlyMap<string, { readonly id: NodeId; readonly returnMs: number }>
  readonly reads: readonly MetaRead[]
  /** Every record the harness put in the meta shard per data shard (HostCluster.shardRecords). */
  readonly records: ReadonlyMap<
    ShardId,
    readonly { readonly epoch: number; readonly replicas: readonly NodeId[] }[]
  >
  /**
   * The configurations the shards applied (configs.ts): a move's cleanup writes a record naming the
   * voters of the configuration at its epoch (MetaStore.followShard), which the harness did not write.
   */
  readonly configs?: ConfigBook
}

function sameNodes(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id))
}

/**
 * Checks one map read (linearizable, on the meta leader) that was called at `callMs`. Returns a
 * description of the first problem, or null.
 */
export function checkMetaMap(k: MetaKnowledge, map: ClusterMap | undefined, callMs: number): string | null {
  if (map === undefined)
    return k.bootstrapAckedMs !== null && k.bootstrapAckedMs < callMs
      ? 'the map is gone after a bootstrap was acknowledged'
      : null
  const init = k.initial
  if (JSON.stringify(map.cluster) !== JSON.stringify(init.cluster))
    return `cluster record ${JSON.stringify(map.cluster)}, expected ${JSON.stringify(init.cluster)}`
  if (map.shards.length !== init.shards.length)
    return `${map.shards.length} shard records, expected ${init.shards.length}`
  for (const [i, s] of [...map.shards, map.meta].entries()) {
    const want = i < init.shards.length ? init.shards[i]! : init.meta
    const written = i < init.shards.length ? (k.records.get(s.shardId) ?? []) : [init.meta]
    const applied = i < init.shards.length ? k.configs?.at(s.shardId, s.epoch) : undefined
    const known =
      written.some((r) => r.epoch === s.epoch && r.replicas.join(',') === s.replicas.join(',')) ||
      (applied !== undefined && sameNodes(applied.voters, s.replicas))
    if (s.shardId !== want.shardId || s.hashStart !== want.hashStart || s.hashEnd !== want.hashEnd || !known)
      return `shard ${s.shardId} record changed: replicas ${s.replicas.join(',')} epoch ${s.epoch}, which the harness never wrote (initially replicas ${want.replicas.join(',')} epoch ${want.epoch})`
    if (s.leaderHint !== 0 && !s.replicas.includes(s.leaderHint as NodeId))
      return `shard ${s.shardId}: leader hint n${s.leaderHint} is not a replica (${s.replicas.join(',')})`
  }
  const nodes = [...map.nodes.values()]
  const ids = nodes.map((n) => n.id).sort((a, b) => a - b)
  if (ids.some((id, i) => id !== i + 1)) return `node ids are not 1..${ids.length}: ${ids.join(',')}`
  const byAddress = new Map<string, NodeId>()
  for (const n of nodes) {
    const other = byAddress.get(n.address)
    if (other !== undefined) return `address ${n.address} has two ids: n${other} and n${n.id}`
    byAddress.set(n.address, n.id)
    if (!k.addresses.includes(n.address)) return `n${n.id} has an address nobody registered: ${n.address}`
    if (!nodeStates.includes(n.state)) return `n${n.id} is in state ${String(n.state)}`
  }
  for (const n of init.nodes.values())
    if (byAddress.get(n.address) !== n.id) return `initial node n${n.id} (${n.address}) is not in the map`
  for (const [address, r] of k.registered) {
    const id = byAddress.get(address)
    if (id === undefined ? r.returnMs < callMs : id !== r.id)
      return `register ${address} was acknowledged as n${r.id}; the map has ${id === undefined ? 'none' : `n${id}`}`
  }
  // Linearizable reads that do not overlap never go back.
  for (const earlier of k.reads) {
    if (earlier.returnMs >= callMs) continue
    if (nodes.length < earlier.nodes) return `${nodes.length} nodes, after a read that saw ${earlier.nodes}`
    for (const s of [...map.shards, map.meta]) {
      const term = earlier.terms.get(s.shardId) ?? 0
      if (s.leaderTerm < term)
        return `shard ${s.shardId}: leader term ${s.leaderTerm}, after a read that saw ${term}`
      const epoch = earlier.epochs.get(s.shardId) ?? 0
      if (s.epoch < epoch) return `shard ${s.shardId}: epoch ${s.epoch}, after a read that saw ${epoch}`
    }
  }
  return null
}

/** `host`'s replica of the meta shard; a host the placement put the meta shard on must have one. */
function metaReplicaOf(cluster: HostCluster, host: NodeHost): RaftReplica {
  const r = host.replica(metaShardId)
  if (r === undefined) {
    const detail = `node ${host.nodeId} has no meta replica (placed on ${cluster.replicasOf(metaShardId).join(',')})`
    cluster.fail('placement', detail)
    throw new Error(detail)
  }
  return r
}

class MetaClient {
  private running = false
  private busy = false
  private hint: NodeId | null = null
  /** An address whose registration ended with an unknown outcome: registered again next. */
  private pending: string | null = null
  /** The next operation, when the nemesis asked for one (registerNow). */
  private forced: MetaOp | null = null
  private readonly name: string

  constructor(
    readonly id: number,
    private readonly w: MetaWorkload,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    this.name = `m${id}`
  }

  get idle(): boolean {
    return !this.busy
  }

  start(): void {
    this.running = true
    this.next()
  }

  stop(): void {
    this.running = false
  }

  /** Runs a registration now when idle (see MetaWorkload.registerNow). */
  registerNow(): boolean {
    if (!this.running || this.busy || this.w.bootstrapAckedMs === null) return false
    this.forced = 'register'
    this.runNow()
    return true
  }

  private next(): void {
    if (!this.running) return
    this.w.cluster.sim.schedule(this.random.int(4 * this.w.options.thinkMsMax + 1), () => {
      if (!this.running || this.busy) return
      this.runNow()
    })
  }

  private runNow(): void {
    this.busy = true
    this.runOne().then(
      () => {
        this.busy = false
        this.next()
      },
      (err: unknown) => {
        this.busy = false
        this.w.cluster.fail('meta', `${this.name}: unexpected error ${describeErr(err)}`)
      },
    )
  }

  private pickOp(): MetaOp {
    if (this.w.bootstrapAckedMs === null) return 'bootstrap'
    if (this.pending !== null) return 'register'
    if (this.forced !== null) {
      const op = this.forced
      this.forced = null
      return op
    }
    let r = this.random.int(opWeights.reduce((s, [, n]) => s + n, 0))
    for (const [op, n] of opWeights) {
      if (r < n) return op
      r -= n
    }
    return 'read'
  }

  private async runOne(): Promise<void> {
    const w = this.w
    const c = w.cluster
    switch (this.pickOp()) {
      case 'bootstrap': {
        const r = await this.attempts((store) => store.bootstrap(w.map))
        if (r.ok) w.noteBootstrap(r.value, this.name)
        else this.failed('bootstrap', r.unknown)
        return
      }
      case 'register': {
        // A joining node whose join ended with an unknown outcome keeps asking with its address.
        const address = this.pending ?? w.addresses[this.random.int(w.addresses.length)]!
        w.attempted.add(address)
        const r = await this.attempts((store) => store.register(address, '', 1))
        if (r.ok) {
          if (r.unknownBefore) w.unknown.add(address)
          this.pending = null
          w.noteRegistered(address, r.value.id, r.value.address, this.name)
        } else {
          if (r.unknown) {
            w.unknown.add(address)
            this.pending = address
          }
          this.failed(`register ${address}`, r.unknown)
        }
        return
      }
      case 'heartbeat': {
        const ids = w.registeredIds()
        const nodeId = ids[this.random.int(ids.length)]!
        const leaders = c.members.includes(nodeId) ? (c.hostOf(nodeId)?.leaderships() ?? []) : []
        // Stamped with the wall clock of the node serving it, as the meta leader's agent stamps the
        // heartbeats it serves (the agents' rounds judge the stamps by the same clocks). Whole
        // milliseconds, as Date.now() gives the agent: the node record holds an integer (a fraction
        // would be written, then refused by decodeNode as corrupt; see FINDINGS.md H2).
        const r = await this.attempts((store, node) =>
          store.heartbeat(nodeId, leaders, Math.floor(c.slot(node).clock.wallMs())),
        )
        if (r.ok) {
          w.stats.heartbeats++
          w.trace(
            `${this.name} heartbeat n${nodeId} leads ${leaders.map((l) => `${l.shardId}@${l.term}`).join(',') || '-'} -> ${r.value}`,
          )
        } else this.failed(`heartbeat n${nodeId}`, r.unknown)
        return
      }
      case 'read': {
        const callMs = c.sim.nowMs
        const r = await this.attempts((store) => store.read())
        if (r.ok) w.noteRead(r.value, callMs, this.name)
        else this.failed('read', false)
        return
      }
      case 'mark-dead': {
        // Judged by the serving node's wall clock, as the meta leader's agent judges.
        let before = 0
        const r = await this.attempts((store, node) => {
          before = Math.floor(c.slot(node).clock.wallMs()) - 1_000
          // A record is stamped only when its state changes (liveness lives in the meta leader's
          // memory), so a stale stamp alone says nothing: judged silent are the nodes down now
          // (crashed, or registered by this workload and never started).
          const down = (id: NodeId): boolean => {
            try {
              return c.hostOf(id) === undefined
            } catch {
              return true
            }
          }
          return store
            .read()
            .then((map) =>
              store.setNodeStates(
                [...(map?.nodes.values() ?? [])]
                  .filter(
                    (n) =>
                      (n.state === 'active' || n.state === 'joining') &&
                      n.lastHeartbeatMs < before &&
                      down(n.id),
                  )
                  .map((n) => ({ nodeId: n.id, from: n.state, to: 'dead' as const })),
              ),
            )
        })
        if (r.ok) {
          w.stats.markDeads++
          w.trace(
            `${this.name} mark-dead before ${Math.round(before)} -> ${r.value.map((c) => c.nodeId).join(',') || '-'}`,
          )
        } else this.failed('mark-dead', r.unknown)
        return
      }
    }
  }

  private failed(what: string, unknown: boolean): void {
    this.w.stats.failed++
    this.w.trace(`${this.name} ${what} -> ${unknown ? 'unknown' : 'fail'}`)
  }

  /** Runs `op` on the meta leader (as believed) until it answers, the attempts run out or the deadline passes. */
  private async attempts<T>(op: (store: MetaStore, node: NodeId) => Promise<T>): Promise<Attempted<T>> {
    const c = this.w.cluster
    const o = this.w.options
    const replicas = c.replicasOf(metaShardId)
    const deadline = deadlineSignal(this.clock, o.deadlineMs)
    let unknown = false
    try {
      for (let n = 0; n < attemptsMax && !deadline.signal.aborted && c.failure === null; n++) {
        const node =
          this.hint !== null && this.random.int(8) !== 0
            ? this.hint
            : replicas[this.random.int(replicas.length)]!
        const host = c.hostOf(node)
        if (host === undefined) {
          this.hint = null
          await c.driver.sleep(1 + this.random.int(backoffMsMax))
          continue
        }
        // Now and then an impatient attempt: its budget ends while its write may be in flight, so
        // the retry that follows must be answered by idempotency (the outcome was unknown).
        const budgetMs = this.random.int(16) === 0 ? 1 + this.random.int(4) : 2 * o.attemptTimeoutMs
        const a = deadlineSignal(this.clock, budgetMs, deadline.signal)
        try {
          const value = await op(new MetaStore(metaReplicaOf(c, host), a.signal), node)
          this.w.stats.ok++
          this.hint = node
          return { ok: true, value, node, unknownBefore: unknown }
        } catch (err) {
          if (!isKvError(err)) throw err
          // A torn or missing record, or a registered node the meta shard does not know: a bug.
          // (INTERNAL also answers the requests in flight on a node that just crashed.)
          const alive = c.hostOf(node) === host
          if ((err.code === ErrorCode.Internal && alive) || err.code === ErrorCode.NotFound) {
            c.fail('meta', `${this.name} on node ${node}: ${describeErr(err)}`)
            return { ok: false, unknown: true }
          }
          if (!errorCodeTable[err.code].writeNotApplied) unknown = true
          const hint =
            err.code === ErrorCode.NotLeader
              ? ((err.details?.leaderHint as NodeId | undefined) ?? null)
              : null
          if (hint !== null && !replicas.includes(hint))
            c.fail('routing', `node ${node} names node ${hint} the meta leader, which holds no meta replica`)
          this.hint = hint
          if (hint === null || hint === node) await c.driver.sleep(1 + this.random.int(backoffMsMax))
        } finally {
          a.dispose()
        }
      }
    } finally {
      deadline.dispose()
    }
    return { ok: false, unknown }
  }
}
