import { describe, expect, it } from 'vitest'
import { AssertionError, ErrorCode, KvError, NodeId, ShardId } from '../../../src/common/index.ts'
import { initialClusterMap, metaShardId, type ClusterMap } from '../../../src/cluster/index.ts'
import { mapFromProto, mapToProto } from '../../../src/router/index.ts'
import { ShardMapResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import { initialNodes, spec, testHasher, thrown } from '../cluster/fixtures.ts'

const hasher = await testHasher()
const map = initialClusterMap(spec(initialNodes(4, ['a', 'b', 'a', '']), { shardCount: 16 }), hasher)
  .withLeaderHint(ShardId(3), NodeId(2), 7)
  .withLeaderHint(metaShardId, NodeId(1), 2)

function expectSameMap(a: ClusterMap, b: ClusterMap): void {
  expect(a.cluster).toEqual(b.cluster)
  expect([...a.nodes.values()]).toEqual([...b.nodes.values()])
  expect(a.shards).toEqual(b.shards)
  expect(a.meta).toEqual(b.meta)
}

describe('router/map-proto round trip', () => {
  it('mapFromProto(mapToProto(map)) is the same map, also through the wire encoding', () => {
    const proto = mapToProto(map, NodeId(3))
    expect(proto.servedBy).toBe(3)
    expect(proto.shards.at(-1)!.hashEnd).toBe('18446744073709551616')
    expectSameMap(mapFromProto(proto), map)
    const wire = ShardMapResponse.decode(ShardMapResponse.encode(proto).finish())
    expectSameMap(mapFromProto(wire), map)
  })

  it('a node weight of 0 (unset on the wire) reads as 1', () => {
    const proto = mapToProto(map, NodeId(1))
    proto.nodes[0]!.weight = 0
    expect(mapFromProto(proto).node(NodeId(1))?.weight).toBe(1)
  })
})

describe('router/map-proto: malformed maps are INVALID_ARGUMENT, never an AssertionError', () => {
  type Breaker = (p: ShardMapResponse) => void
  const cases: [string, Breaker][] = [
    ['a short cluster id', (p) => (p.clusterId = 'abc')],
    ['an upper-case cluster id', (p) => (p.clusterId = p.clusterId.toUpperCase())],
    ['no shards', (p) => (p.shards = [])],
    ['no meta shard', (p) => (p.metaShard = undefined)],
    ['a non-decimal hash start', (p) => (p.shards[1]!.hashStart = '0x10')],
    ['a negative hash start', (p) => (p.shards[1]!.hashStart = '-5')],
    ['an empty range', (p) => (p.shards[1]!.hashEnd = p.shards[1]!.hashStart)],
    ['an end past 2^64', (p) => (p.shards.at(-1)!.hashEnd = '18446744073709551617')],
    ['a gap', (p) => (p.shards[1]!.hashStart = String(BigInt(p.shards[1]!.hashStart) + 1n))],
    ['an overlap', (p) => (p.shards[1]!.hashStart = String(BigInt(p.shards[1]!.hashStart) - 1n))],
    ['a missing shard', (p) => p.shards.splice(5, 1)],
    ['not starting at 0', (p) => (p.shards[0]!.hashStart = '1')],
    ['a range not reaching 2^64', (p) => (p.shards.at(-1)!.hashEnd = '18446744073709551615')],
    ['a bad meta range', (p) => (p.metaShard!.hashEnd = '0')],
    ['a meta range past 2^64', (p) => (p.metaShard!.hashEnd = '18446744073709551617')],
    ['replica 0', (p) => (p.shards[2]!.replicas = [0])],
    ['a fractional replica', (p) => (p.shards[2]!.replicas = [1.5])],
    ['an unknown node state', (p) => (p.nodes[0]!.state = 'zombie')],
    ['node id 0', (p) => (p.nodes[0]!.nodeId = 0)],
    ['a negative shard id', (p) => (p.shards[0]!.shardId = -1)],
  ]

  it.each(cases)('%s', async (_what, breakIt) => {
    const proto = mapToProto(map, NodeId(1))
    breakIt(proto)
    const err = await thrown(() => mapFromProto(proto))
    expect(err).not.toBeInstanceOf(AssertionError)
    expect(err).toBeInstanceOf(KvError)
    expect((err as KvError).code).toBe(ErrorCode.InvalidArgument)
    expect((err as KvError).details?.field).toBe('map')
  })
})
