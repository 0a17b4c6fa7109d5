/**
 * GrpcPeerTransport: the PeerTransport (transport.ts) over RaftTransportService (raft.proto).
 *
 * Sending, per peer (PeerLink): ONE bidirectional `Stream` call carries every shard's envelopes.
 * `send` appends to a bounded queue (limits.peerSendQueueMax envelopes, limits.peerQueueBytesMax
 * bytes) and schedules a flush on the next microtask, so everything the host sends while handling
 * one Ready goes out together: one StreamRequest per limits.peerBatchBytesMax (a larger envelope
 * goes alone). A write the stream cannot take (grpc-js `write()` false) stops the flush until
 * 'drain'; the queue absorbs the rest, and a full queue drops and reports the peer unreachable.
 *
 * A link is `connecting` (a stream is being opened: envelopes queue), `connected` (the peer
 * answered the stream with its hello: the queue flushes), `backoff` (the stream failed or broke:
 * the queue was dropped, and every send is dropped and reported unreachable until the next dial,
 * after a jittered exponential wait between peerReconnectBackoffMsMin and Max) or `closed`.
 *
 * Receiving (PeerInbound, fed by server/grpc-raft.ts): envelopes not addressed from the stream's
 * peer to this node are dropped; a drop fault on the peer drops the rest, a delay fault holds them
 * in a per-peer FIFO (bounded) for the fault's delay; what is left goes to the handler in order.
 *
 * Snapshots: one client-streaming `Snapshot` call each, on the peer's channel. The data is re-cut
 * into messages of at most limits.snapshotChunkBytes (every message repeats the header, the first
 * one has offset 0, the last one says `last`), written with flow control, under a deadline of
 * limits.snapshotSendMsMax, and the receiver's `accepted` decides the outcome.
 *
 * The logic (PeerLink, DelayLine, backoffMs, rechunk) knows nothing of gRPC: it talks to a
 * `PeerChannel`, which GrpcPeerChannel implements over grpc-js and tests replace. No ambient time
 * or randomness: the Clock and Random are injected (STYLE.md 7.6).
 */
import { setMaxListeners } from 'node:events'
import {
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientDuplexStream,
  type ClientWritableStream,
} from '@grpc/grpc-js'
import { assert } from '../common/assert.ts'
import { deadlineSignal, DeadlineError, type Clock, type TimerHandle } from '../common/clock.ts'
import { ErrorCode, isKvError, KvError } from '../common/errors.ts'
import type { NodeId } from '../common/ids.ts'
import { limits as defaultLimits, type Limits } from '../common/limits.ts'
import type { Logger } from '../common/logger.ts'
import type { Random } from '../common/random.ts'
import { peerMetadataKeys, plaintextChannelCredentials } from '../net/index.ts'
import {
  RaftTransportServiceClient,
  type RaftEnvelope,
  type SnapshotRequest,
  type SnapshotResponse,
  type StreamRequest,
  type StreamResponse,
} from '../gen/ringkv/v1/raft.ts'
import {
  isActiveFault,
  type Fault,
  type PeerEnvelope,
  type PeerInbound,
  type PeerLinkState,
  type PeerLinkStats,
  type PeerTransport,
  type SnapshotHeader,
  type TransportHandler,
  type TransportStats,
} from './transport.ts'

/**
 * Metadata of a peer stream: the sender's and the intended receiver's node ids (net/metadata.ts).
 * The receiver refuses a stream meant for another node (an address reused after a membership
 * change), and, with TLS, one whose sender is not the node its certificate binds.
 */
export { peerMetadataKeys }

// ---------------------------------------------------------------------------------------------
// The seam between the logic and gRPC.

/** An open peer stream. */
export interface PeerConnection {
  /** Writes one batch as one stream message. False: wait for `onDrain` before writing more. */
  write(envelopes: readonly PeerEnvelope[]): boolean
  /** Cancels the stream. No `onClosed` follows. */
  close(): void
}

export interface PeerConnectionEvents {
  /** The stream can take writes again after a `write` returned false. */
  onDrain(): void
  /** The stream ended or failed (after `openStream` resolved); called at most once. */
  onClosed(err: Error | undefined): void
}

/** Everything of one peer that goes over the network: its stream and its snapshots. */
export interface PeerChannel {
  /**
   * Opens the peer stream. Resolves once the peer answered (its hello); rejects when it cannot,
   * or when `signal` aborts (and then leaves nothing open).
   */
  openStream(events: PeerConnectionEvents, signal: AbortSignal): Promise<PeerConnection>
  /**
   * Streams one snapshot (`chunks` already cut to at most the chunk size); resolves with the
   * receiver's answer (accepted or not). Rejects when the stream fails or `signal` aborts.
   */
  sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<boolean>
  /** Releases the channel; streams and snapshots in flight fail. */
  close(): void
}

export interface PeerTarget {
  readonly peer: NodeId
  readonly address: string
}

export type PeerChannelFactory = (target: PeerTarget) => PeerChannel

/** Counters shared by the links and the transport (read through TransportStats). */
export type TransportCounters = { -readonly [K in keyof Omit<TransportStats, 'peers'>]: number }

