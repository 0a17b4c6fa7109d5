/**
 * The peer transport. First the logic alone (PeerLink, backoff, rechunk, DelayLine) over a fake
 * channel and a manual clock; then two real GrpcPeerTransports talking over loopback gRPC through
 * server/grpc-raft.ts: batching, reconnects, faults both ways, delays, snapshots, bad input.
 */
import { Client, credentials, Metadata, status as Grpc } from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import type { Clock, TimerHandle } from '../../../src/common/clock.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { isKvErrorWithCode } from '../../../src/common/errors.ts'
import { LogIndex, NodeId, ShardId, Term } from '../../../src/common/ids.ts'
import { limits, tightenLimits, type Limits } from '../../../src/common/limits.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { StreamRequest } from '../../../src/gen/ringkv/v1/raft.ts'
import {
  backoffMs,
  DelayLine,
  GrpcPeerTransport,
  PeerLink,
  newTransportCounters,
  peerMetadataKeys,
  rechunk,
  type PeerChannel,
  type PeerConnection,
  type PeerConnectionEvents,
  type PeerLinkInit,
  type TransportCounters,
} from '../../../src/node/transport-grpc.ts'
import type { Fault, PeerEnvelope, SnapshotHeader, TransportHandler } from '../../../src/node/transport.ts'
import { createRaftService, raftServiceDefinition } from '../../../src/server/grpc-raft.ts'
import { serve, type Served } from '../net/serve.ts'

// ---------------------------------------------------------------------------------------------
// Doubles.

/** Time moves only when told; due timers fire in order, with microtasks run between them. */
class ManualClock implements Clock {
  private now = 0
  private seq = 0
  private timers: { dueMs: number; seq: number; onFire: () => void; cancelled: boolean }[] = []
  readonly delays: number[] = []

  nowMs(): number {
    return this.now
  }

  wallMs(): number {
    return 1_700_000_000_000 + this.now
  }

  setTimer(delayMs: number, onFire: () => void): TimerHandle {
    this.delays.push(delayMs)
    const timer = { dueMs: this.now + Math.max(0, delayMs), seq: this.seq++, onFire, cancelled: false }
    this.timers.push(timer)
    return { cancel: () => (timer.cancelled = true) }
  }

  get pendingTimers(): number {
    return this.timers.filter((t) => !t.cancelled).length
  }

  async advance(ms: number): Promise<void> {
    const target = this.now + ms
    for (;;) {
      await settle()
      this.timers = this.timers.filter((t) => !t.cancelled)
      const next = [...this.timers].sort((a, b) => a.dueMs - b.dueMs || a.seq - b.seq)[0]
      if (next === undefined || next.dueMs > target) break
      this.timers.splice(this.timers.indexOf(next), 1)
      this.now = next.dueMs
      next.onFire()
    }
    this.now = target
    await settle()
  }
}

/** Runs pending microtasks (and promise chains a few links deep). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

interface Dial {
  readonly events: PeerConnectionEvents
  readonly signal: AbortSignal
  accept(): void
  refuse(err: Error): void
}

/** A PeerChannel whose dials the test answers, and whose stream records writes. */
class FakeChannel implements PeerChannel {
  readonly dials: Dial[] = []
  readonly writes: PeerEnvelope[][] = []
  /** What write() answers (false: the stream pushes back). */
  writable = true
  closedConnections = 0

  openStream(events: PeerConnectionEvents, signal: AbortSignal): Promise<PeerConnection> {
    return new Promise((resolve, reject) => {
      const connection: PeerConnection = {
        write: (envelopes) => {
          this.writes.push([...envelopes])
          return this.writable
        },
        close: () => this.closedConnections++,
      }
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
      this.dials.push({ events, signal, accept: () => resolve(connection), refuse: reject })
    })
  }

  sendSnapshot(): Promise<boolean> {
    throw new Error('not used')
  }

  close(): void {}

  get lastDial(): Dial {
    const dial = this.dials[this.dials.length - 1]
    if (dial === undefined) throw new Error('no dial yet')
    return dial
  }

  get written(): PeerEnvelope[] {
    return this.writes.flat()
  }
}

const peer = NodeId(2)
const self = NodeId(1)

