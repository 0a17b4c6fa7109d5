/**
 * Memory amplification by hostile clients, on a real kvd process (its RSS read from /proc):
 * - a BatchGet of about 10 KB naming a 1 MiB value 1,024 times (it took a node from 106 MB to
 *   4.1 GB): OVERLOADED with the limit, after reading the value once;
 * - 150 scans of 1 MiB values whose readers never read (4.2 GB): each stream waits for its reader
 *   with a bounded number of bytes unsent, streams beyond the per-connection count are refused;
 * - 1,000 scans paused and then cancelled (7.5 GB and a 30 s stall): their memory is given back.
 * Meanwhile and afterwards, other clients are served. The RSS bound is generous on purpose: it
 * catches amplification (gigabytes), not allocator noise.
 */
import { readFileSync } from 'node:fs'
import { status as Grpc, type ClientReadableStream } from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../../src/common/limits.ts'
import type { ScanResponse } from '../../../src/gen/ringkv/v1/kv.ts'
import { expectFailure, kv, kvClient, trailer } from '../helpers/grpc.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'

let node: KvdHandle
const rssBoundBytes = 1024 * 1024 * 1024
const mib = Buffer.alloc(1024 * 1024, 7)

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024
}

beforeAll(async () => {
  node = await startKvd()
  const c = kv(kvClient(node.address), 30_000)
  for (let i = 0; i < 24; i++)
    await c.put({ key: Buffer.from(`big${String(i).padStart(2, '0')}`), value: mib })
  await c.put({ key: Buffer.from('small'), value: Buffer.from('ok') })
}, 120_000)
afterAll(async () => {
  await node?.stop()
})

const served = async (): Promise<void> => {
  const got = await kv(kvClient(node.address), 10_000).get({ key: Buffer.from('small') })
  expect(got.value.toString()).toBe('ok')
}

describe('memory amplification', () => {
  it('a BatchGet naming one large value 1,024 times is OVERLOADED with the limit, and RSS stays bounded', async () => {
    const before = rssBytes(node.pid)
    const c = kv(kvClient(node.address), 30_000)
    const keys = Array.from({ length: limits.batchOpsMax }, () => Buffer.from('big00'))
    const errors = await Promise.all(
      Array.from({ length: 8 }, () =>
        expectFailure(c.batchGet({ keys }), Grpc.RESOURCE_EXHAUSTED, 'OVERLOADED'),
      ),
    )
    for (const err of errors) expect(trailer(err, 'ringkv-limit')).toBe(String(limits.answerBytesMax))
    await served()
    // Values that fit one answer are still served, duplicates included.
    const fits = await c.batchGet({
      keys: [Buffer.from('big00'), Buffer.from('big00'), Buffer.from('small')],
    })
    expect(fits.results.map((r) => r.value.length)).toEqual([mib.length, mib.length, 2])
    expect(rssBytes(node.pid) - before).toBeLessThan(rssBoundBytes)
  }, 60_000)

  it('a Multi naming one large value 1,024 times answers the first and refuses the rest OVERLOADED', async () => {
    const before = rssBytes(node.pid)
    const c = kv(kvClient(node.address), 30_000)
    const ops = Array.from({ length: limits.batchOpsMax }, () => ({
      op: { $case: 'get' as const, get: { key: Buffer.from('big00'), options: undefined } },
    }))
    const answers = await Promise.all(Array.from({ length: 8 }, () => c.multi({ ops })))
    for (const res of answers) {
      const kept = res.results.filter((r) => r.result?.$case === 'get')
      const full = res.results.filter(
        (r) => r.result?.$case === 'error' && r.result.error.code === 'OVERLOADED',
      )
      expect(kept.length).toBeGreaterThanOrEqual(1)
      expect(kept.length).toBeLessThanOrEqual(Math.ceil(limits.answerBytesMax / mib.length))
      expect(kept.length + full.length).toBe(ops.length)
    }
    await served()
    expect(rssBytes(node.pid) - before).toBeLessThan(rssBoundBytes)
  }, 60_000)

  it('scans whose readers never read wait for them: RSS stays bounded and others are served', async () => {
    const before = rssBytes(node.pid)
    const streams: ClientReadableStream<ScanResponse>[] = []
    const refused: number[] = []
    // Three connections of 50 streams each (a connection holds at most streamsPerConnectionMax).
    for (let conn = 0; conn < 3; conn++) {
      const client = kvClient(node.address)
      for (let i = 0; i < 50; i++) {
        const s = client.scan(
          { prefix: Buffer.from('big'), cursor: Buffer.alloc(0), limit: 0, options: undefined },
          { deadline: Date.now() + 60_000 },
        )
        s.on('error', (err: { code: number }) => refused.push(err.code))
        s.pause()
        streams.push(s)
      }
    }
    await new Promise((r) => setTimeout(r, 3_000))
    await served()
    const during = rssBytes(node.pid)
    expect(during - before).toBeLessThan(rssBoundBytes)
    for (const s of streams) s.cancel()
    await served()
    expect(refused.filter((code) => code !== Grpc.CANCELLED)).toEqual([])
  }, 60_000)

  it('one connection cannot open more streams than allowed', async () => {
    const client = kvClient(node.address)
    const streams = Array.from({ length: limits.streamsPerConnectionMax + 1 }, () => {
      const s = client.scan(
        { prefix: Buffer.from('big'), cursor: Buffer.alloc(0), limit: 0, options: undefined },
        { deadline: Date.now() + 30_000 },
      )
      s.pause()
      return s
    })
    const codes = await Promise.all(
      streams.map(
        (s) =>
          new Promise<number | null>((resolve) => {
            s.on('error', (err: { code: number }) => resolve(err.code))
            setTimeout(() => resolve(null), 3_000)
          }),
      ),
    )
    expect(codes.filter((c) => c === Grpc.RESOURCE_EXHAUSTED).length).toBeGreaterThanOrEqual(1)
    for (const s of streams) s.cancel()
    await served()
  }, 60_000)

  it('1,000 scans paused and then cancelled give their memory back and stall no one', async () => {
    const before = rssBytes(node.pid)
    for (let round = 0; round < 20; round++) {
      const client = kvClient(node.address)
      const streams = Array.from({ length: 50 }, () => {
        const s = client.scan(
          { prefix: Buffer.from('big'), cursor: Buffer.alloc(0), limit: 0, options: undefined },
          { deadline: Date.now() + 60_000 },
        )
        s.on('error', () => {})
        s.pause()
        return s
      })
      await new Promise((r) => setTimeout(r, 50))
      for (const s of streams) s.cancel()
      client.close()
    }
    await served()
    expect(rssBytes(node.pid) - before).toBeLessThan(rssBoundBytes)
    // A whole scan still completes.
    const all = await kv(kvClient(node.address), 30_000).scan({ prefix: Buffer.from('big') })
    expect(all.flatMap((m) => m.entries).length).toBe(24)
  }, 120_000)
})
