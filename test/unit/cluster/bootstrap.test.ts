import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ErrorCode, NodeId } from '../../../src/common/index.ts'
import { hashSpaceEnd } from '../../../src/hashing/index.ts'
import { initialClusterMap, metaReplicasOf, metaShardId } from '../../../src/cluster/index.ts'
import { initialNodes, kvError, spec, testHasher } from './fixtures.ts'

const hasher = await testHasher()

describe('cluster/bootstrap initialClusterMap', () => {
  it('is deterministic: the same spec in any node order gives the same map', () => {
    const nodes = initialNodes(5, ['a', 'b', 'c', 'a', 'b'])
    const reference = initialClusterMap(spec(nodes), hasher)
    fc.assert(
      fc.property(fc.shuffledSubarray(nodes, { minLength: 5, maxLength: 5 }), (shuffled) => {
        const map = initialClusterMap(spec(shuffled), hasher)
        expect(map.shards).toEqual(reference.shards)
        expect(map.meta).toEqual(reference.meta)
        expect([...map.nodes.entries()]).toEqual([...reference.nodes.entries()])
        expect(map.cluster).toEqual(reference.cluster)
      }),
      { numRuns: 20 },
    )
  })

  it.each([1, 2, 3, 5])(
    '%i node(s): 64 contiguous shards over [0, 2^64), min(3, n) distinct replicas',
    (n) => {
      const map = initialClusterMap(spec(initialNodes(n)), hasher)
      expect(map.shards).toHaveLength(64)
      expect(map.shards[0]!.hashStart).toBe(0n)
      expect(map.shards[63]!.hashEnd).toBe(hashSpaceEnd)
      const ids = new Set(initialNodes(n).map((x) => x.id))
      for (const [i, s] of map.shards.entries()) {
        expect(s.shardId).toBe(i)
        if (i > 0) expect(s.hashStart).toBe(map.shards[i - 1]!.hashEnd)
        expect(s.hashStart < s.hashEnd).toBe(true)
        expect(s.replicas).toHaveLength(Math.min(3, n))
        expect(new Set(s.replicas).size).toBe(s.replicas.length)
        for (const r of s.replicas) expect(ids.has(r)).toBe(true)
        expect(s).toMatchObject({ leaderHint: 0, leaderTerm: 0, epoch: 1 })
      }
      expect(map.cluster).toEqual({
        clusterId: spec([]).clusterId,
        shardCount: 64,
        replicaCount: 3,
        vnodesPerNode: 64,
      })
      for (const nodeRecord of map.nodes.values())
        expect(nodeRecord).toMatchObject({ state: 'active', lastHeartbeatMs: 0 })
    },
  )

  it('the meta shard covers the ring on metaReplicasOf(nodes)', () => {
    const nodes = initialNodes(6, ['a', 'a', 'b', 'b', 'c', 'c'])
    const map = initialClusterMap(spec(nodes), hasher)
    expect(map.meta.shardId).toBe(metaShardId)
    expect(map.meta.hashStart).toBe(0n)
    expect(map.meta.hashEnd).toBe(hashSpaceEnd)
    expect(map.meta.replicas).toEqual(metaReplicasOf(nodes, 3))
    expect(map.meta.replicas).toEqual([1, 3, 5])
    expect(map.shard(metaShardId)).toBe(map.meta)
  })

  it.each([0, 6, 1.5, Number.NaN])('meta replica count %d: INVALID_ARGUMENT', async (count) => {
    const err = await kvError(() =>
      initialClusterMap(spec(initialNodes(3), { metaReplicaCount: count }), hasher),
    )
    expect(err.code).toBe(ErrorCode.InvalidArgument)
    expect(err.details?.field).toBe('metaReplicas')
  })

  it('no nodes: INVALID_ARGUMENT', async () => {
    const err = await kvError(() => initialClusterMap(spec([]), hasher))
    expect(err.code).toBe(ErrorCode.InvalidArgument)
  })
})

describe('cluster/bootstrap metaReplicasOf', () => {
  it('lowest ids first, one per zone before any zone repeats', () => {
    const nodes = initialNodes(5, ['a', 'a', 'a', 'b', 'b'])
    expect(metaReplicasOf(nodes, 3)).toEqual([1, 4, 2])
    expect(metaReplicasOf(nodes, 2)).toEqual([1, 4])
    expect(metaReplicasOf(nodes, 5)).toEqual([1, 4, 2, 3, 5])
  })

  it('without zones: the lowest ids, in any input order', () => {
    const nodes = initialNodes(5).reverse()
    expect(metaReplicasOf(nodes, 3)).toEqual([1, 2, 3])
  })

  it('fewer nodes than asked: every node', () => {
    expect(metaReplicasOf(initialNodes(2, ['x', 'x']), 5)).toEqual([NodeId(1), NodeId(2)])
  })

  it('is always count (or all) distinct nodes, zone-diverse when the zones allow', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('', 'a', 'b', 'c'), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 5 }),
        (zones, count) => {
          const nodes = initialNodes(zones.length, zones)
          const chosen = metaReplicasOf(nodes, count)
          expect(chosen).toHaveLength(Math.min(count, nodes.length))
          expect(new Set(chosen).size).toBe(chosen.length)
          const labelled = new Set(zones.filter((z) => z !== ''))
          const chosenZones = new Set(chosen.map((id) => zones[id - 1]).filter((z) => z !== ''))
          const unlabelled = zones.filter((z) => z === '').length
          // Every zone is used before a zone repeats: as many zones as the slots left after the
          // unlabelled nodes (which never block a slot) allow.
          expect(chosenZones.size).toBeGreaterThanOrEqual(
            Math.min(labelled.size, chosen.length - Math.min(unlabelled, chosen.length)),
          )
        },
      ),
    )
  })
})
