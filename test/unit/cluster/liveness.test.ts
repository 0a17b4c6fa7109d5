import { describe, expect, it } from 'vitest'
import { NodeId } from '../../../src/common/index.ts'
import { Liveness } from '../../../src/cluster/liveness.ts'
import type { NodeRecord, NodeState } from '../../../src/cluster/index.ts'

function rec(id: number, state: NodeState): NodeRecord {
  return { id: NodeId(id), address: `n${id}:7000`, zone: '', weight: 1, state, lastHeartbeatMs: 0 }
}

describe('cluster/Liveness', () => {
  it('judges nothing before leadership begins, and nothing after it ends', () => {
    const l = new Liveness({ unreachableAfterMs: 10, deadAfterMs: 100 })
    expect(l.tracking).toBe(false)
    expect(l.judge([rec(1, 'active')], 1_000_000)).toEqual([])
    l.reset(0, 5000)
    expect(l.judge([rec(1, 'active')], 1_000_000)).toEqual([{ nodeId: 1, from: 'active', to: 'dead' }])
    l.forget()
    expect(l.judge([rec(1, 'active')], 1_000_000)).toEqual([])
    expect(l.lastHeardWallMs(NodeId(1))).toBeUndefined()
  })

  it('a new leadership counts every node as heard when it began', () => {
    const l = new Liveness({ unreachableAfterMs: 10, deadAfterMs: 100 })
    l.reset(1000, 50_000)
    expect(l.judge([rec(1, 'active'), rec(2, 'joining')], 1009)).toEqual([])
    // Judged as heard, but not shown as heard: no heartbeat came.
    expect(l.lastHeardWallMs(NodeId(2))).toBeUndefined()
    expect(l.judge([rec(1, 'active'), rec(2, 'joining')], 1010)).toEqual([
      { nodeId: 1, from: 'active', to: 'unreachable' },
      { nodeId: 2, from: 'joining', to: 'unreachable' },
    ])
  })

  it('unreachable after a few heartbeats, dead after dead-after; a heard node is judged from then', () => {
    const l = new Liveness({ unreachableAfterMs: 10, deadAfterMs: 100 })
    l.reset(0, 0)
    l.heard(NodeId(2), 50, 1050)
    const nodes = [rec(1, 'unreachable'), rec(2, 'active'), rec(3, 'draining'), rec(4, 'dead')]
    expect(l.judge(nodes, 59)).toEqual([])
    expect(l.judge(nodes, 60)).toEqual([{ nodeId: 2, from: 'active', to: 'unreachable' }])
    expect(l.judge(nodes, 100)).toEqual([
      { nodeId: 1, from: 'unreachable', to: 'dead' },
      { nodeId: 2, from: 'active', to: 'unreachable' },
    ])
    // A silence longer than dead-after goes straight to dead; draining and dead nodes keep their state.
    expect(l.judge(nodes, 150)).toEqual([
      { nodeId: 1, from: 'unreachable', to: 'dead' },
      { nodeId: 2, from: 'active', to: 'dead' },
    ])
    expect(l.silentMs(NodeId(2), 150)).toBe(100)
    expect(l.lastHeardWallMs(NodeId(2))).toBe(1050)
  })

  it('a heartbeat while not leading is not remembered', () => {
    const l = new Liveness({ unreachableAfterMs: 10, deadAfterMs: 100 })
    l.heard(NodeId(1), 500, 500)
    l.reset(0, 0)
    expect(l.judge([rec(1, 'active')], 10)).toEqual([{ nodeId: 1, from: 'active', to: 'unreachable' }])
  })
})
