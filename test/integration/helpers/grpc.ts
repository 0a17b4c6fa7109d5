/**
 * Thin promise wrappers over the generated grpc-js clients, for integration tests that speak the
 * wire protocol directly (not through the SDK): typed unary calls, whole scans, raw-bytes calls
 * (to send malformed requests) and the health and reflection services.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import {
  Client,
  credentials,
  loadPackageDefinition,
  makeGenericClientConstructor,
  Metadata,
  type CallOptions,
  type ServiceError,
} from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'
import { service as healthService } from 'grpc-health-check'
import { expect } from 'vitest'
import { AdminServiceClient, type StatusResponse } from '../../../src/gen/ringkv/v1/admin.ts'
import {
  KvServiceClient,
  type BatchGetRequest,
  type BatchGetResponse,
  type BatchRequest,
  type BatchResponse,
  type DeleteRequest,
  type DeleteResponse,
  type GetRequest,
  type GetResponse,
  type MultiRequest,
  type MultiResponse,
  type PutRequest,
  type PutResponse,
  type ScanRequest,
  type ScanResponse,
} from '../../../src/gen/ringkv/v1/kv.ts'

// A local subchannel pool per client: grpc-js otherwise shares connections (and their reconnect
// backoff) between clients of one address, so a client made after a kvd restart would inherit
// the old connection's failure state.
const clientOptions = {
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
  'grpc.use_local_subchannel_pool': 1,
}

export function kvClient(address: string): KvServiceClient {
  return new KvServiceClient(address, credentials.createInsecure(), clientOptions)
}

export function adminClient(address: string): AdminServiceClient {
  return new AdminServiceClient(address, credentials.createInsecure(), clientOptions)
}

type Unary<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => unknown

function promisify<Req, Res>(
  fn: Unary<Req, Res>,
  self: Client,
  request: Req,
  deadlineMs: number,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    fn.call(self, request, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err !== null ? reject(err) : resolve(res),
    )
  })
}

/** Promise-returning KvService calls with a default 10 s deadline. */
export function kv(client: KvServiceClient, deadlineMs = 10_000) {
  return {
    get: (r: Partial<GetRequest>) =>
      promisify<GetRequest, GetResponse>(
        client.get,
        client,
        { key: Buffer.alloc(0), options: undefined, ...r },
        deadlineMs,
      ),
    put: (r: Partial<PutRequest>) =>
      promisify<PutRequest, PutResponse>(
        client.put,
        client,
        { key: Buffer.alloc(0), value: Buffer.alloc(0), options: undefined, ...r },
        deadlineMs,
      ),
    delete: (r: Partial<DeleteRequest>) =>
      promisify<DeleteRequest, DeleteResponse>(
        client.delete,
        client,
        { key: Buffer.alloc(0), options: undefined, ...r },
        deadlineMs,
      ),
    batchGet: (r: Partial<BatchGetRequest>) =>
      promisify<BatchGetRequest, BatchGetResponse>(
        client.batchGet,
        client,
        { keys: [], options: undefined, ...r },
        deadlineMs,
      ),
    batch: (r: Partial<BatchRequest>) =>
      promisify<BatchRequest, BatchResponse>(
        client.batch,
        client,
        { ops: [], options: undefined, ...r },
        deadlineMs,
      ),
    multi: (r: Partial<MultiRequest>) =>
      promisify<MultiRequest, MultiResponse>(client.multi, client, { ops: [], ...r }, deadlineMs),
    /** Every message of one Scan call. */
    scan: (r: Partial<ScanRequest>, options: Partial<CallOptions> = {}) =>
      new Promise<ScanResponse[]>((resolve, reject) => {
        const messages: ScanResponse[] = []
        const stream = client.scan(
          { prefix: Buffer.alloc(0), cursor: Buffer.alloc(0), limit: 0, options: undefined, ...r },
          { deadline: Date.now() + deadlineMs, ...options },
        )
        stream.on('data', (m: ScanResponse) => messages.push(m))
        stream.on('error', reject)
        stream.on('end', () => resolve(messages))
      }),
  }
}