function envelope(i: number, payloadBytes = 8, to = peer, from = self): PeerEnvelope {
  const payload = Buffer.alloc(payloadBytes)
  payload.writeUInt32BE(i, 0)
  return { shardId: ShardId(i % 7), from, to, payload }
}

function seqOf(e: PeerEnvelope): number {
  return Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.byteLength).readUInt32BE(0)
}

interface LinkHarness {
  link: PeerLink
  readonly channel: FakeChannel
  readonly clock: ManualClock
  readonly counters: TransportCounters
  /** Each deferred unreachable report (the transport's coalescing is modelled by one per call). */
  readonly reports: number[]
  fault: Fault | undefined
}

function linkHarness(init: Partial<PeerLinkInit> = {}): LinkHarness {
  const channel = new FakeChannel()
  const clock = new ManualClock()
  const c = newTransportCounters()
  const h: LinkHarness = {
    link: undefined as unknown as PeerLink,
    channel,
    clock,
    counters: c,
    reports: [],
    fault: undefined,
  }
  h.link = new PeerLink(
    {
      peer,
      address: 'fake:1',
      queueEnvelopesMax: 100,
      queueBytesMax: 100_000,
      batchBytesMax: 10_000,
      envelopeBytesMax: 20_000,
      framingBytes: 10,
      backoffMsMin: 50,
      backoffMsMax: 1000,
      connectMsMax: 2000,
      ...init,
    },
    {
      channel,
      clock,
      random: new SeededRandom(7),
      logger: silentLogger,
      fault: () => h.fault,
      // Deferred like the transport's, so a report is never seen inside send().
      reportUnreachable: () => queueMicrotask(() => h.reports.push(clock.nowMs())),
      counters: c,
    },
  )
  h.link.start()
  return h
}

async function connected(h: LinkHarness): Promise<void> {
  h.channel.lastDial.accept()
  await settle()
  expect(h.link.state).toBe('connected')
}

// ---------------------------------------------------------------------------------------------