/** Every counter at zero: a transport's starting point (the simulator's transport uses it too). */
export function newTransportCounters(): TransportCounters {
  return {
    sent: 0,
    sentBatches: 0,
    sentBytes: 0,
    dropped: 0,
    faultDropped: 0,
    received: 0,
    receivedBatches: 0,
    misaddressed: 0,
    droppedNotStarted: 0,
    droppedDelayFull: 0,
    connects: 0,
    reconnects: 0,
    connectFailures: 0,
    snapshotsSent: 0,
    snapshotsSendFailed: 0,
    snapshotsReceived: 0,
    snapshotsRefused: 0,
  }
}

// ---------------------------------------------------------------------------------------------
// The logic.

/**
 * The wait before redial number `failures` (1-based): min * 2^(failures-1), capped at max, drawn
 * uniformly from its upper half ("equal jitter": never much shorter than planned, and peers that
 * failed together do not redial together).
 */
export function backoffMs(failures: number, min: number, max: number, random: Random): number {
  assert(Number.isSafeInteger(failures) && failures >= 1)
  assert(min >= 1 && min <= max)
  const planned = Math.min(max, min * 2 ** Math.min(failures - 1, 30))
  const half = Math.floor(planned / 2)
  return half + random.int(planned - half + 1)
}

/**
 * Re-cuts a byte stream into pieces of at most `pieceBytes`: a large chunk is split without
 * copying, small chunks are gathered (copied) until a piece is full. Empty chunks vanish.
 */
export async function* rechunk(
  chunks: AsyncIterable<Uint8Array>,
  pieceBytes: number,
): AsyncGenerator<Uint8Array> {
  assert(Number.isSafeInteger(pieceBytes) && pieceBytes > 0)
  let gathered: Uint8Array[] = []
  let gatheredBytes = 0
  const takeGathered = (): Uint8Array => {
    const piece = gathered.length === 1 ? (gathered[0] as Uint8Array) : Buffer.concat(gathered)
    gathered = []
    gatheredBytes = 0
    return piece
  }
  for await (const chunk of chunks) {
    let rest = chunk
    while (rest.byteLength > 0) {
      const room = pieceBytes - gatheredBytes
      if (gatheredBytes === 0 && rest.byteLength >= pieceBytes) {
        yield rest.subarray(0, pieceBytes)
        rest = rest.subarray(pieceBytes)
        continue
      }
      const take = rest.subarray(0, room)
      gathered.push(take)
      gatheredBytes += take.byteLength
      rest = rest.subarray(take.byteLength)
      if (gatheredBytes === pieceBytes) yield takeGathered()
    }
  }
  if (gatheredBytes > 0) yield takeGathered()
}

/**
 * A FIFO whose items come out no earlier than their due time, in order (an item waits behind an
 * earlier one even when its own time has come), on one timer of the injected clock.
 */
export class DelayLine<T> {
  private readonly clock: Clock
  private readonly deliver: (value: T) => void
  private items: { readonly dueMs: number; readonly value: T }[] = []
  private head = 0
  private timer: TimerHandle | undefined

  constructor(clock: Clock, deliver: (value: T) => void) {
    this.clock = clock
    this.deliver = deliver
  }

  get size(): number {
    return this.items.length - this.head
  }

  push(dueMs: number, value: T): void {
    this.items.push({ dueMs, value })
    if (this.timer === undefined) this.arm()
  }

  close(): void {
    this.timer?.cancel()
    this.timer = undefined
    this.items = []
    this.head = 0
  }

  private arm(): void {
    const first = this.items[this.head]
    if (first === undefined) {
      this.items = []
      this.head = 0
      return
    }
    this.timer = this.clock.setTimer(Math.max(0, first.dueMs - this.clock.nowMs()), () => this.fire())
  }

  private fire(): void {
    this.timer = undefined
    const now = this.clock.nowMs()
    for (let item = this.items[this.head]; item !== undefined && item.dueMs <= now;) {
      this.head++
      this.deliver(item.value)
      // `deliver` may have closed the line.
      if (this.items.length === 0) return
      item = this.items[this.head]
    }
    this.arm()
  }
}

export interface PeerLinkInit {
  readonly peer: NodeId
  readonly address: string
  /** Envelopes the queue holds (limits.peerSendQueueMax). */
  readonly queueEnvelopesMax: number
  /** Bytes (payload + framing) the queue holds (limits.peerQueueBytesMax). */
  readonly queueBytesMax: number
  /** Soft budget of one stream message (limits.peerBatchBytesMax). */
  readonly batchBytesMax: number
  /** Hard cap of one envelope, payload + framing: what one stream message can carry. */
  readonly envelopeBytesMax: number
  /** Bytes counted per envelope on top of its payload (limits.peerEnvelopeFramingBytesMax). */
  readonly framingBytes: number
  readonly backoffMsMin: number
  readonly backoffMsMax: number
  /** Time the peer has to answer a new stream (limits.peerConnectMsMax). */
  readonly connectMsMax: number
}

export interface PeerLinkComponents {
  readonly channel: PeerChannel
  readonly clock: Clock
  readonly random: Random
  readonly logger: Logger
  /** The fault towards this peer now (undefined: none). */
  readonly fault: () => Fault | undefined
  /** Reports the peer unreachable (the transport coalesces and defers it). */
  readonly reportUnreachable: () => void
  readonly counters: TransportCounters
}

interface Queued {
  readonly envelope: PeerEnvelope
  /** Payload + framing. */
  readonly bytes: number
  /** 0, or the clock time before which a delay fault holds it. */
  readonly dueMs: number
}

