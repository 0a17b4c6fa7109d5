/**
 * RaftTransportService: the receiving end of peer traffic (raft.proto), wiring only. The
 * decisions (what is misaddressed, faults, delays, where envelopes go) belong to the node's
 * PeerInbound (node/transport-grpc.ts); this file turns gRPC calls into its calls.
 *
 * Both calls come through the request pipeline (net/): on the peer listener only, and with TLS
 * only from a node of the registry whose certificate backs the node id it claims.
 *
 * Stream: the caller names itself and the node it means in metadata (`ringkv-from`, `ringkv-to`;
 * net/metadata.ts). A stream without a valid sender, or meant for another node, is refused with
 * INVALID_ARGUMENT (the pipeline already refused a sender its certificate does not back). Otherwise the server answers with one hello message
 * (`received` 0), which is what tells the sender the stream is up, and then hands every
 * StreamRequest's envelopes to `transport.receive`. A frame that does not decode ends the stream
 * with INVALID_ARGUMENT (the sender reconnects); nothing a peer sends crashes the server. When the
 * transport closes, open streams end with UNAVAILABLE so a graceful shutdown is not held up by
 * them.
 *
 * Snapshot: the first message carries the header (every message repeats it, and must repeat it
 * unchanged; offsets must follow on), the data flows to `transport.receiveSnapshot` as an async
 * iterable that reads the call only as fast as it is consumed (backpressure to the sender), and the
 * answer is `accepted` true when the host installed it, false when it refused. A protocol error
 * (malformed message, bad header, gap, no `last`) is INVALID_ARGUMENT instead; a header whose
 * sender is not the caller's certificate is PERMISSION_DENIED; the whole receive has
 * limits.snapshotSendMsMax.
 */
