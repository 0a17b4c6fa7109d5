/**
 * The peer transport contract: how the node's Raft groups reach the other nodes. The host encodes
 * Raft messages itself and hands over opaque payload bytes; the transport never looks inside them.
 *
 * Two halves, one object per node:
 * - `PeerTransport`, the sending half the host drives: `send` never blocks and never throws for a
 *   peer, because Raft tolerates loss (etcd-io/raft `ReportUnreachable`): a message that cannot go
 *   out is dropped and the peer reported unreachable, so the leader probes again.
 * - `PeerInbound`, the receiving half a server feeds (server/grpc-raft.ts for gRPC): it filters,
 *   applies faults and hands arrivals to the `TransportHandler` given to `start`.
 *
 * Faults (`setFault`) are this node's view of a bad network to one peer: `drop` cuts both
 * directions (outbound envelopes are discarded, inbound ones too, snapshots are refused both
 * ways) and `delayMs` holds envelopes both ways. A fault drop is silent: it is the network losing
 * packets, not the transport failing, so it does not report the peer unreachable.
 *
 * Implementations: transport-grpc.ts (production, one batched stream per peer); the simulator's
 * own network in test/sim.
 */
import type { LogIndex, NodeId, ShardId, Term } from '../common/ids.ts'

/** One Raft message of one shard, between two nodes. `payload` is the host's encoding (raft-codec.ts). */
export interface PeerEnvelope {
  readonly shardId: ShardId
  readonly from: NodeId
  readonly to: NodeId
  readonly payload: Uint8Array
}

/** What a snapshot stream is of: the shard, the two nodes, and the log position it covers. */
export interface SnapshotHeader {
  readonly shardId: ShardId
  readonly from: NodeId
  readonly to: NodeId
  readonly index: LogIndex
  readonly term: Term
}

/** The host's side of the transport: what arrived and what failed. */
export interface TransportHandler {
  /**
   * Envelopes that arrived for this node, in arrival order per peer. Must not block (the host
   * queues them, bounded). Called outside any `send` call, never re-entrantly.
   */
  onEnvelopes(envelopes: readonly PeerEnvelope[]): void
  /**
   * A snapshot stream arrived: resolve once it is durably installed (or staged), reject to refuse
   * it. `chunks` yields the data in order and applies backpressure to the sender; it throws when
   * the stream breaks or is malformed. `signal` aborts at the stream's deadline or cancellation.
   */
  onSnapshot(header: SnapshotHeader, chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<void>
  /**
   * A send to `peer` was dropped (queue full, stream broken or not connected, envelope too large;
   * an injected fault's drop does NOT count): Raft reportUnreachable. Coalesced (at most once per
   * peer per microtask) and never called from inside `send`.
   */
  onUnreachable(peer: NodeId): void
}

/** A fault on the link to one peer (see the file comment). */
export interface Fault {
  readonly drop: boolean
  readonly delayMs: number
}

/** Where one peer link stands. */
export type PeerLinkState = 'connecting' | 'connected' | 'backoff' | 'closed'

export interface PeerLinkStats {
  readonly peer: NodeId
  readonly address: string
  readonly state: PeerLinkState
  readonly queuedEnvelopes: number
  readonly queuedBytes: number
}

/** Counters since the transport was made; for /metrics and tests. */
export interface TransportStats {
  /** Envelopes written to peer streams. */
  readonly sent: number
  /** Stream messages (batches) written; `sent / sentBatches` is the batching factor. */
  readonly sentBatches: number
  /** Payload bytes written. */
  readonly sentBytes: number
  /** Envelopes dropped and reported unreachable (queue full, not connected, stream broke, too large, unknown peer). */
  readonly dropped: number
  /** Envelopes dropped by an injected fault, both directions (not reported unreachable). */
  readonly faultDropped: number
  /** Envelopes handed to the handler. */
  readonly received: number
  /** Stream messages received. */
  readonly receivedBatches: number
  /** Inbound envelopes dropped because they were not for this node or not from the stream's peer. */
  readonly misaddressed: number
  /** Inbound envelopes dropped because the transport was not started yet. */
  readonly droppedNotStarted: number
  /** Inbound envelopes dropped because too many were held by delay faults already. */
  readonly droppedDelayFull: number
  /** Streams opened to peers (first connections and reconnections). */
  readonly connects: number
  /** Streams opened to a peer that had been connected before. */
  readonly reconnects: number
  /** Failed attempts to open a stream, and streams that broke. */
  readonly connectFailures: number
  readonly snapshotsSent: number
  readonly snapshotsSendFailed: number
  readonly snapshotsReceived: number
  readonly snapshotsRefused: number
  readonly peers: readonly PeerLinkStats[]
}

/** The sending half, driven by the host (node/host.ts). */
export interface PeerTransport {
  /** Sets the handler of arrivals and failures. Call once, before the first send. */
  start(handler: TransportHandler): void
  /** Queues `envelope` for its peer. Never blocks, never throws for a peer (see TransportHandler.onUnreachable). */
  send(envelope: PeerEnvelope): void
  /**
   * Streams a snapshot to `header.to`; resolves when the receiver accepted it. Rejects with a
   * KvError: UNAVAILABLE (peer unknown, unreachable, cut by a fault, or refused), DEADLINE_EXCEEDED
   * (limits.snapshotSendMsMax), CANCELLED (`signal` or close).
   */
  sendSnapshot(header: SnapshotHeader, chunks: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<void>
  /** The peers and their addresses (`host:port`); this node's own id is ignored. Links are added, moved and removed to match. */
  setPeers(peers: ReadonlyMap<NodeId, string>): void
  /** Sets the fault towards `peer`; null (or a fault that neither drops nor delays) clears it. */
  setFault(peer: NodeId, fault: Fault | null): void
  /** The faults in force, by peer id ascending. */
  faults(): ReadonlyMap<NodeId, Fault>
  stats(): TransportStats
  /** Closes every link and stream (no unreachable reports); sends after close are dropped. Idempotent. */
  close(): Promise<void>
}

/** The receiving half, fed by the server that accepts peer streams (server/grpc-raft.ts). */
export interface PeerInbound {
  readonly nodeId: NodeId
  /** Aborted when the transport closes: inbound streams end then, and new ones are refused. */
  readonly closed: AbortSignal
  /**
   * Envelopes of one stream message from `peer`: drops those not addressed from `peer` to this
   * node, applies `peer`'s fault (drop, delay), and hands the rest to the handler in order. Never
   * throws for peer input.
   */
  receive(peer: NodeId, envelopes: readonly PeerEnvelope[]): void
  /** A snapshot stream from `header.from`; rejects (with a KvError) to refuse it: fault, not started, or the handler's refusal. */
  receiveSnapshot(
    header: SnapshotHeader,
    chunks: AsyncIterable<Uint8Array>,
    signal: AbortSignal,
  ): Promise<void>
}

/** True when `fault` does something (a fault that neither drops nor delays is no fault). */
export function isActiveFault(fault: Fault | null | undefined): fault is Fault {
  return fault !== null && fault !== undefined && (fault.drop || fault.delayMs > 0)
}
