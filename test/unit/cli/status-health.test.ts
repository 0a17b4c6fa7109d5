/**
 * The verdict of `kvctl status` from what the nodes answered: healthy, degraded (something is
 * down or short, everything is still served) or unavailable (some shard cannot be served), and
 * the summary people read.
 */
import { describe, expect, it } from 'vitest'
import { ExitCode } from '../../../src/cli/exit-codes.ts'
import {
  renderSummary,
  shardName,
  summarizeHealth,
  verdictExitCode,
  type HealthInput,
  type HealthNode,
  type HealthRebalancing,
  type HealthShard,
} from '../../../src/cli/commands/status-health.ts'

const meta = 0xffff_fff0
const node = (nodeId: number, answered = true, state = 'active'): HealthNode => ({
  nodeId,
  address: `10.0.0.${nodeId}:7001`,
  state,
  answered,
  ...(answered ? {} : { error: 'UNAVAILABLE: connect ECONNREFUSED' }),
})
const shard = (shardId: number, leaderId: number, voters: number[], reportedBy = voters): HealthShard => ({
  shardId,
  leaderId,
  voters,
  reportedBy,
})

const noJob: HealthRebalancing = {
  safeMode: '',
  jobState: null,
  jobId: null,
  movesEnded: 0,
  movesTotal: 0,
  movesFailed: 0,
  blocked: 0,
}

function input(over: Partial<HealthInput> = {}): HealthInput {
  return {
    clusterId: 'c1',
    metaShardId: meta,
    mapOk: true,
    replicaCount: 3,
    nodes: [node(1), node(2), node(3)],
    strayEndpoints: [],
    shards: [shard(1, 1, [1, 2, 3]), shard(2, 2, [1, 2, 3]), shard(meta, 1, [1, 2, 3])],
    movesRunning: 0,
    rebalancing: noJob,
    ...over,
  }
}

