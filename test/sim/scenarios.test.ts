/**
 * Hand-written scenarios on the simulator (TigerBeetle replica_test.zig; STYLE.md 7.9): small
 * stories told with the SimCluster DSL, each checking one promise of the consistency dial.
 * They run without the random nemesis plan or clients; the Raft safety checker still watches
 * every step.
 */
import { describe, expect, it } from 'vitest'
import { SimCluster } from './cluster.ts'
import { convergence } from './checkers/convergence.ts'
import type { SimOverrides } from './options.ts'

/** A quiet, reliable network: the scenario is the only fault. */
const calm: SimOverrides = {
  nodes: 3,
  voters: 3,
  oneWayDelayMsMean: 1,
  packetLossPer10k: 0,
  duplicatePer10k: 0,
  reorderPer10k: 0,
  diskFsyncMsMean: 1,
  clockDriftPpmMax: 0,
  readOnly: 'safe',
  preVote: true,
  electionTicks: 10,
  heartbeatTicks: 1,
  snapshotEntries: 0,
  appendEntriesMax: 0,
}

function cluster(seed: number, overrides: SimOverrides = {}): SimCluster {
  return SimCluster.create({ seed, overrides: { ...calm, ...overrides } })
}

describe('sim/scenarios', () => {
  it('elects one leader and serves a write then a linearizable read (R=3)', () => {
    const t = cluster(42)
    const leader = t.awaitLeader()
    expect(t.put('a', '1')).toMatchObject({ ok: true, servedBy: leader.id })
    expect(t.get('a')).toMatchObject({ ok: true, value: '1' })
    // A follower forwards ReadIndex to the leader and answers once it has applied enough (§6.4).
    const follower = t.nodes.find((n) => n.id !== leader.id)!
    expect(t.get('a', { via: follower.id })).toMatchObject({ ok: true, value: '1', servedBy: follower.id })
  })

  it('refuses linearizable reads and writes on a leader cut off in a minority (C over A)', () => {
    const t = cluster(43)
    const old = t.awaitLeader()
    expect(t.put('a', '1')).toMatchObject({ ok: true })
    t.isolate(old.id)
    // The old leader cannot confirm leadership for a read, nor commit a write.
    const read = t.get('a', { via: old.id, timeoutMs: 500 })
    expect(read === 'timeout' || !read.ok).toBe(true)
    const write = t.put('a', 'lost?', { via: old.id, timeoutMs: 500 })
    expect(write === 'timeout' || !write.ok).toBe(true)
    // The majority elects a new leader, which serves both.
    t.runUntil(() => t.leader() !== null && t.leader()!.id !== old.id, 3000)
    const fresh = t.leader()!
    expect(fresh.id).not.toBe(old.id)
    expect(t.put('a', '2', { via: fresh.id })).toMatchObject({ ok: true })
    expect(t.get('a', { via: fresh.id })).toMatchObject({ ok: true, value: '2' })
    // An eventual read on the cut-off node is served, and is stale, and says who served it (A over C).
    expect(t.get('a', { via: old.id, mode: 'eventual' })).toMatchObject({
      ok: true,
      value: '1',
      servedBy: old.id,
    })
    // After healing, the old leader steps down, drops its unacknowledged write and converges.
    t.heal()
    expect(t.runUntil(() => convergence(t).converged, 5000)).toBe(true)
    expect(old.isLeader).toBe(false)
    expect(old.sm.get('a')?.value).toBe('2')
  })

  it('keeps an acknowledged write when the leader crashes right after answering', () => {
    const t = cluster(44)
    const leader = t.awaitLeader()
    expect(t.put('k', 'durable')).toMatchObject({ ok: true })
    t.crash(leader.id)
    const next = t.awaitLeader()
    expect(next.id).not.toBe(leader.id)
    expect(t.get('k', { via: next.id })).toMatchObject({ ok: true, value: 'durable' })
    t.restart(leader.id)
    expect(t.runUntil(() => convergence(t).converged, 5000)).toBe(true)
    expect(t.node(leader.id).sm.get('k')?.value).toBe('durable')
  })

  it('recovers a node that crashed with a write in flight on a slow disk', () => {
    const t = cluster(45, { diskFsyncMsMean: 40 })
    const leader = t.awaitLeader()
    const follower = t.nodes.find((n) => n.id !== leader.id)!
    follower.disk.slowFactor = 20
    // Let a write reach the follower's disk queue, then pull the plug before the fsync completes.
    t.put('x', '1', { timeoutMs: 50 })
    t.runUntil(() => follower.disk.busy, 500)
    t.crash(follower.id)
    follower.disk.slowFactor = 1
    t.restart(follower.id)
    expect(t.put('x', '2')).toMatchObject({ ok: true })
    expect(t.runUntil(() => convergence(t).converged, 5000)).toBe(true)
    expect(follower.sm.get('x')?.value).toBe('2')
  })

  it('exercises a learner joining by snapshot, promotion and removal of the old leader', () => {
    const t = cluster(46, { nodes: 4, voters: 3, snapshotEntries: 5 })
    t.awaitLeader()
    for (let i = 0; i < 12; i++) expect(t.put(`k${i % 3}`, `v${i}`)).toMatchObject({ ok: true })
    t.proposeConfChange({ changes: [{ type: 'addLearner', nodeId: 4 as never }], transition: 'auto' })
    expect(t.runUntil(() => t.node(4).appliedIndex >= t.leader()!.appliedIndex, 3000)).toBe(true)
    expect(t.node(4).sm.get('k2')?.value).toBe('v11')
    t.proposeConfChange({ changes: [{ type: 'addNode', nodeId: 4 as never }], transition: 'auto' })
    expect(t.runUntil(() => t.config()?.voters.includes(4 as never) ?? false, 3000)).toBe(true)
    const old = t.leader()!
    t.proposeConfChange({ changes: [{ type: 'removeNode', nodeId: old.id }], transition: 'auto' })
    expect(t.runUntil(() => t.leader() !== null && t.leader()!.id !== old.id, 5000)).toBe(true)
    expect(t.put('after', 'removal')).toMatchObject({ ok: true })
    expect(t.runUntil(() => convergence(t).converged, 5000)).toBe(true)
    expect(t.config()?.voters).not.toContain(old.id)
  })

  it('serves lease reads on the leader and refuses them once it is cut off (§6.4.1)', () => {
    const t = cluster(47, { readOnly: 'lease-based' })
    const leader = t.awaitLeader()
    expect(t.put('a', '1')).toMatchObject({ ok: true })
    expect(t.get('a')).toMatchObject({ ok: true, value: '1' })
    t.isolate(leader.id)
    // Past the lease (electionTicks - driftTicks ticks), the cut-off leader must not answer.
    t.runFor(t.options.electionTicks * t.options.tickMs + 50)
    const read = t.get('a', { via: leader.id, timeoutMs: 300 })
    expect(read === 'timeout' || !read.ok).toBe(true)
  })

  // F1 (test/sim/FINDINGS.md), fixed: a heartbeat response frees one slot of a full window.
  it('catches up a follower whose in-flight window filled while it was down (F1)', () => {
    const t = cluster(48)
    const leader = t.awaitLeader()
    const follower = t.nodes.find((n) => n.id !== leader.id)!
    // A few acknowledged appends move the follower's progress from probe to replicate.
    for (let i = 0; i < 5; i++) expect(t.put('k', `warm${i}`)).toMatchObject({ ok: true })
    expect(leader.status()?.progress?.get(follower.id)?.state).toBe('replicate')
    t.crash(follower.id)
    // More proposals than inflightAppendsMax (256): every MsgApp to the dead node is lost.
    for (let i = 0; i < 300; i++) expect(t.put('k', `v${i}`)).toMatchObject({ ok: true })
    t.restart(follower.id)
    expect(t.runUntil(() => convergence(t).converged, 5000)).toBe(true)
  })
})
