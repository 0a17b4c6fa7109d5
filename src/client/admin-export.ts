/**
 * The ExportShard stream of one node (admin.proto), for `kvctl backup create`: one channel per
 * call (credentials and options as admin-call.ts), the call bounded by `deadlineMs`, its messages
 * yielded as they come (grpc-js reads ahead only as far as HTTP/2 flow control lets it, so a slow
 * consumer holds the node's stream back). Errors come back as KvError (client/status.ts); the
 * caller's abort is CANCELLED. Breaking out of the loop cancels the call.
 */
import { Metadata } from '@grpc/grpc-js'
import { SystemClock } from '../common/clock-system.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { limits } from '../common/limits.ts'
import type { ExportShardResponse } from '../gen/ringkv/v1/admin.ts'
import { adminClient, type AdminCallOptions } from './admin-call.ts'
import { kvErrorFromGrpc } from './status.ts'

export type { ExportShardResponse } from '../gen/ringkv/v1/admin.ts'

export async function* exportShard(
  endpoint: string,
  shardId: number,
  options: AdminCallOptions,
): AsyncGenerator<ExportShardResponse> {
  const deadlineMs = options.deadlineMs ?? limits.requestDeadlineMsMax
  const clock = options.clock ?? new SystemClock()
  options.signal?.throwIfAborted()
  const client = adminClient(endpoint, options)
  const call = client.exportShard({ shardId }, new Metadata(), { deadline: clock.wallMs() + deadlineMs })
  const onAbort = (): void => call.cancel()
  options.signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for await (const message of call) yield message as ExportShardResponse
  } catch (err) {
    if (options.signal?.aborted === true)
      throw new KvError(ErrorCode.Cancelled, 'cancelled by the caller', { cause: options.signal.reason })
    throw kvErrorFromGrpc(err)
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
    call.cancel()
    client.close()
  }
}
