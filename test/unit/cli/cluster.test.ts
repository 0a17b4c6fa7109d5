/**
 * kvctl against a fake sharded cluster (test/unit/client/fake-cluster.ts): `status` over every
 * node with the shard table, `-v` receipts on stderr, and consistency flags per command.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { ExitCode } from '../../../src/cli/exit-codes.ts'
import { formatRange } from '../../../src/cli/commands/status.ts'
import type { GetRequest, PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import { FakeCluster } from '../client/fake-cluster.ts'

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

async function run(argv: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const stdin = Object.assign(
    (async function* () {
      // no input
    })(),
    { isTTY: true },
  )
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
    stdin,
    env: {},
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

describe('cli/kvctl against a sharded cluster', () => {
  let cluster: FakeCluster
  let ep: string[]
  beforeEach(async () => {
    cluster = await FakeCluster.start({ nodes: 3, shards: 4 })
    ep = ['--endpoints', cluster.node(1).address]
  })
  afterEach(async () => {
    await cluster.stop()
  })

  it('status asks every node the answers name, marks the unreachable, and merges the shard table', async () => {
    await run([...ep, 'put', ...cluster.keysOn(2, 'st/'), 'v'])
    await cluster.node(3).kill()
    const r = await run([...ep, '-o', 'table', 'status'])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).toMatch(/^ENDPOINT\s+NODE\s+CLUSTER/)
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(1).address}\\s+1\\s+fake-cluster`))
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(2).address}\\s+2\\s+fake-cluster`))
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(3).address}\\s+3\\s+unreachable \\(UNAVAILABLE`))
    // The shard table: range, leader, voters, applied index per node that answered.
    const header = lines.findIndex((l) => /^SHARD\s+RANGE\s+LEADER\s+VOTERS\s+APPLIED$/.test(l))
    expect(header).toBeGreaterThan(0)
    const rows = lines.slice(header + 1, header + 5)
    const range = cluster.shards[1]?.range
    expect(rows[1]?.split(/\s{2,}/)).toEqual([
      '2',
      formatRange(String(range?.start), String(range?.end)),
      '2',
      '1,2,3',
      '1:1 2:1',
    ])
    expect(rows[3]).toContain('[c000000000000000, 10000000000000000)')
    expect(rows.map((l) => l.split(/\s{2,}/)[0])).toEqual(['1', '2', '3', '4'])
    expect(rows.map((l) => l.split(/\s{2,}/)[2])).toEqual(['1', '2', '3', '1'])
    // The per-replica detail is still there.
    expect(r.stdout).toMatch(/NODE\s+SHARD\s+ROLE\s+LEADER\s+TERM\s+COMMIT\s+APPLIED\s+VOTERS/)

    const j = JSON.parse((await run([...ep, 'status'])).stdout)
    expect(j.endpoints.map((e: { ok: boolean }) => e.ok)).toEqual([true, true, false])
    expect(j.endpoints[2]).toMatchObject({ ok: false, nodeId: 3, error: { code: 'UNAVAILABLE' } })
    expect(j.shards[1]).toEqual({
      shardId: 2,
      hashStart: String(range?.start),
      hashEnd: String(range?.end),
      leaderId: 2,
      voters: [1, 2, 3],
      appliedIndexByNode: { 1: 1, 2: 1 },
    })
  })

  it('status exits 3 when no node answers', async () => {
    for (const n of cluster.nodes) await n.kill()
    const r = await run([...ep, 'status'])
    expect(r.code).toBe(ExitCode.Unavailable)
  })

  it('-v prints each receipt on stderr with table output; JSON carries them in the document', async () => {
    const [key] = cluster.keysOn(3, 'verbose/')
    const put = await run([...ep, '-o', 'table', '-v', 'put', key as string, 'v'])
    expect(put.code).toBe(0)
    expect(put.stderr).toMatch(/^receipt: node 3, shard 3, index 1, majority, fresh\n$/)
    const get = await run([
      ...ep,
      '-o',
      'table',
      'get',
      key as string,
      '--verbose',
      '--consistency',
      'eventual',
    ])
    expect(get.stderr).toBe('receipt: node 1, shard 3, index 1, eventual, up to 7 ms stale\n')
    const quiet = await run([...ep, '-o', 'table', 'get', key as string])
    expect(quiet.stderr).toBe('')
    const asJson = await run([...ep, '-o', 'json', '-v', 'get', key as string])
    expect(asJson.stderr).toBe('')
    expect(JSON.parse(asJson.stdout).receipt).toMatchObject({
      nodeId: 3,
      shardId: 3,
      consistency: 'linearizable',
    })
    const del = await run([...ep, '-o', 'table', '-v', 'del', key as string, '--consistency', 'leader'])
    expect(del.stderr).toMatch(/^receipt: node 3, shard 3, index 2, majority, fresh\n$/)
    expect(cluster.node(3).requestsOf<PutRequest>('delete')[0]?.options?.consistency).toBe(
      Consistency.CONSISTENCY_LEADER,
    )
  })

  it('scan walks every shard; -v prints one receipt per shard, JSON lists them', async () => {
    for (const s of cluster.shards)
      for (const k of cluster.keysOn(s.shardId, 'sc/', 2)) await run([...ep, 'put', k, 'x'])
    const t = await run([...ep, '-o', 'table', '-v', 'scan', '--prefix', 'sc/'])
    expect(t.stdout).toMatch(/8 entries; served by node \d, shard \d/)
    expect(t.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^receipt: node 1, shard 1, /),
      expect.stringMatching(/^receipt: node 2, shard 2, /),
      expect.stringMatching(/^receipt: node 3, shard 3, /),
      expect.stringMatching(/^receipt: node 1, shard 4, /),
    ])
    const j = JSON.parse(
      (await run([...ep, 'scan', '--prefix', 'sc/', '--consistency', 'bounded', '--max-staleness-ms', '50']))
        .stdout,
    )
    expect(j.count).toBe(8)
    expect(
      j.receipts.map((r: { shardId: number; consistency: string }) => [r.shardId, r.consistency]),
    ).toEqual([
      [1, 'bounded'],
      [2, 'bounded'],
      [3, 'bounded'],
      [4, 'bounded'],
    ])
  })

  it('sends session reads with --consistency session to the first endpoint', async () => {
    const [key] = cluster.keysOn(2, 'sess/')
    await run([...ep, 'put', key as string, 'v'])
    const r = await run([...ep, 'get', key as string, '--consistency', 'session'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout).receipt).toMatchObject({ nodeId: 1, consistency: 'session' })
    expect(cluster.node(1).requestsOf<GetRequest>('get')[0]?.options?.consistency).toBe(
      Consistency.CONSISTENCY_SESSION,
    )
  })

  it('refuses a read level for a write and the reverse (exit 2)', async () => {
    expect((await run([...ep, 'put', 'k', 'v', '--consistency', 'eventual'])).code).toBe(ExitCode.Usage)
    expect((await run([...ep, 'get', 'k', '--consistency', 'all'])).code).toBe(ExitCode.Usage)
    const help = await run(['get', '--help'])
    expect(help.stdout).toContain('--max-staleness-ms')
    expect(help.stdout).toMatch(/linearizable \(default; the shard leader\), session, bounded/)
  })
})
