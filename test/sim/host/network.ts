/**
 * The host simulator's network: a packet world between node processes, and the two ways a
 * NodeHost reaches it (picked per seed):
 *
 * - `grpc`: the production transport logic, GrpcPeerTransport (src/node/transport-grpc.ts), with
 *   its PeerChannel seam replaced by SimPeerChannel. Its per-peer queues, microtask flushes,
 *   batching into stream messages, backpressure, backoff and redials, fault table and inbound
 *   delay lines all run for real; only the bytes travel through here. A stream is FIFO unless the
 *   seed reorders (more hostile than TCP, which Raft must tolerate anyway); a partition loses what
 *   crosses it and breaks the stream after a keepalive-like detection delay; a crashed receiver
 *   resets its streams; a dial across a partition hangs until the link's connect deadline.
 * - `direct`: SimPeerTransport, a datagram transport: everything sent to one peer at one instant
 *   goes as one batch; each envelope may be lost, duplicated or sent on a detour (reordered).
 *
 * Snapshots stream chunk by chunk with a network delay per chunk in both modes; a partition or a
 * crash of either side breaks the stream.
 */
import {
  ErrorCode,
  KvError,
  type Clock,
  type NodeId,
  type Random,
  type TimerHandle,
} from '../../../src/common/index.ts'
import {
  newTransportCounters,
  rechunk,
  type PeerChannel,
  type PeerConnection,
  type PeerConnectionEvents,
} from '../../../src/node/transport-grpc.ts'
import {
  isActiveFault,
  type Fault,
  type PeerEnvelope,
  type PeerTransport,
  type SnapshotHeader,
  type TransportHandler,
  type TransportStats,
} from '../../../src/node/transport.ts'
import type { Simulator } from '../simulator.ts'

/** The receiving half of a node's transport, as the network feeds it (PeerInbound without its ids). */
export interface SimInbound {
  receive(peer: NodeId, envelopes: readonly PeerEnvelope[]): void
  receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void>
}

export interface NetOptions {
  /** Mean one-way delay; actual delays are uniform in [mean/2, 3*mean/2]. */
  readonly oneWayDelayMsMean: number
  /** Parts per 10_000 of stream messages (grpc) or envelopes (direct) lost. */
  readonly lossPer10k: number
  /** Parts per 10_000 sent on a detour of a few mean delays (overtaken by later ones). */
  readonly reorderPer10k: number
  /** Parts per 10_000 of envelopes delivered twice (direct mode only: a stream never duplicates). */
  readonly duplicatePer10k: number
  /** Stream messages in flight before `write` says to wait for drain (grpc mode backpressure). */
  readonly streamWindowMessages: number
  /** Longest time a stream across a new partition takes to notice (keepalive). */
  readonly breakDetectMsMax: number
  /** Bytes per snapshot message. */
  readonly snapshotChunkBytes: number
}

export interface NetStats {
  messages: number
  envelopes: number
  lost: number
  duplicated: number
  reordered: number
  streamsOpened: number
  streamsBroken: number
  dialsRefused: number
  snapshotsStarted: number
  snapshotsDelivered: number
  snapshotsBroken: number
}

interface Endpoint {
  readonly incarnation: number
  readonly inbound: SimInbound
}

export class HostNet {
  readonly stats: NetStats = {
    messages: 0,
    envelopes: 0,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    streamsOpened: 0,
    streamsBroken: 0,
    dialsRefused: 0,
    snapshotsStarted: 0,
    snapshotsDelivered: 0,
    snapshotsBroken: 0,
  }
  /** Directed links that are cut: "from>to". */
  private readonly blocked = new Set<string>()
  /** Directed links that hold traffic back until the given true time. */
  private readonly clogged = new Map<string, number>()
  private readonly endpoints = new Map<NodeId, Endpoint>()
  readonly connections = new Set<SimConnection>()
  lossPer10k: number

  constructor(
    readonly sim: Simulator,
    private readonly random: Random,
    readonly options: NetOptions,
  ) {
    this.lossPer10k = options.lossPer10k
  }

  // ---- processes ----

