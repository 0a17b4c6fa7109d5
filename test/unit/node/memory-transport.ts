/**
 * An in-process PeerTransport for tests: envelopes go to the other node's handler on a later
 * microtask, snapshots stream directly. Faults drop both directions, like the real transport.
 */
import type { NodeId } from '../../../src/common/index.ts'
import { ErrorCode, KvError } from '../../../src/common/index.ts'
import type {
  Fault,
  PeerEnvelope,
  PeerTransport,
  SnapshotHeader,
  TransportHandler,
  TransportStats,
} from '../../../src/node/transport.ts'

export class MemoryNetwork {
  readonly nodes = new Map<NodeId, MemoryTransport>()
  transport(id: NodeId): MemoryTransport {
    const t = new MemoryTransport(id, this)
    this.nodes.set(id, t)
    return t
  }
}

export class MemoryTransport implements PeerTransport {
  handler: TransportHandler | undefined
  private readonly faultMap = new Map<NodeId, Fault>()
  sent = 0
  private closed = false

  constructor(
    readonly id: NodeId,
    private readonly net: MemoryNetwork,
  ) {}

  start(handler: TransportHandler): void {
    this.handler = handler
  }

  private cut(peer: NodeId): boolean {
    const other = this.net.nodes.get(peer)
    return (
      this.closed ||
      other === undefined ||
      other.closed ||
      this.faultMap.get(peer)?.drop === true ||
      other.faultMap.get(this.id)?.drop === true
    )
  }

  send(envelope: PeerEnvelope): void {
    this.sent++
    if (this.cut(envelope.to)) return
    const target = this.net.nodes.get(envelope.to)!
    queueMicrotask(() => {
      if (!this.cut(envelope.to)) target.handler?.onEnvelopes([envelope])
    })
  }

  async sendSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.cut(header.to)) throw new KvError(ErrorCode.Unavailable, 'cut')
    const target = this.net.nodes.get(header.to)!
    if (target.handler === undefined) throw new KvError(ErrorCode.Unavailable, 'not started')
    await target.handler.onSnapshot(header, chunks, signal)
  }

  setPeers(): void {}

  setFault(peer: NodeId, fault: Fault | null): void {
    if (fault === null) this.faultMap.delete(peer)
    else this.faultMap.set(peer, fault)
  }

  faults(): ReadonlyMap<NodeId, Fault> {
    return this.faultMap
  }

  stats(): TransportStats {
    throw new Error('not kept by the memory transport')
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }
}
