import { isKvError } from '../../common/errors.ts'
import type { StatusResult } from '../../client/types.ts'
import { ExitCode, exitCodeForError } from '../exit-codes.ts'
import { errorView, json, table } from '../output.ts'
import type { CommandSpec } from './command.ts'

type EndpointStatus =
  | { readonly endpoint: string; readonly ok: true; readonly status: StatusResult }
  | { readonly endpoint: string; readonly ok: false; readonly error: unknown }

/** `kvctl status`: every endpoint's node and shards; exit 3 when none answers. */
export const statusCommand: CommandSpec = {
  name: 'status',
  arguments: '',
  summary: 'show each endpoint: node, cluster, and its shards (role, term, commit and applied index)',
  kind: 'read',
  examples: ['kvctl --endpoints 127.0.0.1:7001,127.0.0.1:7002 status'],
  async run(ctx) {
    const { deadlineMs } = ctx.globals
    const results: EndpointStatus[] = await Promise.all(
      ctx.globals.endpoints.map(async (endpoint): Promise<EndpointStatus> => {
        try {
          const status = await ctx.client.status({
            endpoint,
            ...(deadlineMs !== undefined ? { deadlineMs } : {}),
          })
          return { endpoint, ok: true, status }
        } catch (error) {
          if (!isKvError(error)) throw error
          return { endpoint, ok: false, error }
        }
      }),
    )
    if (ctx.format === 'json') {
      ctx.print(
        json({
          endpoints: results.map((r) =>
            r.ok
              ? {
                  endpoint: r.endpoint,
                  ok: true,
                  clusterId: r.status.clusterId,
                  node: r.status.node,
                  peers: r.status.peers,
                }
              : { endpoint: r.endpoint, ok: false, error: errorView(r.error) },
          ),
        }),
      )
    } else {
      ctx.print(
        table([
          ['ENDPOINT', 'NODE', 'CLUSTER', 'VERSION', 'UPTIME', 'SHARDS', 'IN FLIGHT'],
          ...results.map((r) => {
            if (!r.ok) {
              const e = errorView(r.error)
              return [r.endpoint, '-', `unreachable (${e.code}: ${e.message.replace(/\s*\n\s*/g, ' ')})`]
            }
            const n = r.status.node
            return [
              r.endpoint,
              String(n?.nodeId ?? '-'),
              r.status.clusterId,
              n?.version ?? '-',
              n === null ? '-' : formatDuration(n.uptimeMs),
              String(n?.shards.length ?? 0),
              String(n?.requestsInFlight ?? 0),
            ]
          }),
        ]),
      )
      const shardRows = results.flatMap((r) =>
        r.ok && r.status.node !== null
          ? r.status.node.shards.map((s) => [
              String(r.status.node?.nodeId ?? '-'),
              String(s.shardId),
              s.role,
              String(s.leaderId),
              String(s.term),
              String(s.commitIndex),
              String(s.appliedIndex),
              s.voters.join(',') + (s.learners.length > 0 ? ` +${s.learners.join(',')}` : ''),
            ])
          : [],
      )
      if (shardRows.length > 0) {
        ctx.print('')
        ctx.print(
          table([['NODE', 'SHARD', 'ROLE', 'LEADER', 'TERM', 'COMMIT', 'APPLIED', 'VOTERS'], ...shardRows]),
        )
      }
    }
    const firstError = results.find((r): r is Extract<EndpointStatus, { ok: false }> => !r.ok)
    if (results.every((r) => !r.ok) && firstError !== undefined) {
      const code = exitCodeForError(firstError.error, 'read')
      return code === ExitCode.Ok ? ExitCode.Error : code
    }
    return ExitCode.Ok
  },
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