describe('node/transport: peer link logic', () => {
  it('sends everything queued in one turn as one stream message, in order', async () => {
    const h = linkHarness({ queueEnvelopesMax: 1000 })
    await connected(h)
    for (let i = 0; i < 500; i++) h.link.send(envelope(i))
    expect(h.channel.writes).toHaveLength(0) // flushed on the next microtask, not inside send
    await settle()
    expect(h.channel.writes).toHaveLength(1)
    expect(h.channel.written.map(seqOf)).toEqual([...Array(500).keys()])
    expect(h.counters).toMatchObject({ sent: 500, sentBatches: 1, sentBytes: 500 * 8, dropped: 0 })
  })

  it('cuts batches at the byte budget; an envelope over the budget goes alone', async () => {
    const h = linkHarness({ batchBytesMax: 1000 })
    await connected(h)
    for (let i = 0; i < 7; i++) h.link.send(envelope(i, 290)) // 300 bytes each with framing
    h.link.send(envelope(7, 1500)) // over the budget, under envelopeBytesMax
    h.link.send(envelope(8, 290))
    await settle()
    expect(h.channel.writes.map((w) => w.map(seqOf))).toEqual([[0, 1, 2], [3, 4, 5], [6], [7], [8]])
  })

  it('queues while connecting up to its bound, drops the rest, and reports after send returns', async () => {
    const h = linkHarness({ queueEnvelopesMax: 5 })
    expect(h.link.state).toBe('connecting')
    for (let i = 0; i < 8; i++) h.link.send(envelope(i))
    expect(h.reports).toHaveLength(0)
    await settle()
    expect(h.reports.length).toBeGreaterThan(0)
    expect(h.counters.dropped).toBe(3)
    expect(h.link.stats()).toMatchObject({ state: 'connecting', queuedEnvelopes: 5, queuedBytes: 5 * 18 })
    await connected(h)
    expect(h.channel.written.map(seqOf)).toEqual([0, 1, 2, 3, 4])
  })

  it('bounds the queue by bytes too', async () => {
    const h = linkHarness({ queueBytesMax: 1000, envelopeBytesMax: 1000, batchBytesMax: 1000 })
    h.link.send(envelope(0, 590))
    h.link.send(envelope(1, 590))
    await settle()
    expect(h.counters.dropped).toBe(1)
    expect(h.link.stats().queuedBytes).toBe(600)
  })

  it('stops writing when the stream pushes back, and resumes on drain', async () => {
    const h = linkHarness({ batchBytesMax: 100 })
    await connected(h)
    h.channel.writable = false
    for (let i = 0; i < 20; i++) h.link.send(envelope(i)) // 18 bytes each: 5 per batch
    await settle()
    expect(h.channel.writes).toHaveLength(1)
    h.link.send(envelope(20))
    await settle()
    expect(h.channel.writes).toHaveLength(1)
    expect(h.link.queuedEnvelopes).toBe(16)
    h.channel.writable = true
    h.channel.lastDial.events.onDrain()
    expect(h.channel.written.map(seqOf)).toEqual([...Array(21).keys()])
  })

  it('after a failed dial: drops and reports every send, then redials after a jittered backoff', async () => {
    const h = linkHarness()
    h.link.send(envelope(0))
    h.channel.lastDial.refuse(new Error('ECONNREFUSED'))
    await settle()
    expect(h.link.state).toBe('backoff')
    expect(h.counters).toMatchObject({ dropped: 1, connectFailures: 1 })
    const reportsBefore = h.reports.length
    h.link.send(envelope(1))
    await settle()
    expect(h.counters.dropped).toBe(2)
    expect(h.reports.length).toBe(reportsBefore + 1)
    const waited = h.clock.delays[h.clock.delays.length - 1] as number
    expect(waited).toBeGreaterThanOrEqual(25)
    expect(waited).toBeLessThanOrEqual(50)
    await h.clock.advance(waited)
    expect(h.channel.dials).toHaveLength(2)
    expect(h.link.state).toBe('connecting')
    // The second failure waits longer (100 ms planned: 50..100).
    h.channel.lastDial.refuse(new Error('ECONNREFUSED'))
    await settle()
    const second = h.clock.delays[h.clock.delays.length - 1] as number
    expect(second).toBeGreaterThanOrEqual(50)
    expect(second).toBeLessThanOrEqual(100)
    await h.clock.advance(second)
    await connected(h)
    h.link.send(envelope(2))
    await settle()
    expect(h.channel.written.map(seqOf)).toEqual([2])
    expect(h.counters).toMatchObject({ connects: 1, reconnects: 0, connectFailures: 2 })
  })

  it('gives up a dial the peer does not answer within connectMsMax', async () => {
    const h = linkHarness({ connectMsMax: 2000 })
    await h.clock.advance(1999)
    expect(h.link.state).toBe('connecting')
    await h.clock.advance(1)
    expect(h.channel.dials[0]?.signal.aborted).toBe(true)
    expect(h.link.state).toBe('backoff')
  })

  it('a broken stream drops the queue, reports the peer, and reconnects', async () => {
    const h = linkHarness()
    await connected(h)
    h.channel.writable = false
    h.link.send(envelope(0))
    h.link.send(envelope(1))
    await settle()
    h.link.send(envelope(2)) // queued behind the push-back
    const reportsBefore = h.reports.length
    h.channel.lastDial.events.onClosed(new Error('RST_STREAM'))
    await settle()
    expect(h.link.state).toBe('backoff')
    expect(h.reports.length).toBe(reportsBefore + 1)
    expect(h.counters.dropped).toBe(1)
    expect(h.link.queuedEnvelopes).toBe(0)
    await h.clock.advance(1000)
    h.channel.writable = true
    await connected(h)
    expect(h.counters).toMatchObject({ connects: 2, reconnects: 1 })
    // Late events of the old stream are ignored.
    h.channel.dials[0]?.events.onClosed(new Error('late'))
    await settle()
    expect(h.link.state).toBe('connected')
  })

  it('a drop fault discards silently, even what was queued before it', async () => {
    const h = linkHarness()
    h.link.send(envelope(0)) // queued while connecting
    h.fault = { drop: true, delayMs: 0 }
    h.link.send(envelope(1))
    await connected(h)
    expect(h.channel.writes).toHaveLength(0)
    expect(h.reports).toHaveLength(0)
    expect(h.counters).toMatchObject({ faultDropped: 2, dropped: 0 })
    h.fault = undefined
    h.link.send(envelope(2))
    await settle()
    expect(h.channel.written.map(seqOf)).toEqual([2])
  })

  it('a delay fault holds envelopes for its delay, in order', async () => {
    const h = linkHarness()
    await connected(h)
    h.fault = { drop: false, delayMs: 100 }
    h.link.send(envelope(0))
    await h.clock.advance(40)
    h.link.send(envelope(1))
    h.fault = undefined
    h.link.send(envelope(2)) // not delayed itself, but waits behind the delayed ones
    await h.clock.advance(59)
    expect(h.channel.writes).toHaveLength(0)
    await h.clock.advance(1)
    expect(h.channel.written.map(seqOf)).toEqual([0])
    await h.clock.advance(40)
    expect(h.channel.written.map(seqOf)).toEqual([0, 1, 2])
  })

  it('drops and reports an envelope no stream message can carry', async () => {
    const h = linkHarness({ envelopeBytesMax: 1000, batchBytesMax: 1000 })
    await connected(h)
    h.link.send(envelope(0, 991))
    await settle()
    expect(h.channel.writes).toHaveLength(0)
    expect(h.counters.dropped).toBe(1)
    expect(h.reports).toHaveLength(1)
  })

  it('close forgets the queue and stops redialling, without reports', async () => {
    const h = linkHarness()
    h.link.send(envelope(0))
    h.link.close()
    await h.clock.advance(10_000)
    h.link.send(envelope(1))
    await settle()
    expect(h.link.state).toBe('closed')
    expect(h.channel.dials).toHaveLength(1)
    expect(h.reports).toHaveLength(0)
    expect(h.clock.pendingTimers).toBe(0)
  })
})

