/**
 * kvctl against a fake sharded cluster (test/unit/client/fake-cluster.ts, forwarding like kvd):
 * `status` (the map's nodes, then every node with the shard table), `shards`, `ring`, requests to
 * the endpoint given unless `--route`, `-v` receipts on stderr, and consistency flags per command.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { ExitCode } from '../../../src/cli/exit-codes.ts'
import { formatRange } from '../../../src/cli/commands/status.ts'
import { loadClientHasher } from '../../../src/client/hasher.ts'
import type { GetRequest, PutRequest } from '../../../src/gen/ringkv/v1/kv.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import { Ring } from '../../../src/hashing/ring.ts'
import { FakeCluster } from '../client/fake-cluster.ts'
import { SimClock } from '../client/sim-clock.ts'

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
    // Wall time 1_700_000_000_000 (heartbeat ages are measured against it).
    clock: new SimClock(),
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

describe('cli/kvctl against a sharded cluster', () => {
  let cluster: FakeCluster
  let ep: string[]
  beforeEach(async () => {
    cluster = await FakeCluster.start({ nodes: 3, shards: 4 })
    // kvd forwards what the node it reaches does not hold; kvctl relies on it (no routing by default).
    cluster.forward = true
    for (const n of cluster.nodes) {
      n.zone = `z${n.nodeId}`
      n.lastHeartbeatMs = wallNowMs - 1_000 * n.nodeId
    }
    ep = ['--endpoints', cluster.node(1).address]
  })
  const wallNowMs = new SimClock().wallMs()
  const cells = (line: string | undefined): string[] => (line ?? '').split(/\s{2,}/)
  afterEach(async () => {
    await cluster.stop()
  })

  it("status shows the map's nodes, asks every node, marks the unreachable, and merges the shard table", async () => {
    await run([...ep, 'put', ...cluster.keysOn(2, 'st/'), 'v']) // forwarded by node 1 to node 2
    cluster.node(2).state = 'draining'
    cluster.node(3).lastHeartbeatMs = 0
    await cluster.node(3).kill()
    cluster.metaReplicas = true
    const r = await run([...ep, '-o', 'table', 'status', '--shards'])
    // Shard 3's leader (node 3) is down: some keys cannot be served.
    expect(r.code).toBe(ExitCode.Unavailable)
    const lines = r.stdout.split('\n')
    // The fake cluster has no rebalancing answer (taken out so the lines below keep their places).
    expect(lines.splice(4, 1)).toEqual(['  rebalancing  - (the meta leader did not answer)'])
    expect(lines.slice(0, 9)).toEqual([
      'cluster fake-cluster: UNAVAILABLE',
      '  nodes   2/3 up',
      '  shards  5 total: 0 healthy, 4 under-replicated, 1 without leader',
      '  moves   - (the meta leader did not answer)',
      'problems:',
      expect.stringMatching(/^ {2}node 3 \(127\.0\.0\.1:\d+\) does not answer: UNAVAILABLE: /),
      '  without leader: shard 3',
      '  under-replicated: shard 1, 2, 4, meta',
      '',
    ])
    expect(lines[9]).toBe('map from node 1: 3 nodes, 4 shards, 3 replicas each')
    expect(cells(lines[10])).toEqual([
      'NODE',
      'ADDRESS',
      'ZONE',
      'STATE',
      'HEARTBEAT',
      'REPLICAS',
      'LEADERS',
      'FORWARDED',
    ])
    expect(cells(lines[11])).toEqual(['1', cluster.node(1).address, 'z1', 'active', '1s ago', '4', '2', '1'])
    expect(cells(lines[12])).toEqual([
      '2',
      cluster.node(2).address,
      'z2',
      'draining',
      '2s ago',
      '4',
      '1',
      '0',
    ])
    // Node 3 never sent a heartbeat and does not answer: its counter is unknown.
    expect(cells(lines[13])).toEqual(['3', cluster.node(3).address, 'z3', 'active', 'never', '4', '1', '-'])
    // Then every node asked directly.
    const endpoints = lines.findIndex((l) => /^ENDPOINT\s+NODE\s+CLUSTER/.test(l))
    expect(endpoints).toBe(15)
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(1).address}\\s+1\\s+fake-cluster`))
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(2).address}\\s+2\\s+fake-cluster`))
    expect(r.stdout).toMatch(new RegExp(`${cluster.node(3).address}\\s+3\\s+unreachable \\(UNAVAILABLE`))
    // The shard table: range, leader, voters, applied index per node that answered.
    const header = lines.findIndex((l) => /^SHARD\s+RANGE\s+LEADER\s+VOTERS\s+APPLIED$/.test(l))
    expect(header).toBeGreaterThan(endpoints)
    const rows = lines.slice(header + 1, header + 6)
    const range = cluster.shards[1]?.range
    expect(cells(rows[1])).toEqual([
      '2',
      formatRange(String(range?.start), String(range?.end)),
      '2',
      '1,2,3',
      '1:1 2:1',
    ])
    expect(rows[3]).toContain('[c000000000000000, 10000000000000000)')
    // The meta shard by its name; a leader nobody knows would be '-'.
    expect(rows.map((l) => cells(l)[0])).toEqual(['1', '2', '3', '4', 'meta'])
    expect(rows.map((l) => cells(l)[2])).toEqual(['1', '2', '3', '1', '1'])
    // The per-replica detail is still there.
    expect(r.stdout).toMatch(/NODE\s+SHARD\s+ROLE\s+LEADER\s+TERM\s+COMMIT\s+APPLIED\s+VOTERS/)

    const j = JSON.parse((await run([...ep, 'status'])).stdout)
    expect(j.clusterId).toBe('fake-cluster')
    expect(j.map).toMatchObject({ ok: true, servedBy: 1, replicaCount: 3, shards: 4 })
    expect(j.nodes).toEqual([
      {
        nodeId: 1,
        address: cluster.node(1).address,
        zone: 'z1',
        state: 'active',
        lastHeartbeatMs: wallNowMs - 1_000,
        heartbeatAgeMs: 1_000,
        replicas: 4,
        leaders: 2,
        forwardedRequests: 1,
      },
      expect.objectContaining({ nodeId: 2, state: 'draining', heartbeatAgeMs: 2_000, forwardedRequests: 0 }),
      expect.objectContaining({
        nodeId: 3,
        lastHeartbeatMs: 0,
        heartbeatAgeMs: null,
        forwardedRequests: null,
      }),
    ])
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

  it('status leads with the verdict, keeps the shard tables behind --shards, and --check only exits', async () => {
    cluster.metaReplicas = true
    const healthy = await run([...ep, '-o', 'table', 'status'])
    expect(healthy.code).toBe(ExitCode.Ok)
    expect(healthy.stdout.split('\n').slice(0, 5)).toEqual([
      'cluster fake-cluster: HEALTHY',
      '  nodes   3/3 up',
      '  shards  5 total: 5 healthy, 0 under-replicated, 0 without leader',
      '  moves   - (the meta leader did not answer)',
      '  rebalancing  - (the meta leader did not answer)',
    ])
    expect(healthy.stdout).not.toContain('problems:')
    expect(healthy.stdout).not.toMatch(/^(ENDPOINT|SHARD)\s/m)
    const check = await run([...ep, 'status', '--check'])
    expect(check).toEqual({ code: ExitCode.Ok, stdout: '', stderr: '' })
    const j = JSON.parse((await run([...ep, 'status'])).stdout)
    expect(j.health).toMatchObject({
      verdict: 'healthy',
      nodes: { total: 3, up: 3 },
      shards: { total: 5, healthy: 5, underReplicated: [], withoutLeader: [] },
    })

    // A follower down: every shard still has a leader (node 3 leads shard 3: hand it to node 1 first).
    cluster.leaders.set(3, 1)
    await cluster.node(3).kill()
    expect(await run([...ep, 'status', '--check'])).toEqual({
      code: ExitCode.Degraded,
      stdout: '',
      stderr: '',
    })
    const degraded = JSON.parse((await run([...ep, 'status'])).stdout)
    expect(degraded.health).toMatchObject({ verdict: 'degraded', nodes: { up: 2, total: 3 } })
    expect(degraded.health.shards.underReplicated).toHaveLength(5)

    // The meta leader down too: the cluster's own records cannot be written.
    cluster.metaLeader = 3
    const down = await run([...ep, '-o', 'table', 'status'])
    expect(down.code).toBe(ExitCode.Unavailable)
    expect(down.stdout).toContain('  without leader: shard meta\n')
    expect((await run([...ep, 'status', '--check'])).code).toBe(ExitCode.Unavailable)
  })

  it('endpoint health asks each endpoint (or with --cluster every node) and exits 3 unless all are healthy', async () => {
    const all = ['--endpoints', cluster.nodes.map((n) => n.address).join(',')]
    const ok = await run([...all, '-o', 'table', 'endpoint', 'health'])
    expect(ok.code).toBe(ExitCode.Ok)
    expect(ok.stdout.trim().split('\n')).toEqual(
      cluster.nodes.map(
        (n) => `${n.address} is healthy: node ${n.nodeId}, 4 shards with a leader, took 0 ms`,
      ),
    )
    // A replica that knows no leader makes its node unhealthy; a node that does not answer too.
    cluster.leaders.delete(2)
    await cluster.node(3).kill()
    const some = await run([...ep, '-o', 'table', 'endpoint', 'health', '--cluster'])
    expect(some.code).toBe(ExitCode.Unavailable)
    const lines = some.stdout.trim().split('\n')
    expect(lines[0]).toBe(
      `${cluster.node(1).address} is unhealthy: node 1, 1 of 4 shards without a leader, took 0 ms`,
    )
    expect(lines[2]).toMatch(
      new RegExp(`^${cluster.node(3).address} is unhealthy: UNAVAILABLE: .* \\(took 0 ms\\)$`),
    )
    const j = JSON.parse((await run([...ep, 'endpoint', 'health', '--cluster'])).stdout)
    expect(j[2]).toEqual({
      endpoint: cluster.node(3).address,
      reachable: false,
      healthy: false,
      tookMs: 0,
      nodeId: null,
      shards: null,
      shardsWithoutLeader: null,
      error: { code: 'UNAVAILABLE', message: expect.any(String) },
    })
    expect(j[1]).toMatchObject({
      reachable: true,
      healthy: false,
      nodeId: 2,
      shards: 4,
      shardsWithoutLeader: 1,
    })
    expect((await run([...ep, 'endpoint'])).code).toBe(ExitCode.Usage)
  })

  it('status still shows every node when the map cannot be had', async () => {
    cluster.node(1).failNext('shardMap', { code: 'INTERNAL', message: 'no map here' }, 2)
    const j = JSON.parse((await run([...ep, '--deadline-ms', '2000', 'status'])).stdout)
    expect(j.map).toEqual({ ok: false, error: { code: 'INTERNAL', message: 'no map here' } })
    expect(j.nodes).toEqual([])
    // Without the map, the other nodes are found through the peers node 1 names.
    expect(j.endpoints.map((e: { ok: boolean; node?: { nodeId: number } }) => e.node?.nodeId)).toEqual([
      1, 2, 3,
    ])
    const t = await run([...ep, '-o', 'table', 'status'])
    // Degraded: without the map, nobody can tell whether a node is missing; every endpoint is shown.
    expect(t.code).toBe(ExitCode.Degraded)
    const lines = t.stdout.split('\n')
    expect(lines.slice(0, 3)).toEqual([
      'cluster fake-cluster: DEGRADED',
      '  nodes   3/3 up',
      expect.any(String),
    ])
    expect(t.stdout).toContain('  the shard map could not be had')
    expect(lines.find((l) => /^ENDPOINT\s+NODE\s+CLUSTER/.test(l))).toBeDefined()
  })

  it("shards prints the map with each shard's size from its leader, or a replica, or ?", async () => {
    for (const k of cluster.keysOn(2, 'sz/', 3)) await run([...ep, 'put', k, 'hello'])
    cluster.node(1).reportedBytes.set(1, 1_536) // node 1 leads shard 1
    cluster.node(2).reportedBytes.set(1, 999) // a follower's estimate: not used while the leader answers
    cluster.node(3).reportedBytes.set(3, 5 * 1024 * 1024)
    cluster.moveShard(4, [2, 3], 2)
    cluster.node(2).reportedBytes.set(4, 10)
    cluster.node(3).reportedBytes.set(4, 20)
    const t = await run([...ep, '-o', 'table', 'shards'])
    expect(t.code).toBe(0)
    const lines = t.stdout.trimEnd().split('\n')
    expect(cells(lines[0])).toEqual(['SHARD', 'RANGE', 'REPLICAS', 'LEADER', 'EPOCH', 'SIZE', 'MOVE'])
    const size2 = cluster.shard(2).bytes()
    expect(size2).toBeGreaterThan(0)
    expect(lines.slice(1).map(cells)).toEqual([
      ['1', '[0000000000000000, 4000000000000000)', '1,2,3', '1', '1', '1.5 KiB', '-'],
      ['2', '[4000000000000000, 8000000000000000)', '2,3,1', '2', '1', `${size2} B`, '-'],
      ['3', '[8000000000000000, c000000000000000)', '3,1,2', '3', '1', '5.0 MiB', '-'],
      ['4', '[c000000000000000, 10000000000000000)', '2,3', '2', '2', '10 B', '-'],
    ])
    // RocksDB's estimate leaves the memtable out: a shard with nothing flushed yet is not "0 B".
    cluster.node(1).reportedBytes.set(1, 0)
    const young = (await run([...ep, '-o', 'table', 'shards'])).stdout.trimEnd().split('\n')
    expect(cells(young[1]).at(-2)).toBe('unflushed')
    cluster.node(1).reportedBytes.set(1, 1_536)
    // Node 2 stops answering: shard 2's and shard 4's sizes come from their next replica, node 3;
    // shard 1's still from its leader, node 1.
    await cluster.node(2).kill()
    const j = JSON.parse((await run([...ep, 'shards'])).stdout)
    expect(j).toMatchObject({ clusterId: 'fake-cluster', servedBy: 1, replicaCount: 3 })
    expect(
      j.shards.map((s: { shardId: number; approximateBytes: number | null; sizeFrom: number | null }) => [
        s.shardId,
        s.approximateBytes,
        s.sizeFrom,
      ]),
    ).toEqual([
      [1, 1_536, 1],
      [2, size2, 3],
      [3, 5 * 1024 * 1024, 3],
      [4, 20, 3],
    ])
    expect(j.shards[3]).toMatchObject({
      replicas: [2, 3],
      leaderId: 2,
      epoch: 2,
      hashEnd: '18446744073709551616',
    })
    expect(j.unreachable).toEqual([
      {
        nodeId: 2,
        address: cluster.node(2).address,
        error: expect.objectContaining({ code: 'UNAVAILABLE' }),
      },
    ])
    // No replica of shard 4 answers: its size is unknown.
    await cluster.node(3).kill()
    const unknown = await run([...ep, '-o', 'table', 'shards'])
    expect(cells(unknown.stdout.trimEnd().split('\n')[4]).at(-2)).toBe('?')
    expect(JSON.parse((await run([...ep, 'shards'])).stdout).shards[3].approximateBytes).toBeNull()
  })

  it('ring prints every node with its ownership of the hash space and what it holds', async () => {
    cluster.node(3).weight = 2
    cluster.moveShard(4, [2, 3], 3) // node 1 holds 3 replicas and leads 1 shard now
    const t = await run([...ep, '-o', 'table', 'ring'])
    expect(t.code).toBe(0)
    const lines = t.stdout.trimEnd().split('\n')
    expect(cells(lines[0])).toEqual([
      'NODE',
      'ADDRESS',
      'ZONE',
      'STATE',
      'WEIGHT',
      'VNODES',
      'OWNERSHIP',
      'REPLICA SHARE',
      'REPLICAS',
      'LEADERS',
    ])
    // The same ring the nodes build: node ids, weights, zones, vnodes per node from the map.
    const ring = new Ring(
      cluster.nodes.map((n) => ({ id: n.nodeId, weight: n.weight, zone: n.zone })),
      await loadClientHasher(),
      cluster.vnodesPerNode,
    )
    const ownership = ring.ownership()
    const pct = (x: number): string => `${(x * 100).toFixed(1)}%`
    expect(lines.slice(1).map(cells)).toEqual([
      [
        '1',
        cluster.node(1).address,
        'z1',
        'active',
        '1',
        '16',
        pct(ownership.get(1) ?? 0),
        '27.3%',
        '3',
        '1',
      ],
      [
        '2',
        cluster.node(2).address,
        'z2',
        'active',
        '1',
        '16',
        pct(ownership.get(2) ?? 0),
        '36.4%',
        '4',
        '1',
      ],
      [
        '3',
        cluster.node(3).address,
        'z3',
        'active',
        '2',
        '32',
        pct(ownership.get(3) ?? 0),
        '36.4%',
        '4',
        '2',
      ],
    ])
    const j = JSON.parse((await run([...ep, 'ring'])).stdout)
    expect(j).toMatchObject({ clusterId: 'fake-cluster', vnodesPerNode: 16, shards: 4, replicas: 11 })
    expect(j.nodes.map((n: { nodeId: number; ownership: number }) => [n.nodeId, n.ownership])).toEqual(
      [1, 2, 3].map((id) => [id, ownership.get(id)]),
    )
    const total = j.nodes.reduce((sum: number, n: { ownership: number }) => sum + n.ownership, 0)
    expect(total).toBeCloseTo(1, 9)
    // A weight-2 node owns more of the ring than either weight-1 node here.
    expect(j.nodes[2].ownership).toBeGreaterThan(Math.max(j.nodes[0].ownership, j.nodes[1].ownership))
    // A dead node leaves the ring: it owns nothing, and the others share all of it.
    cluster.node(2).state = 'dead'
    const after = JSON.parse((await run([...ep, 'ring'])).stdout)
    expect(after.nodes[1]).toMatchObject({
      nodeId: 2,
      state: 'dead',
      vnodes: 0,
      ownership: null,
      replicas: 4,
    })
    expect(after.nodes[0].ownership + after.nodes[2].ownership).toBeCloseTo(1, 9)
  })

  it('sends requests to the endpoint given, which forwards; --route sends them to the leader itself', async () => {
    const [key] = cluster.keysOn(3, 'route/')
    const plain = await run([...ep, 'put', key as string, 'v'])
    expect(JSON.parse(plain.stdout).receipt).toMatchObject({ nodeId: 3, shardId: 3 })
    // Node 1 took it and forwarded it; kvctl did not load the map, nor send a route hint.
    expect(cluster.node(1).forwarded).toBe(1)
    expect(cluster.counts('shardMap')).toEqual({ 1: 0, 2: 0, 3: 0 })
    expect(cluster.node(1).requestsOf<PutRequest>('put')[0]?.options?.route).toBeUndefined()
    cluster.clearRequests()
    const routed = await run([...ep, '--route', 'get', key as string])
    expect(JSON.parse(routed.stdout).receipt).toMatchObject({ nodeId: 3, consistency: 'linearizable' })
    expect(cluster.counts('shardMap')).toEqual({ 1: 1, 2: 0, 3: 0 })
    expect(cluster.counts('get')).toEqual({ 1: 0, 2: 0, 3: 1 })
    expect(cluster.node(3).requestsOf<GetRequest>('get')[0]?.options?.route).toEqual({ shardId: 3, epoch: 1 })
    expect(cluster.node(1).forwarded).toBe(1)
    // --zone with --route: an eventual read on the replica in that zone.
    const near = await run([
      ...ep,
      '--route',
      '--zone',
      'z2',
      'get',
      key as string,
      '--consistency',
      'eventual',
    ])
    expect(JSON.parse(near.stdout).receipt).toMatchObject({ nodeId: 2, consistency: 'eventual' })
    const help = await run(['--help'])
    expect(help.stdout).toContain('--route')
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
    // Once: on stderr, not also as the table's last row.
    expect(put.stdout).toBe(`OK  ${key} @ version 1\n`)
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
    // Sent to node 1 (the endpoint given), which forwarded it to shard 3's leader.
    expect(cluster.node(1).requestsOf<PutRequest>('delete')[0]?.options?.consistency).toBe(
      Consistency.CONSISTENCY_LEADER,
    )
    expect(cluster.node(1).forwarded).toBe(4)
  })

  it('scan walks every shard; -v prints one receipt per shard, JSON lists them', async () => {
    for (const s of cluster.shards)
      for (const k of cluster.keysOn(s.shardId, 'sc/', 2)) await run([...ep, 'put', k, 'x'])
    // Each receipt shown once: the first in the summary line, or every one on stderr with -v.
    const plain = await run([...ep, '-o', 'table', 'scan', '--prefix', 'sc/'])
    expect(plain.stdout).toMatch(/\n8 entries; served by node \d, shard \d, [^\n]*\n$/)
    expect(plain.stderr).toBe('')
    const t = await run([...ep, '-o', 'table', '-v', 'scan', '--prefix', 'sc/'])
    expect(t.stdout).toMatch(/\n8 entries\n$/)
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
