/**
 * The meta shard's records (ARCHITECTURE.md section 3, cluster/): the cluster record, one record
 * per node (the registry) and one per shard (the shard map), each under its own key of the meta
 * shard's key space, encoded as JSON (small, rare, and readable in a debugger; hashes as decimal
 * strings). Decoders check every field: a record that is not what these encoders write is
 * corruption and fails stop.
 *
 *   'cluster'            -> ClusterRecord
 *   'node-next-id'       -> the next node id to hand out (decimal)
 *   'node/<id, 10 digits>'  -> NodeRecord
 *   'shard/<id, 10 digits>' -> ShardRecord  ('shard/meta' for the meta shard itself)
 *   'move/<id, 10 digits>'  -> MoveRecord   (the move of that shard in progress; one at a time)
 *   'moves'                 -> the shard ids with a move in progress (the index the mover reads)
 *   'moves-recent'          -> the latest finished moves, newest first (bounded)
 */
import { assert } from '../common/assert.ts'
import { peerPortOffset } from '../common/config.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import { nodeStates, type NodeState } from '../routing/index.ts'

// A node's states are routing's (a dead node is never routed to).
export { nodeStates, type NodeState }

/** One node of the registry. */
export interface NodeRecord {
  readonly id: NodeId
  /** Where clients reach it (its client listener). */
  readonly address: string
  /**
   * Where other nodes reach it (its peer listener); absent in records written before nodes had
   * one: then `address`'s host at its port + 100 (peerAddressOf).
   */
  readonly peerAddress?: string
  /** Failure-domain label; '' = none. */
  readonly zone: string
  /** Relative capacity on the ring (1 = one default node). */
  readonly weight: number
  readonly state: NodeState
  /** Wall-clock ms of the meta leader when the last heartbeat was applied; 0 = never. */
  readonly lastHeartbeatMs: number
}

/** One shard of the map. */
export interface ShardRecord {
  readonly shardId: ShardId
  /** [hashStart, hashEnd) of the ring; hashEnd may be 2^64. */
  readonly hashStart: bigint
  readonly hashEnd: bigint
  /** Preference order: the first is the preferred leader. */
  readonly replicas: readonly NodeId[]
  /** 0 = unknown. Advisory, and not part of the epoch. */
  readonly leaderHint: number
  readonly leaderTerm: number
  /** Rises with every change of range or replicas. */
  readonly epoch: number
}

/** What the cluster was created with. */
export interface ClusterRecord {
  /** 32 hex digits. */
  readonly clusterId: string
  readonly shardCount: number
  readonly replicaCount: number
  readonly vnodesPerNode: number
}

/** Where other nodes reach `n`: its peer address, or the default beside its client address. */
export function peerAddressOf(n: Pick<NodeRecord, 'address' | 'peerAddress'>): string {
  if (n.peerAddress !== undefined && n.peerAddress !== '') return n.peerAddress
  const match = /^(.*):(\d{1,5})$/.exec(n.address)
  return match === null ? n.address : `${match[1]}:${Number(match[2]) + peerPortOffset}`
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })
const idDigits = 10

export const metaKeys = {
  cluster: encoder.encode('cluster'),
  nodeNextId: encoder.encode('node-next-id'),
  node: (id: NodeId): Uint8Array => encoder.encode(`node/${String(id).padStart(idDigits, '0')}`),
  shard: (id: ShardId): Uint8Array => encoder.encode(`shard/${String(id).padStart(idDigits, '0')}`),
  metaShard: encoder.encode('shard/meta'),
  move: (id: ShardId): Uint8Array => encoder.encode(`move/${String(id).padStart(idDigits, '0')}`),
  moves: encoder.encode('moves'),
  movesRecent: encoder.encode('moves-recent'),
} as const

/**
 * The steps of a move, in order (cluster/mover.ts). `done`, `failed` and `cancelled` end it.
 *   prepare   create the empty replica on the destination
 *   learner   add it to the shard as a learner (epoch + 1)
 *   catchup   wait until it installed a snapshot and caught up with the log
 *   transfer  move leadership away from the source if it leads (an add has no source)
 *   replace   destination in, source out, through joint consensus (epoch + 2); an add promotes
 *             the learner to a voter (epoch + 1)
 *   cleanup   tell the source to drop its replica; the shard record follows the new voters
 */