describe('node/transport: helpers', () => {
  it('backoff doubles from min to max, jittered within the upper half', () => {
    const random = new SeededRandom(1)
    for (let failures = 1; failures <= 12; failures++) {
      const planned = Math.min(1000, 50 * 2 ** (failures - 1))
      for (let i = 0; i < 200; i++) {
        const ms = backoffMs(failures, 50, 1000, random)
        expect(ms).toBeGreaterThanOrEqual(Math.floor(planned / 2))
        expect(ms).toBeLessThanOrEqual(planned)
      }
    }
    expect(backoffMs(1000, 50, 1000, random)).toBeLessThanOrEqual(1000)
  })

  it('rechunk splits large chunks, gathers small ones, and keeps every byte in order', async () => {
    const source = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251))
    const sizes = [1, 2, 3000, 0, 7, 4096, 100, 2794]
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let at = 0
      for (const n of sizes) {
        yield source.subarray(at, at + n)
        at += n
      }
    }
    const pieces: Uint8Array[] = []
    for await (const piece of rechunk(chunks(), 1024)) pieces.push(piece)
    expect(pieces.every((p) => p.byteLength > 0 && p.byteLength <= 1024)).toBe(true)
    expect(pieces.slice(0, -1).every((p) => p.byteLength === 1024)).toBe(true)
    expect(Buffer.concat(pieces).equals(source)).toBe(true)
  })

  it('a delay line delivers in order, no earlier than due', async () => {
    const clock = new ManualClock()
    const out: number[] = []
    const line = new DelayLine<number>(clock, (n) => out.push(n))
    line.push(100, 1)
    line.push(50, 2) // due earlier, but waits behind 1
    line.push(120, 3)
    await clock.advance(99)
    expect(out).toEqual([])
    await clock.advance(1)
    expect(out).toEqual([1, 2])
    await clock.advance(20)
    expect(out).toEqual([1, 2, 3])
    expect(line.size).toBe(0)
  })
})

// ---------------------------------------------------------------------------------------------
// Real gRPC.

class RecordingHandler implements TransportHandler {
  readonly envelopes: PeerEnvelope[] = []
  readonly arrivalsMs: number[] = []
  readonly unreachable: NodeId[] = []
  onSnapshot: TransportHandler['onSnapshot'] = () => Promise.reject(new Error('no snapshots expected'))
  private readonly clock: Clock

  constructor(clock: Clock) {
    this.clock = clock
  }

  onEnvelopes(envelopes: readonly PeerEnvelope[]): void {
    for (const e of envelopes) {
      this.envelopes.push(e)
      this.arrivalsMs.push(this.clock.nowMs())
    }
  }

  onUnreachable(p: NodeId): void {
    this.unreachable.push(p)
  }
}

