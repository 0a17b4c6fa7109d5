/**
 * The one place that maps the wire (kv.proto ShardMapResponse, ShardDescriptor, NodeInfo) to
 * routing's values and back. Every field from the wire is checked, whoever sent it (a node's
 * ShardMap answer to the SDK, a peer's map, a map stored on disk, the descriptor of a WRONG_SHARD):
 * decoding returns what is well formed and names what is not, and never asserts. What to do with a
 * problem is the caller's choice: the SDK routes by the well-formed part of a map (keys in what was
 * left out go to a node that forwards), a node refuses a peer's map with any problem at all
 * (router/map-proto.ts: INVALID_ARGUMENT).
 *
 * The contract (kv.proto): hashes are decimal strings of [0, 2^64]; a range [hash_start, hash_end)
 * is non-empty; ids, terms and epochs are uint64 that must fit a safe JavaScript integer; a shard
 * has at least one replica, each a node id > 0, none twice; a node's state is one of `nodeStates`
 * and its weight (a double, 0 = unset = 1) positive and finite. Pure.
 */
import { isSafeUint } from '../common/ids.ts'
import type { NodeInfo, ShardDescriptor, ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import { hashSpaceEnd } from '../hashing/index.ts'
import { nodeStates, type NodeRoute, type NodeState, type ShardRoute } from './types.ts'

/** A decoded value, or what is wrong with the input. */
export type Decoded<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string }

/** A node as a map carries it: its route and its registry fields. */
export interface WireNode extends NodeRoute {
  /** Relative capacity on the ring (1 = one default node). */
  readonly weight: number
  /** Wall-clock ms of the meta leader when the last heartbeat was applied; 0 = never. */
  readonly lastHeartbeatMs: number
  /** Where its peers reach it (--peer-advertise); absent when the node did not say. */
  readonly peerAddress?: string
}

/** A ShardMap answer, checked: only well-formed parts, and a list of what was left out and why. */
export interface DecodedShardMap {
  /** 32 lower-case hex digits, or '' when the answer's was not. */
  readonly clusterId: string
  readonly replicaCount: number
  readonly vnodesPerNode: number
  /** The node that answered (0 when the answer's was not a node id). */
  readonly servedBy: number
  /** In hash order, ranges not overlapping, ids distinct (a shard that broke this was left out). */
  readonly shards: readonly ShardRoute[]
  /** The meta shard, when the answer carried a well-formed one. */
  readonly meta: ShardRoute | undefined
  /** Ids distinct. */
  readonly nodes: readonly WireNode[]
  /** One line per field that was not well formed (and what was left out for it). Empty: all was. */
  readonly problems: readonly string[]
}

const decimalU64 = /^\d{1,20}$/
const clusterIdPattern = /^[0-9a-f]{32}$/

const bad = <T>(problem: string): Decoded<T> => ({ ok: false, problem })

/** A wire value as a problem names it: numbers as they are, strings quoted and cut short, else its type. */
function show(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v)
  if (typeof v === 'string') return JSON.stringify(v.length > 24 ? `${v.slice(0, 24)}...` : v)
  return v === null ? 'null' : typeof v
}

/** A ring position in [0, 2^64] from its decimal string; undefined when it is not one. */
export function decodeHash(text: string): bigint | undefined {
  if (typeof text !== 'string' || !decimalU64.test(text)) return undefined
  const value = BigInt(text)
  return value <= hashSpaceEnd ? value : undefined
}

/** A non-empty range [start, end) of the ring from its decimal strings; undefined when it is not one. */
export function decodeHashRange(start: string, end: string): { start: bigint; end: bigint } | undefined {
  const s = decodeHash(start)
  const e = decodeHash(end)
  if (s === undefined || e === undefined || s >= e) return undefined
  return { start: s, end: e }
}

/** One shard descriptor (of a map, or of a WRONG_SHARD answer). */
export function decodeDescriptor(wire: ShardDescriptor | undefined): Decoded<ShardRoute> {
  if (wire === undefined) return bad('no descriptor')
  if (!isSafeUint(wire.shardId)) return bad(`shard id ${show(wire.shardId)}`)
  const what = `shard ${wire.shardId}`
  const range = decodeHashRange(wire.hashStart, wire.hashEnd)
  if (range === undefined) return bad(`${what}: hash range [${show(wire.hashStart)}, ${show(wire.hashEnd)})`)
  if (!Array.isArray(wire.replicas) || wire.replicas.length === 0) return bad(`${what}: no replicas`)
  const replicas: number[] = []
  for (const r of wire.replicas) {
    if (!isSafeUint(r) || r === 0) return bad(`${what}: replica ${show(r)}`)
    if (replicas.includes(r)) return bad(`${what}: replica ${r} twice`)
    replicas.push(r)
  }
  if (!isSafeUint(wire.leaderHint)) return bad(`${what}: leader hint ${show(wire.leaderHint)}`)
  if (!isSafeUint(wire.leaderTerm)) return bad(`${what}: leader term ${show(wire.leaderTerm)}`)
  if (!isSafeUint(wire.epoch)) return bad(`${what}: epoch ${show(wire.epoch)}`)
  return {
    ok: true,
    value: {
      shardId: wire.shardId,
      hashStart: range.start,
      hashEnd: range.end,
      replicas,
      leaderHint: wire.leaderHint,
      leaderTerm: wire.leaderTerm,
      epoch: wire.epoch,
    },
  }
}

