/**
 * Forwarding: a request this node cannot serve goes, unchanged, to the node that can (router.ts
 * picks it), within the caller's deadline and cancelled with the caller's call. The forwarded
 * call carries `ringkv-forwarded-by`, so the receiver never forwards it again. Counted per method.
 */
import type {
  ClientReadableStream,
  ClientUnaryCall,
  Metadata,
  CallOptions,
  ServiceError,
} from '@grpc/grpc-js'
import type {
  BatchGetRequest,
  BatchGetResponse,
  BatchRequest,
  BatchResponse,
  DeleteRequest,
  DeleteResponse,
  GetRequest,
  GetResponse,
  MultiRequest,
  MultiResponse,
  PutRequest,
  PutResponse,
  RegisterSessionRequest,
  RegisterSessionResponse,
  ScanRequest,
  ScanResponse,
} from '../gen/ringkv/v1/kv.ts'
import type { Principal } from '../net/index.ts'
import { peerError, type PeerClients } from './peer-clients.ts'

/** How a forwarded call is bounded: the original call's deadline and its cancellation. */
export interface ForwardCall {
  /** Absolute (ms since the epoch, or a Date), as grpc-js takes it; Infinity = none. */
  readonly deadline: Date | number
  readonly signal: AbortSignal
  /** The client the request is passed on for (the receiver's context principal). */
  readonly principal?: Principal
}

interface UnaryMethods {
  get: [GetRequest, GetResponse]
  put: [PutRequest, PutResponse]
  delete: [DeleteRequest, DeleteResponse]
  batchGet: [BatchGetRequest, BatchGetResponse]
  batch: [BatchRequest, BatchResponse]
  multi: [MultiRequest, MultiResponse]
  registerSession: [RegisterSessionRequest, RegisterSessionResponse]
}
type UnaryMethod = keyof UnaryMethods
type RequestOf<M extends UnaryMethod> = UnaryMethods[M][0]
type ResponseOf<M extends UnaryMethod> = UnaryMethods[M][1]

type AnyUnary = (
  request: unknown,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: unknown) => void,
) => ClientUnaryCall

export class Forwarder {
  private readonly counts = new Map<string, number>()

  constructor(private readonly clients: PeerClients) {}

  /** Requests forwarded since start, in total. */
  get total(): number {
    let n = 0
    for (const v of this.counts.values()) n += v
    return n
  }

  /** Requests forwarded since start, by method. */
  byMethod(): ReadonlyMap<string, number> {
    return this.counts
  }

  async unary<M extends UnaryMethod>(
    address: string,
    method: M,
    request: RequestOf<M>,
    call: ForwardCall,
  ): Promise<ResponseOf<M>> {
    this.counts.set(method, (this.counts.get(method) ?? 0) + 1)
    call.signal.throwIfAborted()
    const client = this.clients.of(address).kv
    const fn = (client[method] as unknown as AnyUnary).bind(client)
    return await new Promise<ResponseOf<M>>((resolve, reject) => {
      const onAbort = (): void => pending.cancel()
      const pending = fn(
        request,
        this.clients.forwardedMetadata(call.principal),
        { deadline: call.deadline },
        (err, response) => {
          call.signal.removeEventListener('abort', onAbort)
          if (err !== null)
            reject(call.signal.aborted ? (call.signal.reason as Error) : peerError(err, address))
          else resolve(response as ResponseOf<M>)
        },
      )
      call.signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** A forwarded scan: the peer's pages, one by one, as they arrive. */
  async *scan(address: string, request: ScanRequest, call: ForwardCall): AsyncGenerator<ScanResponse> {
    this.counts.set('scan', (this.counts.get('scan') ?? 0) + 1)
    call.signal.throwIfAborted()
    const stream: ClientReadableStream<ScanResponse> = this.clients
      .of(address)
      .kv.scan(request, this.clients.forwardedMetadata(call.principal), { deadline: call.deadline })
    const onAbort = (): void => stream.cancel()
    call.signal.addEventListener('abort', onAbort, { once: true })
    try {
      for await (const page of stream as AsyncIterable<ScanResponse>) yield page
    } catch (err) {
      if (call.signal.aborted) throw call.signal.reason as Error
      throw peerError(err as ServiceError, address)
    } finally {
      call.signal.removeEventListener('abort', onAbort)
      stream.cancel()
    }
  }
}
