/**
 * One admin call to one node, or to the first of several nodes that answers: what the operator
 * tools (`admin-fault.ts`, `admin-moves.ts`) share. Each call opens its own channel (credentials
 * and options from the net room, as KvClient's), makes one attempt within its deadline, and closes
 * the channel. Errors come back as KvError (client/status.ts); the caller's abort is CANCELLED.
 */
import { Metadata, type ChannelCredentials, type ChannelOptions, type ServiceError } from '@grpc/grpc-js'
import type { Clock } from '../common/clock.ts'
import { SystemClock } from '../common/clock-system.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import { AdminServiceClient } from '../gen/ringkv/v1/admin.ts'
import {
  bearerTokenInterceptor,
  clientChannelCredentials,
  clientTlsChannelOptions,
  type ClientTls,
} from '../net/index.ts'
import { channelOptionsDefault } from './endpoints.ts'
import { kvErrorFromGrpc } from './status.ts'

export interface AdminCallOptions {
  /** Budget of the call (of each endpoint's attempt); default limits.requestDeadlineMsDefault. */
  readonly deadlineMs?: number
  readonly signal?: AbortSignal
  readonly credentials?: ChannelCredentials
  /** TLS as KvClientInit.tls (default plaintext); ignored when `credentials` is given. */
  readonly tls?: ClientTls
  /** A bearer token, as KvClientInit.token (admin calls need role admin). */
  readonly token?: string
  readonly channelOptions?: ChannelOptions
  readonly clock?: Clock
}

/** Starts one call on `client` with `md` and the absolute `deadline` (ms since the epoch). */
export type AdminCallStart<T> = (
  client: AdminServiceClient,
  md: Metadata,
  deadline: number,
  cb: (err: ServiceError | null, res: T) => void,
) => { cancel(): void }

function deadlineMsOf(options: AdminCallOptions): number {
  const deadlineMs = options.deadlineMs ?? limits.requestDeadlineMsDefault
  if (!(deadlineMs > 0)) throw new TypeError(`bad deadlineMs ${deadlineMs}`)
  return deadlineMs
}

/** One call to the node at `endpoint`. */
export async function adminCall<T>(
  endpoint: string,
  options: AdminCallOptions,
  start: AdminCallStart<T>,
): Promise<T> {
  const deadlineMs = deadlineMsOf(options)
  options.signal?.throwIfAborted()
  const clock = options.clock ?? new SystemClock()
  return await once(endpoint, clock.wallMs() + deadlineMs, options, start)
}

/**
 * The call to each of `endpoints` in turn until one answers: an endpoint that cannot be reached
 * (UNAVAILABLE, DEADLINE_EXCEEDED) is skipped, any other answer (a refusal included) is final.
 */
export async function adminCallAny<T>(
  endpoints: readonly string[],
  options: AdminCallOptions,
  start: AdminCallStart<T>,
): Promise<T> {
  if (endpoints.length === 0) throw new TypeError('no endpoints')
  const deadlineMs = deadlineMsOf(options)
  const clock = options.clock ?? new SystemClock()
  let last: unknown
  for (const endpoint of endpoints) {
    options.signal?.throwIfAborted()
    try {
      return await once(endpoint, clock.wallMs() + deadlineMs, options, start)
    } catch (err) {
      last = err
      if (isKvError(err) && (err.code === ErrorCode.Unavailable || err.code === ErrorCode.DeadlineExceeded))
        continue
      throw err
    }
  }
  throw last
}

/** A client of `endpoint`'s admin API, its channel built with the options' credentials and token. */
export function adminClient(endpoint: string, options: AdminCallOptions): AdminServiceClient {
  return new AdminServiceClient(endpoint, options.credentials ?? clientChannelCredentials(options.tls), {
    ...channelOptionsDefault,
    ...clientTlsChannelOptions(options.tls),
    ...options.channelOptions,
    interceptors: options.token === undefined ? [] : [bearerTokenInterceptor(options.token)],
  })
}

async function once<T>(
  endpoint: string,
  deadline: number,
  options: AdminCallOptions,
  start: AdminCallStart<T>,
): Promise<T> {
  const client = adminClient(endpoint, options)
  const signal = options.signal
  try {
    return await new Promise<T>((resolve, reject) => {
      const onAbort = (): void => call.cancel()
      const call = start(client, new Metadata(), deadline, (err, res) => {
        signal?.removeEventListener('abort', onAbort)
        if (err !== null) reject(err)
        else resolve(res)
      })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  } catch (err) {
    if (signal?.aborted === true)
      throw new KvError(ErrorCode.Cancelled, 'cancelled by the caller', { cause: signal.reason })
    throw kvErrorFromGrpc(err)
  } finally {
    client.close()
  }
}