  /** `id`'s process (this incarnation) listens now. */
  register(id: NodeId, incarnation: number, inbound: SimInbound): void {
    this.endpoints.set(id, { incarnation, inbound })
  }

  /** `id`'s process died: streams to it reset (the peer sees it after a one-way delay). */
  unregister(id: NodeId): void {
    this.endpoints.delete(id)
    for (const c of [...this.connections]) {
      if (c.to !== id) continue
      this.sim.schedule(this.delayMs(id, c.from), () =>
        c.break(new KvError(ErrorCode.Unavailable, 'connection reset')),
      )
    }
  }

  endpoint(id: NodeId): Endpoint | undefined {
    return this.endpoints.get(id)
  }

  // ---- faults ----

  isCut(from: NodeId, to: NodeId): boolean {
    return this.blocked.has(linkKey(from, to))
  }

  /** Cuts `from -> to`; streams across it notice after a detection delay. */
  block(from: NodeId, to: NodeId): void {
    this.blocked.add(linkKey(from, to))
    for (const c of this.connections)
      if ((c.from === from && c.to === to) || (c.from === to && c.to === from)) this.scheduleBreak(c)
  }

  unblock(from: NodeId, to: NodeId): void {
    this.blocked.delete(linkKey(from, to))
  }

  /** Holds traffic on `from -> to` for `durationMs` from now. */
  clog(from: NodeId, to: NodeId, durationMs: number): void {
    this.clogged.set(linkKey(from, to), this.sim.nowMs + durationMs)
  }

  /** Resets every stream from and to `id` (a flaky NIC, a proxy restart). */
  resetStreams(id: NodeId): void {
    for (const c of [...this.connections])
      if (c.from === id || c.to === id) c.break(new KvError(ErrorCode.Unavailable, 'stream reset'))
  }

  /** No partitions, no clogs, no loss beyond `lossPer10k` (default: the run's base loss). */
  heal(lossPer10k = this.options.lossPer10k): void {
    this.blocked.clear()
    this.clogged.clear()
    this.lossPer10k = lossPer10k
  }

  describeCuts(): string {
    return [...this.blocked].sort().join(' ')
  }

  // ---- timing ----

  delayMs(from: NodeId, to: NodeId): number {
    const mean = this.options.oneWayDelayMsMean
    let d = mean / 2 + (this.random.int(1000) / 1000) * mean
    const until = this.clogged.get(linkKey(from, to))
    if (until !== undefined && until > this.sim.nowMs) d += until - this.sim.nowMs
    return d
  }

  /** A detour for reordering: true with the run's reorder probability. */
  detour(): number {
    if (this.random.int(10_000) >= this.options.reorderPer10k) return 0
    this.stats.reordered++
    return this.options.oneWayDelayMsMean * (2 + this.random.int(8))
  }

  lose(): boolean {
    return this.random.int(10_000) < this.lossPer10k
  }

