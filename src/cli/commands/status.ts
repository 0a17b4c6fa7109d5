import { Option } from 'commander'
import { isKvError } from '../../common/errors.ts'
import type { ShardMapResult, ShardStatus, StatusResult } from '../../client/types.ts'
import type { CliContext } from '../context.ts'
import { errorView, json, table } from '../output.ts'
import { listMoves, type MoveStatus } from '../../client/admin-moves.ts'
import { rebalance, type RebalanceResponse } from '../../client/admin-rebalance.ts'
import { progressOf } from './rebalance.ts'
import { fetchMap, formatRange, holdings } from './cluster-view.ts'
import { moveLine } from './moves.ts'
import { ExitCode, exitCodeForError } from '../exit-codes.ts'
import type { CommandSpec } from './command.ts'
import {
  renderSummary,
  shardName,
  summarizeHealth,
  verdictExitCode,
  type HealthInput,
  type HealthRebalancing,
  type HealthNode,
  type HealthShard,
  type Verdict,
} from './status-health.ts'

export { formatRange } from './cluster-view.ts'

/** One node asked: by an endpoint given on the command line, or by an address a peer list named. */
type NodeAnswer =
  | {
      readonly endpoint: string
      readonly nodeId: number | undefined
      readonly ok: true
      readonly status: StatusResult
    }
  | {
      readonly endpoint: string
      readonly nodeId: number | undefined
      readonly ok: false
      readonly error: unknown
    }

/** One shard as the cluster reports it, merged over every node that answered. */
interface ShardView {
  readonly shardId: number
  readonly hashStart: string
  readonly hashEnd: string
  /** 0 when no node knows. */
  readonly leaderId: number
  readonly voters: readonly number[]
  /** Node id -> that replica's applied index, for every node that answered and holds the shard. */
  readonly appliedIndexByNode: Readonly<Record<number, number>>
}

/** Rounds of asking the peers the answers name (a full mesh needs one; the bound stops a runaway). */
const discoveryRoundsMax = 3
/** Budget of each node's Status without --deadline-ms: a node that does not answer by then is down. */
const statusDeadlineMsDefault = 3_000

/** One node of the shard map with what the cluster says about it. */
interface ClusterNodeView {
  readonly nodeId: number
  readonly address: string
  readonly zone: string
  readonly state: string
  /** Wall-clock ms of its last heartbeat (the meta leader's clock); 0 = never. */
  readonly lastHeartbeatMs: number
  /** Ms since then by this machine's clock (null: never); clock skew between the two is not corrected. */
  readonly heartbeatAgeMs: number | null
  readonly replicas: number
  readonly leaders: number
  /** From the node's own Status; null when it did not answer. */
  readonly forwardedRequests: number | null
}

/**
 * `kvctl status`: is the cluster healthy? A one-screen summary first (verdict, nodes up, shards
 * healthy / under-replicated / without leader, moves running, then each problem; status-health.ts
 * decides), then the map's nodes (address, zone, state, time since its last heartbeat, replicas
 * and leaderships held, requests it forwarded). `--shards` adds every node asked directly and the
 * shard tables (merged per shard, and per replica). Every node is asked: the endpoints given, the
 * map's nodes, and every peer their answers name. The exit code is the verdict's (0 healthy,
 * 9 degraded, 3 unavailable); `--check` prints nothing and only exits so.
 */
