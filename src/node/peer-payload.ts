/**
 * The payloads the host puts in peer envelopes and snapshot streams (the transport carries them
 * as opaque bytes):
 *
 *   envelope payload:  kind u8 | body
 *     kind 1  a Raft message (raft-codec.ts encodeMessage)
 *     kind 2  an applied report: the sender's applied index of the envelope's shard (uvarint),
 *             sent to the other voters after an apply, so a leader can answer `all` writes
 *   snapshot stream:   a byte stream of frames (u32 length | frame); the transport may cut and
 *                      join chunks, so frames delimit themselves (SnapshotFrameReader):
 *                      frame 0 = kind 3 | the MsgSnap to step (its meta says what the data is at)
 *                      frame n = kind 4 | count uvarint | (key bytes | value bytes)*
 *
 * Decoding never throws anything but KvError INVALID_ARGUMENT on hostile bytes.
 */
import { ErrorCode, KvError, type LogIndex } from '../common/index.ts'
import type { Message, MsgSnap } from '../raft/index.ts'
import { ByteReader, ByteWriter, type Entry } from '../storage/index.ts'
import { decodeMessage, encodeMessage } from './raft-codec.ts'

const Kind = { raft: 1, applied: 2, snapshotPrelude: 3, snapshotEntries: 4 } as const

export type PeerPayload =
  | { readonly kind: 'raft'; readonly message: Message }
  | { readonly kind: 'applied'; readonly index: LogIndex }

export function encodeRaftPayload(m: Message): Uint8Array {
  const body = encodeMessage(m)
  const out = new Uint8Array(body.length + 1)
  out[0] = Kind.raft
  out.set(body, 1)
  return out
}

export function encodeAppliedPayload(index: LogIndex): Uint8Array {
  return new ByteWriter(12).u8(Kind.applied).uvarint(index).finish()
}

export function decodePeerPayload(bytes: Uint8Array): PeerPayload {
  return guard(() => {
    switch (bytes[0]) {
      case Kind.raft:
        return { kind: 'raft', message: decodeMessage(bytes.subarray(1)) }
      case Kind.applied: {
        const r = new ByteReader(bytes, 1, 'applied report')
        const index = r.uvarint() as LogIndex
        r.end()
        return { kind: 'applied', index }
      }
      default:
        throw malformed(`unknown peer payload kind ${String(bytes[0])}`)
    }
  })
}

export function encodeSnapshotPrelude(m: MsgSnap): Uint8Array {
  const body = encodeMessage(m)
  const out = new Uint8Array(body.length + 1)
  out[0] = Kind.snapshotPrelude
  out.set(body, 1)
  return out
}

export function decodeSnapshotPrelude(bytes: Uint8Array): MsgSnap {
  return guard(() => {
    if (bytes[0] !== Kind.snapshotPrelude) throw malformed('snapshot stream must start with its prelude')
    const m = decodeMessage(bytes.subarray(1))
    if (m.type !== 'MsgSnap') throw malformed(`snapshot prelude carries ${m.type}, not MsgSnap`)
    return m
  })
}

export function encodeSnapshotEntries(entries: readonly Entry[]): Uint8Array {
  let size = 8
  for (const [k, v] of entries) size += k.length + v.length + 10
  const w = new ByteWriter(size).u8(Kind.snapshotEntries).uvarint(entries.length)
  for (const [k, v] of entries) w.bytes(k).bytes(v)
  return w.finish()
}

export function decodeSnapshotEntries(bytes: Uint8Array): Entry[] {
  return guard(() => {
    const r = new ByteReader(bytes, 0, 'snapshot chunk')
    if (r.u8() !== Kind.snapshotEntries) throw malformed('snapshot chunk of an unknown kind')
    const count = r.uvarint()
    const out: Entry[] = []
    for (let i = 0; i < count; i++) out.push([r.bytes(), r.bytes()])
    r.end()
    return out
  })
}

function malformed(why: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, `malformed peer payload: ${why}`)
}

/** Runs a decoder; anything it throws that is not already a KvError becomes INVALID_ARGUMENT. */
function guard<T>(decode: () => T): T {
  try {
    return decode()
  } catch (err) {
    if (err instanceof KvError) throw err
    throw new KvError(ErrorCode.InvalidArgument, `malformed peer payload: ${(err as Error).message}`)
  }
}

/** A frame of the snapshot stream: its u32 big-endian length, then the frame. */
export function frame(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length + 4)
  new DataView(out.buffer).setUint32(0, bytes.length)
  out.set(bytes, 4)
  return out
}

/**
 * Reassembles frames from chunks cut anywhere. `push` returns the frames completed so far; a frame
 * longer than `frameBytesMax` is refused (INVALID_ARGUMENT); `end` refuses a stream cut mid-frame.
 */
export class SnapshotFrameReader {
  private buffer = new Uint8Array(0)

  constructor(private readonly frameBytesMax: number) {}

  push(chunk: Uint8Array): Uint8Array[] {
    const joined = new Uint8Array(this.buffer.length + chunk.length)
    joined.set(this.buffer, 0)
    joined.set(chunk, this.buffer.length)
    const frames: Uint8Array[] = []
    let at = 0
    while (joined.length - at >= 4) {
      const length = new DataView(joined.buffer, joined.byteOffset + at, 4).getUint32(0)
      if (length > this.frameBytesMax) throw malformed(`snapshot frame of ${length} bytes`)
      if (joined.length - at - 4 < length) break
      frames.push(joined.slice(at + 4, at + 4 + length))
      at += 4 + length
    }
    this.buffer = joined.slice(at)
    return frames
  }

  end(): void {
    if (this.buffer.length > 0) throw malformed('snapshot stream ends inside a frame')
  }
}