/** Compact the queue's array once this many sent entries sit at its front. */
const queueCompactAfter = 1024

/**
 * The sending side of one peer: bounded queue, batching, backpressure, reconnects (see the file
 * comment). Single-threaded like everything in Node: no call re-enters another.
 *
 * Invariant: state === 'connected' iff connection !== undefined.
 * Invariant: queued bytes/envelopes stay within queueBytesMax/queueEnvelopesMax.
 */
export class PeerLink {
  readonly peer: NodeId
  readonly address: string
  private readonly init: PeerLinkInit
  private readonly components: PeerLinkComponents
  private readonly log: Logger
  private linkState: PeerLinkState = 'connecting'
  private started = false
  private queue: Queued[] = []
  private head = 0
  private queuedBytes = 0
  private connection: PeerConnection | undefined
  /** Bumped whenever a connection (or an attempt) is abandoned, so its late events are ignored. */
  private generation = 0
  private dialing: { readonly controller: AbortController; readonly timer: TimerHandle } | undefined
  private backoffTimer: TimerHandle | undefined
  /** Consecutive failures since the last successful connect. */
  private failures = 0
  private everConnected = false
  private flushScheduled = false
  private waitingDrain = false
  private delayTimer: TimerHandle | undefined
  private delayTimerDueMs = 0
  private tooLargeLogged = false

  constructor(init: PeerLinkInit, components: PeerLinkComponents) {
    assert(init.queueEnvelopesMax > 0 && init.queueBytesMax > 0)
    assert(init.batchBytesMax > 0 && init.batchBytesMax <= init.envelopeBytesMax)
    assert(init.envelopeBytesMax <= init.queueBytesMax)
    this.peer = init.peer
    this.address = init.address
    this.init = init
    this.components = components
    this.log = components.logger.child({ peer: init.peer, address: init.address })
  }

  get state(): PeerLinkState {
    return this.linkState
  }

  get queuedEnvelopes(): number {
    return this.queue.length - this.head
  }

  /** Opens the first stream. */
  start(): void {
    assert(!this.started, 'peer link started twice')
    this.started = true
    if (this.linkState !== 'closed') this.dial()
  }

  /** Queues `envelope` (see the file comment for what is dropped and reported). */
  send(envelope: PeerEnvelope): void {
    assert(envelope.to === this.peer)
    if (this.linkState === 'closed') return
    const { counters } = this.components
    if (this.components.fault()?.drop === true) {
      counters.faultDropped++
      return
    }
    const bytes = envelope.payload.byteLength + this.init.framingBytes
    if (bytes > this.init.envelopeBytesMax) {
      // NB(transport): Raft will resend the same message; until limits keep every message under
      // one gRPC frame, this peer cannot be reached for this shard (see limits.ts).
      const fields = { shard: envelope.shardId, payloadBytes: envelope.payload.byteLength }
      if (!this.tooLargeLogged)
        this.log.warn({ ...fields, limit: this.init.envelopeBytesMax }, 'envelope too large, dropped')
      else this.log.debug(fields, 'envelope too large, dropped')
      this.tooLargeLogged = true
      this.drop(1)
      return
    }
    if (this.linkState === 'backoff') {
      this.drop(1)
      return
    }
    if (
      this.queuedEnvelopes >= this.init.queueEnvelopesMax ||
      this.queuedBytes + bytes > this.init.queueBytesMax
    ) {
      this.drop(1)
      return
    }
    const delayMs = this.components.fault()?.delayMs ?? 0
    this.queue.push({ envelope, bytes, dueMs: delayMs > 0 ? this.components.clock.nowMs() + delayMs : 0 })
    this.queuedBytes += bytes
    this.scheduleFlush()
  }

  /** Closes the stream and forgets the queue, without reports. Idempotent. */
  close(): void {
    if (this.linkState === 'closed') return
    this.linkState = 'closed'
    this.generation++
    this.dialing?.controller.abort(new KvError(ErrorCode.Cancelled, 'peer link closed'))
    this.dialing?.timer.cancel()
    this.dialing = undefined
    this.backoffTimer?.cancel()
    this.backoffTimer = undefined
    this.delayTimer?.cancel()
    this.delayTimer = undefined
    this.connection?.close()
    this.connection = undefined
    this.clearQueue()
  }

  stats(): PeerLinkStats {
    return {
      peer: this.peer,
      address: this.address,
      state: this.linkState,
      queuedEnvelopes: this.queuedEnvelopes,
      queuedBytes: this.queuedBytes,
    }
  }

  private dial(): void {
    assert(this.connection === undefined)
    this.linkState = 'connecting'
    const generation = ++this.generation
    const controller = new AbortController()
    const timer = this.components.clock.setTimer(this.init.connectMsMax, () =>
      controller.abort(new DeadlineError()),
    )
    this.dialing = { controller, timer }
    this.components.channel
      .openStream(
        {
          onDrain: () => {
            if (generation !== this.generation) return
            this.waitingDrain = false
            this.flush()
          },
          onClosed: (err) => {
            if (generation !== this.generation) return
            this.fail(err ?? new KvError(ErrorCode.Unavailable, 'peer ended the stream'))
          },
        },
        controller.signal,
      )
      .then(
        (connection) => {
          timer.cancel()
          if (generation !== this.generation || this.linkState === 'closed') {
            connection.close()
            return
          }
          this.dialing = undefined
          this.connection = connection
          this.linkState = 'connected'
          this.waitingDrain = false
          const { counters } = this.components
          counters.connects++
          if (this.everConnected) counters.reconnects++
          if (this.everConnected || this.failures > 0)
            this.log.info({ failures: this.failures }, 'peer stream reconnected')
          else this.log.debug({}, 'peer stream connected')
          this.everConnected = true
          this.failures = 0
          this.flush()
        },
        (err: unknown) => {
          timer.cancel()
          if (generation !== this.generation || this.linkState === 'closed') return
          this.dialing = undefined
          this.fail(controller.signal.aborted ? controller.signal.reason : err)
        },
      )
  }

