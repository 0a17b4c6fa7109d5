/**
 * When a command fails with UNAVAILABLE and several endpoints were given, the SDK's error tells
 * only the last endpoint it tried. kvctl then asks each endpoint once more, briefly and in
 * parallel, and when none answers names what each one said (`127.0.0.1:7001: connection refused;
 * db2:7001: name not resolved`), so the real cause (a typo, a TLS mismatch, a firewall) shows even
 * when it is not the last one's. When one does answer, the original error stands.
 */
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { CliContext } from './context.ts'

/** Budget of each endpoint's second look (the call has failed already: keep it short). */
export const unreachableProbeMs = 1_000

/** The error to show for `err`: a fuller UNAVAILABLE when every endpoint fails, else `err`. */
export async function explainUnreachable(ctx: CliContext, err: unknown): Promise<unknown> {
  const { endpoints } = ctx.globals
  if (!isKvError(err) || err.code !== ErrorCode.Unavailable || endpoints.length < 2) return err
  const causes = await Promise.all(
    endpoints.map(async (endpoint): Promise<string | undefined> => {
      try {
        await ctx.client.status({ endpoint, deadlineMs: unreachableProbeMs })
        return undefined
      } catch (e) {
        return `${endpoint}: ${isKvError(e) ? transportCause(e) : String(e)}`
      }
    }),
  )
  if (causes.some((c) => c === undefined)) return err
  return new KvError(ErrorCode.Unavailable, `no endpoint answered: ${causes.join('; ')}`, {
    ...(err.details !== undefined ? { details: err.details } : {}),
  })
}

/** What one endpoint's failure says, without grpc-js's wrapping. */
export function transportCause(e: KvError): string {
  const last = /Last error: (?:Error: )?(.*?)\.?$/.exec(e.message)?.[1]
  const text = (last ?? e.message).replace(/\s*\n\s*/g, ' ')
  return e.code === ErrorCode.Unavailable ? text : `${e.code}: ${text}`
}