describe('cli/status-health', () => {
  it('is healthy when every node answers and every shard has a live leader and all its voters', () => {
    const s = summarizeHealth(input())
    expect(s.verdict).toBe('healthy')
    expect(s.nodes).toEqual({ total: 3, up: 3, down: [] })
    expect(s.shards).toEqual({ total: 3, healthy: 3, underReplicated: [], withoutLeader: [] })
    expect(renderSummary(s)).toEqual([
      'cluster c1: HEALTHY',
      '  nodes   3/3 up',
      '  shards  3 total: 3 healthy, 0 under-replicated, 0 without leader',
      '  moves   0 running',
      '  rebalancing  no job yet',
    ])
    expect(verdictExitCode(s.verdict)).toBe(ExitCode.Ok)
  })

  it('is degraded when a follower node is down: every shard still has a leader', () => {
    const s = summarizeHealth(input({ nodes: [node(1), node(2), node(3, false)] }))
    expect(s.verdict).toBe('degraded')
    expect(s.shards).toEqual({ total: 3, healthy: 0, underReplicated: [1, 2, meta], withoutLeader: [] })
    expect(renderSummary(s).slice(5)).toEqual([
      'problems:',
      '  node 3 (10.0.0.3:7001) does not answer: UNAVAILABLE: connect ECONNREFUSED',
      '  under-replicated: shard 1, 2, meta',
    ])
    expect(verdictExitCode(s.verdict)).toBe(ExitCode.Degraded)
  })

  it('is unavailable when a shard has no leader, or only one the answering nodes name but that is down', () => {
    const noLeader = summarizeHealth(input({ shards: [shard(1, 0, [1, 2, 3]), shard(meta, 1, [1, 2, 3])] }))
    expect(noLeader.verdict).toBe('unavailable')
    expect(noLeader.shards.withoutLeader).toEqual([1])
    // Followers still name node 2, but node 2 does not answer: its word is stale.
    const goneLeader = summarizeHealth(input({ nodes: [node(1), node(2, false), node(3)] }))
    expect(goneLeader.shards.withoutLeader).toEqual([2])
    expect(goneLeader.shards.underReplicated).toEqual([1, meta])
    expect(goneLeader.verdict).toBe('unavailable')
    const metaDown = summarizeHealth(input({ shards: [shard(1, 1, [1, 2, 3]), shard(meta, 0, [1, 2, 3])] }))
    expect(renderSummary(metaDown)).toContain('  without leader: shard meta')
    expect(verdictExitCode(metaDown.verdict)).toBe(ExitCode.Unavailable)
  })

  it('is unavailable when no node answers', () => {
    const s = summarizeHealth(input({ nodes: [node(1, false), node(2, false)], shards: [] }))
    expect(s.verdict).toBe('unavailable')
    expect(s.nodes.up).toBe(0)
  })

  it('counts a voter that answers without reporting the shard, and too few voters, as under-replicated', () => {
    const s = summarizeHealth(
      input({ shards: [shard(1, 1, [1, 2, 3], [1, 2]), shard(2, 1, [1, 2]), shard(meta, 1, [1, 2, 3])] }),
    )
    expect(s.shards.underReplicated).toEqual([1, 2])
    expect(s.verdict).toBe('degraded')
  })

  it('asks no more replicas than the live members allow (a one-node cluster with replica count 3 is healthy)', () => {
    const one = summarizeHealth(
      input({ nodes: [node(1)], shards: [shard(1, 1, [1]), shard(meta, 1, [1])], replicaCount: 3 }),
    )
    expect(one.verdict).toBe('healthy')
    // A member marked dead does not count towards what the shards can have.
    const dead = summarizeHealth(
      input({
        nodes: [node(1), node(2), node(3, false, 'dead')],
        shards: [shard(1, 1, [1, 2]), shard(meta, 1, [1, 2])],
      }),
    )
    expect(dead.shards.underReplicated).toEqual([])
    expect(dead.verdict).toBe('degraded') // the dead node itself is still down
    expect(renderSummary(dead)).toContain(
      '  node 3 (10.0.0.3:7001) does not answer, dead: UNAVAILABLE: connect ECONNREFUSED',
    )
  })

  it('is degraded without the map or with an endpoint given that does not answer', () => {
    const noMap = summarizeHealth(input({ mapOk: false, metaShardId: undefined, replicaCount: undefined }))
    expect(noMap.verdict).toBe('degraded')
    expect(renderSummary(noMap)).toContain(
      '  the shard map could not be had: nodes and shards are those the endpoints named',
    )
    const stray = summarizeHealth(
      input({ strayEndpoints: [{ endpoint: '10.9.9.9:7001', error: 'UNAVAILABLE: x' }] }),
    )
    expect(stray.verdict).toBe('degraded')
    expect(renderSummary(stray)).toContain('  endpoint 10.9.9.9:7001 does not answer: UNAVAILABLE: x')
  })

  it('bounds the lists it prints and says how many more there are', () => {
    const shards = Array.from({ length: 20 }, (_, i) => shard(i + 1, 0, [1]))
    const s = summarizeHealth(input({ shards }))
    expect(renderSummary(s)).toContain(
      '  without leader: shard 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 (+8 more)',
    )
    expect(renderSummary({ ...s, movesRunning: null })[3]).toBe(
      '  moves   - (the meta leader did not answer)',
    )
  })

  it('is degraded in safe mode, and shows the rebalancing job and the shards no move can fix', () => {
    const running = summarizeHealth(
      input({ rebalancing: { ...noJob, jobState: 'running', jobId: 4, movesEnded: 3, movesTotal: 12 } }),
    )
    expect(running.verdict).toBe('healthy')
    expect(renderSummary(running)).toContain('  rebalancing  job 4 running: 3/12 moves (25%)')
    const safe = summarizeHealth(
      input({
        rebalancing: {
          ...noJob,
          safeMode: '2 active nodes for 3 replicas',
          jobState: 'done',
          jobId: 5,
          movesEnded: 6,
          movesTotal: 6,
          movesFailed: 1,
          blocked: 2,
        },
      }),
    )
    expect(safe.verdict).toBe('degraded')
    expect(verdictExitCode(safe.verdict)).toBe(ExitCode.Degraded)
    const lines = renderSummary(safe)
    expect(lines).toContain('  rebalancing  job 5 done: 6/6 moves (100%), 1 failed')
    expect(lines).toContain(
      '  safe mode: 2 active nodes for 3 replicas (repairs only; nothing is drained or balanced)',
    )
    expect(lines).toContain('  2 shards need a move that none can be planned for')
    expect(renderSummary(summarizeHealth(input({ rebalancing: null })))).toContain(
      '  rebalancing  - (the meta leader did not answer)',
    )
  })

  it('names the meta shard only by the id the map gives it', () => {
    expect(shardName(meta, meta)).toBe('meta')
    expect(shardName(7, meta)).toBe('7')
    expect(shardName(meta, undefined)).toBe(String(meta))
  })
})