  /** The stream failed or could not be opened: drop the queue, report, back off, redial. */
  private fail(err: unknown): void {
    assert(this.linkState === 'connecting' || this.linkState === 'connected')
    const wasConnected = this.linkState === 'connected'
    this.generation++
    this.connection?.close()
    this.connection = undefined
    this.waitingDrain = false
    this.delayTimer?.cancel()
    this.delayTimer = undefined
    const dropped = this.queuedEnvelopes
    this.clearQueue()
    this.components.counters.dropped += dropped
    this.components.counters.connectFailures++
    // Envelopes written to a broken stream may be lost too: report even when none were queued
    // (etcd-io/raft rafthttp reports unreachable when a stream writer fails).
    if (dropped > 0 || wasConnected) this.components.reportUnreachable()
    this.failures++
    const waitMs = backoffMs(
      this.failures,
      this.init.backoffMsMin,
      this.init.backoffMsMax,
      this.components.random,
    )
    this.linkState = 'backoff'
    const fields = { err, failures: this.failures, backoffMs: waitMs, dropped }
    if (wasConnected) this.log.warn(fields, 'peer stream broke')
    else if (this.failures === 1) this.log.warn(fields, 'peer unreachable')
    else this.log.debug(fields, 'peer still unreachable')
    this.backoffTimer = this.components.clock.setTimer(waitMs, () => {
      this.backoffTimer = undefined
      if (this.linkState === 'backoff') this.dial()
    })
  }

  private drop(count: number): void {
    this.components.counters.dropped += count
    this.components.reportUnreachable()
  }

  private clearQueue(): void {
    this.queue = []
    this.head = 0
    this.queuedBytes = 0
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.linkState !== 'connected' || this.waitingDrain) return
    this.flushScheduled = true
    queueMicrotask(() => {
      this.flushScheduled = false
      this.flush()
    })
  }

  /** Writes queued envelopes, one stream message per batch budget, until done, blocked or delayed. */
  private flush(): void {
    const connection = this.connection
    if (this.linkState !== 'connected' || this.waitingDrain || connection === undefined) return
    const { counters, clock } = this.components
    const fault = this.components.fault()
    let nowMs: number | undefined
    while (this.head < this.queue.length) {
      const batch: PeerEnvelope[] = []
      let batchBytes = 0
      let payloadBytes = 0
      let heldUntilMs = 0
      for (let q = this.queue[this.head]; q !== undefined; q = this.queue[this.head]) {
        if (q.dueMs > 0) {
          nowMs ??= clock.nowMs()
          if (q.dueMs > nowMs) {
            heldUntilMs = q.dueMs
            break
          }
        }
        if (batch.length > 0 && batchBytes + q.bytes > this.init.batchBytesMax) break
        this.head++
        this.queuedBytes -= q.bytes
        // A drop fault set after the envelope was queued cuts it too.
        if (fault?.drop === true) {
          counters.faultDropped++
          continue
        }
        batch.push(q.envelope)
        batchBytes += q.bytes
        payloadBytes += q.envelope.payload.byteLength
      }
      if (batch.length > 0) {
        counters.sent += batch.length
        counters.sentBatches++
        counters.sentBytes += payloadBytes
        if (!connection.write(batch)) {
          this.waitingDrain = true
          break
        }
      }
      if (heldUntilMs > 0) {
        this.armDelayTimer(heldUntilMs, nowMs ?? clock.nowMs())
        break
      }
    }
    if (this.head === this.queue.length) this.clearQueue()
    else if (this.head >= queueCompactAfter && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }

  private armDelayTimer(dueMs: number, nowMs: number): void {
    if (this.delayTimer !== undefined && this.delayTimerDueMs <= dueMs) return
    this.delayTimer?.cancel()
    this.delayTimerDueMs = dueMs
    this.delayTimer = this.components.clock.setTimer(Math.max(0, dueMs - nowMs), () => {
      this.delayTimer = undefined
      this.flush()
    })
  }
}

// ---------------------------------------------------------------------------------------------
// The transport.

export interface GrpcPeerTransportInit {
  readonly nodeId: NodeId
  /** The effective limits (config.limits); default the built-in ones. */
  readonly limits?: Readonly<Limits>
  /** Extra grpc-js options for peer channels (over peerChannelOptions). */
  readonly channelOptions?: ChannelOptions
}

export interface GrpcPeerTransportComponents {
  readonly clock: Clock
  readonly random: Random
  readonly logger: Logger
  /** The credentials of the channel to a peer's address (net/); default plaintext. */
  readonly credentialsFor?: (address: string) => ChannelCredentials
  /** Makes the channel of one peer; default a GrpcPeerChannel (tests inject doubles). */
  readonly channelFactory?: PeerChannelFactory
}

