/**
 * `kvctl endpoint health`, in the spirit of etcdctl's: every endpoint asked on its own, all in
 * parallel, each within the deadline (`--deadline-ms`, default 3 s): did it answer, is it healthy
 * (it answered and every replica it holds knows its shard's leader), and how long it took.
 * `--cluster` asks every node of the shard map instead of the endpoints given. Exit 0 when every
 * endpoint is healthy, else 3 (or, when none answered, the exit code of why: 8 access denied).
 */
import { Option } from 'commander'
import { isKvError } from '../../common/errors.ts'
import { usageError, type CliContext } from '../context.ts'
import { ExitCode, exitCodeForError } from '../exit-codes.ts'
import { errorView, json } from '../output.ts'
import { fetchMap } from './cluster-view.ts'
import type { CommandSpec } from './command.ts'

/** Budget of each endpoint without --deadline-ms. */
const healthDeadlineMsDefault = 3_000

/** One endpoint's health. */
export interface EndpointHealth {
  readonly endpoint: string
  /** It answered Status. */
  readonly reachable: boolean
  /** Reachable, and every replica it holds names its shard's leader. */
  readonly healthy: boolean
  readonly tookMs: number
  readonly nodeId: number | null
  /** Replicas it holds, and those that know no leader; null when it did not answer. */
  readonly shards: number | null
  readonly shardsWithoutLeader: number | null
  readonly error: { readonly code: string; readonly message: string } | null
}

/** The line `kvctl endpoint health` prints for one endpoint. */
export function endpointHealthLine(h: EndpointHealth): string {
  const took = `took ${h.tookMs} ms`
  if (!h.reachable) {
    const message = (h.error?.message ?? '').replace(/\s*\n\s*/g, ' ')
    return `${h.endpoint} is unhealthy: ${h.error?.code ?? 'ERROR'}: ${message} (${took})`
  }
  const node = h.nodeId === null ? 'no node' : `node ${h.nodeId}`
  const shards =
    h.shardsWithoutLeader === 0
      ? `${h.shards} shards with a leader`
      : `${h.shardsWithoutLeader} of ${h.shards} shards without a leader`
  return `${h.endpoint} is ${h.healthy ? 'healthy' : 'unhealthy'}: ${node}, ${shards}, ${took}`
}

const endpointHealthCommand: CommandSpec = {
  name: 'health',
  arguments: '',
  summary:
    'ask each endpoint on its own: does it answer, do its replicas know their leaders, how long it took',
  kind: 'read',
  options: [new Option('--cluster', 'ask every node of the shard map instead of the endpoints given')],
  details: [
    'An endpoint is healthy when it answers within the deadline (--deadline-ms, default 3000) and',
    'every replica it holds knows its shard leader. Exit 0 when every endpoint is healthy, else 3.',
  ],
  examples: [
    'kvctl endpoint health',
    'kvctl --endpoints 127.0.0.1:7001,127.0.0.1:7002 endpoint health',
    'kvctl endpoint health --cluster -o json',
  ],
  async run(ctx, _args, options) {
    let endpoints = ctx.globals.endpoints
    if (options['cluster'] === true) {
      const map = await fetchMap(ctx, healthDeadlineMsDefault)
      endpoints = map.nodes.map((n) => n.address).filter((a) => a !== '')
    }
    const checked = await Promise.all(endpoints.map((endpoint) => checkEndpoint(ctx, endpoint)))
    const results = checked.map((c) => c.health)
    if (ctx.format === 'json') ctx.print(json(results))
    else for (const r of results) ctx.print(endpointHealthLine(r))
    if (results.every((r) => r.healthy)) return ExitCode.Ok
    // None answered, e.g. because none lets kvctl in: the exit code of that reason, as elsewhere.
    const first = checked[0]?.cause
    if (checked.every((c) => c.cause !== undefined) && first !== undefined) {
      const code = exitCodeForError(first, 'read')
      if (code !== ExitCode.Ok && code !== ExitCode.Error) return code
    }
    return ExitCode.Unavailable
  },
}

/** One endpoint's health, and the error it failed with (for the exit code). */
async function checkEndpoint(
  ctx: CliContext,
  endpoint: string,
): Promise<{ health: EndpointHealth; cause?: unknown }> {
  const started = ctx.clock.nowMs()
  const deadlineMs = ctx.globals.deadlineMs ?? healthDeadlineMsDefault
  try {
    const status = await ctx.client.status({ endpoint, deadlineMs })
    const tookMs = Math.max(0, Math.round(ctx.clock.nowMs() - started))
    const shards = status.node?.shards ?? []
    const withoutLeader = shards.filter((s) => s.leaderId <= 0).length
    const health: EndpointHealth = {
      endpoint,
      reachable: true,
      healthy: status.node !== null && withoutLeader === 0,
      tookMs,
      nodeId: status.node?.nodeId ?? null,
      shards: shards.length,
      shardsWithoutLeader: withoutLeader,
      error: null,
    }
    return { health }
  } catch (err) {
    if (!isKvError(err)) throw err
    const e = errorView(err)
    const health: EndpointHealth = {
      endpoint,
      reachable: false,
      healthy: false,
      tookMs: Math.max(0, Math.round(ctx.clock.nowMs() - started)),
      nodeId: null,
      shards: null,
      shardsWithoutLeader: null,
      error: { code: e.code, message: e.message },
    }
    return { health, cause: err }
  }
}

/** `kvctl endpoint`: commands about the endpoints themselves (today: health). */
export const endpointCommand: CommandSpec = {
  name: 'endpoint',
  arguments: '',
  summary: 'the endpoints themselves: endpoint health',
  kind: 'read',
  subcommands: [endpointHealthCommand],
  examples: ['kvctl endpoint health'],
  async run() {
    return await Promise.reject(usageError('endpoint needs a subcommand: health'))
  },
}