/** One node of a map. */
export function decodeNode(wire: NodeInfo): Decoded<WireNode> {
  if (!isSafeUint(wire.nodeId) || wire.nodeId === 0) return bad(`node id ${show(wire.nodeId)}`)
  const what = `node ${wire.nodeId}`
  if (typeof wire.address !== 'string') return bad(`${what}: address`)
  if (typeof wire.peerAddress !== 'string') return bad(`${what}: peer address`)
  if (typeof wire.zone !== 'string') return bad(`${what}: zone`)
  if (!nodeStates.includes(wire.state as NodeState)) return bad(`${what}: state ${show(wire.state)}`)
  const weight = wire.weight === 0 ? 1 : wire.weight
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0)
    return bad(`${what}: weight ${show(wire.weight)}`)
  if (!isSafeUint(wire.lastHeartbeatMs)) return bad(`${what}: last heartbeat ${show(wire.lastHeartbeatMs)}`)
  return {
    ok: true,
    value: {
      id: wire.nodeId,
      address: wire.address,
      ...(wire.peerAddress === '' ? {} : { peerAddress: wire.peerAddress }),
      zone: wire.zone,
      state: wire.state as NodeState,
      weight,
      lastHeartbeatMs: wire.lastHeartbeatMs,
    },
  }
}

/**
 * A whole ShardMap answer. Shards that do not decode are left out, and so are those whose range
 * overlaps an earlier one's (in hash order) and repeated ids; so are nodes that do not decode and
 * repeated node ids. Each is named in `problems`.
 */
export function decodeShardMap(res: ShardMapResponse): DecodedShardMap {
  const problems: string[] = []
  const uint = (n: number, what: string): number => {
    if (isSafeUint(n)) return n
    problems.push(`${what} ${show(n)}`)
    return 0
  }
  const clusterId =
    typeof res.clusterId === 'string' && clusterIdPattern.test(res.clusterId) ? res.clusterId : ''
  if (clusterId === '') problems.push('cluster id')
  const candidates: ShardRoute[] = []
  for (const wire of res.shards) {
    const d = decodeDescriptor(wire)
    if (d.ok) candidates.push(d.value)
    else problems.push(d.problem)
  }
  candidates.sort((a, b) => (a.hashStart < b.hashStart ? -1 : a.hashStart > b.hashStart ? 1 : 0))
  const shards: ShardRoute[] = []
  const ids = new Set<number>()
  for (const s of candidates) {
    const previous = shards[shards.length - 1]
    if (previous !== undefined && s.hashStart < previous.hashEnd) {
      problems.push(`shard ${s.shardId} overlaps shard ${previous.shardId}`)
      continue
    }
    if (ids.has(s.shardId)) {
      problems.push(`shard ${s.shardId} twice`)
      continue
    }
    ids.add(s.shardId)
    shards.push(s)
  }
  let meta: ShardRoute | undefined
  if (res.metaShard !== undefined) {
    const d = decodeDescriptor(res.metaShard)
    if (!d.ok) problems.push(`meta ${d.problem}`)
    else if (ids.has(d.value.shardId)) problems.push(`meta shard id ${d.value.shardId} is a ring shard's`)
    else meta = d.value
  }
  const nodes: WireNode[] = []
  const nodeIds = new Set<number>()
  for (const wire of res.nodes) {
    const n = decodeNode(wire)
    if (!n.ok) problems.push(n.problem)
    else if (nodeIds.has(n.value.id)) problems.push(`node ${n.value.id} twice`)
    else {
      nodeIds.add(n.value.id)
      nodes.push(n.value)
    }
  }
  return {
    clusterId,
    replicaCount: uint(res.replicaCount, 'replica count'),
    vnodesPerNode: uint(res.vnodesPerNode, 'vnodes per node'),
    servedBy: uint(res.servedBy, 'served by'),
    shards,
    meta,
    nodes,
    problems,
  }
}

/** A shard on the wire (a map's entry, or the descriptor a WRONG_SHARD answer carries). */
export function encodeDescriptor(s: ShardRoute): ShardDescriptor {
  return {
    shardId: s.shardId,
    hashStart: s.hashStart.toString(),
    hashEnd: s.hashEnd.toString(),
    replicas: [...s.replicas],
    leaderHint: s.leaderHint,
    leaderTerm: s.leaderTerm,
    epoch: s.epoch,
  }
}

export function encodeNode(n: WireNode): NodeInfo {
  return {
    nodeId: n.id,
    address: n.address,
    zone: n.zone,
    state: n.state,
    lastHeartbeatMs: n.lastHeartbeatMs,
    weight: n.weight,
    peerAddress: n.peerAddress ?? '',
  }
}

/** What a ShardMap answer says, as `encodeShardMap` takes it. */
export interface ShardMapParts {
  readonly clusterId: string
  readonly replicaCount: number
  readonly vnodesPerNode: number
  readonly servedBy: number
  readonly shards: readonly ShardRoute[]
  readonly meta: ShardRoute
  readonly nodes: Iterable<WireNode>
}

export function encodeShardMap(m: ShardMapParts): ShardMapResponse {
  return {
    clusterId: m.clusterId,
    nodes: [...m.nodes].map(encodeNode),
    shards: m.shards.map(encodeDescriptor),
    replicaCount: m.replicaCount,
    vnodesPerNode: m.vnodesPerNode,
    metaShard: encodeDescriptor(m.meta),
    servedBy: m.servedBy,
  }
}
