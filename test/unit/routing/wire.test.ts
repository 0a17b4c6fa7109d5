import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { NodeInfo, ShardDescriptor, ShardMapResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import { ShardMapResponse as ShardMapCodec } from '../../../src/gen/ringkv/v1/kv.ts'
import { equalHashRanges, hashSpaceEnd } from '../../../src/hashing/index.ts'
import {
  decodeDescriptor,
  decodeHash,
  decodeNode,
  decodeShardMap,
  encodeDescriptor,
  encodeNode,
  encodeShardMap,
  nodeStates,
  type ShardRoute,
  type WireNode,
} from '../../../src/routing/index.ts'

const wireShard = (over: Partial<ShardDescriptor> = {}): ShardDescriptor => ({
  shardId: 3,
  hashStart: '0',
  hashEnd: String(1n << 63n),
  replicas: [1, 2, 3],
  leaderHint: 2,
  leaderTerm: 5,
  epoch: 4,
  ...over,
})
const wireNode = (over: Partial<NodeInfo> = {}): NodeInfo => ({
  nodeId: 1,
  address: 'a:1',
  zone: 'z',
  state: 'active',
  lastHeartbeatMs: 12,
  weight: 2,
  peerAddress: 'a:101',
  ...over,
})

const routeArb: fc.Arbitrary<ShardRoute> = fc
  .tuple(fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }), fc.bigInt({ min: 1n, max: hashSpaceEnd }))
  .filter(([a, b]) => a < b)
  .chain(([hashStart, hashEnd]) =>
    fc.record({
      shardId: fc.nat({ max: 0xffff_ffff }),
      hashStart: fc.constant(hashStart),
      hashEnd: fc.constant(hashEnd),
      replicas: fc.uniqueArray(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), {
        minLength: 1,
        maxLength: 7,
      }),
      leaderHint: fc.nat(),
      leaderTerm: fc.nat(),
      epoch: fc.nat(),
    }),
  )

const nodeArb: fc.Arbitrary<WireNode> = fc.record({
  id: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  address: fc.string(),
  zone: fc.string(),
  state: fc.constantFrom(...nodeStates),
  weight: fc.double({ min: 0.001, max: 1e6, noNaN: true }),
  lastHeartbeatMs: fc.nat(),
})

describe('routing/wire: descriptors and nodes', () => {
  it('decode(encode(x)) is x, also through the protobuf encoding', () => {
    fc.assert(
      fc.property(routeArb, nodeArb, (route, node) => {
        const d = decodeDescriptor(encodeDescriptor(route))
        expect(d).toEqual({ ok: true, value: route })
        expect(decodeNode(encodeNode(node))).toEqual({ ok: true, value: node })
      }),
      { numRuns: 300 },
    )
    const map = encodeShardMap({
      clusterId: '0123456789abcdef0123456789abcdef',
      replicaCount: 3,
      vnodesPerNode: 16,
      servedBy: 2,
      shards: equalHashRanges(4).map((r, i) => ({
        ...decodeOk(wireShard()),
        shardId: i,
        hashStart: r.start,
        hashEnd: r.end,
      })),
      meta: { ...decodeOk(wireShard()), shardId: 0xfffffff0, hashStart: 0n, hashEnd: hashSpaceEnd },
      nodes: [decodeNodeOk(wireNode()), decodeNodeOk(wireNode({ nodeId: 2 }))],
    })
    const decoded = decodeShardMap(ShardMapCodec.decode(ShardMapCodec.encode(map).finish()))
    expect(decoded.problems).toEqual([])
    expect(decoded.shards.map((s) => s.shardId)).toEqual([0, 1, 2, 3])
    expect(decoded.shards.at(-1)?.hashEnd).toBe(hashSpaceEnd)
    expect(decoded.meta?.shardId).toBe(0xfffffff0)
    expect(decoded.nodes.map((n) => n.id)).toEqual([1, 2])
    expect(decoded.servedBy).toBe(2)
  })

  it.each<[string, Partial<ShardDescriptor>]>([
    ['a non-decimal start', { hashStart: '0x10' }],
    ['a negative start', { hashStart: '-5' }],
    ['a start with spaces', { hashStart: ' 5' }],
    ['an empty range', { hashStart: '7', hashEnd: '7' }],
    ['a reversed range', { hashStart: '9', hashEnd: '7' }],
    ['an end past 2^64', { hashEnd: '18446744073709551617' }],
    ['an end of 0 (2^64 is written out)', { hashStart: '0', hashEnd: '0' }],
    ['a 21-digit hash', { hashEnd: '000000000000000000001' }],
    ['no replicas', { replicas: [] }],
    ['replica 0', { replicas: [0] }],
    ['a fractional replica', { replicas: [1.5] }],
    ['a replica twice', { replicas: [1, 2, 1] }],
    ['a replica beyond 2^53', { replicas: [2 ** 60] }],
    ['a negative shard id', { shardId: -1 }],
    ['a fractional epoch', { epoch: 0.5 }],
    ['a negative leader hint', { leaderHint: -2 }],
    ['a NaN leader term', { leaderTerm: Number.NaN }],
  ])('a descriptor with %s is a problem, not an exception', (_what, over) => {
    const d = decodeDescriptor(wireShard(over))
    expect(d.ok).toBe(false)
    if (!d.ok) expect(d.problem).not.toBe('')
  })

  it.each<[string, Partial<NodeInfo>]>([
    ['node id 0', { nodeId: 0 }],
    ['a fractional node id', { nodeId: 1.25 }],
    ['an unknown state', { state: 'zombie' }],
    ['a negative weight', { weight: -1 }],
    ['an infinite weight', { weight: Number.POSITIVE_INFINITY }],
    ['a NaN weight', { weight: Number.NaN }],
    ['a negative heartbeat time', { lastHeartbeatMs: -3 }],
  ])('a node with %s is a problem', (_what, over) => {
    expect(decodeNode(wireNode(over)).ok).toBe(false)
  })

  it('a weight of 0 (unset on the wire) reads as 1', () => {
    expect(decodeNodeOk(wireNode({ weight: 0 })).weight).toBe(1)
  })

  it('decodeHash takes [0, 2^64] in decimal only', () => {
    expect(decodeHash('0')).toBe(0n)
    expect(decodeHash('18446744073709551616')).toBe(hashSpaceEnd)
    expect(decodeHash('18446744073709551617')).toBeUndefined()
    expect(decodeHash('1e3')).toBeUndefined()
    expect(decodeHash('')).toBeUndefined()
  })
})

