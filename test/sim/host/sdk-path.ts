/**
 * The `sharded` placement's OpPath: each client routes exactly as an application's KvClient does,
 * with the SDK's own code: its RoutingCache (the shard map from a node's ShardMap answer, over the
 * one route table and leader-seeking policy of src/routing), its RouteChooser (where each attempt
 * goes, what a failed one repairs) and its retry loop (withRetries: bounded attempts, jittered
 * backoff on the simulated clock, the one error table). Only the transport is simulated: a request
 * goes over SimRpc to the chosen node's SimKvService, whose real Router serves it or forwards it
 * once, answering WRONG_SHARD (with the current descriptor) or NOT_LEADER (with a hint) as kvd
 * does. Calls without a route go to the current endpoint of a small pool over the nodes' addresses.
 *
 * Every answer says how many forwards it took, and every refusal is checked: a NOT_LEADER hint must
 * name a node that holds the shard or held it (else the run fails with `routing`).
 */
import {
  ErrorCode,
  KvError,
  errorCodeTable,
  type Clock,
  type NodeId,
  type Random,
} from '../../../src/common/index.ts'
import {
  RouteChooser,
  repairState,
  type EndpointChoice,
  type Route,
  type Target,
} from '../../../src/client/route-choice.ts'
import { withRetries, type RetryConfig } from '../../../src/client/retry.ts'
import { RoutingCache, resolveRoutingConfig } from '../../../src/client/routing.ts'
import { kvErrorFromGrpc } from '../../../src/client/status.ts'
import type { Receipt, VersionedValue } from '../../../src/shard/index.ts'
import type { HostCluster } from './cluster.ts'
import {
  nodeAtAddress,
  simAddress,
  type NodeServices,
  type SimKvAnswer,
  type SimKvRequest,
} from './services.ts'
import type { OpPath, PathOutcome, PathRead, PathWrite } from './workload.ts'

/** The SDK's retries on the simulation's time scale (elections take 100-200 ms at a 10 ms tick). */
export const simRetryConfig: RetryConfig = { attemptsMax: 8, backoffBaseMs: 5, backoffMaxMs: 80 }
/** The SDK's routing settings on the simulation's time scale. */
export const simRoutingInit = { refreshIntervalMsMin: 50, statusTimeoutMs: 300, unreachableMs: 300 } as const

const enc = new TextEncoder()

/** The endpoints of a simulated client: every node's address, the current one failing over in turn. */
class SimEndpoints implements EndpointChoice {
  private now: string

  constructor(
    readonly endpoints: readonly string[],
    start: number,
  ) {
    this.now = endpoints[start % endpoints.length]!
  }

  get current(): string {
    return this.now
  }

  advance(failed: string): void {
    if (this.now !== failed) return
    const i = this.endpoints.indexOf(failed)
    this.now = this.endpoints[(i + 1) % this.endpoints.length]!
  }

  preferNode(nodeId: number): boolean {
    const address = simAddress(nodeId as NodeId)
    if (!this.endpoints.includes(address)) return false
    this.now = address
    return true
  }
}

export class SdkPath implements OpPath {
  readonly routing: RoutingCache
  private readonly chooser: RouteChooser
  private readonly pool: SimEndpoints

  constructor(
    private readonly cluster: HostCluster,
    readonly clientId: number,
    private readonly clock: Clock,
    private readonly random: Random,
  ) {
    const addresses = cluster.members.map((id) => simAddress(id))
    this.pool = new SimEndpoints(addresses, random.int(addresses.length))
    this.routing = new RoutingCache(resolveRoutingConfig(simRoutingInit), {
      clock,
      random: random.fork('routing'),
      hasher: () => Promise.resolve(cluster.hasher),
      fetchMap: (endpoint, signal) => this.send(endpoint, signal, (s) => Promise.resolve(s.kv.shardMap())),
      candidates: () => [this.pool.current, ...addresses],
      onUnreachable: (endpoint, err) => {
        if (err.code === ErrorCode.Unavailable || err.code === ErrorCode.DeadlineExceeded)
          this.pool.advance(endpoint)
      },
    })
    this.chooser = new RouteChooser(this.routing, this.pool)
  }

  async read(
    key: string,
    read: PathRead,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly found: VersionedValue | null; readonly receipt: Receipt }>> {
    const keyBytes = enc.encode(key)
    const route: Route =
      read.level === 'linearizable' ? { to: 'leader', keys: [keyBytes] } : { to: 'replica', key: keyBytes }
    const r = await this.call('read', route, deadlineMs, (target) => ({
      op: 'get',
      key: keyBytes,
      level: read.level,
      ...(read.sessionIndex === undefined ? {} : { sessionIndex: read.sessionIndex }),
      route: target.route,
    }))
    return r.ok ? { ...r, value: { found: r.value.found ?? null, receipt: r.value.receipt } } : r
  }

