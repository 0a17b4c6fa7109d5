/**
 * `kvctl cap-demo` (the compiled CLI, as users run it) against a real 3-node cluster on loopback
 * started with --allow-fault-injection: the leader of the demo key's shard is cut off, every level
 * runs on both sides, the partition heals, and the observed table matches docs/consistency.md: the
 * minority side refuses linearizable reads and majority and all writes, serves eventual reads
 * stale and says so, refuses bounded reads once the bound ran out; the majority side serves fresh
 * data and refuses `all` writes while a voter is cut off; no acknowledged majority write is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { runKvctl } from './run-kvctl.ts'

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 2, extraArgs: ['--allow-fault-injection'] })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

interface Row {
  side: string
  op: string
  level: string
  outcome: string
  code?: string
  stale?: boolean | null
  stalenessMs?: number
  afterHeal?: string
  kept: boolean
}

describe('kvctl cap-demo', () => {
  it('prints the CAP table as observed, every promise kept, and leaves the cluster healed', async () => {
    const run = await runKvctl(
      ['--endpoints', cluster.endpoints.join(','), 'cap-demo', '--key', 'capdemo', '-o', 'json'],
      { timeoutMs: 120_000 },
    )
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const out = JSON.parse(run.stdout) as { leader: number; broken: number; rows: Row[] }
    expect(out.broken).toBe(0)
    const row = (side: string, op: string, level: string): Row => {
      const found = out.rows.find((r) => r.side === side && r.op === op && r.level === level)
      expect(found, `${side} ${op} ${level}`).toBeDefined()
      return found!
    }
    expect(out.rows.every((r) => r.kept)).toBe(true)
    // Minority side (the old leader): C over A for linearizable reads and majority/all writes.
    expect(row('minority', 'read', 'linearizable').outcome).toBe('refused')
    expect(row('minority', 'read', 'session').outcome).toBe('refused')
    expect(row('minority', 'read', 'bounded').outcome).toBe('refused')
    expect(row('minority', 'read', 'bounded').code).toBe('STALENESS_BOUND_EXCEEDED')
    const eventual = row('minority', 'read', 'eventual')
    expect(eventual.outcome).toBe('served')
    expect(eventual.stale).toBe(true)
    expect(eventual.stalenessMs).toBeGreaterThan(0)
    for (const level of ['majority', 'all']) {
      const w = row('minority', 'write', level)
      expect(w.outcome).not.toBe('served')
      if (w.outcome === 'unknown') expect(w.afterHeal).toBe('lost')
    }
    // A `leader` write the old leader took is lost when the partition heals.
    const leaderWrite = row('minority', 'write', 'leader')
    if (leaderWrite.outcome === 'served') expect(leaderWrite.afterHeal).toBe('lost')
    // Majority side: fresh at every read level; majority writes kept; all writes refused.
    for (const level of ['linearizable', 'session', 'bounded', 'eventual']) {
      const r = row('majority', 'read', level)
      expect(r.outcome, `majority ${level}`).toBe('served')
      expect(r.stale, `majority ${level}`).toBe(false)
    }
    expect(row('majority', 'write', 'majority')).toMatchObject({ outcome: 'served', afterHeal: 'kept' })
    expect(row('majority', 'write', 'all').outcome).not.toBe('served')

    // Healed: the old leader takes part again (an `all` write needs every voter).
    const client = new KvClient({ endpoints: cluster.endpoints, deadlineMs: 20_000 })
    try {
      await client.put('capdemo', 'after', { consistency: 'all' })
      expect((await client.get('capdemo')).valueText()).toBe('after')
    } finally {
      client.close()
    }

    // The table output says the same in words.
    const table = await runKvctl(['--endpoints', cluster.endpoints.join(','), 'cap-demo', '-o', 'table'], {
      timeoutMs: 120_000,
    })
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/SIDE\s+NODE\s+CALL\s+OBSERVED\s+STALE\s+AFTER HEAL\s+PROMISE/)
    expect(table.stdout).toContain('every level kept its promise')
    expect(table.stderr).toContain('cut off from node')
  }, 240_000)
})