interface PeerEntry {
  readonly address: string
  readonly channel: PeerChannel
  readonly link: PeerLink
}

/** Bytes a StreamRequest adds around its envelopes (field tag and length of each; counted per envelope already). */
const streamRequestFramingBytes = 16

/**
 * The node's peer transport over gRPC: sending half (PeerTransport) and receiving half
 * (PeerInbound, served by server/grpc-raft.ts). See the file comment.
 */
export class GrpcPeerTransport implements PeerTransport, PeerInbound {
  readonly nodeId: NodeId
  private readonly limits: Readonly<Limits>
  private readonly components: GrpcPeerTransportComponents
  private readonly log: Logger
  private readonly channelFactory: PeerChannelFactory
  private readonly counters = newTransportCounters()
  private readonly peers = new Map<NodeId, PeerEntry>()
  private readonly faultTable = new Map<NodeId, Fault>()
  private readonly inboundDelay = new Map<NodeId, DelayLine<readonly PeerEnvelope[]>>()
  private readonly inboundDelayed = new Map<NodeId, number>()
  private readonly unreachable = new Set<NodeId>()
  private readonly closing = new AbortController()
  private handler: TransportHandler | undefined
  private unreachableScheduled = false
  /** Envelope payload cap: one envelope with its framing fits one gRPC message. */
  private readonly envelopeBytesMax: number

  constructor(init: GrpcPeerTransportInit, components: GrpcPeerTransportComponents) {
    this.nodeId = init.nodeId
    this.limits = init.limits ?? defaultLimits
    this.components = components
    this.log = components.logger.child({ component: 'peer-transport' })
    // Tightened limits cap each other: an envelope fits one gRPC message and the whole queue.
    this.envelopeBytesMax = Math.min(
      this.limits.grpcMessageBytesMax - streamRequestFramingBytes,
      this.limits.peerQueueBytesMax,
    )
    assert(this.envelopeBytesMax > this.limits.peerEnvelopeFramingBytesMax)
    const chunkBytes = Math.min(
      this.limits.snapshotChunkBytes,
      this.limits.grpcMessageBytesMax - this.limits.snapshotChunkFramingBytesMax,
    )
    assert(chunkBytes > 0)
    const channelOptions: ChannelOptions = { ...peerChannelOptions(this.limits), ...init.channelOptions }
    const credentialsFor = components.credentialsFor ?? plaintextChannelCredentials
    this.channelFactory =
      components.channelFactory ??
      ((target) =>
        new GrpcPeerChannel(
          {
            ...target,
            self: this.nodeId,
            chunkBytes,
            chunksInFlightMax: this.limits.snapshotChunksInFlightMax,
            snapshotSendMsMax: this.limits.snapshotSendMsMax,
          },
          { clock: components.clock, credentials: credentialsFor(target.address), channelOptions },
        ))
    // Every snapshot in flight (both ways) listens on `closing`.
    setMaxListeners(0, this.closing.signal)
  }

  get closed(): AbortSignal {
    return this.closing.signal
  }

  start(handler: TransportHandler): void {
    assert(this.handler === undefined, 'transport started twice')
    this.handler = handler
  }

  send(envelope: PeerEnvelope): void {
    assert(envelope.from === this.nodeId, `send from ${envelope.from} on node ${this.nodeId}`)
    assert(envelope.to !== this.nodeId, 'send to self')
    if (this.closing.signal.aborted) return
    const entry = this.peers.get(envelope.to)
    if (entry !== undefined) {
      entry.link.send(envelope)
      return
    }
    if (this.faultTable.get(envelope.to)?.drop === true) {
      this.counters.faultDropped++
      return
    }
    this.counters.dropped++
    this.log.debug({ peer: envelope.to }, 'send to unknown peer dropped')
    this.reportUnreachable(envelope.to)
  }

