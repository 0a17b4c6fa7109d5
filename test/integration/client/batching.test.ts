/**
 * SDK call batching against a real 3-node cluster (8 shards): concurrent calls travel as Multi
 * calls to their shards' leaders and every op lands; and what one node's Multi answers op by op.
 */
import { InterceptingCall, Metadata, status, type ChannelOptions, type Interceptor } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { limits } from '../../../src/common/limits.ts'
import {
  Consistency,
  type MultiOp,
  type MultiRequest,
  type PutRequest,
} from '../../../src/gen/ringkv/v1/kv.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { enc, eventually, nodeKv } from '../helpers/cluster-ops.ts'
import { expectFailure, trailer } from '../helpers/grpc.ts'

let cluster: Cluster
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 8 })
}, 90_000)
afterAll(async () => {
  await cluster?.stop()
})

/** `ringkv_requests_total` summed over every node, by `method/code` (e.g. `Multi.Put/OK`). */
async function requestCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const node of cluster.nodes) {
    const text = await (await fetch(`http://${node.http}/metrics`)).text()
    const line = /^ringkv_requests_total\{method="([^"]+)",consistency="[^"]*",code="([^"]+)"\} (\d+)/gm
    for (const [, method, code, n] of text.matchAll(line)) {
      const key = `${method}/${code}`
      counts.set(key, (counts.get(key) ?? 0) + Number(n))
    }
    // A forwarded op is counted on both nodes: by the one that passed it on and the one that served
    // it. (Session registrations, one per client and shard, are forwarded like writes; not ops.)
    for (const [, method, n] of text.matchAll(/^ringkv_forwarded_requests_total\{method="([^"]+)"\} (\d+)/gm))
      if (method !== 'registerSession') counts.set('forwarded', (counts.get('forwarded') ?? 0) + Number(n))
  }
  return counts
}

const delta = (before: Map<string, number>, after: Map<string, number>, key: string): number =>
  (after.get(key) ?? 0) - (before.get(key) ?? 0)

const put = (key: string, value: string, expectedVersion?: number): MultiOp => ({
  op: {
    $case: 'put',
    put: {
      key: enc(key),
      value: enc(value),
      options: undefined,
      ...(expectedVersion === undefined ? {} : { expectedVersion }),
    },
  },
})

/**
 * A grpc-js client interceptor that lets the first Multi call carrying puts reach its node and be
 * applied, then drops its answer (replacing it by UNAVAILABLE, as a connection reset looks). It
 * records the exactly-once tag of every put attempt, alone or inside a Multi.
 */
function dropFirstMultiAnswer(): {
  readonly interceptor: Interceptor
  readonly attempts: { seq: number; clientId: string }[]
  readonly dropped: { seq: number; clientId: string }[]
} {
  const attempts: { seq: number; clientId: string }[] = []
  const dropped: { seq: number; clientId: string }[] = []
  const interceptor: Interceptor = (options, nextCall) => {
    const path = options.method_definition.path
    const isMulti = path.endsWith('/Multi')
    if (!isMulti && !path.endsWith('/Put')) return new InterceptingCall(nextCall(options))
    let dropThis = false
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        next(metadata, {
          onReceiveStatus(received, nextStatus) {
            if (dropThis && received.code === status.OK)
              nextStatus({
                code: status.UNAVAILABLE,
                details: 'answer dropped (test)',
                metadata: new Metadata(),
              })
            else nextStatus(received)
          },
        })
      },
      sendMessage(message, next) {
        const puts = isMulti
          ? (message as MultiRequest).ops.flatMap(({ op }) => (op?.$case === 'put' ? [op.put] : []))
          : [message as PutRequest]
        const tags = puts.map((p) => ({ seq: p.options?.seq ?? 0, clientId: p.options?.clientId ?? '' }))
        attempts.push(...tags)
        if (isMulti && dropped.length === 0 && tags.length > 1) {
          dropped.push(...tags)
          dropThis = true
        }
        next(message)
      },
    })
  }
  return { interceptor, attempts, dropped }
}

