/**
 * One unary gRPC call of the SDK, with the attempt's deadline and cancellation (client.ts and
 * batcher.ts both send through it).
 */
import { Metadata, type ClientUnaryCall } from '@grpc/grpc-js'

export type UnaryCallback<T> = (err: Error | null, res: T) => void

/** What one RPC attempt needs: its gRPC deadline and the signal that cancels it. */
export interface RpcContext {
  readonly signal: AbortSignal
  readonly deadline: Date
}

/**
 * One unary RPC: sends the attempt's deadline as the gRPC deadline and cancels the call when the
 * attempt's signal fires (caller abort, client close, or our own deadline timer).
 */
export function unary<T>(
  rpc: RpcContext,
  start: (metadata: Metadata, options: { deadline: Date }, callback: UnaryCallback<T>) => ClientUnaryCall,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => call.cancel()
    const call = start(new Metadata(), { deadline: rpc.deadline }, (err, res) => {
      rpc.signal.removeEventListener('abort', onAbort)
      if (err !== null) reject(err)
      else resolve(res)
    })
    if (rpc.signal.aborted) call.cancel()
    else rpc.signal.addEventListener('abort', onAbort, { once: true })
  })
}