  async write(
    key: string,
    w: PathWrite,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly version: number | null; readonly receipt: Receipt }>> {
    const keyBytes = enc.encode(key)
    const r = await this.call('write', { to: 'leader', keys: [keyBytes] }, deadlineMs, (target) => ({
      op: w.kind === 'del' ? 'delete' : 'put',
      key: keyBytes,
      ...(w.kind === 'del' ? {} : { value: enc.encode(w.value) }),
      level: w.level,
      tag: w.tag,
      ...(w.kind === 'cas' ? { expectedVersion: w.expectedVersion } : {}),
      route: target.route,
    }))
    return r.ok ? { ...r, value: { version: r.value.version ?? null, receipt: r.value.receipt } } : r
  }

  /**
   * One operation, as KvClient.call runs it: attempts routed by the cache, repaired after each
   * failure (RouteChooser.repairPace), inside the operation's deadline.
   */
  private async call(
    kind: 'read' | 'write',
    route: Route,
    deadlineMs: number,
    request: (target: Target) => SimKvRequest,
  ): Promise<PathOutcome<SimKvAnswer>> {
    const state = repairState()
    let target: Target = this.chooser.poolTarget(undefined)
    let maybeApplied = false
    let attempts = 0
    try {
      const answer = await withRetries(
        {
          op: { kind, deduplicated: kind === 'write' },
          config: simRetryConfig,
          clock: this.clock,
          random: this.random,
          deadlineMs,
          beforeRetry: (err, retryRoute) => this.chooser.repairPace(err, target, retryRoute, state),
        },
        async (attempt) => {
          if (route.to !== 'any') {
            const fresh = state.fresh
            state.fresh = false
            await this.routing.ready(attempt.signal, fresh)
          }
          target = this.chooser.target(route, state)
          attempts++
          this.cluster.routingStats.sent++
          const sent = request(target)
          try {
            return await this.send(target.endpoint, attempt.signal, (s) =>
              s.kv.serve(sent, false, attempt.signal),
            )
          } catch (e) {
            const err = kvErrorFromGrpc(e, attempt.signal)
            if (kind === 'write' && !errorCodeTable[err.code].writeNotApplied) maybeApplied = true
            this.check(err, target)
            this.cluster.sim.record(
              `c${this.clientId} attempt ${attempts} via ${target.via} to ${target.endpoint} (shard ${target.shardId ?? '?'} epoch ${target.route?.epoch ?? '?'}): ${err.code}${err.details?.leaderHint === undefined ? '' : ` hint n${err.details.leaderHint}`}`,
            )
            throw err
          }
        },
      )
      const stats = this.cluster.routingStats
      if (answer.forwards === 0) stats.direct++
      else if (answer.forwards === 1) stats.forwardedOnce++
      else stats.forwardedTwice++
      const receipt = answer.receipt
      this.chooser.observe({
        nodeId: receipt.nodeId,
        shardId: receipt.shardId,
        term: receipt.term,
        delivered: receipt.level,
      })
      return { ok: true, value: answer, node: receipt.nodeId, attempts, forwards: answer.forwards }
    } catch (e) {
      const err = e instanceof KvError ? e : kvErrorFromGrpc(e)
      if (err.code === ErrorCode.VersionMismatch || err.code === ErrorCode.InvalidArgument)
        return { ok: false, maybeApplied, final: err }
      return { ok: false, maybeApplied, final: undefined }
    }
  }

  /** One call from this client to the node at `endpoint`. */
  private send<T>(endpoint: string, signal: AbortSignal, serve: (s: NodeServices) => Promise<T>): Promise<T> {
    const to = nodeAtAddress(endpoint)
    if (to === undefined) return Promise.reject(new KvError(ErrorCode.Unavailable, `no node at ${endpoint}`))
    return this.cluster.rpc.call(undefined, to, signal, serve)
  }

  /** A refusal routing can check: a leader hint names a node holding the shard; WRONG_SHARD is counted. */
  private check(err: KvError, target: Target): void {
    const c = this.cluster
    if (err.code === ErrorCode.WrongShard) c.routingStats.wrongShard++
    const hint = err.code === ErrorCode.NotLeader ? err.details?.leaderHint : undefined
    const id = err.details?.shardId ?? target.shardId
    const shardId = id === undefined ? undefined : c.map?.shard(id)?.shardId
    if (hint === undefined || shardId === undefined) return
    if (!c.everHeld(hint as NodeId, shardId))
      c.fail(
        'routing',
        `${target.endpoint} names node ${hint} the leader of shard ${shardId}, which holds no replica of it`,
      )
  }
}