export const statusCommand: CommandSpec = {
  name: 'status',
  arguments: '',
  summary: 'is the cluster healthy? a summary, the nodes, and with --shards every shard; exit 0/9/3',
  kind: 'read',
  options: [
    new Option('--shards', 'also show every node asked directly and the per-shard and per-replica tables'),
    new Option('--check', 'print nothing; only exit 0 (healthy), 9 (degraded) or 3 (unavailable)'),
  ],
  details: [
    'Healthy: every node of the map answers and every shard (the meta shard too) has a leader and',
    'all its voters. Exit codes: 0 healthy; 9 degraded (every shard has a leader, but a node is down,',
    'a shard is short of replicas, or the map could not be had); 3 unavailable (no node answers, or a',
    "shard has no leader: some keys cannot be served). JSON output carries the summary as 'health'.",
  ],
  examples: [
    'kvctl status',
    'kvctl status --shards',
    'kvctl status --check && echo healthy',
    'kvctl --endpoints 127.0.0.1:7001,127.0.0.1:7002 status -o json',
  ],
  async run(ctx, _args, options) {
    let map: ShardMapResult | undefined
    let mapError: unknown
    try {
      map = await fetchMap(ctx, statusDeadlineMsDefault)
    } catch (err) {
      if (!isKvError(err)) throw err
      mapError = err
    }
    const answers = await askCluster(ctx, map)
    const metaShardId = map?.metaShard?.shardId
    const shards = mergeShards(answers, metaShardId)
    // Both from the meta leader (through any node); shown as unknown when it does not answer.
    const adminOptions = ctx.adminOptions(ctx.globals.deadlineMs ?? statusDeadlineMsDefault)
    const [moves, rebalancing] = await Promise.all([
      listMoves(ctx.globals.endpoints, adminOptions).then(
        (r): MoveStatus[] | null => r.running,
        () => null,
      ),
      rebalance(ctx.globals.endpoints, 'status', adminOptions).then(
        (r): RebalanceResponse | null => r,
        () => null,
      ),
    ])
    const nodes = map === undefined ? [] : nodeViews(ctx, map, answers)
    const health = summarizeHealth(
      healthInput(map, answers, shards, moves, rebalancing === null ? null : rebalancingOf(ctx, rebalancing)),
    )
    const code = exitCode(health.verdict, answers)
    if (options['check'] === true) return code
    if (ctx.format === 'json') {
      ctx.print(
        json({
          clusterId: map?.clusterId ?? answers.find((a) => a.ok)?.status.clusterId ?? null,
          health,
          map:
            map === undefined
              ? { ok: false, error: errorView(mapError) }
              : {
                  ok: true,
                  endpoint: map.endpoint,
                  servedBy: map.servedBy,
                  replicaCount: map.replicaCount,
                  vnodesPerNode: map.vnodesPerNode,
                  shards: map.shards.length,
                },
          nodes,
          endpoints: answers.map((r) =>
            r.ok
              ? {
                  endpoint: r.endpoint,
                  ok: true,
                  clusterId: r.status.clusterId,
                  node: r.status.node,
                  peers: r.status.peers,
                }
              : {
                  endpoint: r.endpoint,
                  ok: false,
                  ...(r.nodeId !== undefined ? { nodeId: r.nodeId } : {}),
                  error: errorView(r.error),
                },
          ),
          shards,
          moves,
        }),
      )
    } else {
      for (const line of renderSummary(health)) ctx.print(line)
      ctx.print('')
      if (map !== undefined) printNodes(ctx, map, nodes)
      if (moves !== null && moves.length > 0) {
        ctx.print('')
        ctx.print(`moves in progress: ${moves.length}`)
        for (const m of moves) ctx.print(`  ${moveLine(m)}`)
      }
      if (options['shards'] === true || map === undefined) {
        ctx.print('')
        printEndpoints(ctx, answers)
      }
      if (options['shards'] === true) printTables(ctx, answers, shards, metaShardId)
    }
    return code
  },
}

/** The summary's view of the meta leader's rebalancing answer. */
function rebalancingOf(ctx: CliContext, r: RebalanceResponse): HealthRebalancing {
  const p = progressOf(r, ctx.clock.wallMs())
  return {
    safeMode: r.safeMode,
    jobState: r.job?.state ?? null,
    jobId: r.job?.id ?? null,
    movesEnded: p.ended,
    movesTotal: p.total,
    movesFailed: r.job?.failed ?? 0,
    blocked: r.blocked,
  }
}

/** The verdict's exit code; when no node answered, the reason's (e.g. access denied, not just unavailable). */
function exitCode(verdict: Verdict, answers: readonly NodeAnswer[]): ExitCode {
  const firstError = answers.find((r): r is Extract<NodeAnswer, { ok: false }> => !r.ok)
  if (answers.every((r) => !r.ok) && firstError !== undefined) {
    const code = exitCodeForError(firstError.error, 'read')
    return code === ExitCode.Ok ? ExitCode.Error : code
  }
  return verdictExitCode(verdict)
}

