/**
 * Shard descriptors and hash positions as they arrive on the wire (kv.proto ShardDescriptor, the
 * ShardMap answer, WRONG_SHARD's `ringkv-descriptor-bin` and OpError.descriptor), parsed and
 * checked: wire input is never trusted. Pure.
 */
import type { ShardDescriptorDetail } from '../common/errors.ts'
import { isSafeUint } from '../common/ids.ts'
import type { ShardDescriptor as WireShardDescriptor } from '../gen/ringkv/v1/kv.ts'
import { hashSpaceEnd } from '../hashing/index.ts'

const decimalU64 = /^\d{1,20}$/

/** A ring position in [0, 2^64] from its decimal string; undefined when it is not one. */
export function parseHash(text: string): bigint | undefined {
  const trimmed = text.trim()
  if (!decimalU64.test(trimmed)) return undefined
  const value = BigInt(trimmed)
  return value <= hashSpaceEnd ? value : undefined
}

/**
 * A hash range [start, end) from its decimal strings, or undefined when it does not parse or is
 * empty. An end of "0" stands for the end of the ring (2^64), as older nodes wrote it.
 */
export function parseHashRange(start: string, end: string): { start: bigint; end: bigint } | undefined {
  const s = parseHash(start)
  let e = parseHash(end)
  if (e === 0n) e = hashSpaceEnd
  if (s === undefined || e === undefined || s >= e || s >= hashSpaceEnd) return undefined
  return { start: s, end: e }
}

/** A wire descriptor as ErrorDetails carry it, or undefined when it is malformed. */
export function descriptorFromWire(wire: WireShardDescriptor | undefined): ShardDescriptorDetail | undefined {
  if (wire === undefined) return undefined
  const range = parseHashRange(wire.hashStart, wire.hashEnd)
  if (range === undefined || !isSafeUint(wire.shardId) || !isSafeUint(wire.epoch)) return undefined
  const replicas = wire.replicas.filter((r) => isSafeUint(r) && r > 0)
  return {
    shardId: wire.shardId,
    hashStart: range.start,
    hashEnd: range.end,
    replicas: [...new Set(replicas)],
    leaderHint: isSafeUint(wire.leaderHint) ? wire.leaderHint : 0,
    leaderTerm: isSafeUint(wire.leaderTerm) ? wire.leaderTerm : 0,
    epoch: wire.epoch,
  }
}
