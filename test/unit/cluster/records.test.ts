import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { AssertionError, NodeId, ShardId } from '../../../src/common/index.ts'
import { hashSpaceEnd } from '../../../src/hashing/index.ts'
import {
  decodeCluster,
  decodeCounter,
  decodeMove,
  decodeNode,
  decodeShard,
  encodeCluster,
  encodeCounter,
  encodeMove,
  encodeNode,
  encodeShard,
  metaKeys,
  moveSteps,
  nodeStates,
  type MoveRecord,
  type NodeRecord,
  type ShardRecord,
} from '../../../src/cluster/records.ts'
import { clusterId } from './fixtures.ts'

const sampleMove: MoveRecord = {
  shardId: ShardId(4),
  to: NodeId(5),
  step: 'catchup',
  epoch: 7,
  startedMs: 1,
  updatedMs: 2,
  finishedMs: 0,
  reason: '',
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
const text = (b: Uint8Array): string => new TextDecoder().decode(b)

const nodeArb: fc.Arbitrary<NodeRecord> = fc.record({
  id: fc.integer({ min: 1, max: 2 ** 31 }).map(NodeId),
  address: fc.string(),
  zone: fc.string(),
  weight: fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.double({ min: 0.01, max: 100, noNaN: true })),
  state: fc.constantFrom(...nodeStates),
  lastHeartbeatMs: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
})

const shardArb: fc.Arbitrary<ShardRecord> = fc
  .tuple(fc.bigInt({ min: 0n, max: hashSpaceEnd - 1n }), fc.bigInt({ min: 1n, max: hashSpaceEnd }))
  .filter(([a, b]) => a < b)
  .chain(([hashStart, hashEnd]) =>
    fc.record({
      shardId: fc.nat({ max: 0xffff_ffff }).map(ShardId),
      hashStart: fc.constant(hashStart),
      hashEnd: fc.constant(hashEnd),
      replicas: fc.array(fc.integer({ min: 1, max: 1000 }).map(NodeId), { maxLength: 5 }),
      leaderHint: fc.nat(),
      leaderTerm: fc.nat(),
      epoch: fc.nat(),
    }),
  )

describe('cluster/records: round trips', () => {
  it('node records', () => {
    fc.assert(
      fc.property(nodeArb, (n) => {
        expect(decodeNode(encodeNode(n))).toEqual(n)
      }),
    )
  })

  it('shard records, the last shard ending at 2^64 included', () => {
    const last: ShardRecord = {
      shardId: ShardId(63),
      hashStart: hashSpaceEnd - 1n,
      hashEnd: hashSpaceEnd,
      replicas: [NodeId(3), NodeId(1)],
      leaderHint: 3,
      leaderTerm: 9,
      epoch: 4,
    }
    const decoded = decodeShard(encodeShard(last))
    expect(decoded).toEqual(last)
    expect(decoded.hashEnd).toBe(1n << 64n)
    fc.assert(
      fc.property(shardArb, (s) => {
        expect(decodeShard(encodeShard(s))).toEqual(s)
      }),
    )
  })

  it('cluster records and counters', () => {
    const c = { clusterId, shardCount: 64, replicaCount: 3, vnodesPerNode: 128 }
    expect(decodeCluster(encodeCluster(c))).toEqual(c)
    fc.assert(
      fc.property(fc.nat({ max: Number.MAX_SAFE_INTEGER }), (n) => {
        expect(decodeCounter(encodeCounter(n))).toBe(n)
      }),
    )
  })

  it('move records, with and without a source (a move that adds a replica is stored with from 0)', () => {
    const moveArb: fc.Arbitrary<MoveRecord> = fc
      .record({
        shardId: fc.nat({ max: 0xffff_ffff }).map(ShardId),
        from: fc.option(fc.integer({ min: 1, max: 2 ** 31 }).map(NodeId), { nil: undefined }),
        to: fc.integer({ min: 1, max: 2 ** 31 }).map(NodeId),
        step: fc.constantFrom(...moveSteps),
        epoch: fc.nat(),
        startedMs: fc.nat(),
        updatedMs: fc.nat(),
        finishedMs: fc.nat(),
        reason: fc.string(),
      })
      .map(({ from, ...m }) => (from === undefined ? m : { ...m, from }))
    fc.assert(
      fc.property(moveArb, (m) => {
        expect(decodeMove(encodeMove(m))).toEqual(m)
      }),
    )
    const add = decodeMove(
      bytes(text(encodeMove({ ...sampleMove, from: NodeId(3) })).replace('"from":3', '"from":0')),
    )
    expect('from' in add).toBe(false)
  })

  it('keys: ids padded to 10 digits, so byte order is id order', () => {
    expect(text(metaKeys.node(NodeId(7)))).toBe('node/0000000007')
    expect(text(metaKeys.shard(ShardId(12)))).toBe('shard/0000000012')
    expect(Buffer.compare(metaKeys.node(NodeId(9)), metaKeys.node(NodeId(10)))).toBe(-1)
  })
})

