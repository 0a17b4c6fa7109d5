/**
 * The CAP table of ARCHITECTURE.md section 2, row by row, on a real 3-node cluster: the leader of
 * the (single) shard is cut off into a minority with fault injection, and each level is shown to
 * do what the table promises on each side; then the partition heals and everything converges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectFault } from '../../../src/client/admin-fault.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { Consistency, enc, eventually, failureCode, leaderOf, nodeKv } from '../helpers/cluster-ops.ts'

const read = (consistency: Consistency, extra: object = {}) => ({
  options: { consistency, maxStalenessMs: 0, session: undefined, route: undefined, ...extra },
})
const write = (consistency: Consistency) => ({
  options: { consistency, clientId: '', seq: 0, firstIncompleteSeq: 0, route: undefined },
})

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 1, extraArgs: ['--allow-fault-injection'] })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

describe('the CAP table with the leader cut off in a minority', () => {
  it('each level behaves as promised on each side, and everything converges after healing', async () => {
    const old = await eventually('a leader', () => leaderOf(cluster, 0))
    const others = [1, 2, 3].filter((n) => n !== old)
    const onOld = nodeKv(cluster, old, 3_000)
    await onOld.put({ key: enc('k'), value: enc('v1'), ...write(Consistency.CONSISTENCY_ALL) })

    // Cut the old leader off (both directions: the fault is applied on its side to and from both peers).
    await injectFault(cluster.node(old).grpc, { peers: others, drop: true })
    // `leader` writes are acknowledged by the old leader alone while it still believes it leads.
    const lost = await onOld.put({
      key: enc('lost'),
      value: enc('x'),
      ...write(Consistency.CONSISTENCY_LEADER),
    })
    expect(lost.receipt?.delivered).toBe(Consistency.CONSISTENCY_LEADER)
    expect(lost.receipt?.nodeId).toBe(old)

    // Majority side: a new leader within 3 election timeouts (election timeout 1-2 s at 100 ms ticks).
    const t0 = Date.now()
    await eventually('a new leader on the majority side', () => leaderOf(cluster, 0, others), 6_000)
    expect(Date.now() - t0).toBeLessThan(6_000)
    // Leadership may still move on the majority side (leader balancing), so a call that needs the
    // leader finds it afresh and is retried when it lands on a node that just stopped leading.
    const onMajorityLeader = <T>(call: (node: ReturnType<typeof nodeKv>) => Promise<T>): Promise<T> =>
      eventually('the leader on the majority side to answer', async () => {
        const l = await leaderOf(cluster, 0, others)
        return l === undefined ? undefined : await call(nodeKv(cluster, l))
      })
    await onMajorityLeader((n) =>
      n.put({ key: enc('k'), value: enc('v2'), ...write(Consistency.CONSISTENCY_MAJORITY) }),
    )

    // Minority side: linearizable reads and majority writes refused (C over A).
    expect(['NO_QUORUM', 'NOT_LEADER', 'UNAVAILABLE']).toContain(
      await failureCode(onOld.get({ key: enc('k'), ...read(Consistency.CONSISTENCY_LINEARIZABLE) })),
    )
    // (UNAVAILABLE: it no longer leads and its forward to the new leader cannot cross the partition.)
    expect(['NOT_LEADER', 'DEADLINE_EXCEEDED', 'PROPOSAL_DROPPED', 'UNAVAILABLE']).toContain(
      await failureCode(
        onOld.put({ key: enc('k'), value: enc('v3'), ...write(Consistency.CONSISTENCY_MAJORITY) }),
      ),
    )
    // Eventual reads are served there, stale, and say so (A over C).
    const stale = await onOld.get({ key: enc('k'), ...read(Consistency.CONSISTENCY_EVENTUAL) })
    expect(stale.value.toString()).toBe('v1')
    expect(stale.receipt?.stalenessMs ?? 0).toBeGreaterThan(0)
    // Bounded reads: served while the bound holds, refused once it runs out.
    const generous = await onOld.get({
      key: enc('k'),
      ...read(Consistency.CONSISTENCY_BOUNDED, { maxStalenessMs: 600_000 }),
    })
    expect(generous.value.toString()).toBe('v1')
    await new Promise((r) => setTimeout(r, 500))
    expect(
      await failureCode(
        onOld.get({ key: enc('k'), ...read(Consistency.CONSISTENCY_BOUNDED, { maxStalenessMs: 200 }) }),
      ),
    ).toBe('STALENESS_BOUND_EXCEEDED')
    // On the majority side the fresh data is there at every level.
    const lin = await onMajorityLeader((n) =>
      n.get({ key: enc('k'), ...read(Consistency.CONSISTENCY_LINEARIZABLE) }),
    )
    expect(lin.value.toString()).toBe('v2')
    // `all` writes are refused while a replica is unreachable (a NOT_LEADER means leadership just
    // moved: ask the new leader).
    const allRefused = await onMajorityLeader(async (n) => {
      const code = await failureCode(
        n.put({ key: enc('k'), value: enc('v4'), ...write(Consistency.CONSISTENCY_ALL) }),
      )
      return code === 'NOT_LEADER' ? undefined : code
    })
    expect(allRefused).toBe('UNAVAILABLE')

    // Heal. The old leader rejoins as a follower: its `leader` write is gone, everything converges.
    await injectFault(cluster.node(old).grpc, { clear: true })
    await eventually('convergence', async () => {
      for (const n of [1, 2, 3]) {
        const g = await nodeKv(cluster, n).get({ key: enc('k'), ...read(Consistency.CONSISTENCY_EVENTUAL) })
        if (g.value.toString() !== 'v2') return undefined
        const l = await nodeKv(cluster, n).get({
          key: enc('lost'),
          ...read(Consistency.CONSISTENCY_EVENTUAL),
        })
        if (l.found) return undefined
      }
      return true
    })
    const leader = await eventually('a leader after healing', () => leaderOf(cluster, 0))
    const gone = await nodeKv(cluster, leader).get({
      key: enc('lost'),
      ...read(Consistency.CONSISTENCY_LINEARIZABLE),
    })
    expect(gone.found, 'the acknowledged `leader` write was lost when the partition healed').toBe(false)
    const all = await eventually('an all write once every replica is back', async () => {
      const l = await leaderOf(cluster, 0)
      return l === undefined
        ? undefined
        : nodeKv(cluster, l).put({ key: enc('k'), value: enc('v5'), ...write(Consistency.CONSISTENCY_ALL) })
    })
    for (const n of [1, 2, 3]) {
      const g = await nodeKv(cluster, n).get({ key: enc('k'), ...read(Consistency.CONSISTENCY_EVENTUAL) })
      expect(g.version).toBe(all.version)
    }
  }, 90_000)
})
