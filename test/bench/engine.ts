/**
 * A tiny raw-engine bench: RocksEngine synced puts and point gets, without gRPC or the shard, so
 * the single-node bench can tell storage cost from everything above it.
 *
 * @example
 * const r = await benchEngine({ dir: '/tmp/bench', ops: 2000, valueBytes: 100, concurrency: 16 })
 * console.log(r) // { putsPerSec, getsPerSec, putMsP50, putMsP99, ... }
 */
import { mkdirSync } from 'node:fs'
import { silentLogger } from '../../src/common/index.ts'
import { openRocksEngine } from '../../src/storage/index.ts'

export interface EngineBenchOptions {
  /** A fresh directory (created if missing); the caller removes it. */
  readonly dir: string
  readonly ops: number
  readonly valueBytes: number
  /** Writes (and reads) in flight at once. */
  readonly concurrency: number
}

export interface EngineBenchResult {
  readonly ops: number
  readonly putsPerSec: number
  readonly getsPerSec: number
  readonly putMsP50: number
  readonly putMsP99: number
  readonly getMsP50: number
  readonly getMsP99: number
}

const key = (i: number): Uint8Array => new TextEncoder().encode(`bench:${String(i).padStart(10, '0')}`)

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
}

/** Runs `ops` synced single-key puts, then `ops` gets, each with `concurrency` in flight. */
export async function benchEngine(options: EngineBenchOptions): Promise<EngineBenchResult> {
  mkdirSync(options.dir, { recursive: true })
  const engine = await openRocksEngine({ dir: options.dir }, { logger: silentLogger })
  const value = new Uint8Array(options.valueBytes).fill(0x61)
  const run = async (
    op: (i: number) => Promise<unknown>,
  ): Promise<{ perSec: number; latencies: number[] }> => {
    const latencies: number[] = []
    let next = 0
    const start = performance.now()
    const worker = async (): Promise<void> => {
      while (next < options.ops) {
        const i = next++
        const t = performance.now()
        await op(i)
        latencies.push(performance.now() - t)
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker))
    const seconds = (performance.now() - start) / 1000
    latencies.sort((a, b) => a - b)
    return { perSec: options.ops / seconds, latencies }
  }
  try {
    const puts = await run((i) => engine.write(engine.batch().put(key(i), value), { sync: true }))
    const gets = await run((i) => engine.get(key(i)))
    return {
      ops: options.ops,
      putsPerSec: Math.round(puts.perSec),
      getsPerSec: Math.round(gets.perSec),
      putMsP50: quantile(puts.latencies, 0.5),
      putMsP99: quantile(puts.latencies, 0.99),
      getMsP50: quantile(gets.latencies, 0.5),
      getMsP99: quantile(gets.latencies, 0.99),
    }
  } finally {
    await engine.close()
  }
}