describe('cluster/records: corrupt bytes fail stop', () => {
  const goodNode = JSON.parse(text(encodeNode(node1()))) as Record<string, unknown>
  const goodShard = JSON.parse(
    text(
      encodeShard({
        shardId: ShardId(0),
        hashStart: 0n,
        hashEnd: 10n,
        replicas: [NodeId(1)],
        leaderHint: 0,
        leaderTerm: 0,
        epoch: 1,
      }),
    ),
  ) as Record<string, unknown>

  function node1(): NodeRecord {
    return { id: NodeId(1), address: 'a:1', zone: '', weight: 1, state: 'active', lastHeartbeatMs: 0 }
  }
  const withField = (o: Record<string, unknown>, patch: Record<string, unknown>): Uint8Array =>
    bytes(JSON.stringify({ ...o, ...patch }))

  it.each([
    ['not JSON', bytes('{nope')],
    ['not UTF-8', new Uint8Array([0xff, 0xfe, 0x7b])],
    ['an array', bytes('[]')],
    ['null', bytes('null')],
    ['id 0', withField(goodNode, { id: 0 })],
    ['id as a string', withField(goodNode, { id: '1' })],
    ['a fractional id', withField(goodNode, { id: 1.5 })],
    ['an unknown state', withField(goodNode, { state: 'zombie' })],
    ['weight 0', withField(goodNode, { weight: 0 })],
    ['a missing address', withField(goodNode, { address: undefined })],
    ['a negative heartbeat', withField(goodNode, { lastHeartbeatMs: -1 })],
  ])('node: %s', (_what, raw) => {
    expect(() => decodeNode(raw)).toThrow(AssertionError)
  })

  it.each([
    ['hashStart not decimal', withField(goodShard, { hashStart: '-1' })],
    ['hashEnd as a number', withField(goodShard, { hashEnd: 10 })],
    ['hashStart = hashEnd', withField(goodShard, { hashStart: '10' })],
    ['replicas not an array', withField(goodShard, { replicas: 1 })],
    ['replica 0', withField(goodShard, { replicas: [0] })],
    ['a negative epoch', withField(goodShard, { epoch: -1 })],
  ])('shard: %s', (_what, raw) => {
    expect(() => decodeShard(raw)).toThrow(AssertionError)
  })

  it('cluster: a cluster id that is not 32 lower-case hex digits', () => {
    const good = { clusterId, shardCount: 1, replicaCount: 1, vnodesPerNode: 1 }
    expect(() => decodeCluster(withField(good, { clusterId: clusterId.toUpperCase() }))).toThrow(
      AssertionError,
    )
    expect(() => decodeCluster(withField(good, { clusterId: 'abc' }))).toThrow(AssertionError)
    expect(() => decodeCluster(withField(good, { shardCount: 'many' }))).toThrow(AssertionError)
  })

  it.each(['', '-1', '1.5', '1e3', ' 7', 'x'])('counter: %j', (raw) => {
    expect(() => decodeCounter(bytes(raw))).toThrow(AssertionError)
  })
})