  async sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    assert(header.from === this.nodeId, `snapshot from ${header.from} on node ${this.nodeId}`)
    assert(header.to !== this.nodeId, 'snapshot to self')
    const fields = { peer: header.to, shard: header.shardId, index: header.index, term: header.term }
    const failed = (err: KvError): KvError => {
      this.counters.snapshotsSendFailed++
      this.log.warn({ ...fields, err }, 'snapshot send failed')
      return err
    }
    if (this.closing.signal.aborted) throw failed(new KvError(ErrorCode.Cancelled, 'peer transport closed'))
    if (this.faultTable.get(header.to)?.drop === true)
      throw failed(new KvError(ErrorCode.Unavailable, `peer ${header.to} is cut off by an injected fault`))
    const entry = this.peers.get(header.to)
    if (entry === undefined) throw failed(new KvError(ErrorCode.Unavailable, `peer ${header.to} is unknown`))
    const deadline = deadlineSignal(
      this.components.clock,
      this.limits.snapshotSendMsMax,
      AbortSignal.any([signal, this.closing.signal]),
    )
    try {
      this.log.debug(fields, 'snapshot send started')
      const accepted = await entry.channel.sendSnapshot(header, chunks, deadline.signal)
      if (!accepted) throw new KvError(ErrorCode.Unavailable, `peer ${header.to} refused the snapshot`)
      this.counters.snapshotsSent++
      this.log.info(fields, 'snapshot sent')
    } catch (err) {
      throw failed(snapshotError(err, deadline.signal))
    } finally {
      deadline.dispose()
    }
  }

  setPeers(peers: ReadonlyMap<NodeId, string>): void {
    if (this.closing.signal.aborted) return
    for (const [peer, entry] of [...this.peers]) {
      if (peers.get(peer) === entry.address) continue
      entry.link.close()
      entry.channel.close()
      this.peers.delete(peer)
      this.log.info({ peer, address: entry.address }, 'peer removed')
    }
    for (const [peer, address] of peers) {
      if (peer === this.nodeId || this.peers.has(peer)) continue
      let channel: PeerChannel
      try {
        channel = this.channelFactory({ peer, address })
      } catch (err) {
        // A bad address (grpc-js cannot parse it): the peer stays unknown, sends to it are
        // reported unreachable, and a later setPeers may fix it.
        this.log.error({ peer, address, err }, 'peer address refused')
        continue
      }
      const link = new PeerLink(
        {
          peer,
          address,
          queueEnvelopesMax: this.limits.peerSendQueueMax,
          queueBytesMax: this.limits.peerQueueBytesMax,
          batchBytesMax: Math.min(this.limits.peerBatchBytesMax, this.envelopeBytesMax),
          envelopeBytesMax: this.envelopeBytesMax,
          framingBytes: this.limits.peerEnvelopeFramingBytesMax,
          backoffMsMin: this.limits.peerReconnectBackoffMsMin,
          backoffMsMax: this.limits.peerReconnectBackoffMsMax,
          connectMsMax: this.limits.peerConnectMsMax,
        },
        {
          channel,
          clock: this.components.clock,
          random: this.components.random,
          logger: this.log,
          fault: () => this.faultTable.get(peer),
          reportUnreachable: () => this.reportUnreachable(peer),
          counters: this.counters,
        },
      )
      this.peers.set(peer, { address, channel, link })
      this.log.info({ peer, address }, 'peer added')
      link.start()
    }
  }

  setFault(peer: NodeId, fault: Fault | null): void {
    assert(peer !== this.nodeId, 'fault on self')
    if (!isActiveFault(fault)) {
      if (this.faultTable.delete(peer)) this.log.info({ peer }, 'peer fault cleared')
      return
    }
    assert(
      Number.isSafeInteger(fault.delayMs) &&
        fault.delayMs >= 0 &&
        fault.delayMs <= this.limits.faultDelayMsMax,
      `fault delay ${fault.delayMs}`,
    )
    assert(this.faultTable.has(peer) || this.faultTable.size < this.limits.faultPeersMax, 'fault table full')
    this.faultTable.set(peer, { drop: fault.drop, delayMs: fault.delayMs })
    this.log.info({ peer, drop: fault.drop, delayMs: fault.delayMs }, 'peer fault set')
  }

  faults(): ReadonlyMap<NodeId, Fault> {
    return new Map([...this.faultTable].sort(([a], [b]) => a - b))
  }

  /**
   * Whether a drop fault is in force towards the peer whose address is `address`: the node's
   * other calls to its peers (forwards, meta and replica calls) honour it too, so an injected
   * partition cuts a node off as a real one would.
   */
  isCutOff(address: string): boolean {
    // Asked on every forward: no fault in force (the usual case) is one check.
    if (this.faultTable.size === 0) return false
    for (const [peer, entry] of this.peers)
      if (entry.address === address) return this.faultTable.get(peer)?.drop === true
    return false
  }

  /**
   * Whether a drop fault is in force towards node `peer`: calls it makes to this node (a request
   * it passes on) are refused too, as a real partition would stop them (net/pipeline.ts).
   */
  isCutOffFrom(peer: NodeId): boolean {
    return this.faultTable.size > 0 && this.faultTable.get(peer)?.drop === true
  }

  stats(): TransportStats {
    return { ...this.counters, peers: [...this.peers.values()].map((entry) => entry.link.stats()) }
  }

  async close(): Promise<void> {
    if (this.closing.signal.aborted) return
    this.closing.abort(new KvError(ErrorCode.Cancelled, 'peer transport closed'))
    for (const entry of this.peers.values()) {
      entry.link.close()
      entry.channel.close()
    }
    this.peers.clear()
    for (const line of this.inboundDelay.values()) line.close()
    this.inboundDelay.clear()
    this.inboundDelayed.clear()
    this.unreachable.clear()
    this.log.debug({}, 'peer transport closed')
  }

  // PeerInbound

  receive(peer: NodeId, envelopes: readonly PeerEnvelope[]): void {
    if (this.closing.signal.aborted) return
    this.counters.receivedBatches++
    const kept: PeerEnvelope[] = []
    for (const e of envelopes) {
      if (e.to === this.nodeId && e.from === peer) kept.push(e)
      else this.counters.misaddressed++
    }
    if (kept.length < envelopes.length)
      this.log.debug({ peer, misaddressed: envelopes.length - kept.length }, 'misaddressed envelopes dropped')
    if (kept.length === 0) return
    const fault = this.faultTable.get(peer)
    if (fault?.drop === true) {
      this.counters.faultDropped += kept.length
      return
    }
    const line = this.inboundDelay.get(peer)
    // Behind envelopes already held, even when the delay was lifted since: order per peer holds.
    if ((fault?.delayMs ?? 0) > 0 || (line !== undefined && line.size > 0)) {
      const held = this.inboundDelayed.get(peer) ?? 0
      if (held + kept.length > this.limits.peerSendQueueMax) {
        this.counters.droppedDelayFull += kept.length
        return
      }
      this.inboundDelayed.set(peer, held + kept.length)
      const delayLine = line ?? this.newDelayLine(peer)
      delayLine.push(this.components.clock.nowMs() + (fault?.delayMs ?? 0), kept)
      return
    }
    this.deliver(kept)
  }

  async receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    const fields = { peer: header.from, shard: header.shardId, index: header.index, term: header.term }
    const refuse = (reason: string): never => {
      this.counters.snapshotsRefused++
      this.log.warn({ ...fields, reason }, 'snapshot refused')
      throw new KvError(ErrorCode.Unavailable, `snapshot refused: ${reason}`)
    }
    if (this.closing.signal.aborted) refuse('transport closed')
    if (header.to !== this.nodeId) refuse(`addressed to node ${header.to}`)
    if (this.faultTable.get(header.from)?.drop === true) refuse('cut off by an injected fault')
    const handler = this.handler
    if (handler === undefined) return refuse('transport not started')
    try {
      await handler.onSnapshot(header, chunks, AbortSignal.any([signal, this.closing.signal]))
    } catch (err) {
      this.counters.snapshotsRefused++
      this.log.warn({ ...fields, err }, 'snapshot refused by the host')
      throw err
    }
    this.counters.snapshotsReceived++
    this.log.info(fields, 'snapshot received')
  }

  private newDelayLine(peer: NodeId): DelayLine<readonly PeerEnvelope[]> {
    const line = new DelayLine<readonly PeerEnvelope[]>(this.components.clock, (envelopes) => {
      this.inboundDelayed.set(peer, (this.inboundDelayed.get(peer) ?? 0) - envelopes.length)
      // A drop fault set while they were held cuts them too.
      if (this.faultTable.get(peer)?.drop === true) this.counters.faultDropped += envelopes.length
      else this.deliver(envelopes)
    })
    this.inboundDelay.set(peer, line)
    return line
  }

  private deliver(envelopes: readonly PeerEnvelope[]): void {
    const handler = this.handler
    if (handler === undefined) {
      this.counters.droppedNotStarted += envelopes.length
      return
    }
    this.counters.received += envelopes.length
    handler.onEnvelopes(envelopes)
  }

  /** Coalesced and deferred: never inside `send`, at most once per peer per microtask. */
  private reportUnreachable(peer: NodeId): void {
    this.unreachable.add(peer)
    if (this.unreachableScheduled) return
    this.unreachableScheduled = true
    queueMicrotask(() => {
      this.unreachableScheduled = false
      const peers = [...this.unreachable]
      this.unreachable.clear()
      if (this.closing.signal.aborted) return
      for (const p of peers) this.handler?.onUnreachable(p)
    })
  }
}