  duplicate(): boolean {
    return this.random.int(10_000) < this.options.duplicatePer10k
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sim.schedule(ms, resolve)
    })
  }

  scheduleBreak(c: SimConnection): void {
    if (c.breakScheduled || c.closed) return
    c.breakScheduled = true
    const detectMs = 1 + this.random.int(Math.max(1, this.options.breakDetectMsMax))
    this.sim.schedule(detectMs, () => {
      c.breakScheduled = false
      if (this.isCut(c.from, c.to) || this.isCut(c.to, c.from))
        c.break(new KvError(ErrorCode.Unavailable, 'keepalive timeout'))
    })
  }

  // ---- datagrams (direct mode) ----

  /** Sends one batch of envelopes as datagrams; `refused` when nobody listens at `to`. */
  sendDatagrams(from: NodeId, to: NodeId, envelopes: readonly PeerEnvelope[], refused: () => void): void {
    this.stats.messages++
    this.stats.envelopes += envelopes.length
    if (this.endpoints.get(to) === undefined) {
      this.stats.lost += envelopes.length
      refused()
      return
    }
    if (this.isCut(from, to)) {
      this.stats.lost += envelopes.length
      return
    }
    const main: PeerEnvelope[] = []
    for (const e of envelopes) {
      if (this.lose()) {
        this.stats.lost++
        continue
      }
      const copies = this.duplicate() ? 2 : 1
      if (copies === 2) this.stats.duplicated++
      for (let i = 0; i < copies; i++) {
        const detour = this.detour()
        if (detour === 0 && i === 0) main.push(e)
        else this.deliverLater(from, to, [e], this.delayMs(from, to) + detour)
      }
    }
    if (main.length > 0) this.deliverLater(from, to, main, this.delayMs(from, to))
  }

  private deliverLater(from: NodeId, to: NodeId, envelopes: readonly PeerEnvelope[], delayMs: number): void {
    this.sim.schedule(delayMs, () => {
      const ep = this.endpoints.get(to)
      if (ep === undefined || this.isCut(from, to)) {
        this.stats.lost += envelopes.length
        return
      }
      ep.inbound.receive(from, envelopes)
    })
  }

  // ---- snapshots (both modes) ----

  /**
   * Streams a snapshot from `from` to `to`: true when the receiver accepted it, false when it
   * refused; rejects when the stream broke (partition, crash of either side, a failing source).
   */
  async streamSnapshot(
    from: NodeId,
    to: NodeId,
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<boolean> {
    this.stats.snapshotsStarted++
    await this.sleep(this.delayMs(from, to))
    signal.throwIfAborted()
    const ep = this.endpoints.get(to)
    if (ep === undefined || this.isCut(from, to) || this.isCut(to, from)) {
      this.stats.snapshotsBroken++
      throw new KvError(ErrorCode.Unavailable, `peer ${to} unreachable for a snapshot`)
    }
    const broken: { err?: unknown } = {}
    try {
      await ep.inbound.receiveSnapshot(header, this.relay(from, to, ep, chunks, broken), signal)
    } catch {
      if (broken.err !== undefined) {
        this.stats.snapshotsBroken++
        throw broken.err
      }
      return false
    }
    await this.sleep(this.delayMs(to, from))
    if (this.isCut(to, from)) {
      this.stats.snapshotsBroken++
      throw new KvError(ErrorCode.Unavailable, 'snapshot answer lost')
    }
    this.stats.snapshotsDelivered++
    return true
  }

  /** The chunks as the receiver sees them: a network delay each, broken by a cut or a crash. */
  private async *relay(
    from: NodeId,
    to: NodeId,
    ep: Endpoint,
    chunks: AsyncIterable<Uint8Array>,
    broken: { err?: unknown },
  ): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of rechunk(chunks, this.options.snapshotChunkBytes)) {
        await this.sleep(this.delayMs(from, to))
        if (this.endpoints.get(to) !== ep || this.isCut(from, to))
          throw new KvError(ErrorCode.Unavailable, 'snapshot stream broke')
        yield chunk
      }
    } catch (err) {
      broken.err = err
      throw err
    }
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`
}

// ---------------------------------------------------------------------------------------------
// grpc mode: the PeerChannel seam of GrpcPeerTransport.

/** One open peer stream (one direction of traffic: `from` writes, `to` receives). */
export class SimConnection implements PeerConnection {
  closed = false
  breakScheduled = false
  private inflight = 0
  private needDrain = false
  private lastDueMs = 0

  constructor(
    private readonly net: HostNet,
    readonly from: NodeId,
    readonly to: NodeId,
    private readonly incarnation: number,
    private readonly events: PeerConnectionEvents,
  ) {}

  write(envelopes: readonly PeerEnvelope[]): boolean {
    if (this.closed) return true
    const net = this.net
    net.stats.messages++
    net.stats.envelopes += envelopes.length
    if (net.isCut(this.from, this.to)) {
      net.stats.lost += envelopes.length
      net.scheduleBreak(this)
      return true
    }
    if (net.lose()) {
      net.stats.lost += envelopes.length
      return true
    }
    const now = net.sim.nowMs
    let dueMs = now + net.delayMs(this.from, this.to)
    const detour = net.detour()
    if (detour > 0) dueMs += detour
    else {
      dueMs = Math.max(dueMs, this.lastDueMs)
      this.lastDueMs = dueMs
    }
    this.inflight++
    net.sim.schedule(dueMs - now, () => this.arrive(envelopes))
    if (this.inflight >= net.options.streamWindowMessages) {
      this.needDrain = true
      return false
    }
    return true
  }

  private arrive(envelopes: readonly PeerEnvelope[]): void {
    this.inflight--
    if (this.closed) return
    if (this.needDrain && this.inflight * 2 <= this.net.options.streamWindowMessages) {
      this.needDrain = false
      this.events.onDrain()
      if (this.closed) return
    }
    const ep = this.net.endpoint(this.to)
    if (ep === undefined || ep.incarnation !== this.incarnation || this.net.isCut(this.from, this.to)) {
      this.net.stats.lost += envelopes.length
      return
    }
    ep.inbound.receive(this.from, envelopes)
  }

  close(): void {
    this.closed = true
    this.net.connections.delete(this)
  }

  /** The stream fails: the sender hears `onClosed` on a later event, never inside a call. */
  break(err: Error): void {
    if (this.closed) return
    this.closed = true
    this.net.connections.delete(this)
    this.net.stats.streamsBroken++
    this.net.sim.schedule(0, () => this.events.onClosed(err))
  }
}

export class SimPeerChannel implements PeerChannel {
  private closed = false

  constructor(
    private readonly net: HostNet,
    private readonly self: NodeId,
    private readonly peer: NodeId,
  ) {}

  openStream(events: PeerConnectionEvents, signal: AbortSignal): Promise<PeerConnection> {
    const net = this.net
    return new Promise<PeerConnection>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason)
        return
      }
      let settled = false
      const rttMs = net.delayMs(this.self, this.peer) + net.delayMs(this.peer, this.self)
      const timer: TimerHandle = net.sim.schedule(rttMs, () => {
        if (settled) return
        // The handshake was lost in a partition: only the dial's deadline ends the attempt.
        if (net.isCut(this.self, this.peer) || net.isCut(this.peer, this.self)) return
        settled = true
        signal.removeEventListener('abort', onAbort)
        const ep = net.endpoint(this.peer)
        if (ep === undefined || this.closed) {
          net.stats.dialsRefused++
          reject(new KvError(ErrorCode.Unavailable, `connection to ${this.peer} refused`))
          return
        }
        const c = new SimConnection(net, this.self, this.peer, ep.incarnation, events)
        net.connections.add(c)
        net.stats.streamsOpened++
        resolve(c)
      })
      const onAbort = (): void => {
        if (settled) return
        settled = true
        timer.cancel()
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  async sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<boolean> {
    if (this.closed) throw new KvError(ErrorCode.Unavailable, 'channel closed')
    return await this.net.streamSnapshot(this.self, this.peer, header, chunks, signal)
  }

  close(): void {
    this.closed = true
  }
}

// ---------------------------------------------------------------------------------------------
// direct mode: a PeerTransport of its own.

/**
 * A datagram PeerTransport (transport.ts contract): `send` queues per peer and one timer at the
 * same instant flushes every queue as one batch per peer; unreachable reports (a peer nobody
 * listens at) are coalesced on a timer too, never inside `send`. Faults drop or delay both ways.
 */
export class SimPeerTransport implements PeerTransport, SimInbound {
  private handler: TransportHandler | undefined
  private closedNow = false
  private readonly faultTable = new Map<NodeId, Fault>()
  private readonly outbox = new Map<NodeId, PeerEnvelope[]>()
  private flushTimer: TimerHandle | undefined
  private readonly unreachable = new Set<NodeId>()
  private unreachableTimer: TimerHandle | undefined
  private readonly counters = newTransportCounters()

  constructor(
    readonly nodeId: NodeId,
    private readonly net: HostNet,
    private readonly clock: Clock,
  ) {}

  start(handler: TransportHandler): void {
    this.handler = handler
  }

  send(envelope: PeerEnvelope): void {
    if (this.closedNow) return
    if (this.faultTable.get(envelope.to)?.drop === true) {
      this.counters.faultDropped++
      return
    }
    let q = this.outbox.get(envelope.to)
    if (q === undefined) this.outbox.set(envelope.to, (q = []))
    q.push(envelope)
    this.flushTimer ??= this.clock.setTimer(0, () => this.flush())
  }

  private flush(): void {
    this.flushTimer = undefined
    if (this.closedNow) return
    for (const [peer, envelopes] of this.outbox) {
      this.counters.sent += envelopes.length
      this.counters.sentBatches++
      for (const e of envelopes) this.counters.sentBytes += e.payload.byteLength
      const delayMs = this.faultTable.get(peer)?.delayMs ?? 0
      const go = (): void =>
        this.net.sendDatagrams(this.nodeId, peer, envelopes, () => this.reportUnreachable(peer))
      if (delayMs > 0) this.clock.setTimer(delayMs, go)
      else go()
    }
    this.outbox.clear()
  }

  private reportUnreachable(peer: NodeId): void {
    this.counters.dropped++
    this.unreachable.add(peer)
    this.unreachableTimer ??= this.clock.setTimer(0, () => {
      this.unreachableTimer = undefined
      const peers = [...this.unreachable]
      this.unreachable.clear()
      if (this.closedNow) return
      for (const p of peers) this.handler?.onUnreachable(p)
    })
  }

  async sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.closedNow) throw new KvError(ErrorCode.Cancelled, 'peer transport closed')
    if (this.faultTable.get(header.to)?.drop === true)
      throw new KvError(ErrorCode.Unavailable, `peer ${header.to} is cut off by an injected fault`)
    let accepted: boolean
    try {
      accepted = await this.net.streamSnapshot(this.nodeId, header.to, header, chunks, signal)
    } catch (err) {
      this.counters.snapshotsSendFailed++
      throw err
    }
    if (!accepted) {
      this.counters.snapshotsSendFailed++
      throw new KvError(ErrorCode.Unavailable, `peer ${header.to} refused the snapshot`)
    }
    this.counters.snapshotsSent++
  }

  setPeers(): void {}

  setFault(peer: NodeId, fault: Fault | null): void {
    if (!isActiveFault(fault)) this.faultTable.delete(peer)
    else this.faultTable.set(peer, { drop: fault.drop, delayMs: fault.delayMs })
  }

  faults(): ReadonlyMap<NodeId, Fault> {
    return new Map([...this.faultTable].sort(([a], [b]) => a - b))
  }

  stats(): TransportStats {
    return { ...this.counters, peers: [] }
  }

  close(): Promise<void> {
    this.closedNow = true
    this.flushTimer?.cancel()
    this.unreachableTimer?.cancel()
    this.outbox.clear()
    return Promise.resolve()
  }

  // SimInbound

  receive(peer: NodeId, envelopes: readonly PeerEnvelope[]): void {
    if (this.closedNow) return
    this.counters.receivedBatches++
    const kept = envelopes.filter((e) => e.to === this.nodeId && e.from === peer)
    this.counters.misaddressed += envelopes.length - kept.length
    const fault = this.faultTable.get(peer)
    if (fault?.drop === true) {
      this.counters.faultDropped += kept.length
      return
    }
    const deliver = (): void => {
      if (this.closedNow) return
      if (this.handler === undefined) {
        this.counters.droppedNotStarted += kept.length
        return
      }
      this.counters.received += kept.length
      this.handler.onEnvelopes(kept)
    }
    if ((fault?.delayMs ?? 0) > 0) this.clock.setTimer(fault?.delayMs ?? 0, deliver)
    else deliver()
  }

  async receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.closedNow) throw new KvError(ErrorCode.Unavailable, 'snapshot refused: transport closed')
    if (this.faultTable.get(header.from)?.drop === true)
      throw new KvError(ErrorCode.Unavailable, 'snapshot refused: cut off by an injected fault')
    const handler = this.handler
    if (handler === undefined) throw new KvError(ErrorCode.Unavailable, 'snapshot refused: not started')
    try {
      await handler.onSnapshot(header, chunks, signal)
    } catch (err) {
      this.counters.snapshotsRefused++
      throw err
    }
    this.counters.snapshotsReceived++
  }
}
