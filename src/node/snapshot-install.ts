/**
 * Receiving a snapshot in place (ARCHITECTURE.md section 4, "a snapshot of the shard's hash range
 * ... written in place, made visible atomically"). Memory stays bounded whatever the shard size:
 * no more than a frame or two of the stream is held at a time.
 *
 *   1. read the stream's prelude (the MsgSnap: the point the data describes) and check it matches
 *      the stream's header;
 *   2. `begin`: the Ready loop checks the replica can take it (exists, is empty or active, the
 *      snapshot is newer than what it has and would be restored), freezes the group (it stops
 *      serving, stepping and ticking) and records the replica as `installing`, durably;
 *   3. clear the shard's ranges in bounded chunks (leftovers of an older state or a cut install);
 *   4. write every frame of entries as it arrives, each key checked to lie in the shard's ranges
 *      and each user value to decode (a peer's bytes are hostile until checked), unsynced;
 *   5. load the state machine (applied index, dedup table, descriptor) from what was written: the
 *      loaders fail stop on malformed records, which here came from the peer, so their assertion
 *      refuses the stream instead of stopping the node;
 *   6. `end`: the loop steps the MsgSnap; the Ready that restores it writes the log, the
 *      configuration, the applied index and the record `active` in one synced batch: only then
 *      is the snapshot visible to Raft and to readers.
 *
 * Any failure after `begin` calls `abort`: the loop resets the replica to `empty` (its log
 * forgotten, its term and vote kept) so that its leader sends a new snapshot. A crash between 2
 * and 6 leaves the record `installing`, which the next start resets the same way.
 */
import { AssertionError, ErrorCode, KvError, type NodeId, type ShardId } from '../common/index.ts'
import type { MsgSnap } from '../raft/index.ts'
import type { InstalledSnapshot } from '../shard/index.ts'
import {
  compareBytes,
  decodeValueRecord,
  isDataKey,
  shardDataRange,
  type Engine,
  type KeyRange,
} from '../storage/index.ts'
import { decodeSnapshotEntries, decodeSnapshotPrelude, SnapshotFrameReader } from './peer-payload.ts'
import type { SnapshotHeader } from './transport.ts'

/** One install in progress, as the loop granted it. */
export interface InstallTicket {
  readonly shardId: ShardId
  readonly from: NodeId
  /** Distinguishes installs of one shard over time. */
  readonly id: number
  readonly message: MsgSnap
  /** The ranges to clear and fill (the replica's own, never the sender's word). */
  readonly ranges: readonly KeyRange[]
  /** Bytes of entries written so far (for status). */
  bytes: number
  /** Aborted when the host gives the install up (the replica is being removed). */
  readonly cancel: AbortController
  /** Settles when the receiver has stopped writing (done, failed or given up). */
  readonly finished: Promise<void>
  /** Settles `finished` (the receiver calls it as it exits). */
  readonly finish: () => void
}

/** What the receiver needs of the host. */
export interface InstallPort {
  readonly nodeId: NodeId
  readonly engine: Engine
  /** Keys deleted per step while clearing the ranges. */
  readonly clearChunkKeys: number
  /** Largest frame accepted from the stream. */
  readonly frameBytesMax: number
  begin(shardId: ShardId, message: MsgSnap): Promise<InstallTicket>
  /** Reads the state machine and descriptor of the data written in place. */
  load(ticket: InstallTicket): Promise<InstalledSnapshot>
  end(ticket: InstallTicket, installed: InstalledSnapshot): Promise<void>
  abort(ticket: InstallTicket, err: unknown): void
}

export async function receiveSnapshotInPlace(
  port: InstallPort,
  header: SnapshotHeader,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
): Promise<void> {
  if (header.to !== port.nodeId)
    throw new KvError(ErrorCode.InvalidArgument, `snapshot for node ${header.to} sent to node ${port.nodeId}`)
  const iterator = chunks[Symbol.asyncIterator]()
  try {
    await receive(port, header, iterator, signal)
  } finally {
    await iterator.return?.()
  }
}

