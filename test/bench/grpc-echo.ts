/**
 * The second baseline of the single-node bench: a bare grpc-js unary echo, no SDK, no kvd code.
 * The server runs in its own process (as kvd does) with kvd's server options; the client uses the
 * SDK's channel options and sends a deadline with every call, as the SDK does. Requests and
 * responses have exactly the byte sizes of the kvd call they stand for (measured by encoding the
 * real messages), so kvd/echo is the cost of our own code over gRPC itself.
 *
 * Run as a script (`node grpc-echo.js --serve HOST:PORT`) it is the echo server: each request's
 * first 4 bytes (big-endian) say how many bytes to answer with.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import {
  Client,
  Server,
  ServerCredentials,
  credentials,
  type ServiceDefinition,
  type sendUnaryData,
  type ServerUnaryCall,
} from '@grpc/grpc-js'
import { limits } from '../../src/common/limits.ts'
import { channelOptionsDefault } from '../../src/client/endpoints.ts'

const identity = (bytes: Buffer): Buffer => bytes

const echoMethod = {
  path: '/ringkv.bench.Echo/Echo',
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
} as const

const echoService: ServiceDefinition = { echo: echoMethod }

/** The options kvd's Server is built with (server/kvd.ts). */
const serverOptions = {
  'grpc.max_receive_message_length': limits.grpcMessageBytesMax,
  'grpc.max_send_message_length': limits.grpcMessageBytesMax,
}

/** A request of `requestBytes` bytes asking for a response of `responseBytes` bytes. */
export function echoRequest(requestBytes: number, responseBytes: number): Buffer {
  const request = Buffer.alloc(Math.max(4, requestBytes), 0x61)
  request.writeUInt32BE(responseBytes, 0)
  return request
}

function serve(address: string): void {
  const server = new Server(serverOptions)
  server.addService(echoService, {
    echo: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      callback(null, Buffer.alloc(call.request.readUInt32BE(0), 0x62))
    },
  })
  server.bindAsync(address, ServerCredentials.createInsecure(), (err) => {
    if (err !== null) throw err
    process.stdout.write('serving\n')
  })
  process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)))
}

/** Starts the echo server in a child process on `address`; resolves once it listens. */
export async function startEchoServer(address: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve', address], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`echo server exited with ${code}`)))
    child.stdout?.once('data', () => resolve())
  })
  child.removeAllListeners('exit')
  return child
}

/** A client of the echo server with the SDK's channel options; `echo` sends one call. */
export class EchoClient {
  private readonly client: Client

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure(), channelOptionsDefault)
  }

  echo(request: Buffer, deadlineMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        echoMethod.path,
        identity,
        identity,
        request,
        { deadline: new Date(Date.now() + deadlineMs) },
        (err, response) => (err !== null ? reject(err) : resolve(response as Buffer)),
      )
    })
  }

  close(): void {
    this.client.close()
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--serve') {
  serve(process.argv[3] ?? '127.0.0.1:0')
}
