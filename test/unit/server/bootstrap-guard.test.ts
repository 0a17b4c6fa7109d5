/**
 * The bootstrap guard's decision (src/server/bootstrap-guard.ts): a member of --initial-cluster
 * with an empty data directory starts as new only when no other member's map of the same cluster
 * says it ran before or was removed.
 */
import { describe, expect, it } from 'vitest'
import { NodeId } from '../../../src/common/ids.ts'
import { ClusterMap } from '../../../src/cluster/index.ts'
import { bootstrapVerdict } from '../../../src/server/bootstrap-guard.ts'
import { clusterId, handMap, node } from '../cluster/fixtures.ts'

const three = [[1, 2, 3]]
const heard = (id: number, ms: number) => ({ ...node(id), lastHeartbeatMs: ms })
const other = (map: ClusterMap): ClusterMap =>
  new ClusterMap({ ...map.cluster, clusterId: 'f'.repeat(32) }, [...map.nodes.values()], map.shards, map.meta)

describe('bootstrapVerdict', () => {
  it('starts when nobody answered (a first start, or every other member down)', () => {
    expect(bootstrapVerdict(NodeId(2), clusterId, '/d', [])).toEqual({ start: true, answered: 0 })
  })

  it('starts when the members know the node but never heard it (a late first start)', () => {
    const map = handMap([heard(1, 1_000), node(2), heard(3, 1_000)], three)
    expect(bootstrapVerdict(NodeId(2), clusterId, '/d', [{ by: NodeId(1), map }])).toEqual({
      start: true,
      answered: 1,
    })
  })

  it('refuses when a member heard the node before: its votes and logs are gone', () => {
    const map = handMap([heard(1, 1_000), heard(2, Date.UTC(2026, 0, 2)), heard(3, 1_000)], three)
    const fresh = handMap([node(1), node(2), node(3)], three)
    const verdict = bootstrapVerdict(NodeId(2), clusterId, '/data/n2', [
      { by: NodeId(3), map: fresh },
      { by: NodeId(1), map },
    ])
    expect(verdict).toMatchObject({ start: false, reason: 'ran-before', by: 1 })
    if (verdict.start) throw new Error('unreachable')
    expect(verdict.error.code).toBe('INVALID_ARGUMENT')
    expect(verdict.error.details?.field).toBe('dataDir')
    expect(verdict.error.message).toMatch(
      /node 2 ran in cluster .* before \(first heard 2026-01-02T00:00:00\.000Z/,
    )
    expect(verdict.error.message).toMatch(/\/data\/n2 is empty/)
    expect(verdict.error.message).toMatch(/kvctl node remove 2 --force/)
  })

  it('refuses when a member no longer lists the node: it was removed', () => {
    const map = handMap([heard(1, 1_000), heard(3, 1_000)], three)
    expect(bootstrapVerdict(NodeId(2), clusterId, '/d', [{ by: NodeId(3), map }])).toMatchObject({
      start: false,
      reason: 'removed',
      by: 3,
    })
  })

  it("another cluster's map is no evidence either way", () => {
    const ran = handMap([heard(1, 1_000), heard(2, 1_000)], three)
    expect(bootstrapVerdict(NodeId(2), clusterId, '/d', [{ by: NodeId(1), map: other(ran) }])).toEqual({
      start: true,
      answered: 0,
    })
  })
})
