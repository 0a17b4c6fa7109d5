/**
 * Is the cluster healthy? The verdict of `kvctl status` (and its exit code), decided from what the
 * nodes answered, and the one-screen summary that leads its output. Pure: no I/O.
 *
 * - unavailable (exit 3): no node answered, or a shard (the meta shard included) has no leader
 *   among the nodes that answered, so some keys (or the cluster's own records) cannot be served.
 * - degraded (exit 9): every shard has a leader, but a node of the map does not answer, or a
 *   shard has fewer live voters than it should (a voter down, or fewer voters than the replica
 *   count allows), or the shard map could not be had, or an endpoint given does not answer, or the
 *   cluster is in safe mode (its live nodes or zones cannot hold the replication factor).
 * - healthy (exit 0): everything else. A move in progress, or a rebalancing job, is not a problem
 *   in itself; shards the planner cannot move (blocked) are named, and are a problem only through
 *   the rules above.
 *
 * A shard's live voters are those whose node answered and reported the shard; its leader counts
 * only when that node answered (a follower's word for a leader that is gone is not a leader).
 */
import { ExitCode } from '../exit-codes.ts'

/** One node as the health check sees it: from the map, or (without a map) from an endpoint asked. */
export interface HealthNode {
  /** undefined: an endpoint that never said which node it is. */
  readonly nodeId: number | undefined
  readonly address: string
  /** The map's state (joining | active | draining | dead); '' when unknown. */
  readonly state: string
  readonly answered: boolean
  /** Why it did not answer, in one line. */
  readonly error?: string
}

/** One shard: from the map, completed by what the nodes that answered report about it. */
export interface HealthShard {
  readonly shardId: number
  /** The leader the answering replicas agree on; 0 = none known. */
  readonly leaderId: number
  readonly voters: readonly number[]
  /** Node ids that answered and hold a replica of the shard. */
  readonly reportedBy: readonly number[]
}

export interface HealthInput {
  readonly clusterId: string | undefined
  /** The meta shard's id as the map names it (the public API has no other way); undefined without a map. */
  readonly metaShardId: number | undefined
  /** The map was fetched (its nodes and shards are then the whole cluster). */
  readonly mapOk: boolean
  /** The map's replica count per data shard; undefined without a map. */
  readonly replicaCount: number | undefined
  readonly nodes: readonly HealthNode[]
  /** Endpoints given that did not answer and are no node of the map, with why (one line each). */
  readonly strayEndpoints: readonly { readonly endpoint: string; readonly error: string }[]
  readonly shards: readonly HealthShard[]
  /** Moves the meta leader lists as running; null when it did not answer. */
  readonly movesRunning: number | null
  /** The meta leader's rebalancing answer; null when it did not answer. */
  readonly rebalancing: HealthRebalancing | null
}

/** What `kvctl rebalance status` says, as far as the summary needs it. */
export interface HealthRebalancing {
  /** Why the cluster is in safe mode; '' when it is not. */
  readonly safeMode: string
  /** The last job: running | paused | cancelled | done; null when there was none. */
  readonly jobState: string | null
  readonly jobId: number | null
  /** Moves of the job ended (done or failed) and in all (ended, running and planned). */
  readonly movesEnded: number
  readonly movesTotal: number
  readonly movesFailed: number
  /** Shards needing a move that none can be planned for (no quorum, no destination). */
  readonly blocked: number
}

export type Verdict = 'healthy' | 'degraded' | 'unavailable'

export interface HealthSummary {
  readonly verdict: Verdict
  readonly clusterId: string | null
  readonly metaShardId: number | null
  readonly mapOk: boolean
  readonly nodes: {
    readonly total: number
    readonly up: number
    readonly down: readonly { nodeId: number | null; address: string; state: string; error: string | null }[]
  }
  readonly shards: {
    readonly total: number
    readonly healthy: number
    /** Shard ids, sorted, the meta shard last. */
    readonly underReplicated: readonly number[]
    readonly withoutLeader: readonly number[]
  }
  /** Endpoints given that did not answer and that the map does not name. */
  readonly strayEndpoints: readonly { readonly endpoint: string; readonly error: string }[]
  readonly movesRunning: number | null
  readonly rebalancing: HealthRebalancing | null
}

/** The verdict and its numbers. */
export function summarizeHealth(input: HealthInput): HealthSummary {
  const up = new Set(input.nodes.filter((n) => n.answered && n.nodeId !== undefined).map((n) => n.nodeId))
  const liveMembers = input.nodes.filter((n) => n.state !== 'dead').length
  const withoutLeader: number[] = []
  const underReplicated: number[] = []
  for (const shard of input.shards) {
    if (shard.leaderId <= 0 || !up.has(shard.leaderId)) {
      withoutLeader.push(shard.shardId)
      continue
    }
    const reported = new Set(shard.reportedBy)
    const live = shard.voters.filter((v) => up.has(v) && reported.has(v)).length
    // A data shard should have as many voters as the replica count, as far as the members allow.
    const target =
      shard.shardId === input.metaShardId || input.replicaCount === undefined
        ? shard.voters.length
        : Math.max(shard.voters.length, Math.min(input.replicaCount, liveMembers))
    if (live < target) underReplicated.push(shard.shardId)
  }
  const answeredAny = input.nodes.some((n) => n.answered)
  const down = input.nodes.filter((n) => !n.answered)
  const verdict: Verdict =
    !answeredAny || withoutLeader.length > 0
      ? 'unavailable'
      : down.length > 0 ||
          underReplicated.length > 0 ||
          !input.mapOk ||
          input.strayEndpoints.length > 0 ||
          (input.rebalancing?.safeMode ?? '') !== ''
        ? 'degraded'
        : 'healthy'
  return {
    verdict,
    clusterId: input.clusterId ?? null,
    metaShardId: input.metaShardId ?? null,
    mapOk: input.mapOk,
    nodes: {
      total: input.nodes.length,
      up: input.nodes.length - down.length,
      down: down.map((n) => ({
        nodeId: n.nodeId ?? null,
        address: n.address,
        state: n.state,
        error: n.error ?? null,
      })),
    },
    shards: {
      total: input.shards.length,
      healthy: input.shards.length - withoutLeader.length - underReplicated.length,
      underReplicated: sortShardIds(underReplicated, input.metaShardId),
      withoutLeader: sortShardIds(withoutLeader, input.metaShardId),
    },
    strayEndpoints: input.strayEndpoints,
    movesRunning: input.movesRunning,
    rebalancing: input.rebalancing,
  }
}

