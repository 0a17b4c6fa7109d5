/**
 * The Helm chart's contract, run for real on the docker engine (chart-cluster.ts starts each pod's
 * container from the rendered StatefulSet): pods 0..2 bootstrap through the chart's start script
 * and fixed --initial-cluster of stable DNS names, pods 3 and 4 join through --join and receive
 * replicas (the executor rebalances by itself), every node registers the DNS name it advertises,
 * pod 4 is drained (`kvctl node drain`), removed (`kvctl node remove`) and scaled away, and at each
 * stage the probes' endpoints (paths and ports from the rendered spec) answer as the chart expects:
 * startup and liveness 200 while the process runs, readiness 200 while the pod serves and 503
 * with its reason once it is removed. The pods run as the chart's securityContext says (non-root,
 * read-only root file system, capabilities dropped) with the chart's mounts. A write made before
 * the joins is read back through every pod at the end, and the chart's `helm test` pod
 * (write, read, delete, `kvctl status --check`) runs against the cluster. Pod 0 starts a little
 * before the others (as a pod scheduled first would): alive, and not ready until they are up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chartUnavailable, only, render, resolveContainer } from '../chart/render.ts'
import { podTemplateOf } from '../chart/shapes.ts'
import { ChartCluster } from './chart-cluster.ts'
import { baseSeed, chaosDir, runId } from './context.ts'
import { chaosImage, chaosLabel, docker } from './docker.ts'

const renderInput = {
  set: { replicaCount: 5, 'ringkv.shards': 4, 'ringkv.logLevel': 'info' },
} as const
const startMs = 60_000
const readyMs = 90_000
const settleMs = 120_000

interface RingNode {
  readonly nodeId: number
  readonly address: string
  readonly state: string
  readonly replicas: number
}

if (chartUnavailable !== undefined)
  console.log(`chart contract: left out, helm cannot run here: ${chartUnavailable}`)

describe.skipIf(chartUnavailable !== undefined)('the Helm chart run as containers', () => {
  const dir = chaosDir('chart')
  let cluster: ChartCluster | undefined
  const c = (): ChartCluster => cluster!

  beforeAll(async () => {
    console.log(`chart contract: pod logs in ${dir}`)
    cluster = await ChartCluster.create({
      render: renderInput,
      runId: runId('chart'),
      seed: baseSeed + 7,
      dir,
    })
  }, 60_000)

  afterAll(async () => {
    await cluster?.saveLogs()
    await cluster?.stop()
  }, 120_000)

  /** Startup then liveness 200, then readiness 200: a pod Kubernetes would count ready. */
  async function podUp(ordinal: number): Promise<void> {
    await c().waitProbe(ordinal, 'startup', 200, startMs)
    expect((await c().probe(ordinal, 'liveness')).status).toBe(200)
    const ready = await c().waitProbe(ordinal, 'readiness', 200, readyMs)
    expect(JSON.parse(ready.body)).toEqual({ ready: true })
  }

  async function ring(ordinal = 0): Promise<RingNode[]> {
    return (JSON.parse(await c().kvctl(ordinal, ['ring', '-o', 'json'])) as { nodes: RingNode[] }).nodes
  }

  /** Polls `check` (which throws while not yet true) until it passes, or throws its last error. */
  async function eventually<T>(what: string, ms: number, check: () => Promise<T>): Promise<T> {
    const started = performance.now()
    for (;;) {
      try {
        return await check()
      } catch (err) {
        if (performance.now() - started > ms) throw new Error(`${what} within ${ms} ms: ${String(err)}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000))
    }
  }

  it('the rendered pod names its DNS name as Kubernetes would: the chart advertises what resolves', () => {
    const pod = c().pod(0)
    expect(pod.dnsName).toBe(`${pod.name}.${pod.spec.env['PEER_DOMAIN']}`)
  })

  it('pod 0 alone is alive but not ready: it cannot serve without its peers, and says why', async () => {
    await c().start(0)
    await c().waitProbe(0, 'startup', 200, startMs)
    const answer = await c().waitProbe(0, 'readiness', 503, readyMs)
    expect(JSON.parse(answer.body)).toMatchObject({ ready: false, reason: 'meta_unreachable' })
    expect((await c().probe(0, 'liveness')).status).toBe(200)
  }, 120_000)

  it('pods 0..2 bootstrap from the chart alone, as non-root on a read-only root file system', async () => {
    await Promise.all([1, 2].map((o) => c().start(o)))
    await Promise.all([0, 1, 2].map((o) => podUp(o)))
    const nodes = await ring()
    expect(nodes.map((n) => [n.nodeId, n.address]).sort()).toEqual(
      [0, 1, 2].map((o) => [o + 1, `${c().pod(o).dnsName}:7001`]),
    )
    const who = await docker([
      'exec',
      c().pod(0).dnsName,
      'node',
      '-e',
      "let w; try { require('fs').writeFileSync('/probe-write', 'x'); w = 'writable' } catch (e) { w = e.code }; console.log(process.getuid(), w)",
    ])
    expect(who.trim()).toBe('1000 EROFS')
    await c().kvctl(0, ['put', 'chart/before-join', 'written by pod 0'])
  }, 240_000)

  it('pods 3 and 4 join through --join, register their DNS names and receive replicas', async () => {
    await Promise.all([3, 4].map((o) => c().start(o)))
    await Promise.all([3, 4].map((o) => podUp(o)))
    const joined = await eventually('the joined nodes hold replicas', settleMs, async () => {
      const nodes = await ring()
      const mine = [3, 4].map((o) => nodes.find((n) => n.address === `${c().pod(o).dnsName}:7001`))
      for (const [i, n] of mine.entries()) {
        if (n === undefined) throw new Error(`pod ${3 + i} is not in the map`)
        if (n.replicas === 0) throw new Error(`node ${n.nodeId} (pod ${3 + i}) holds no replica yet`)
      }
      return mine as RingNode[]
    })
    expect(joined.map((n) => n.nodeId).sort()).toEqual([4, 5])
    for (const o of [0, 1, 2, 3, 4]) expect((await c().probe(o, 'readiness')).status).toBe(200)
  }, 300_000)

  it('pod 4 is drained, removed and scaled away; it says not_member meanwhile, and no write is lost', async () => {
    const nodeId = (await ring()).find((n) => n.address === `${c().pod(4).dnsName}:7001`)?.nodeId
    expect(nodeId).toBeDefined()
    const drain = JSON.parse(await c().kvctl(0, ['node', 'drain', String(nodeId), '-o', 'json'])) as {
      possible: boolean
    }
    expect(drain.possible).toBe(true)
    await eventually('the drained node is emptied and removed', settleMs, async () => {
      const n = (await ring()).find((r) => r.nodeId === nodeId)
      if (n !== undefined && n.replicas > 0)
        throw new Error(`node ${nodeId} still holds ${n.replicas} replicas`)
      await c().kvctl(0, ['node', 'remove', String(nodeId)])
    })
    // Every node learns the map without it within a map refresh.
    await eventually('the map without the removed node', settleMs, async () => {
      if ((await ring()).some((n) => n.nodeId === nodeId)) throw new Error(`node ${nodeId} still listed`)
    })
    // The pod still runs (the scale-down comes next): alive, and not ready, saying why.
    await c().waitProbe(4, 'readiness', 503, readyMs)
    const answer = await eventually('the removed pod says not_member', readyMs, async () => {
      const p = await c().probe(4, 'readiness')
      const body = JSON.parse(p.body) as { ready: boolean; reason?: string }
      if (p.status !== 503 || body.reason !== 'not_member') throw new Error(`${p.status} ${p.body.trim()}`)
      return body
    })
    expect(answer.ready).toBe(false)
    expect((await c().probe(4, 'liveness')).status).toBe(200)
    await c().remove(4)
    for (const o of [0, 1, 2, 3]) {
      expect((await c().probe(o, 'liveness')).status).toBe(200)
      await c().waitProbe(o, 'readiness', 200, readyMs)
      expect(await c().kvctl(o, ['get', 'chart/before-join', '--print-value-only'])).toBe('written by pod 0')
    }
  }, 300_000)

  it("the chart's helm test pod passes against the cluster", async () => {
    const pod = only(render({ ...renderInput, withTests: true }), 'Pod')
    const template = podTemplateOf(pod)
    const container = template.spec.containers[0]
    if (container === undefined) throw new Error('the helm test pod has no container')
    const spec = resolveContainer(template, container.name, pod.metadata.name)
    const [entrypoint, ...rest] = spec.argv
    const network = c().network.name
    const out = await docker(
      [
        'run',
        '--rm',
        '--network',
        network,
        '--label',
        `${chaosLabel}=${c().options.runId}`,
        '--user',
        `${String(template.spec.securityContext?.['runAsUser'])}:${String(template.spec.securityContext?.['runAsGroup'])}`,
        '--read-only',
        ...Object.entries(spec.env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
        '--entrypoint',
        entrypoint!,
        chaosImage,
        ...rest,
      ],
      120_000,
    )
    expect(out).toContain('passed')
  }, 180_000)
})