/** grpc-js options of peer channels. */
export function peerChannelOptions(l: Readonly<Limits>): ChannelOptions {
  return {
    // The same frame limit as the server that receives (kvd's one server).
    'grpc.max_receive_message_length': l.grpcMessageBytesMax,
    'grpc.max_send_message_length': l.grpcMessageBytesMax,
    // The channel's own reconnects follow our backoff; the link redials on top of them.
    'grpc.initial_reconnect_backoff_ms': l.peerReconnectBackoffMsMin,
    'grpc.max_reconnect_backoff_ms': l.peerReconnectBackoffMsMax,
    'grpc.keepalive_time_ms': l.peerKeepaliveMs,
    'grpc.keepalive_timeout_ms': l.peerKeepaliveTimeoutMs,
    // Raft resends by itself; grpc-js retries would only duplicate.
    'grpc.enable_retries': 0,
    // One connection per peer channel, not shared with other clients in the process (whose
    // reconnect backoff would otherwise be ours too).
    'grpc.use_local_subchannel_pool': 1,
  }
}

/** A failure of a snapshot send as a KvError. */
function snapshotError(err: unknown, signal: AbortSignal): KvError {
  if (signal.aborted) {
    if (signal.reason instanceof DeadlineError)
      return new KvError(ErrorCode.DeadlineExceeded, 'snapshot send deadline exceeded', { cause: err })
    if (isKvError(signal.reason)) return signal.reason
    return new KvError(ErrorCode.Cancelled, 'snapshot send cancelled', { cause: err })
  }
  if (isKvError(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new KvError(ErrorCode.Unavailable, `snapshot send failed: ${message}`, { cause: err })
}

// ---------------------------------------------------------------------------------------------
// The gRPC plumbing.

export interface GrpcPeerChannelInit extends PeerTarget {
  readonly self: NodeId
  /** Bytes of data per snapshot message. */
  readonly chunkBytes: number
  /** Snapshot messages written and not yet flushed to the connection (limits.snapshotChunksInFlightMax). */
  readonly chunksInFlightMax: number
  readonly snapshotSendMsMax: number
}

export interface GrpcPeerChannelComponents {
  readonly clock: Clock
  readonly credentials: ChannelCredentials
  readonly channelOptions: ChannelOptions
}

const emptyBuffer = Buffer.alloc(0)

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

function toWire(e: PeerEnvelope): RaftEnvelope {
  return { shardId: e.shardId, fromNode: e.from, toNode: e.to, message: asBuffer(e.payload) }
}

/** One peer's grpc-js client (one HTTP/2 connection): its stream and its snapshots. */
export class GrpcPeerChannel implements PeerChannel {
  private readonly init: GrpcPeerChannelInit
  private readonly clock: Clock
  private readonly client: RaftTransportServiceClient

  constructor(init: GrpcPeerChannelInit, components: GrpcPeerChannelComponents) {
    this.init = init
    this.clock = components.clock
    this.client = new RaftTransportServiceClient(
      init.address,
      components.credentials,
      components.channelOptions,
    )
  }

  private metadata(): Metadata {
    const metadata = new Metadata()
    metadata.set(peerMetadataKeys.from, String(this.init.self))
    metadata.set(peerMetadataKeys.to, String(this.init.peer))
    return metadata
  }

  openStream(events: PeerConnectionEvents, signal: AbortSignal): Promise<PeerConnection> {
    return new Promise<PeerConnection>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason)
        return
      }
      // No deadline: the stream lives as long as the link. Liveness comes from keepalive pings.
      const call: ClientDuplexStream<StreamRequest, StreamResponse> = this.client.stream(this.metadata())
      let open = false
      let ended = false
      const finish = (err: Error | undefined): void => {
        if (ended) return
        ended = true
        signal.removeEventListener('abort', onAbort)
        if (!open) reject(err ?? new KvError(ErrorCode.Unavailable, 'peer ended the stream before its hello'))
        else events.onClosed(err)
      }
      const onAbort = (): void => {
        finish(signal.reason instanceof Error ? signal.reason : new KvError(ErrorCode.Cancelled, 'aborted'))
        call.cancel()
      }
      signal.addEventListener('abort', onAbort, { once: true })
      const connection: PeerConnection = {
        write: (envelopes) => (ended ? true : call.write({ envelopes: envelopes.map(toWire) })),
        close: () => {
          if (ended) return
          ended = true
          call.cancel()
        },
      }
      // The 'data' listener also keeps the stream flowing, so 'end' is seen.
      call.on('data', () => {
        if (open || ended) return
        open = true
        signal.removeEventListener('abort', onAbort)
        resolve(connection)
      })
      call.on('error', (err: Error) => finish(err))
      call.on('end', () => finish(undefined))
      call.on('drain', () => {
        if (open && !ended) events.onDrain()
      })
    })
  }

  async sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<boolean> {
    signal.throwIfAborted()
    let answered = false
    /** Messages written whose write callback has not come yet. */
    let inFlight = 0
    /** Wakes a blocked write: a message flushed, 'drain', or the answer (the receiver stopped early). */
    let wake: (() => void) | undefined
    let call: ClientWritableStream<SnapshotRequest> | undefined
    const response = new Promise<SnapshotResponse>((resolve, reject) => {
      call = this.client.snapshot(
        this.metadata(),
        // grpc-js deadlines are wall-clock times; our own signal enforces the same bound on `clock`.
        { deadline: this.clock.wallMs() + this.init.snapshotSendMsMax },
        (err, res) => {
          answered = true
          wake?.()
          if (err !== null) reject(err)
          else resolve(res)
        },
      )
    })
    // Observed below; this keeps an early failure from counting as unhandled meanwhile.
    response.catch(() => {})
    const stream = call as unknown as ClientWritableStream<SnapshotRequest>
    const onAbort = (): void => stream.cancel()
    signal.addEventListener('abort', onAbort, { once: true })
    const message = (data: Uint8Array, offset: number, last: boolean): SnapshotRequest => ({
      shardId: header.shardId,
      fromNode: header.from,
      toNode: header.to,
      index: header.index,
      term: header.term,
      offset,
      data: asBuffer(data),
      last,
    })
    const flushed = (): void => {
      inFlight--
      wake?.()
    }
    const write = async (request: SnapshotRequest): Promise<void> => {
      // Flow control: at most chunksInFlightMax messages not yet flushed to the connection (which
      // HTTP/2 flow control holds back while the receiver does not read), and 'drain' as well.
      while (inFlight >= this.init.chunksInFlightMax && !answered) await blocked()
      inFlight++
      if (!stream.write(request, flushed)) await blocked()
    }
    /** Waits for the next flushed message, 'drain' or answer; rejects on abort. */
    const blocked = async (): Promise<void> => {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          wake = undefined
          stream.off('drain', done)
          signal.removeEventListener('abort', aborted)
          resolve()
        }
        const aborted = (): void => {
          wake = undefined
          stream.off('drain', done)
          reject(signal.reason)
        }
        if (answered || signal.aborted) {
          if (signal.aborted) reject(signal.reason)
          else resolve()
          return
        }
        wake = done
        stream.once('drain', done)
        signal.addEventListener('abort', aborted, { once: true })
      })
    }
    try {
      let offset = 0
      let pending: Uint8Array | undefined
      for await (const piece of rechunk(chunks, this.init.chunkBytes)) {
        signal.throwIfAborted()
        if (answered) break
        if (pending !== undefined) {
          await write(message(pending, offset, false))
          offset += pending.byteLength
        }
        pending = piece
      }
      signal.throwIfAborted()
      if (!answered) {
        await write(message(pending ?? emptyBuffer, offset, true))
        stream.end()
      }
      return (await response).accepted
    } catch (err) {
      stream.cancel()
      throw err
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  close(): void {
    this.client.close()
  }
}