/** What the health check needs: the map's nodes and shards (or, without a map, what the nodes named). */
function healthInput(
  map: ShardMapResult | undefined,
  answers: readonly NodeAnswer[],
  shards: readonly ShardView[],
  moves: readonly MoveStatus[] | null,
  rebalancing: HealthRebalancing | null,
): HealthInput {
  const answeredIds = new Set(
    answers.flatMap((a) => (a.ok && a.status.node !== null ? [a.status.node.nodeId] : [])),
  )
  const failure = (nodeId: number | undefined, address: string): string | undefined => {
    const a = answers.find(
      (x) => !x.ok && (nodeId !== undefined ? x.nodeId === nodeId : x.endpoint === address),
    )
    if (a === undefined || a.ok) return undefined
    return oneLine(a.error)
  }
  const nodes: HealthNode[] =
    map !== undefined
      ? map.nodes.map((n) => {
          const error = answeredIds.has(n.nodeId) ? undefined : failure(n.nodeId, n.address)
          return {
            nodeId: n.nodeId,
            address: n.address,
            state: n.state,
            answered: answeredIds.has(n.nodeId),
            ...(error !== undefined ? { error } : {}),
          }
        })
      : distinctNodes(answers)
  const mapAddresses = new Set(map?.nodes.map((n) => n.address) ?? [])
  const strayEndpoints =
    map === undefined
      ? []
      : answers.flatMap((a) =>
          !a.ok && a.nodeId === undefined && !mapAddresses.has(a.endpoint)
            ? [{ endpoint: a.endpoint, error: oneLine(a.error) }]
            : [],
        )
  const merged = new Map(shards.map((s) => [s.shardId, s]))
  const fromMap = map === undefined ? [] : [...map.shards, ...(map.metaShard === null ? [] : [map.metaShard])]
  const healthShards: HealthShard[] = fromMap.map((s) => {
    const view = merged.get(s.shardId)
    return view === undefined
      ? { shardId: s.shardId, leaderId: 0, voters: s.replicas, reportedBy: [] }
      : viewShard(view)
  })
  // Without a map (or for a shard the map does not name yet), what the nodes report.
  for (const view of shards)
    if (!fromMap.some((s) => s.shardId === view.shardId)) healthShards.push(viewShard(view))
  return {
    clusterId: map?.clusterId ?? answers.find((a) => a.ok)?.status.clusterId,
    metaShardId: map?.metaShard?.shardId,
    mapOk: map !== undefined,
    replicaCount: map?.replicaCount,
    nodes,
    strayEndpoints,
    shards: healthShards,
    movesRunning: moves === null ? null : moves.length,
    rebalancing,
  }
}

/** An error as `CODE: message` on one line. */
function oneLine(error: unknown): string {
  const e = errorView(error)
  return `${e.code}: ${e.message.replace(/\s*\n\s*/g, ' ')}`
}

function viewShard(view: ShardView): HealthShard {
  return {
    shardId: view.shardId,
    leaderId: view.leaderId,
    voters: view.voters,
    reportedBy: Object.keys(view.appliedIndexByNode).map(Number),
  }
}

/** Without a map: one entry per node that answered or was named, and per endpoint that never said. */
function distinctNodes(answers: readonly NodeAnswer[]): HealthNode[] {
  const out: HealthNode[] = []
  for (const a of answers) {
    const nodeId = a.ok ? (a.status.node?.nodeId ?? a.nodeId) : a.nodeId
    if (nodeId !== undefined && out.some((n) => n.nodeId === nodeId)) continue
    if (a.ok) out.push({ nodeId, address: a.endpoint, state: '', answered: true })
    else {
      out.push({ nodeId, address: a.endpoint, state: '', answered: false, error: oneLine(a.error) })
    }
  }
  return out
}

/** The map's nodes with their heartbeat age, holdings and forwarded-request counter. */
function nodeViews(ctx: CliContext, map: ShardMapResult, answers: readonly NodeAnswer[]): ClusterNodeView[] {
  const nowMs = ctx.clock.wallMs()
  const held = holdings(map)
  return map.nodes.map((n) => {
    const own = answers.find((a) => a.ok && a.status.node?.nodeId === n.nodeId)
    const h = held.get(n.nodeId) ?? { replicas: 0, leaders: 0 }
    return {
      nodeId: n.nodeId,
      address: n.address,
      zone: n.zone,
      state: n.state,
      lastHeartbeatMs: n.lastHeartbeatMs,
      heartbeatAgeMs: n.lastHeartbeatMs > 0 ? Math.max(0, nowMs - n.lastHeartbeatMs) : null,
      replicas: h.replicas,
      leaders: h.leaders,
      forwardedRequests: own?.ok === true ? (own.status.node?.forwardedRequests ?? null) : null,
    }
  })
}