interface TestNode {
  readonly nodeId: NodeId
  readonly transport: GrpcPeerTransport
  readonly served: Served
  readonly handler: RecordingHandler
  readonly address: string
  readonly port: number
}

const clock = new SystemClock()
const nodes: TestNode[] = []

async function startNode(id: number, port = 0, l: Readonly<Limits> = limits): Promise<TestNode> {
  const nodeId = NodeId(id)
  const transport = new GrpcPeerTransport(
    { nodeId, limits: l },
    { clock, random: new SeededRandom(id), logger: silentLogger },
  )
  const served = await serve({
    kind: 'peer',
    limits: l,
    port,
    services: [
      [raftServiceDefinition, createRaftService({ transport, clock, logger: silentLogger, limits: l })],
    ],
  })
  const handler = new RecordingHandler(clock)
  transport.start(handler)
  const node = { nodeId, transport, served, handler, address: served.address, port: served.port }
  nodes.push(node)
  return node
}

async function stopNode(node: TestNode): Promise<void> {
  await node.transport.close()
  node.served.close()
  nodes.splice(nodes.indexOf(node), 1)
}

/** Connects every pair of `ns` both ways. */
function mesh(...ns: TestNode[]): void {
  for (const n of ns) n.transport.setPeers(new Map(ns.map((m) => [m.nodeId, m.address])))
}

afterEach(async () => {
  for (const node of [...nodes]) await stopNode(node)
})

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = Date.now()
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function linkState(from: TestNode, to: TestNode): string | undefined {
  return from.transport.stats().peers.find((p) => p.peer === to.nodeId)?.state
}

function send(from: TestNode, to: TestNode, i: number, payloadBytes = 8): void {
  from.transport.send(envelope(i, payloadBytes, to.nodeId, from.nodeId))
}

