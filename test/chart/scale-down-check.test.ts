/**
 * The scale-down check (charts/ringkv/files/scale-down-check.mjs), run with node as the hook Job
 * runs it (its environment taken from the rendered Job), against a stand-in kvctl that answers
 * `status -o json` with a cluster view of the shape kvctl prints (src/cli/commands/status.ts:
 * map.ok, nodes[].nodeId/address/replicas, moves[]). It must refuse to remove pods whose nodes
 * hold replicas or take part in a move, and refuse when the cluster cannot be read.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { chartDir, chartUnavailable, only, render } from './render.ts'
import { podTemplateOf } from './shapes.ts'

const script = resolve(chartDir, 'files', 'scale-down-check.mjs')
const scratch = mkdtempSync(join(tmpdir(), 'ringkv-chart-scale-'))
const fakeKvctl = join(scratch, 'kvctl')
writeFileSync(
  fakeKvctl,
  `#!${process.execPath}\n` +
    `if (process.argv.slice(2).join(' ') !== 'status -o json') { console.error('unexpected: ' + process.argv.slice(2).join(' ')); process.exit(2) }\n` +
    `process.stdout.write(process.env.FAKE_STATUS ?? '')\n` +
    `if (process.env.FAKE_STDERR) process.stderr.write(process.env.FAKE_STDERR)\n` +
    `process.exit(Number(process.env.FAKE_EXIT ?? 0))\n`,
)
chmodSync(fakeKvctl, 0o755)
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const domain = 'db-ringkv-headless.data.svc.cluster.local'
const node = (nodeId: number, ordinal: number, replicas: number): Record<string, unknown> => ({
  nodeId,
  address: `db-ringkv-${ordinal}.${domain}:7001`,
  zone: '',
  state: 'active',
  lastHeartbeatMs: 1,
  heartbeatAgeMs: 1,
  replicas,
  leaders: 0,
  forwardedRequests: 0,
})
const cluster = (nodes: Record<string, unknown>[], moves: unknown[] | null = []): string =>
  JSON.stringify({
    clusterId: 'ab',
    health: { verdict: 'healthy' },
    map: { ok: true, endpoint: 'x', servedBy: 1, replicaCount: 3, vnodesPerNode: 128, shards: 64 },
    nodes,
    endpoints: [],
    shards: [],
    moves,
  })
const five = (r3: number, r4: number): Record<string, unknown>[] => [
  node(1, 0, 40),
  node(2, 1, 40),
  node(3, 2, 40),
  node(4, 3, r3),
  node(5, 4, r4),
]

interface Check {
  readonly status: number | null
  readonly out: string
}

/** Runs the check as the Job rendered for `replicaCount` would, kvctl answering with `fake`. */
function check(replicaCount: number, fake: { status?: string; exit?: number; stderr?: string }): Check {
  const job = only(render({ set: { replicaCount } }), 'Job', '-scale-down-check')
  const container = podTemplateOf(job).spec.containers[0]!
  expect(container.command).toEqual(['node', '/etc/ringkv/scale-down-check/scale-down-check.mjs'])
  const env: Record<string, string> = {}
  for (const e of container.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value
  expect(env['KEEP_PODS']).toBe(String(replicaCount))
  const run = spawnSync(process.execPath, [script], {
    encoding: 'utf8',
    env: {
      ...env,
      PATH: process.env['PATH'] ?? '',
      KVCTL: fakeKvctl,
      FAKE_STATUS: fake.status ?? '',
      FAKE_EXIT: String(fake.exit ?? 0),
      FAKE_STDERR: fake.stderr ?? '',
    },
  })
  return { status: run.status, out: run.stdout + run.stderr }
}

describe.skipIf(chartUnavailable !== undefined)('the scale-down check', () => {
  test('passes when the pods being removed hold no replicas', () => {
    const r = check(3, { status: cluster(five(0, 0)) })
    expect(r.out).toContain('scale-down check: ok: keeping pods 0..2; nodes 4, 5 hold no replicas')
    expect(r.status).toBe(0)
  })

  test('refuses to remove a pod whose node holds replicas, naming it and saying what to do', () => {
    const r = check(4, { status: cluster(five(12, 7)) })
    expect(r.status).toBe(1)
    expect(r.out).toContain('replicaCount 4 would remove pods whose nodes still hold data')
    expect(r.out).toContain('pod db-ringkv-4 is node 5 and holds 7 replicas')
    expect(r.out).not.toContain('db-ringkv-3 is node')
    expect(r.out).toContain('kvctl node drain ID')
  })

  test('passes a scale-up, or no change, whatever the nodes hold', () => {
    expect(check(5, { status: cluster(five(12, 7)) }).status).toBe(0)
    const r = check(7, { status: cluster(five(12, 7)) })
    expect(r.out).toContain('no node of a removed pod is in the map')
    expect(r.status).toBe(0)
  })

  test('refuses while a move involves a node being removed (a drain still running)', () => {
    const moves = [{ shardId: 9, from: 5, to: 2, step: 'catchup' }]
    const r = check(4, { status: cluster(five(0, 0), moves) })
    expect(r.status).toBe(1)
    expect(r.out).toContain('shard 9 is moving from node 5 to node 2 (step catchup)')
    // A move between kept nodes is no reason to refuse.
    expect(
      check(4, { status: cluster(five(0, 0), [{ shardId: 9, from: 1, to: 2, step: 'learner' }]) }).status,
    ).toBe(0)
  })

  test('a degraded cluster (exit 9) is still read; a node with an unknown count is refused', () => {
    expect(check(3, { status: cluster(five(0, 0)), exit: 9 }).status).toBe(0)
    const nodes = five(0, 0)
    delete nodes[4]!['replicas']
    expect(check(3, { status: cluster(nodes) }).status).toBe(1)
  })

  test('refuses when the cluster cannot be read, and says how to skip the check', () => {
    const unreachable = check(3, { exit: 3, stderr: 'UNAVAILABLE: no node answered\n' })
    expect(unreachable.status).toBe(1)
    expect(unreachable.out).toContain(
      "cannot read the cluster's status (kvctl status -o json: exit code 3: UNAVAILABLE: no node answered)",
    )
    expect(unreachable.out).toContain('set scaleDownCheck.enabled=false')
    expect(check(3, { status: 'not json' }).out).toContain('printed no JSON')
    const noMap = JSON.stringify({ map: { ok: false, error: {} }, nodes: [] })
    expect(check(3, { status: noMap }).out).toContain("the cluster's shard map could not be read")
    expect(check(3, { status: noMap }).status).toBe(1)
  })
})