function printNodes(ctx: CliContext, map: ShardMapResult, nodes: readonly ClusterNodeView[]): void {
  ctx.print(
    `map from node ${map.servedBy}: ${nodes.length} nodes, ${map.shards.length} shards, ${map.replicaCount} replicas each`,
  )
  ctx.print(
    table([
      ['NODE', 'ADDRESS', 'ZONE', 'STATE', 'HEARTBEAT', 'REPLICAS', 'LEADERS', 'FORWARDED'],
      ...nodes.map((n) => [
        String(n.nodeId),
        n.address === '' ? '-' : n.address,
        n.zone === '' ? '-' : n.zone,
        n.state === '' ? '-' : n.state,
        n.heartbeatAgeMs === null ? 'never' : `${Math.round(n.heartbeatAgeMs / 1000)}s ago`,
        String(n.replicas),
        String(n.leaders),
        n.forwardedRequests === null ? '-' : String(n.forwardedRequests),
      ]),
    ]),
  )
}

/**
 * Asks the given endpoints and the map's nodes, then the peers their answers name, each once, in
 * parallel per round.
 */
async function askCluster(ctx: CliContext, map: ShardMapResult | undefined): Promise<NodeAnswer[]> {
  const { deadlineMs } = ctx.globals
  const ask = async (endpoint: string, nodeId: number | undefined): Promise<NodeAnswer> => {
    try {
      const status = await ctx.client.status({ endpoint, deadlineMs: deadlineMs ?? statusDeadlineMsDefault })
      return { endpoint, nodeId: status.node?.nodeId ?? nodeId, ok: true, status }
    } catch (error) {
      if (!isKvError(error)) throw error
      return { endpoint, nodeId, ok: false, error }
    }
  }
  const answers: NodeAnswer[] = []
  const asked = new Set<string>()
  let round: { endpoint: string; nodeId: number | undefined }[] = ctx.globals.endpoints.map((endpoint) => ({
    endpoint,
    nodeId: undefined,
  }))
  for (const n of map?.nodes ?? []) {
    if (n.address !== '' && !round.some((r) => r.endpoint === n.address))
      round.push({ endpoint: n.address, nodeId: n.nodeId })
  }
  for (let i = 0; i < discoveryRoundsMax && round.length > 0; i++) {
    for (const r of round) asked.add(r.endpoint)
    answers.push(...(await Promise.all(round.map((r) => ask(r.endpoint, r.nodeId)))))
    const known = new Set(answers.flatMap((a) => (a.nodeId === undefined ? [] : [a.nodeId])))
    const next = new Map<number, string>()
    for (const a of answers) {
      if (!a.ok) continue
      for (const peer of a.status.peers) {
        if (peer.nodeId <= 0 || peer.address === '' || known.has(peer.nodeId)) continue
        if (asked.has(peer.address) || next.has(peer.nodeId)) continue
        next.set(peer.nodeId, peer.address)
      }
    }
    round = [...next].map(([nodeId, endpoint]) => ({ endpoint, nodeId }))
  }
  return answers
}

/** The shards of every answer, merged by shard id, in hash order, the meta shard last. */
function mergeShards(answers: readonly NodeAnswer[], metaShardId: number | undefined): ShardView[] {
  const byShard = new Map<number, { nodeId: number; shard: ShardStatus }[]>()
  for (const a of answers) {
    const node = a.ok ? a.status.node : null
    if (node === null) continue
    for (const shard of node.shards) {
      const list = byShard.get(shard.shardId) ?? []
      list.push({ nodeId: node.nodeId, shard })
      byShard.set(shard.shardId, list)
    }
  }
  const views = [...byShard].map(([shardId, replicas]): ShardView => {
    const leaderId = agreedLeader(replicas)
    const reference =
      replicas.find((r) => r.nodeId === leaderId) ?? (replicas[0] as (typeof replicas)[number])
    return {
      shardId,
      hashStart: reference.shard.hashStart,
      hashEnd: reference.shard.hashEnd,
      leaderId,
      voters: reference.shard.voters,
      appliedIndexByNode: Object.fromEntries(replicas.map((r) => [r.nodeId, r.shard.appliedIndex])),
    }
  })
  // The meta shard (the whole ring, the cluster's own records) after the data shards.
  const isMeta = (v: ShardView): number => (v.shardId === metaShardId ? 1 : 0)
  return views.sort(
    (a, b) => isMeta(a) - isMeta(b) || compareDecimal(a.hashStart, b.hashStart) || a.shardId - b.shardId,
  )
}