describe('node/transport: gRPC between two nodes', () => {
  it('delivers envelopes in order, many per stream message', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    await until(() => linkState(a, b) === 'connected', 'a -> b connected')
    for (let i = 0; i < 3000; i++) send(a, b, i, 100)
    await until(() => b.handler.envelopes.length === 3000, 'all envelopes at b')
    expect(b.handler.envelopes.map(seqOf)).toEqual([...Array(3000).keys()])
    expect(b.handler.envelopes[5]).toMatchObject({ shardId: 5, from: 1, to: 2 })
    const stats = a.transport.stats()
    expect(stats.sent).toBe(3000)
    // 3000 x 164 bytes in one turn: about 480 KB, one or two stream messages.
    expect(stats.sentBatches).toBeLessThanOrEqual(2)
    expect(b.transport.stats()).toMatchObject({ received: 3000, receivedBatches: stats.sentBatches })
    expect(a.handler.unreachable).toEqual([])
  })

  it('reports the peer unreachable while it is down and reconnects when it is back', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    send(a, b, 0)
    await until(() => b.handler.envelopes.length === 1, 'first envelope')
    const port = b.port
    await stopNode(b)
    await until(() => a.handler.unreachable.includes(NodeId(2)), 'b reported unreachable')
    expect(linkState(a, b)).not.toBe('connected')
    send(a, b, 1) // dropped (and reported) while b is away
    const b2 = await startNode(2, port)
    let i = 100
    await until(() => {
      send(a, b2, i++)
      return b2.handler.envelopes.length > 0
    }, 'delivery after the restart')
    expect(seqOf(b2.handler.envelopes[0] as PeerEnvelope)).toBeGreaterThanOrEqual(100)
    expect(a.transport.stats().reconnects).toBeGreaterThanOrEqual(1)
    expect(a.transport.stats().dropped).toBeGreaterThanOrEqual(1)
  })

  it('a drop fault on one node cuts both directions, silently; clearing it heals', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    await until(() => linkState(a, b) === 'connected' && linkState(b, a) === 'connected', 'mesh')
    expect(a.transport.isCutOff(b.address)).toBe(false)
    a.transport.setFault(b.nodeId, { drop: true, delayMs: 0 })
    expect([...a.transport.faults()]).toEqual([[2, { drop: true, delayMs: 0 }]])
    // The node's other peer calls (forwards, meta, replicas) ask this and are cut off too.
    expect(a.transport.isCutOff(b.address)).toBe(true)
    expect(b.transport.isCutOff(a.address)).toBe(false)
    expect(a.transport.isCutOff('127.0.0.1:1')).toBe(false)
    for (let i = 0; i < 10; i++) {
      send(a, b, i)
      send(b, a, i)
    }
    // a drops its 10 on the way out and b's 10 on the way in.
    await until(() => a.transport.stats().faultDropped === 20, 'both directions dropped at a')
    expect(a.handler.envelopes).toEqual([])
    expect(b.handler.envelopes).toEqual([])
    expect(a.handler.unreachable).toEqual([])
    expect(b.transport.stats().sent).toBe(10) // b's side saw no fault: its envelopes went out
    a.transport.setFault(b.nodeId, null)
    expect(a.transport.faults().size).toBe(0)
    expect(a.transport.isCutOff(b.address)).toBe(false)
    send(a, b, 100)
    send(b, a, 200)
    await until(() => a.handler.envelopes.length === 1 && b.handler.envelopes.length === 1, 'healed')
    expect(seqOf(b.handler.envelopes[0] as PeerEnvelope)).toBe(100)
    expect(seqOf(a.handler.envelopes[0] as PeerEnvelope)).toBe(200)
  })

  it('a delay fault holds envelopes both ways for its delay, in order', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    await until(() => linkState(a, b) === 'connected' && linkState(b, a) === 'connected', 'mesh')
    const delayMs = 300
    a.transport.setFault(b.nodeId, { drop: false, delayMs })
    const sentMs = clock.nowMs()
    for (let i = 0; i < 5; i++) {
      send(a, b, i)
      send(b, a, i)
    }
    await until(
      () => a.handler.envelopes.length === 5 && b.handler.envelopes.length === 5,
      'delayed arrivals',
    )
    // Timers may fire a millisecond early by the clock's rounding; allow 5 ms.
    for (const arrived of [...a.handler.arrivalsMs, ...b.handler.arrivalsMs])
      expect(arrived - sentMs).toBeGreaterThanOrEqual(delayMs - 5)
    expect(a.handler.envelopes.map(seqOf)).toEqual([0, 1, 2, 3, 4])
    expect(b.handler.envelopes.map(seqOf)).toEqual([0, 1, 2, 3, 4])
  })

  it('streams a multi-MB snapshot intact and in order, with flow control', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    const total = 9 * 1024 * 1024 + 12_345
    const data = Buffer.alloc(total)
    for (let i = 0; i < total; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, Math.min(i, total - 4))
    // Irregular chunk sizes: bigger than a message, tiny, and in between.
    const sizes = [3 * 1024 * 1024 + 5, 17, 1, 700_000, 2 * 1024 * 1024]
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let at = 0
      for (let k = 0; at < total; k++) {
        const n = Math.min(sizes[k % sizes.length] as number, total - at)
        yield data.subarray(at, at + n)
        at += n
      }
    }
    const received: Uint8Array[] = []
    let gotHeader: SnapshotHeader | undefined
    b.handler.onSnapshot = async (header, incoming) => {
      gotHeader = header
      for await (const chunk of incoming) {
        received.push(Buffer.from(chunk))
        // A slow installer: the sender must wait on flow control, not buffer everything.
        await new Promise((r) => setTimeout(r, 2))
      }
    }
    const header: SnapshotHeader = {
      shardId: ShardId(3),
      from: a.nodeId,
      to: b.nodeId,
      index: LogIndex(1234),
      term: Term(7),
    }
    await a.transport.sendSnapshot(header, chunks(), new AbortController().signal)
    expect(gotHeader).toEqual(header)
    expect(received.every((c) => c.byteLength <= limits.snapshotChunkBytes)).toBe(true)
    expect(received.length).toBeGreaterThanOrEqual(Math.ceil(total / limits.snapshotChunkBytes))
    expect(Buffer.concat(received).equals(data)).toBe(true)
    expect(a.transport.stats().snapshotsSent).toBe(1)
    expect(b.transport.stats().snapshotsReceived).toBe(1)
  })

  it('a slow installer holds the sender back: the producer never runs far ahead', async () => {
    const l = tightenLimits({ snapshotChunkBytes: 64 * 1024 })
    const a = await startNode(1, 0, l)
    const b = await startNode(2, 0, l)
    mesh(a, b)
    const total = 12 * 1024 * 1024
    let produced = 0
    let consumed = 0
    let leadMax = 0
    async function* chunks(): AsyncGenerator<Uint8Array> {
      while (produced < total) {
        produced += 64 * 1024
        yield Buffer.alloc(64 * 1024, produced & 0xff)
      }
    }
    b.handler.onSnapshot = async (_header, incoming) => {
      for await (const chunk of incoming) {
        consumed += chunk.byteLength
        leadMax = Math.max(leadMax, produced - consumed)
        await new Promise((r) => setTimeout(r, 1))
      }
    }
    const header = { shardId: ShardId(0), from: a.nodeId, to: b.nodeId, index: LogIndex(5), term: Term(1) }
    await a.transport.sendSnapshot(header, chunks(), new AbortController().signal)
    expect(consumed).toBe(total)
    // In flight on the sender (4 messages), HTTP/2 windows, and the receiver's read buffer (16
    // messages in grpc-js): a few MB at most, far below the 12 MB a sender without flow control
    // would have pulled.
    expect(leadMax).toBeLessThan(4 * 1024 * 1024)
  })

  it('an empty snapshot is one last message', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    let chunkCount = -1
    b.handler.onSnapshot = async (_header, incoming) => {
      chunkCount = 0
      for await (const _ of incoming) chunkCount++
    }
    const header = { shardId: ShardId(0), from: a.nodeId, to: b.nodeId, index: LogIndex(1), term: Term(1) }
    await a.transport.sendSnapshot(header, (async function* () {})(), new AbortController().signal)
    expect(chunkCount).toBe(0)
  })

  it('a refused snapshot rejects the send; a drop fault refuses snapshots both ways', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    const data = async function* () {
      yield Buffer.alloc(1000, 1)
    }
    const header = (from: TestNode, to: TestNode): SnapshotHeader => ({
      shardId: ShardId(1),
      from: from.nodeId,
      to: to.nodeId,
      index: LogIndex(10),
      term: Term(2),
    })
    b.handler.onSnapshot = () => Promise.reject(new Error('stale snapshot'))
    const refused = await a.transport
      .sendSnapshot(header(a, b), data(), new AbortController().signal)
      .catch((e: unknown) => e)
    expect(isKvErrorWithCode(refused, 'UNAVAILABLE')).toBe(true)
    expect(b.transport.stats().snapshotsRefused).toBe(1)

    a.handler.onSnapshot = async (_h, incoming) => {
      for await (const _ of incoming);
    }
    b.handler.onSnapshot = a.handler.onSnapshot
    a.transport.setFault(b.nodeId, { drop: true, delayMs: 0 })
    const out = await a.transport
      .sendSnapshot(header(a, b), data(), new AbortController().signal)
      .catch((e: unknown) => e)
    expect(isKvErrorWithCode(out, 'UNAVAILABLE')).toBe(true)
    const inbound = await b.transport
      .sendSnapshot(header(b, a), data(), new AbortController().signal)
      .catch((e: unknown) => e)
    expect(isKvErrorWithCode(inbound, 'UNAVAILABLE')).toBe(true)
    a.transport.setFault(b.nodeId, null)
    await b.transport.sendSnapshot(header(b, a), data(), new AbortController().signal)
  })

  it('a cancelled snapshot send rejects with CANCELLED', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    b.handler.onSnapshot = async (_h, incoming) => {
      for await (const _ of incoming) await new Promise((r) => setTimeout(r, 50))
    }
    const controller = new AbortController()
    const endless = async function* (): AsyncGenerator<Uint8Array> {
      for (;;) yield Buffer.alloc(64 * 1024)
    }
    const sending = a.transport.sendSnapshot(
      { shardId: ShardId(1), from: a.nodeId, to: b.nodeId, index: LogIndex(1), term: Term(1) },
      endless(),
      controller.signal,
    )
    setTimeout(() => controller.abort(), 100)
    const err = await sending.catch((e: unknown) => e)
    expect(isKvErrorWithCode(err, 'CANCELLED')).toBe(true)
  })

  it('drops misaddressed envelopes, refuses streams for another node, and survives garbage', async () => {
    const b = await startNode(2)
    const raw = new Client(b.address, credentials.createInsecure())
    const path = '/ringkv.v1.RaftTransportService/Stream'
    const open = (from: string, to: string) => {
      const md = new Metadata()
      md.set(peerMetadataKeys.from, from)
      md.set(peerMetadataKeys.to, to)
      return raw.makeBidiStreamRequest<Buffer, Buffer>(
        path,
        (x) => x,
        (x) => x,
        md,
      )
    }
    const statusOf = (call: ReturnType<typeof open>): Promise<{ code: number; ringkv: unknown }> =>
      new Promise((resolve) => {
        call.on('data', () => {})
        call.on('error', (err: { code: number; metadata?: Metadata }) =>
          resolve({ code: err.code, ringkv: err.metadata?.get('ringkv-code')[0] }),
        )
        call.on('end', () => resolve({ code: Grpc.OK, ringkv: undefined }))
      })
    // Meant for node 9, or no sender at all: refused.
    expect(await statusOf(open('1', '9'))).toEqual({
      code: Grpc.INVALID_ARGUMENT,
      ringkv: 'INVALID_ARGUMENT',
    })
    expect(await statusOf(open('zero', '2'))).toEqual({
      code: Grpc.INVALID_ARGUMENT,
      ringkv: 'INVALID_ARGUMENT',
    })
    // A good stream with a misaddressed and a well-addressed envelope, then garbage.
    const call = open('1', '2')
    const ended = statusOf(call)
    const frame = (to: number, from: number, i: number): Buffer =>
      Buffer.from(
        StreamRequest.encode({
          envelopes: [{ shardId: 0, fromNode: from, toNode: to, message: envelope(i).payload as Buffer }],
        }).finish(),
      )
    call.write(frame(9, 1, 1)) // not for node 2
    call.write(frame(2, 3, 2)) // not from the stream's peer
    call.write(frame(0, 0, 3)) // zero ids
    call.write(frame(2, 1, 4)) // fine
    call.write(Buffer.from([0x0a, 0xff, 0xff, 0x01]))
    expect(await ended).toEqual({ code: Grpc.INVALID_ARGUMENT, ringkv: 'INVALID_ARGUMENT' })
    expect(b.handler.envelopes.map(seqOf)).toEqual([4])
    expect(b.transport.stats().misaddressed).toBe(3)
    raw.close()
    // Still serving: a real peer gets through.
    const a = await startNode(1)
    mesh(a, b)
    send(a, b, 5)
    await until(() => b.handler.envelopes.length === 2, 'delivery after garbage')
  })

  it('closing the transport ends its inbound streams, so the server shuts down at once', async () => {
    const a = await startNode(1)
    const b = await startNode(2)
    mesh(a, b)
    await until(() => linkState(a, b) === 'connected', 'a -> b connected')
    await b.transport.close()
    const started = Date.now()
    await b.served.listener.tryShutdown()
    expect(Date.now() - started).toBeLessThan(1000)
    await until(() => linkState(a, b) !== 'connected', 'a noticed')
    nodes.splice(nodes.indexOf(b), 1)
  })

  it('sends to an unknown peer are dropped and reported, never thrown', async () => {
    const a = await startNode(1)
    a.transport.send(envelope(1, 8, NodeId(42), a.nodeId))
    expect(a.handler.unreachable).toEqual([])
    await settle()
    expect(a.handler.unreachable).toEqual([42])
    expect(a.transport.stats().dropped).toBe(1)
  })

  it('a tightened grpcMessageBytesMax caps what one envelope may carry', async () => {
    const small = tightenLimits({
      grpcMessageBytesMax: 2 * 1024 * 1024,
      appendBytesMax: 2 * 1024 * 1024,
      peerBatchBytesMax: 64 * 1024,
      snapshotChunkBytes: 64 * 1024,
      peerQueueBytesMax: 1536 * 1024, // below one gRPC message: caps the envelope further
    })
    const a = await startNode(1, 0, small)
    const b = await startNode(2, 0, small)
    mesh(a, b)
    send(a, b, 1, 1536 * 1024) // over the queue's bytes: dropped, reported
    send(a, b, 2, 1024 * 1024) // fits
    await until(() => b.handler.envelopes.length === 1, 'the one that fits')
    expect(seqOf(b.handler.envelopes[0] as PeerEnvelope)).toBe(2)
    expect(a.handler.unreachable).toEqual([2])
  })
})
