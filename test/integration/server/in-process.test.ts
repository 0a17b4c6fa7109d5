/**
 * The server's own wiring in one process, over loopback gRPC, on a real one-node cluster (the
 * default `--initial-cluster` of this node alone, one shard): request admission (OVERLOADED,
 * drain), scan paging, backpressure and cancellation, and the receipt mapping. Kvd's `openEngine`
 * seam wraps the RocksDB engine so a test can hold the disk (requests then stay in flight) and
 * count what a scan read.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status as Grpc } from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { loadConfig } from '../../../src/common/config.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import { Consistency } from '../../../src/gen/ringkv/v1/kv.ts'
import { Kvd } from '../../../src/server/kvd.ts'
import { openRocksEngine } from '../../../src/storage/index.ts'
import { GatedEngine } from '../helpers/gated-engine.ts'
import { expectFailure, healthCheck, kv, kvClient, trailer } from '../helpers/grpc.ts'

interface Started {
  kvd: Kvd
  engine: GatedEngine
  dir: string
}
const started: Started[] = []

async function startInProcess(limitArgs: string[] = []): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-inproc-'))
  const config = loadConfig({
    // One shard; a 10 ms tick (a lone voter confirms a linearizable read at its next tick).
    flags: {
      data: dir,
      listen: '127.0.0.1:0',
      http: '127.0.0.1:0',
      limit: limitArgs,
      shards: '1',
      tickMs: '10',
    },
    env: {},
  })
  let engine: GatedEngine | undefined
  const kvd = new Kvd(
    { config, version: 'test' },
    {
      clock: new SystemClock(),
      logger: silentLogger,
      openEngine: async (path, logger) =>
        (engine = new GatedEngine(await openRocksEngine({ dir: path }, { logger }))),
    },
  )
  await kvd.start()
  const s = { kvd, engine: engine as GatedEngine, dir }
  // A lone voter leads its shard at once; wait until a write goes through.
  const c = kv(kvdClient(kvd))
  for (let i = 0; i < 200; i++) {
    const ok = await c.get({ key: b('warm-up') }).then(
      () => true,
      () => false,
    )
    if (ok) break
    await new Promise((r) => setTimeout(r, 25))
  }
  started.push(s)
  return s
}

afterEach(async () => {
  for (const s of started.splice(0)) {
    await s.kvd.stop()
    rmSync(s.dir, { recursive: true, force: true })
  }
})

const b = (s: string): Buffer => Buffer.from(s)

describe('server wiring (in process)', () => {
  it('maps requests and receipts both ways', async () => {
    const { kvd } = await startInProcess()
    const c = kv(kvdClient(kvd))
    const put = await c.put({ key: b('a'), value: b('1') })
    expect(put.version).toBeGreaterThan(0)
    expect(put.receipt).toMatchObject({
      nodeId: 1,
      shardId: 0,
      appliedIndex: put.version,
      delivered: Consistency.CONSISTENCY_MAJORITY,
    })
    const got = await c.get({
      key: b('a'),
      options: {
        consistency: Consistency.CONSISTENCY_EVENTUAL,
        maxStalenessMs: 0,
        session: undefined,
        route: undefined,
      },
    })
    expect(got).toMatchObject({ found: true, version: put.version, createVersion: put.version })
    expect(got.value.toString()).toBe('1')
    expect(got.receipt?.delivered).toBe(Consistency.CONSISTENCY_EVENTUAL)
    const cas = await expectFailure(
      c.put({ key: b('a'), value: b('2'), expectedVersion: put.version + 1_000 }),
      Grpc.ABORTED,
      'VERSION_MISMATCH',
    )
    expect(trailer(cas, 'ringkv-current-version')).toBe(String(put.version))
  })

  it('answers OVERLOADED beyond requestsInFlightMax and serves again after', async () => {
    const { kvd, engine } = await startInProcess(['requestsInFlightMax=2'])
    const c = kv(kvdClient(kvd))
    engine.hold()
    const held = [c.put({ key: b('x'), value: b('1') }), c.put({ key: b('y'), value: b('1') })]
    await new Promise((r) => setTimeout(r, 200))
    const err = await expectFailure(c.get({ key: b('x') }), Grpc.RESOURCE_EXHAUSTED, 'OVERLOADED')
    expect(trailer(err, 'ringkv-limit')).toBe('2')
    engine.release()
    await Promise.all(held)
    expect((await c.get({ key: b('x') })).found).toBe(true)
  })

  it('answers OVERLOADED beyond requestsPerConnectionMax on one connection while others are served', async () => {
    const { kvd, engine } = await startInProcess(['requestsPerConnectionMax=2'])
    const greedy = kv(kvdClient(kvd))
    const other = kv(kvdClient(kvd))
    engine.hold()
    const held = [greedy.put({ key: b('x'), value: b('1') }), greedy.put({ key: b('y'), value: b('1') })]
    await new Promise((r) => setTimeout(r, 200))
    const err = await expectFailure(greedy.get({ key: b('x') }), Grpc.RESOURCE_EXHAUSTED, 'OVERLOADED')
    expect(trailer(err, 'ringkv-limit')).toBe('2')
    // Another connection is served meanwhile (an eventual read: the held disk holds the node's
    // Ready loop, which a linearizable read would wait for).
    const eventual = {
      consistency: Consistency.CONSISTENCY_EVENTUAL,
      maxStalenessMs: 0,
      session: undefined,
      route: undefined,
    }
    expect((await other.get({ key: b('z'), options: eventual })).found).toBe(false)
    engine.release()
    await Promise.all(held)
    expect((await greedy.get({ key: b('x') })).found).toBe(true)
  })

  it('drains in-flight requests on stop and then refuses', async () => {
    const s = await startInProcess()
    const c = kv(kvdClient(s.kvd))
    s.engine.hold()
    const held = c.put({ key: b('slow'), value: b('1') })
    await new Promise((r) => setTimeout(r, 100))
    const stopping = s.kvd.stop()
    await new Promise((r) => setTimeout(r, 100))
    expect(s.kvd.isServing).toBe(false)
    s.engine.release()
    expect((await held).version).toBeGreaterThan(0)
    await stopping
  })

  it('cuts calls still running after shutdownDrainMsMax', async () => {
    const s = await startInProcess(['shutdownDrainMsMax=300'])
    const c = kv(kvdClient(s.kvd))
    s.engine.hold() // the disk does not answer
    let cut = false
    const held = c.put({ key: b('stuck'), value: b('1') }).catch((err: { code: number }) => {
      cut = true
      return err.code
    })
    await new Promise((r) => setTimeout(r, 100))
    const stopping = s.kvd.stop()
    // The call is cut after the drain time although the disk still holds its write...
    for (let i = 0; i < 100 && !cut; i++) await new Promise((r) => setTimeout(r, 50))
    expect(cut).toBe(true)
    expect(await held).toBeTypeOf('number')
    // ...and the node stops once the disk answers (the Ready loop ends after its write).
    s.engine.release()
    await stopping
  })

  it('pages a scan, resumes from the cursor and ends with done', async () => {
    const { kvd } = await startInProcess(['scanPageEntriesMax=10'])
    const c = kv(kvdClient(kvd))
    for (let i = 0; i < 35; i++) await c.put({ key: b(`k${i}`), value: b(`v${i}`) })
    await c.put({ key: b('other'), value: b('x') })
    const all = await c.scan({ prefix: b('k') })
    expect(all.map((m) => m.entries.length)).toEqual([10, 10, 10, 5])
    expect(all.map((m) => m.done)).toEqual([false, false, false, true])
    const first = await c.scan({ prefix: b('k'), limit: 12 })
    expect(first.map((m) => m.entries.length)).toEqual([10, 2])
    expect(first.at(-1)?.done).toBe(false)
    const rest = await c.scan({ prefix: b('k'), cursor: first.at(-1)?.cursor ?? Buffer.alloc(0) })
    const keys = [...first, ...rest].flatMap((m) => m.entries.map((e) => e.key.toString()))
    expect(new Set(keys).size).toBe(35)
    expect(rest.at(-1)?.done).toBe(true)
  })

  it('keeps serving when a scan client cancels mid-stream (backpressure + cancel)', async () => {
    const { kvd, engine } = await startInProcess(['scanPageEntriesMax=1'])
    const client = kvdClient(kvd)
    const c = kv(client)
    const big = Buffer.alloc(64 * 1024, 1)
    for (let i = 0; i < 200; i++) await c.put({ key: b(`big${i}`), value: big })
    const stream = client.scan({ prefix: b('big'), cursor: Buffer.alloc(0), limit: 0, options: undefined })
    const received = await new Promise<number>((resolve) => {
      let n = 0
      stream.on('data', () => {
        n++
        if (n === 3) {
          stream.pause() // stop reading: the server must wait for drain, not buffer 13 MB
          setTimeout(() => {
            stream.cancel()
            resolve(n)
          }, 300)
        }
      })
      stream.on('error', () => {})
    })
    expect(received).toBe(3)
    // The server stopped pulling from the replica when the client stopped reading.
    expect(engine.dataEntriesRead).toBeLessThan(150)
    await new Promise((r) => setTimeout(r, 200))
    expect((await c.get({ key: b('big0') })).found).toBe(true)
  })

  it('reports SERVING health for the server and for KvService', async () => {
    const s = await startInProcess()
    expect(await healthCheck(s.kvd.addresses.grpc, '')).toBe('SERVING')
    expect(await healthCheck(s.kvd.addresses.grpc, 'ringkv.v1.KvService')).toBe('SERVING')
  })
})

function kvdClient(kvd: Kvd) {
  return kvClient(kvd.addresses.grpc)
}
