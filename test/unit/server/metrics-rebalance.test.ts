/** The rebalancing metric families follow the executor's last view, and read 0 off the meta leader. */
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { NodeId, ShardId } from '../../../src/common/ids.ts'
import type { RebalanceStatus } from '../../../src/cluster/executor/index.ts'
import { registerRebalanceMetrics } from '../../../src/server/metrics-rebalance.ts'

async function values(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  for (const line of (await registry.metrics()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    out.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return out
}

describe('server/metrics-rebalance', () => {
  it('reads 0 off the meta leader, and the job, plan and safe mode on it', async () => {
    const registry = new Registry()
    const source: { view?: RebalanceStatus } = {}
    registerRebalanceMetrics(registry, () => source.view)
    let v = await values(registry)
    expect(v.get('ringkv_rebalance_meta_leader')).toBe(0)
    expect(v.get('ringkv_safe_mode')).toBe(0)
    expect(v.get('ringkv_rebalance_moves{state="running"}')).toBe(0)

    source.view = {
      job: {
        id: 3,
        trigger: 'repair',
        state: 'paused',
        createdMs: 1,
        updatedMs: 2,
        finishedMs: 0,
        registry: '',
        moves: [],
        unlisted: 0,
        started: 5,
        done: 4,
        failed: 1,
        bytes: 4096,
        reason: '',
      },
      plan: {
        moves: [{ shardId: ShardId(1), from: NodeId(2), to: NodeId(3), reason: 'repair', epoch: 1 }],
        placement: [],
        safeMode: { reason: 'nodes', message: '2 active nodes cannot hold 3 replicas of a shard' },
        blocked: [{ shardId: ShardId(2), reason: 'no-quorum' }],
        pending: 0,
        ring: { key: '', placement: [] },
      },
      running: [],
      waiting: new Map(),
      autoRebalance: true,
      underReplicated: 7,
      estimate: { bytes: 0, ms: 0, unsized: 1 },
      bytesOf: () => undefined,
      snapshotRateBps: 0,
    }
    v = await values(registry)
    expect(v.get('ringkv_rebalance_meta_leader')).toBe(1)
    expect(v.get('ringkv_rebalance_moves{state="planned"}')).toBe(1)
    expect(v.get('ringkv_rebalance_moves{state="done"}')).toBe(4)
    expect(v.get('ringkv_rebalance_moves{state="failed"}')).toBe(1)
    expect(v.get('ringkv_rebalance_job_bytes')).toBe(4096)
    expect(v.get('ringkv_rebalance_job_paused')).toBe(1)
    expect(v.get('ringkv_under_replicated_shards')).toBe(7)
    expect(v.get('ringkv_blocked_shards')).toBe(1)
    expect(v.get('ringkv_safe_mode')).toBe(1)
  })
})