export type MoveStep =
  'prepare' | 'learner' | 'catchup' | 'transfer' | 'replace' | 'cleanup' | 'done' | 'failed' | 'cancelled'
export const moveSteps: readonly MoveStep[] = [
  'prepare',
  'learner',
  'catchup',
  'transfer',
  'replace',
  'cleanup',
  'done',
  'failed',
  'cancelled',
]

/**
 * One replica move: persisted before each step is issued, so a new meta leader carries on. A move
 * without `from` adds a replica to a shard short of replicas (stored as from 0): its `transfer`
 * does nothing, its `replace` promotes the caught-up learner, its `cleanup` drops no replica.
 */
export interface MoveRecord {
  readonly shardId: ShardId
  /** The replica given up; absent for a move that adds a replica. */
  readonly from?: NodeId
  readonly to: NodeId
  readonly step: MoveStep
  /** The shard's epoch as the mover last saw it. */
  readonly epoch: number
  /** Wall-clock ms of the meta leader. */
  readonly startedMs: number
  readonly updatedMs: number
  readonly finishedMs: number
  /** Why it waits or failed ('' while it progresses). */
  readonly reason: string
}

function parse(bytes: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(bytes))
  } catch {
    assert(false, `corrupt meta record (${what}): not JSON`)
  }
  assert(
    typeof value === 'object' && value !== null && !Array.isArray(value),
    `corrupt meta record (${what})`,
  )
  return value as Record<string, unknown>
}

function uint(o: Record<string, unknown>, field: string, what: string): number {
  const v = o[field]
  assert(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0, `corrupt meta record (${what}.${field})`)
  return v
}

function str(o: Record<string, unknown>, field: string, what: string): string {
  const v = o[field]
  assert(typeof v === 'string', `corrupt meta record (${what}.${field})`)
  return v
}

function big(o: Record<string, unknown>, field: string, what: string): bigint {
  const v = str(o, field, what)
  assert(/^\d+$/.test(v), `corrupt meta record (${what}.${field})`)
  return BigInt(v)
}

const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

export function encodeNode(n: NodeRecord): Uint8Array {
  return json({
    id: n.id,
    address: n.address,
    ...(n.peerAddress === undefined ? {} : { peerAddress: n.peerAddress }),
    zone: n.zone,
    weight: n.weight,
    state: n.state,
    lastHeartbeatMs: n.lastHeartbeatMs,
  })
}

export function decodeNode(bytes: Uint8Array): NodeRecord {
  const o = parse(bytes, 'node')
  const state = str(o, 'state', 'node') as NodeState
  assert(nodeStates.includes(state), 'corrupt meta record (node.state)')
  const weight = o.weight
  assert(
    typeof weight === 'number' && weight > 0 && Number.isFinite(weight),
    'corrupt meta record (node.weight)',
  )
  return {
    id: NodeId(uint(o, 'id', 'node')),
    address: str(o, 'address', 'node'),
    ...('peerAddress' in o ? { peerAddress: str(o, 'peerAddress', 'node') } : {}),
    zone: str(o, 'zone', 'node'),
    weight,
    state,
    lastHeartbeatMs: uint(o, 'lastHeartbeatMs', 'node'),
  }
}

export function encodeShard(s: ShardRecord): Uint8Array {
  return json({
    shardId: s.shardId,
    hashStart: s.hashStart.toString(),
    hashEnd: s.hashEnd.toString(),
    replicas: s.replicas,
    leaderHint: s.leaderHint,
    leaderTerm: s.leaderTerm,
    epoch: s.epoch,
  })
}