export function adminStatus(client: AdminServiceClient): Promise<StatusResponse> {
  return new Promise((resolve, reject) =>
    client.status({}, (err, res) => (err !== null ? reject(err) : resolve(res))),
  )
}

/** Sends raw bytes as the request of a unary method (e.g. '/ringkv.v1.KvService/Put'). */
export function rawUnary(client: Client, path: string, bytes: Buffer, deadlineMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      bytes,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err, res) => (err !== null && err !== undefined ? reject(err) : resolve(res ?? Buffer.alloc(0))),
    )
  })
}

/** Sends raw bytes as the request of a server-streaming method; resolves with the messages. */
export function rawStream(
  client: Client,
  path: string,
  bytes: Buffer,
  deadlineMs = 10_000,
): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = []
    const stream = client.makeServerStreamRequest<Buffer, Buffer>(
      path,
      (b) => b,
      (b) => b,
      bytes,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
    )
    stream.on('data', (b: Buffer) => out.push(b))
    stream.on('error', reject)
    stream.on('end', () => resolve(out))
  })
}

export function plainClient(address: string): Client {
  return new Client(address, credentials.createInsecure(), clientOptions)
}

/** Awaits a failing call and checks its gRPC code and ringkv-code; returns the error. */
export async function expectFailure(
  promise: Promise<unknown>,
  grpcCode: number,
  ringkvCode?: string,
): Promise<ServiceError> {
  let error: ServiceError | undefined
  try {
    await promise
  } catch (err) {
    error = err as ServiceError
  }
  expect(error, 'the call should have failed').toBeDefined()
  const e = error as ServiceError
  expect({ code: e.code, ringkv: e.metadata?.get('ringkv-code')[0] }).toEqual({
    code: grpcCode,
    ringkv: ringkvCode ?? e.metadata?.get('ringkv-code')[0],
  })
  return e
}

export function trailer(err: ServiceError, key: string): string | undefined {
  return err.metadata?.get(key)[0] as string | undefined
}

const HealthClient = makeGenericClientConstructor(
  healthService as unknown as Parameters<typeof makeGenericClientConstructor>[0],
  'Health',
)

/** grpc.health.v1.Health/Check for `service`; resolves with the status name. */
export function healthCheck(address: string, service: string): Promise<string> {
  const client = new HealthClient(address, credentials.createInsecure()) as unknown as {
    check(req: { service: string }, cb: (err: ServiceError | null, res: { status: string }) => void): void
    close(): void
  }
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, res) => {
      client.close()
      if (err !== null) reject(err)
      else resolve(res.status)
    }),
  )
}

const reflectionProto = join(
  dirname(createRequire(import.meta.url).resolve('@grpc/reflection')),
  '../proto/grpc/reflection/v1/reflection.proto',
)

/** grpc.reflection.v1 ServerReflectionInfo list_services: the full service names. */
export function reflectionListServices(address: string): Promise<string[]> {
  const definition = protoLoader.loadSync(reflectionProto, { keepCase: true, defaults: true, oneofs: true })
  const pkg = loadPackageDefinition(definition) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: new (a: string, c: unknown) => Client } } }
  }
  const client = new pkg.grpc.reflection.v1.ServerReflection(
    address,
    credentials.createInsecure(),
  ) as unknown as {
    ServerReflectionInfo(): NodeJS.ReadWriteStream & { end(): void; write(x: unknown): boolean }
    close(): void
  }
  return new Promise((resolve, reject) => {
    const stream = client.ServerReflectionInfo()
    stream.on('data', (res: { list_services_response?: { service: { name: string }[] } }) => {
      resolve((res.list_services_response?.service ?? []).map((s) => s.name))
      stream.end()
      client.close()
    })
    stream.on('error', reject)
    stream.write({ list_services: '' })
  })
}