describe('client/batching on a 3-node cluster', () => {
  it('lands 256 concurrent puts through the SDK as Multi calls, and reads every one back', async () => {
    const client = new KvClient({ endpoints: cluster.endpoints })
    const unbatched = new KvClient({ endpoints: cluster.endpoints, batching: { enabled: false } })
    try {
      await client.refreshRouting()
      const keys = Array.from({ length: 256 }, (_, i) => `batched/${i}`)
      const before = await requestCounts()
      const written = await Promise.all(keys.map((k) => client.put(k, `value of ${k}`)))
      const after = await requestCounts()
      // Each put landed once, as an op of a Multi call (one redirected by a leader change may
      // have gone on alone, as a plain Put); one sent to a node whose map was behind was passed on
      // (forwarded) and counted there too.
      const batched = delta(before, after, 'Multi.Put/OK')
      expect(batched + delta(before, after, 'Put/OK') - delta(before, after, 'forwarded')).toBe(256)
      expect(batched).toBeGreaterThanOrEqual(128)
      // Far fewer calls than puts crossed the wire.
      const calls = delta(before, after, 'Multi/OK')
      expect(calls).toBeGreaterThanOrEqual(1)
      expect(calls).toBeLessThan(32)
      const table = client.routingTable()
      // Each answer is its own: the receipt of the key's shard, from that shard's leader.
      for (const w of written) {
        const leader = table?.shards.find((s) => s.shardId === w.receipt.shardId)?.leaderId
        expect(w.receipt).toMatchObject({ nodeId: leader, delivered: 'majority' })
        expect(w.version).toBe(w.receipt.appliedIndex)
      }
      // Read back: batched linearizable gets, and one unary get per key from another client.
      const got = await Promise.all(keys.map((k) => client.get(k)))
      expect(got.map((g) => g.valueText())).toEqual(keys.map((k) => `value of ${k}`))
      expect(got.map((g) => g.version)).toEqual(written.map((w) => w.version))
      for (const [i, k] of keys.entries()) {
        const alone = await unbatched.get(k)
        expect(alone.valueText()).toBe(`value of ${k}`)
        expect(alone.version).toBe(written[i]?.version)
      }
    } finally {
      client.close()
      unbatched.close()
    }
  })

  it('makes the puts of one Multi call to one shard ONE log entry, and answers each of them', async () => {
    const client = new KvClient({ endpoints: cluster.endpoints })
    try {
      await client.refreshRouting()
      // Keys of one shard: write a few (this also registers the client's session on each shard).
      const probe = Array.from({ length: 64 }, (_, i) => `grouped/probe/${i}`)
      const probed = await Promise.all(probe.map((k) => client.put(k, 'p')))
      const shardId = probed[0]!.receipt.shardId
      const keys = probe.filter((_, i) => probed[i]!.receipt.shardId === shardId)
      expect(keys.length).toBeGreaterThanOrEqual(2)
      const appliedOnLeader = async (): Promise<{ leader: number; applied: number }> => {
        await client.refreshRouting()
        const leader = client.routingTable()?.shards.find((s) => s.shardId === shardId)?.leaderId ?? 0
        const node = cluster.node(leader)
        const status = await client.status({ endpoint: node.grpc })
        const shard = status.node?.shards.find((s) => s.shardId === shardId)
        return { leader, applied: shard?.appliedIndex ?? -1 }
      }
      // A leader change between the two status reads adds its own entry: then measure again.
      let lastDelta = -1
      for (let attempt = 0; attempt < 5 && lastDelta !== 1; attempt++) {
        const before = await appliedOnLeader()
        const written = await Promise.all(keys.map((k) => client.put(k, `v${attempt} of ${k}`)))
        const after = await appliedOnLeader()
        // Every put was answered on its own, by the shard's leader, each with its own result.
        for (const w of written) expect(w.receipt).toMatchObject({ shardId, delivered: 'majority' })
        const versions = new Set(written.map((w) => w.version))
        if (after.leader === before.leader) lastDelta = after.applied - before.applied
        if (lastDelta === 1) {
          // One entry: every put has its index as version, and the applied index moved by one.
          expect([...versions]).toEqual([after.applied])
        }
        const got = await Promise.all(keys.map((k) => client.get(k)))
        expect(got.map((g) => g.valueText())).toEqual(keys.map((k) => `v${attempt} of ${k}`))
        expect(got.map((g) => g.version)).toEqual(written.map((w) => w.version))
      }
      expect(lastDelta).toBe(1)
    } finally {
      client.close()
    }
  })

  it('retries every write of a Multi whose answer was lost with its own tag, and applies each once', async () => {
    const lossy = dropFirstMultiAnswer()
    const client = new KvClient({
      endpoints: cluster.endpoints,
      retry: { backoffBaseMs: 5, backoffMaxMs: 20 },
      channelOptions: { interceptors: [lossy.interceptor] } as ChannelOptions,
    })
    try {
      await client.refreshRouting()
      const n = 64
      const keys = Array.from({ length: n }, (_, i) => `lost/${i}`)
      const results = await Promise.all(keys.map((k) => client.put(k, `v of ${k}`)))
      // A whole Multi of writes was applied and its answer lost; each of its writes went again,
      // with the same client id and seq (and maybe a redirect on the way).
      expect(lossy.dropped.length).toBeGreaterThan(1)
      for (const tag of lossy.dropped) {
        const again = lossy.attempts.filter((a) => a.seq === tag.seq)
        expect(again.length).toBeGreaterThanOrEqual(2)
        expect(new Set(again.map((a) => a.clientId))).toEqual(new Set([client.clientId]))
      }
      expect(new Set(lossy.attempts.map((a) => a.seq)).size).toBe(n)
      // Exactly once: each key was written once (a second apply would have raised its version
      // above its createVersion, checked below). Writes of one shard may share a version: the
      // leader puts one client's writes of a loop turn in one entry.
      const got = await Promise.all(keys.map((k) => client.get(k)))
      got.forEach((g, i) => {
        expect(g).toMatchObject({
          found: true,
          version: results[i]?.version,
          createVersion: results[i]?.version,
        })
        expect(g.valueText()).toBe(`v of ${keys[i]}`)
      })
    } finally {
      client.close()
    }
  })

  it('answers each op of one Multi on its own: results, CAS mismatch, an op passed on to its leader, bad ops', async () => {
    const client = new KvClient({ endpoints: cluster.endpoints })
    try {
      await client.refreshRouting()
      // Keys seeded through the SDK: the receipts say which node leads their shards. Leadership
      // may still move just after start (leader balancing): a round whose leader moved between
      // the seeding and the Multi runs again on fresh keys.
      let round = 0
      const outcome = await eventually('a Multi to a node that still leads', async () => {
        round += 1
        const seed = async (i: number): Promise<{ key: string; leader: number; version: number }> => {
          const key = `raw/${round}/${i}`
          const { version, receipt } = await client.put(key, 'seed')
          return { key, leader: receipt.nodeId, version }
        }
        const local = await seed(0)
        const asked = local.leader
        let other: { key: string; leader: number } | undefined
        let sibling: { key: string } | undefined
        for (let i = 1; i < 64 && (other === undefined || sibling === undefined); i++) {
          const s = await seed(i)
          if (s.leader === asked) sibling ??= s
          else other ??= s
        }
        if (other === undefined || sibling === undefined) return undefined
        const eventual = {
          consistency: Consistency.CONSISTENCY_EVENTUAL,
          maxStalenessMs: 0,
          session: undefined,
          route: undefined,
        }
        const res = await nodeKv(cluster, asked).multi({
          ops: [
            put(local.key, 'one'),
            { op: { $case: 'get', get: { key: enc(local.key), options: eventual } } },
            put(local.key, 'stale', local.version),
            put(other.key, 'elsewhere'),
            put('', 'empty key'),
            { op: undefined },
            { op: { $case: 'delete', delete: { key: enc(sibling.key), options: undefined } } },
          ],
        })
        const first = res.results[0]?.result
        if (first?.$case === 'error' && first.error.code === 'NOT_LEADER') return undefined
        return { res, asked, local, other }
      })
      const { res, asked, local, other } = outcome
      const [ok, read, cas, redirected, empty, none, deleted] = res.results.map((r) => r.result)
      expect(res.results).toHaveLength(7)
      expect(ok).toMatchObject({
        $case: 'put',
        put: { receipt: { nodeId: asked, delivered: Consistency.CONSISTENCY_MAJORITY } },
      })
      expect(read?.$case).toBe('get')
      // Proposed in op order: the put went first, so the compare-and-set met its new version.
      expect(cas).toMatchObject({ $case: 'error', error: { code: 'VERSION_MISMATCH', status: 10 } })
      // The op of another leader's shard: passed on to its leader, whose receipt names it (the one
      // the seeding saw, unless leadership moved since).
      expect(redirected?.$case).toBe('put')
      const servedBy = redirected?.$case === 'put' ? redirected.put.receipt?.nodeId : undefined
      expect(cluster.nodes.map((n) => n.nodeId)).toContain(servedBy)
      expect(other.leader).not.toBe(asked)
      expect(empty).toMatchObject({ $case: 'error', error: { code: 'INVALID_ARGUMENT', field: 'key' } })
      expect(none).toMatchObject({ $case: 'error', error: { code: 'INVALID_ARGUMENT', field: 'ops[5]' } })
      expect(deleted).toMatchObject({ $case: 'delete', delete: { deleted: true } })
      expect((await client.get(local.key)).valueText()).toBe('one')
      expect((await client.get(other.key)).valueText()).toBe('elsewhere')
    } finally {
      client.close()
    }
  })

  it('answers OVERLOADED for gets past one frame of values, and the SDK asks for them again', async () => {
    const client = new KvClient({
      endpoints: cluster.endpoints,
      retry: { backoffBaseMs: 5, backoffMaxMs: 20 },
    })
    try {
      // Five values of valueBytesMax: together above one gRPC frame.
      const big = (i: number): Uint8Array => new Uint8Array(limits.valueBytesMax).fill(0x30 + i)
      const keys = Array.from({ length: 5 }, (_, i) => `big/${i}`)
      for (const [i, key] of keys.entries()) await client.put(key, big(i))
      // Read on node 1 at session level (any replica, once it has applied the writes).
      const options = {
        consistency: Consistency.CONSISTENCY_SESSION,
        maxStalenessMs: 0,
        session: { appliedIndexByShard: { ...client.sessionToken() } },
        route: undefined,
      }
      const get = (key: string): MultiOp => ({ op: { $case: 'get', get: { key: enc(key), options } } })
      const res = await nodeKv(cluster, 1, 20_000).multi({ ops: keys.map(get) })
      const kinds = res.results.map((r) =>
        r.result?.$case === 'error' ? r.result.error.code : r.result?.$case,
      )
      expect(kinds).toEqual(['get', 'get', 'get', 'OVERLOADED', 'OVERLOADED'])
      // Through the SDK: the same five gets at once all come back, whole.
      const got = await Promise.all(keys.map((k) => client.get(k)))
      // (Buffer.equals: a deep toEqual of megabyte arrays takes seconds.)
      got.forEach((g, i) => expect(Buffer.from(g.value ?? []).equals(big(i))).toBe(true))
    } finally {
      client.close()
    }
  })

  it('refuses a Multi above batchOpsMax as a whole, naming the limit', async () => {
    const ops = Array.from({ length: limits.batchOpsMax + 1 }, (_, i) => put(`over/${i}`, 'v'))
    const err = await expectFailure(nodeKv(cluster, 1).multi({ ops }), 3, 'INVALID_ARGUMENT')
    expect(trailer(err, 'ringkv-field')).toBe('ops')
    expect(trailer(err, 'ringkv-limit')).toBe(String(limits.batchOpsMax))
  })
})