/** The exit code of `kvctl status` (and `--check`) for a verdict. */
export function verdictExitCode(verdict: Verdict): ExitCode {
  switch (verdict) {
    case 'healthy':
      return ExitCode.Ok
    case 'degraded':
      return ExitCode.Degraded
    case 'unavailable':
      return ExitCode.Unavailable
  }
}

/** A shard's name for people: `meta` for the meta shard (`metaShardId`, as the map names it), else its id. */
export function shardName(shardId: number, metaShardId: number | null | undefined): string {
  return shardId === metaShardId ? 'meta' : String(shardId)
}

/** Ids shown in one line before `+N more`. */
const idsShownMax = 12

/**
 * The summary for people: one line each for the verdict, nodes, shards and moves, then one line per
 * problem (nodes down, shards without leader, under-replicated shards), bounded.
 */
export function renderSummary(s: HealthSummary): string[] {
  const lines: string[] = []
  const cluster = s.clusterId === null ? 'cluster' : `cluster ${s.clusterId}`
  lines.push(`${cluster}: ${s.verdict.toUpperCase()}`)
  lines.push(`  nodes   ${s.nodes.up}/${s.nodes.total} up`)
  const sh = s.shards
  lines.push(
    `  shards  ${sh.total} total: ${sh.healthy} healthy, ${sh.underReplicated.length} under-replicated, ${sh.withoutLeader.length} without leader`,
  )
  lines.push(
    `  moves   ${s.movesRunning === null ? '- (the meta leader did not answer)' : `${s.movesRunning} running`}`,
  )
  lines.push(`  rebalancing  ${rebalancingLine(s.rebalancing)}`)
  const problems: string[] = []
  const rb = s.rebalancing
  if (rb !== null && rb.safeMode !== '')
    problems.push(`safe mode: ${rb.safeMode} (repairs only; nothing is drained or balanced)`)
  if (rb !== null && rb.blocked > 0)
    problems.push(`${rb.blocked} shards need a move that none can be planned for`)
  if (!s.mapOk)
    problems.push('the shard map could not be had: nodes and shards are those the endpoints named')
  for (const n of s.nodes.down.slice(0, idsShownMax)) {
    const who =
      n.nodeId === null ? n.address : `node ${n.nodeId} (${n.address === '' ? 'no address' : n.address})`
    const state = n.state === '' || n.state === 'active' ? '' : `, ${n.state}`
    problems.push(`${who} does not answer${state}${n.error === null ? '' : `: ${n.error}`}`)
  }
  if (s.nodes.down.length > idsShownMax)
    problems.push(`+${s.nodes.down.length - idsShownMax} more nodes down`)
  for (const e of s.strayEndpoints) problems.push(`endpoint ${e.endpoint} does not answer: ${e.error}`)
  const ids = (list: readonly number[]): string => idList(list, s.metaShardId)
  if (sh.withoutLeader.length > 0) problems.push(`without leader: shard ${ids(sh.withoutLeader)}`)
  if (sh.underReplicated.length > 0) problems.push(`under-replicated: shard ${ids(sh.underReplicated)}`)
  if (problems.length > 0) {
    lines.push('problems:')
    for (const p of problems) lines.push(`  ${p}`)
  }
  return lines
}

/** The rebalancing job in one line: `-` when the meta leader did not say. */
function rebalancingLine(rb: HealthRebalancing | null): string {
  if (rb === null) return '- (the meta leader did not answer)'
  if (rb.jobState === null) return 'no job yet'
  const percent = rb.movesTotal === 0 ? 100 : Math.floor((rb.movesEnded / rb.movesTotal) * 100)
  const failed = rb.movesFailed > 0 ? `, ${rb.movesFailed} failed` : ''
  return `job ${rb.jobId ?? '-'} ${rb.jobState}: ${rb.movesEnded}/${rb.movesTotal} moves (${percent}%)${failed}`
}

function idList(ids: readonly number[], metaShardId: number | null): string {
  const shown = ids
    .slice(0, idsShownMax)
    .map((id) => shardName(id, metaShardId))
    .join(', ')
  return ids.length > idsShownMax ? `${shown} (+${ids.length - idsShownMax} more)` : shown
}

/** Data shards by id, the meta shard last. */
function sortShardIds(ids: readonly number[], metaShardId: number | undefined): number[] {
  const isMeta = (id: number): number => (id === metaShardId ? 1 : 0)
  return [...ids].sort((a, b) => isMeta(a) - isMeta(b) || a - b)
}