export function decodeShard(bytes: Uint8Array): ShardRecord {
  const o = parse(bytes, 'shard')
  const replicas = o.replicas
  assert(Array.isArray(replicas), 'corrupt meta record (shard.replicas)')
  const record: ShardRecord = {
    shardId: ShardId(uint(o, 'shardId', 'shard')),
    hashStart: big(o, 'hashStart', 'shard'),
    hashEnd: big(o, 'hashEnd', 'shard'),
    replicas: replicas.map((r: unknown) => {
      assert(
        typeof r === 'number' && Number.isSafeInteger(r) && r > 0,
        'corrupt meta record (shard.replicas)',
      )
      return NodeId(r)
    }),
    leaderHint: uint(o, 'leaderHint', 'shard'),
    leaderTerm: uint(o, 'leaderTerm', 'shard'),
    epoch: uint(o, 'epoch', 'shard'),
  }
  assert(record.hashStart < record.hashEnd, 'corrupt meta record (shard range)')
  return record
}

export function encodeCluster(c: ClusterRecord): Uint8Array {
  return json(c)
}

export function decodeCluster(bytes: Uint8Array): ClusterRecord {
  const o = parse(bytes, 'cluster')
  const clusterId = str(o, 'clusterId', 'cluster')
  assert(/^[0-9a-f]{32}$/.test(clusterId), 'corrupt meta record (cluster.clusterId)')
  return {
    clusterId,
    shardCount: uint(o, 'shardCount', 'cluster'),
    replicaCount: uint(o, 'replicaCount', 'cluster'),
    vnodesPerNode: uint(o, 'vnodesPerNode', 'cluster'),
  }
}

export function encodeCounter(n: number): Uint8Array {
  return encoder.encode(String(n))
}

export function decodeCounter(bytes: Uint8Array): number {
  const text = decoder.decode(bytes)
  assert(/^\d+$/.test(text), 'corrupt meta record (counter)')
  return Number(text)
}

export function encodeMove(m: MoveRecord): Uint8Array {
  return json({
    shardId: m.shardId,
    from: m.from ?? 0,
    to: m.to,
    step: m.step,
    epoch: m.epoch,
    startedMs: m.startedMs,
    updatedMs: m.updatedMs,
    finishedMs: m.finishedMs,
    reason: m.reason,
  })
}

export function decodeMove(bytes: Uint8Array): MoveRecord {
  const o = parse(bytes, 'move')
  const step = str(o, 'step', 'move') as MoveStep
  assert(moveSteps.includes(step), 'corrupt meta record (move.step)')
  const from = uint(o, 'from', 'move')
  return {
    shardId: ShardId(uint(o, 'shardId', 'move')),
    ...(from === 0 ? {} : { from: NodeId(from) }),
    to: NodeId(uint(o, 'to', 'move')),
    step,
    epoch: uint(o, 'epoch', 'move'),
    startedMs: uint(o, 'startedMs', 'move'),
    updatedMs: uint(o, 'updatedMs', 'move'),
    finishedMs: uint(o, 'finishedMs', 'move'),
    reason: str(o, 'reason', 'move'),
  }
}

/** The 'moves' index: shard ids with a move in progress. */
export function encodeMoveIndex(ids: readonly ShardId[]): Uint8Array {
  return json([...ids].sort((a, b) => a - b))
}

export function decodeMoveIndex(bytes: Uint8Array): ShardId[] {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(bytes))
  } catch {
    assert(false, 'corrupt meta record (moves): not JSON')
  }
  assert(Array.isArray(value), 'corrupt meta record (moves)')
  return value.map((v: unknown) => {
    assert(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0, 'corrupt meta record (moves)')
    return ShardId(v)
  })
}

export function encodeRecentMoves(moves: readonly MoveRecord[]): Uint8Array {
  return encoder.encode(`[${moves.map((m) => decoder.decode(encodeMove(m))).join(',')}]`)
}

export function decodeRecentMoves(bytes: Uint8Array): MoveRecord[] {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(bytes))
  } catch {
    assert(false, 'corrupt meta record (moves-recent): not JSON')
  }
  assert(Array.isArray(value), 'corrupt meta record (moves-recent)')
  return value.map((v: unknown) => decodeMove(json(v)))
}
