/**
 * Failover and durability on a real 3-node cluster, driven through the SDK:
 * - kill -9 the leader of a shard during a majority-write workload: a new leader within 3
 *   election timeouts, every acknowledged write present, and the recorded history (writes and
 *   linearizable reads) accepted by the linearizability checker;
 * - stop all three nodes and restart them: every acknowledged write is still there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { errorCodeTable, isErrorCode } from '../../../src/common/errors.ts'
import { checkLinearizability, type Operation } from '../../../src/verify/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually, leaderOf } from '../helpers/cluster-ops.ts'

/** Election timeout at the default 100 ms tick: 10 to 20 ticks. */
const electionTimeoutMsMax = 2_000
const keys = Array.from({ length: 24 }, (_, i) => `fk${i}`)

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 2 })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

/** Runs writers and readers until `stop`, recording every operation. */
function workload(
  client: KvClient,
  history: Operation[],
  acked: Map<string, string>,
  stop: { done: boolean },
) {
  const t = () => performance.now()
  let n = 0
  const worker = async (w: number): Promise<void> => {
    while (!stop.done) {
      const key = keys[(w * 7 + n++) % keys.length]!
      if (n % 3 === 0) {
        const callMs = t()
        try {
          const got = await client.get(key, { consistency: 'linearizable', deadlineMs: 3_000 })
          history.push({
            kind: 'get',
            clientId: w,
            key,
            callMs,
            returnMs: t(),
            outcome: 'ok',
            input: {},
            output: { value: got.valueText() },
          })
        } catch {
          // A failed read says nothing; leave it out.
        }
        continue
      }
      const value = `w${w}-${n}`
      const callMs = t()
      try {
        await client.put(key, value, { deadlineMs: 3_000 })
        history.push({
          kind: 'put',
          clientId: w,
          key,
          callMs,
          returnMs: t(),
          outcome: 'ok',
          input: { value },
          output: {},
        })
        acked.set(`${key}=${value}`, key)
      } catch (err) {
        const code = (err as { code?: unknown }).code
        const notApplied = isErrorCode(code) && errorCodeTable[code].writeNotApplied
        history.push({
          kind: 'put',
          clientId: w,
          key,
          callMs,
          returnMs: t(),
          outcome: notApplied ? 'fail' : 'indeterminate',
          input: { value },
          output: null,
        })
      }
    }
  }
  return Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)))
}

describe('failover', () => {
  it('kill -9 of a leader mid-workload: a new leader within 3 election timeouts, no acknowledged write lost, linearizable', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    const history: Operation[] = []
    const acked = new Map<string, string>()
    const stop = { done: false }
    const running = workload(client, history, acked, stop)
    await new Promise((r) => setTimeout(r, 1_500))
    const victim = await eventually('a leader of shard 0', () => leaderOf(cluster, 0))
    cluster.node(victim).kill('SIGKILL')
    const killedAt = Date.now()
    const survivors = [1, 2, 3].filter((n) => n !== victim)
    await eventually(
      'a new leader of shard 0',
      () => leaderOf(cluster, 0, survivors),
      3 * electionTimeoutMsMax,
    )
    expect(Date.now() - killedAt).toBeLessThanOrEqual(3 * electionTimeoutMsMax)
    await new Promise((r) => setTimeout(r, 1_500))
    stop.done = true
    await running
    // Final reads of every key, after the workload: part of the checked history.
    for (const key of keys) {
      const callMs = performance.now()
      const got = await client.get(key, { consistency: 'linearizable' })
      history.push({
        kind: 'get',
        clientId: 'final',
        key,
        callMs,
        returnMs: performance.now(),
        outcome: 'ok',
        input: {},
        output: { value: got.valueText() },
      })
    }
    const okWrites = history.filter((op) => op.kind === 'put' && op.outcome === 'ok').length
    expect(okWrites).toBeGreaterThan(50)
    const verdict = checkLinearizability(history)
    expect(verdict.result === 'violation' ? verdict.window.text : verdict.result).not.toBe('violation')
    expect(verdict.result === 'violation' ? verdict.window.text : 'no violation').toBe('no violation')
    console.log(
      `failover: ${okWrites} acknowledged writes, ${history.length} ops, victim node ${victim}, verdict ${verdict.result}`,
    )
    client.close()
    await cluster.node(victim).restart()
  }, 120_000)

  it('stop all three nodes and restart them: every acknowledged write is present', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    const written = new Map<string, string>()
    for (let i = 0; i < 200; i++) {
      const key = `rs${i}`
      await client.put(key, `v${i}`)
      written.set(key, `v${i}`)
    }
    client.close()
    await Promise.all(cluster.nodes.map((n) => n.stop()))
    await Promise.all(cluster.nodes.map((n) => n.restart()))
    const again = new KvClient({ endpoints: [...cluster.endpoints] })
    for (const [key, value] of written) {
      const got = await again.get(key, { deadlineMs: 15_000 })
      expect(got.valueText(), key).toBe(value)
    }
    again.close()
  }, 120_000)
})