/**
 * The leader the replicas agree on: the one that says it leads (role leader or single), else the
 * leader most of them name, else 0. A replica that still thinks it leads after an election can
 * disagree with the others; the newest term wins then.
 */
function agreedLeader(replicas: readonly { nodeId: number; shard: ShardStatus }[]): number {
  const leading = replicas
    .filter((r) => r.shard.role === 'leader' || r.shard.role === 'single')
    .sort((a, b) => b.shard.term - a.shard.term)
  if (leading[0] !== undefined) return leading[0].nodeId
  const votes = new Map<number, number>()
  for (const r of replicas)
    if (r.shard.leaderId > 0) votes.set(r.shard.leaderId, (votes.get(r.shard.leaderId) ?? 0) + 1)
  let best = 0
  let bestVotes = 0
  for (const [id, n] of votes) {
    if (n > bestVotes) {
      best = id
      bestVotes = n
    }
  }
  return best
}

/** Every node asked directly: version, uptime, shards held, calls in flight, or why it did not answer. */
function printEndpoints(ctx: CliContext, answers: readonly NodeAnswer[]): void {
  ctx.print(
    table([
      ['ENDPOINT', 'NODE', 'CLUSTER', 'VERSION', 'UPTIME', 'SHARDS', 'IN FLIGHT'],
      ...answers.map((r) => {
        if (!r.ok) {
          const e = errorView(r.error)
          return [
            r.endpoint,
            r.nodeId === undefined ? '-' : String(r.nodeId),
            `unreachable (${e.code}: ${e.message.replace(/\s*\n\s*/g, ' ')})`,
          ]
        }
        const n = r.status.node
        return [
          r.endpoint,
          String(n?.nodeId ?? '-'),
          r.status.clusterId,
          n?.version ?? '-',
          n === null ? '-' : formatDuration(n.uptimeMs),
          n === null ? '-' : String(n.shards.length),
          n === null ? '-' : String(n.requestsInFlight),
        ]
      }),
    ]),
  )
}

/** The shard table merged over the nodes, then one row per replica. */
function printTables(
  ctx: CliContext,
  answers: readonly NodeAnswer[],
  shards: readonly ShardView[],
  metaShardId: number | undefined,
): void {
  if (shards.length > 0) {
    ctx.print('')
    ctx.print(
      table([
        ['SHARD', 'RANGE', 'LEADER', 'VOTERS', 'APPLIED'],
        ...shards.map((s) => [
          shardName(s.shardId, metaShardId),
          formatRange(s.hashStart, s.hashEnd),
          s.leaderId > 0 ? String(s.leaderId) : '-',
          s.voters.join(','),
          Object.entries(s.appliedIndexByNode)
            .map(([node, index]) => `${node}:${index}`)
            .join(' '),
        ]),
      ]),
    )
  }
  const replicaRows = answers.flatMap((r) =>
    r.ok && r.status.node !== null
      ? r.status.node.shards.map((s) => [
          String(r.status.node?.nodeId ?? '-'),
          shardName(s.shardId, metaShardId),
          s.role,
          s.leaderId > 0 ? String(s.leaderId) : '-',
          String(s.term),
          String(s.commitIndex),
          String(s.appliedIndex),
          s.voters.join(',') + (s.learners.length > 0 ? ` +${s.learners.join(',')}` : ''),
        ])
      : [],
  )
  if (replicaRows.length > 0) {
    ctx.print('')
    ctx.print(
      table([['NODE', 'SHARD', 'ROLE', 'LEADER', 'TERM', 'COMMIT', 'APPLIED', 'VOTERS'], ...replicaRows]),
    )
  }
}

function compareDecimal(a: string, b: string): number {
  const x = /^\d+$/.test(a) ? BigInt(a) : 0n
  const y = /^\d+$/.test(b) ? BigInt(b) : 0n
  return x < y ? -1 : x > y ? 1 : 0
}

function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m${s % 60}s`
  const h = Math.floor(m / 60)
  if (h < 48) return `${h}h${m % 60}m`
  return `${Math.floor(h / 24)}d${h % 24}h`
}
