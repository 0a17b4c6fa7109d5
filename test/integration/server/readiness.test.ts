/**
 * `/readyz` tells the truth on real processes: a node cut off from its peers (`kvctl fault
 * --isolate`, through the same admin call) answers 503 with a reason while `/healthz` stays 200, and
 * 200 again after the heal; a node whose peers are all dead (the cluster lost quorum) is not ready
 * either, stays alive, and is ready again once they are back, with no restart of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { injectFault } from '../../../src/client/admin-fault.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { freePort, startKvd } from '../helpers/kvd.ts'

interface Probe {
  readonly status: number
  readonly body: {
    readonly ready: boolean
    readonly reason?: string
    readonly detail?: string
    readonly safeMode?: string
  }
}

async function probe(http: string, path: '/readyz' | '/healthz' = '/readyz'): Promise<Probe> {
  const response = await fetch(`http://${http}${path}`, { signal: AbortSignal.timeout(2_000) })
  const text = await response.text()
  return { status: response.status, body: path === '/readyz' ? JSON.parse(text) : { ready: true } }
}

/** The node's /readyz once it says `status` (polled; readiness may take an election to change). */
function readyzBecomes(cluster: Cluster, nodeId: number, status: number, ms = 30_000): Promise<Probe> {
  return eventually(
    `node ${nodeId} /readyz ${status}`,
    async () => {
      const p = await probe(cluster.node(nodeId).http)
      return p.status === status ? p : undefined
    },
    ms,
  )
}

describe('/readyz', () => {
  let cluster: Cluster

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, shards: 4, extraArgs: ['--allow-fault-injection'] })
  }, 90_000)

  afterAll(async () => {
    const crashed = await cluster?.stop()
    expect(crashed).toEqual([])
  })

  it('answers 200 with a JSON body on every node of a healthy cluster', async () => {
    for (const node of cluster.nodes) {
      const p = await readyzBecomes(cluster, node.nodeId, 200)
      expect(p.body).toEqual({ ready: true })
    }
  })

  it('an isolated node answers 503 with a reason while alive, and 200 after the heal', async () => {
    const isolated = cluster.node(3)
    await injectFault(isolated.grpc, { peers: [1, 2], drop: true })
    try {
      const cut = await readyzBecomes(cluster, 3, 503)
      expect(['no_leader', 'meta_unreachable']).toContain(cut.body.reason)
      expect(cut.body.ready).toBe(false)
      expect(cut.body.detail).toEqual(expect.any(String))
      expect((await probe(isolated.http, '/healthz')).status).toBe(200)
      // The majority side keeps (or regains, after an election) its leaders and its meta shard.
      await readyzBecomes(cluster, 1, 200)
      await readyzBecomes(cluster, 2, 200)
    } finally {
      await injectFault(isolated.grpc, { clear: true })
    }
    expect((await readyzBecomes(cluster, 3, 200)).body).toEqual({ ready: true })
  }, 90_000)

  it('a cluster that lost quorum is unready, not dead, and ready again once its peers are back', async () => {
    const survivor = cluster.node(3)
    for (const id of [1, 2]) cluster.node(id).kill('SIGKILL')
    await Promise.all([1, 2].map((id) => cluster.node(id).exited()))
    const lost = await readyzBecomes(cluster, 3, 503)
    expect(['no_leader', 'meta_unreachable']).toContain(lost.body.reason)
    expect((await probe(survivor.http, '/healthz')).status).toBe(200)
    // Both at once: each one waits for its own /readyz, which needs the other (or node 3).
    await Promise.all([1, 2].map((id) => cluster.node(id).restart()))
    // Ready again; the map it holds may still show its peers unreachable a moment (safe mode noted).
    expect((await readyzBecomes(cluster, 3, 200)).body).toMatchObject({ ready: true })
  }, 120_000)
})

describe('/readyz and safe mode', () => {
  it('a lone node with 3 replicas per shard is ready and says the cluster is in safe mode', async () => {
    const kvd = await startKvd({ port: await freePort() })
    try {
      const answer = await eventually(
        'the lone node ready',
        async () => {
          const p = await probe(kvd.httpAddress)
          return p.status === 200 ? p : undefined
        },
        30_000,
      )
      expect(answer.body.ready).toBe(true)
      expect(answer.body.safeMode).toMatch(/^1 active node cannot hold 3 replicas of a shard$/)
    } finally {
      await kvd.stop()
    }
  }, 60_000)
})