async function receive(
  port: InstallPort,
  header: SnapshotHeader,
  iterator: AsyncIterator<Uint8Array>,
  signal: AbortSignal,
): Promise<void> {
  const frames = new SnapshotFrameReader(port.frameBytesMax)
  const queued: Uint8Array[] = []
  // 1. The prelude.
  let message: MsgSnap | undefined
  while (message === undefined) {
    signal.throwIfAborted()
    const next = await iterator.next()
    if (next.done === true) throw malformed('snapshot stream ended before its prelude')
    queued.push(...frames.push(next.value))
    const first = queued.shift()
    if (first !== undefined) message = decodeSnapshotPrelude(first)
  }
  if (
    message.snapshot.meta.index !== header.index ||
    message.snapshot.meta.term !== header.term ||
    message.from !== header.from ||
    message.to !== port.nodeId
  )
    throw malformed('snapshot prelude does not match its header')
  // 2. The loop's consent.
  const ticket = await port.begin(header.shardId, message)
  try {
    await fill(port, ticket, iterator, frames, queued, anySignal(signal, ticket.cancel.signal))
  } finally {
    ticket.finish()
  }
}

/** Steps 3 to 6 (see the file comment); `abort`s the install on any failure. */
async function fill(
  port: InstallPort,
  ticket: InstallTicket,
  iterator: AsyncIterator<Uint8Array>,
  frames: SnapshotFrameReader,
  queued: Uint8Array[],
  signal: AbortSignal,
): Promise<void> {
  try {
    // 3. Clear.
    for (const range of ticket.ranges) {
      for (;;) {
        signal.throwIfAborted()
        const step = await port.engine.deleteRangeChunk(range, { keysMax: port.clearChunkKeys })
        if (step.done) break
      }
    }
    // 4. Fill.
    const write = async (frame: Uint8Array): Promise<void> => {
      const entries = decodeSnapshotEntries(frame)
      if (entries.length === 0) return
      const batch = port.engine.batch()
      for (const [key, value] of entries) {
        if (!ticket.ranges.some((r) => inRange(key, r)))
          throw malformed(`snapshot key outside shard ${ticket.shardId}`)
        if (isDataKey(key) || inRange(key, shardDataRange(ticket.shardId)))
          fromPeer(() => decodeValueRecord(value), 'a value record does not decode')
        batch.put(key, value)
        ticket.bytes += key.length + value.length
      }
      await port.engine.write(batch, { sync: false })
    }
    for (const frame of queued.splice(0)) await write(frame)
    for (;;) {
      signal.throwIfAborted()
      const next = await iterator.next()
      if (next.done === true) break
      for (const frame of frames.push(next.value)) await write(frame)
    }
    frames.end()
    signal.throwIfAborted()
    // 5, 6. Load and make it visible.
    let installed: InstalledSnapshot
    try {
      installed = await port.load(ticket)
    } catch (err) {
      if (err instanceof AssertionError) throw malformed(`its records do not load: ${err.message}`)
      throw err
    }
    signal.throwIfAborted()
    await port.end(ticket, installed)
  } catch (err) {
    port.abort(ticket, err)
    throw err
  }
}

/** A signal aborted when either of two is (AbortSignal.any is not in every Node 20 release we support). */
function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (a.aborted) return a
  if (b.aborted) return b
  const c = new AbortController()
  const onA = (): void => c.abort(a.reason)
  const onB = (): void => c.abort(b.reason)
  a.addEventListener('abort', onA, { once: true })
  b.addEventListener('abort', onB, { once: true })
  return c.signal
}

function inRange(key: Uint8Array, range: KeyRange): boolean {
  return compareBytes(key, range.gte) >= 0 && compareBytes(key, range.lt) < 0
}

/** Runs a fail-stop decoder over a peer's bytes: its assertion refuses the stream. */
function fromPeer(decode: () => unknown, why: string): void {
  try {
    decode()
  } catch (err) {
    if (err instanceof AssertionError) throw malformed(why)
    throw err
  }
}

function malformed(why: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, `malformed snapshot stream: ${why}`)
}