describe('routing/wire: whole maps', () => {
  const base = (): ShardMapResponse =>
    encodeShardMap({
      clusterId: '0123456789abcdef0123456789abcdef',
      replicaCount: 3,
      vnodesPerNode: 16,
      servedBy: 1,
      shards: equalHashRanges(4).map((r, i) => ({
        ...decodeOk(wireShard()),
        shardId: i,
        hashStart: r.start,
        hashEnd: r.end,
      })),
      meta: { ...decodeOk(wireShard()), shardId: 0xfffffff0, hashStart: 0n, hashEnd: hashSpaceEnd },
      nodes: [1, 2, 3].map((id) => decodeNodeOk(wireNode({ nodeId: id }))),
    })

  it('leaves out what is malformed, overlapping or repeated, and names each', () => {
    const res = base()
    res.shards[1]!.hashStart = String(BigInt(res.shards[1]!.hashStart) - 1n) // overlaps shard 0
    res.shards[2]!.replicas = [0] // malformed
    res.shards.push({ ...res.shards[3]! }) // shard 3 twice
    res.nodes.push(wireNode({ nodeId: 2 }), wireNode({ nodeId: 9, state: 'zombie' }))
    res.clusterId = 'ABC'
    res.metaShard = { ...res.metaShard!, shardId: 3 } // a ring shard's id
    const m = decodeShardMap(res)
    expect(m.shards.map((s) => s.shardId)).toEqual([0, 3])
    expect(m.nodes.map((n) => n.id)).toEqual([1, 2, 3])
    expect(m.meta).toBeUndefined()
    expect(m.clusterId).toBe('')
    expect(m.problems).toHaveLength(7)
  })

  it('never throws on hostile input: any field of any type', () => {
    const anything = fc.anything()
    fc.assert(
      fc.property(
        fc.record({
          clusterId: anything,
          nodes: fc.array(
            fc.record({
              nodeId: anything,
              address: anything,
              zone: anything,
              state: anything,
              lastHeartbeatMs: anything,
              weight: anything,
            }),
          ),
          shards: fc.array(
            fc.record({
              shardId: anything,
              hashStart: anything,
              hashEnd: anything,
              replicas: fc.oneof(fc.array(anything), anything),
              leaderHint: anything,
              leaderTerm: anything,
              epoch: anything,
            }),
          ),
          replicaCount: anything,
          vnodesPerNode: anything,
          metaShard: fc.constant(undefined),
          servedBy: anything,
        }),
        (garbage) => {
          const m = decodeShardMap(garbage as unknown as ShardMapResponse)
          for (const s of m.shards) expect(s.hashStart < s.hashEnd).toBe(true)
        },
      ),
      { numRuns: 300 },
    )
  })
})

function decodeOk(d: ShardDescriptor): ShardRoute {
  const r = decodeDescriptor(d)
  if (!r.ok) throw new Error(r.problem)
  return r.value
}

function decodeNodeOk(n: NodeInfo): WireNode {
  const r = decodeNode(n)
  if (!r.ok) throw new Error(r.problem)
  return r.value
}