import type { Metadata, ServerReadableStream } from '@grpc/grpc-js'
import { AssertionError } from '../common/assert.ts'
import { deadlineSignal, type Clock } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { isSafeUint, type LogIndex, type NodeId, type ShardId, type Term } from '../common/ids.ts'
import { limits as defaultLimits, type Limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import {
  RaftTransportServiceService,
  type SnapshotRequest,
  type SnapshotResponse,
  type StreamRequest,
  type StreamResponse,
} from '../gen/ringkv/v1/raft.ts'
import type { PeerEnvelope, PeerInbound, SnapshotHeader } from '../node/transport.ts'
import {
  bidi,
  clientStream,
  decoded,
  isMalformed,
  nodeIdText,
  peerMetadataKeys,
  withTolerantDecoding,
  type CallContext,
  type Handler,
  type MalformedRequest,
} from '../net/index.ts'
import { toStatus } from './status.ts'

export const raftServiceDefinition = withTolerantDecoding(RaftTransportServiceService)

export interface RaftServiceComponents {
  /** The receiving half of the node's peer transport. */
  readonly transport: PeerInbound
  readonly clock: Clock
  readonly logger: Logger
  /** The effective limits (config.limits); default the built-in ones. */
  readonly limits?: Readonly<Limits>
}

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

/** A positive node id from metadata, or undefined. */
function nodeIdFrom(metadata: Metadata, key: string): NodeId | undefined {
  return nodeIdText(metadata.get(key)[0]) as NodeId | undefined
}

/** The RaftTransportService handlers, by the generated definition's method names, for a GrpcListener. */
export type RaftServiceHandlers = Readonly<Record<keyof typeof raftServiceDefinition, Handler>>

/** The node a caller's certificate binds, or undefined without TLS (claims are taken as made). */
function certifiedNode(ctx: CallContext): NodeId | undefined {
  return ctx.caller.kind === 'node' ? ctx.caller.nodeId : undefined
}

/** The service over the node's peer transport. */
export function createRaftService(components: RaftServiceComponents): RaftServiceHandlers {
  const { transport, clock } = components
  const limits = components.limits ?? defaultLimits
  const log = components.logger.child({ component: 'raft-service' })

  const stream = bidi<StreamRequest, StreamResponse>((call) => {
    let done = false
    const onClosed = (): void => finish(new KvError(ErrorCode.Unavailable, 'peer transport closed'))
    /** Ends the call once: with `err` as its status, or OK; `sendStatus` false when the peer is gone. */
    const finish = (err: unknown, sendStatus = true): void => {
      if (done) return
      done = true
      transport.closed.removeEventListener('abort', onClosed)
      if (!sendStatus) return
      if (err === undefined) call.end()
      else call.emit('error', toStatus(err, log))
    }
    // Until the checks below pass, a client that goes away needs no status.
    call.on('cancelled', () => finish(undefined, false))
    call.on('error', () => finish(undefined, false))
    if (transport.closed.aborted) {
      finish(new KvError(ErrorCode.Unavailable, 'peer transport closed'))
      return
    }
    const peer = nodeIdFrom(call.metadata, peerMetadataKeys.from)
    if (peer === undefined) {
      finish(
        invalid(peerMetadataKeys.from, `a peer stream needs ${peerMetadataKeys.from}: the sender's node id`),
      )
      return
    }
    const to = nodeIdFrom(call.metadata, peerMetadataKeys.to)
    if (to !== transport.nodeId) {
      finish(invalid(peerMetadataKeys.to, `this is node ${transport.nodeId}, not node ${to ?? '(none)'}`))
      return
    }
    transport.closed.addEventListener('abort', onClosed, { once: true })
    const plog = log.child({ peer })
    plog.debug({}, 'peer stream accepted')
    call.on('data', (request: StreamRequest | MalformedRequest) => {
      if (done) return
      if (isMalformed(request)) {
        plog.warn({}, 'malformed peer stream message, ending the stream')
        try {
          decoded(request)
        } catch (err) {
          finish(err)
        }
        return
      }
      // Ids are checked by `receive`: an envelope not from `peer` to this node is dropped there
      // (a zero id cannot match either, so the casts below never let one through).
      const envelopes: PeerEnvelope[] = request.envelopes.map((e) => ({
        shardId: e.shardId as ShardId,
        from: e.fromNode as NodeId,
        to: e.toNode as NodeId,
        payload: e.message,
      }))
      transport.receive(peer, envelopes)
    })
    call.on('end', () => finish(undefined))
    // The hello: the sender counts the stream as up once it sees this.
    call.write({ received: 0 })
  })

  const snapshot = clientStream<SnapshotRequest, SnapshotResponse>(
    (call, ctx) =>
      new Promise<SnapshotResponse>((resolve, reject) => {
        receiveSnapshot(call, certifiedNode(ctx), (err, response) => {
          if (err !== null) reject(err)
          else resolve(response!)
        })
      }),
  )

  /** One Snapshot call; `callback` gets the answer or the error to send (a broken invariant is thrown). */
  const receiveSnapshot = (
    call: ServerReadableStream<SnapshotRequest | MalformedRequest, SnapshotResponse>,
    sender: NodeId | undefined,
    callback: (err: unknown, response?: SnapshotResponse) => void,
  ): void => {
    const cancel = new AbortController()
    call.on('cancelled', () =>
      cancel.abort(new KvError(ErrorCode.Cancelled, 'sender cancelled the snapshot')),
    )
    const deadline = deadlineSignal(clock, limits.snapshotSendMsMax, cancel.signal)
    const reader = new SnapshotReader(call, transport.nodeId, sender)
    let answered = false
    const answer = (...args: Parameters<typeof callback>): void => {
      if (answered) return
      answered = true
      deadline.dispose()
      callback(...args)
    }
    const run = async (): Promise<void> => {
      const header = await reader.header()
      const fields = { peer: header.from, shard: header.shardId, index: header.index, term: header.term }
      const aborted = new Promise<never>((_, reject) => {
        if (deadline.signal.aborted) reject(deadline.signal.reason)
        deadline.signal.addEventListener('abort', () => reject(deadline.signal.reason), { once: true })
      })
      aborted.catch(() => {})
      try {
        await Promise.race([transport.receiveSnapshot(header, reader.chunks(), deadline.signal), aborted])
      } catch (err) {
        if (reader.protocolError !== undefined) throw reader.protocolError
        if (deadline.signal.aborted) throw deadline.signal.reason
        if (err instanceof AssertionError) throw err
        log.debug({ ...fields, err }, 'snapshot not accepted')
        answer(null, { accepted: false, bytesReceived: reader.bytes })
        return
      }
      answer(null, { accepted: true, bytesReceived: reader.bytes })
    }
    run().catch((err: unknown) => {
      if (err instanceof AssertionError) deadline.dispose()
      answer(err)
    })
  }

  return { stream, snapshot }
}

/**
 * Reads one Snapshot call: the header from the first message, then the data of every message in
 * order, checking each against the protocol. `protocolError` records the first violation (the
 * chunk iterable throws it too, so the host's install fails).
 */
class SnapshotReader {
  private readonly iterator: AsyncIterator<SnapshotRequest | MalformedRequest>
  private readonly self: NodeId
  /** The sender the caller's certificate binds (undefined without TLS). */
  private readonly sender: NodeId | undefined
  private first: SnapshotRequest | undefined
  private started = false
  bytes = 0
  protocolError: KvError | undefined

  constructor(
    call: ServerReadableStream<SnapshotRequest | MalformedRequest, SnapshotResponse>,
    self: NodeId,
    sender: NodeId | undefined,
  ) {
    // Pulled one message at a time: grpc-js reads from the connection only as messages are taken.
    this.iterator = call[Symbol.asyncIterator]()
    this.self = self
    this.sender = sender
  }

  private fail(field: string, message: string): never {
    this.protocolError ??= invalid(field, message)
    throw this.protocolError
  }

  private async next(): Promise<SnapshotRequest | undefined> {
    const { value, done } = await this.iterator.next()
    if (done === true) return undefined
    try {
      return decoded(value)
    } catch (err) {
      this.protocolError ??= err as KvError
      throw err
    }
  }

  async header(): Promise<SnapshotHeader> {
    const first = await this.next()
    if (first === undefined) return this.fail('request', 'empty snapshot stream')
    if (first.fromNode < 1) this.fail('from_node', 'snapshot needs from_node')
    if (this.sender !== undefined && first.fromNode !== this.sender) {
      this.protocolError ??= new KvError(
        ErrorCode.PermissionDenied,
        `a snapshot from node ${first.fromNode} on node ${this.sender}'s certificate`,
        { details: { field: 'from_node' } },
      )
      throw this.protocolError
    }
    if (first.toNode !== this.self)
      this.fail('to_node', `this is node ${this.self}, not node ${first.toNode}`)
    if (first.offset !== 0) this.fail('offset', `first snapshot message at offset ${first.offset}`)
    if (!isSafeUint(first.index) || !isSafeUint(first.term)) this.fail('index', 'bad snapshot index or term')
    this.first = first
    return {
      shardId: first.shardId as ShardId,
      from: first.fromNode as NodeId,
      to: first.toNode as NodeId,
      index: first.index as LogIndex,
      term: first.term as Term,
    }
  }

  /** The data, in order; single use. */
  async *chunks(): AsyncGenerator<Uint8Array> {
    const first = this.first
    if (first === undefined || this.started) return this.fail('request', 'snapshot chunks read twice')
    this.started = true
    for (let message: SnapshotRequest | undefined = first; ;) {
      if (message === undefined) this.fail('last', 'snapshot stream ended before its last message')
      if (
        message.shardId !== first.shardId ||
        message.fromNode !== first.fromNode ||
        message.toNode !== first.toNode ||
        message.index !== first.index ||
        message.term !== first.term
      )
        this.fail('request', 'snapshot header changed mid-stream')
      if (message.offset !== this.bytes)
        this.fail('offset', `snapshot message at offset ${message.offset}, expected ${this.bytes}`)
      if (message.data.length > 0) {
        this.bytes += message.data.length
        yield message.data
      }
      if (message.last) return
      message = await this.next()
    }
  }
}
