/**
 * The foreground load the move and rebalance benches measure a move's cost by: writes of 1 KiB to
 * keys of every shard, 16 in flight, each latency recorded (a failed write too: its time is what a
 * client waited), and the p50/p99 of the samples.
 */
import type { KvClient } from '../../src/client/index.ts'
import { quantile } from './stats.ts'

export interface Foreground {
  readonly samples: number[]
  stop(): Promise<void>
}

export function foreground(client: KvClient, tag: string): Foreground {
  const samples: number[] = []
  const state = { done: false }
  const value = Buffer.alloc(1024, 1)
  let n = 0
  const worker = async (): Promise<void> => {
    while (!state.done) {
      const t0 = performance.now()
      await client.put(`fg/${tag}/${n++ % 4096}`, value, { deadlineMs: 10_000 }).catch(() => undefined)
      samples.push(performance.now() - t0)
    }
  }
  const running = Promise.all(Array.from({ length: 16 }, () => worker()))
  return {
    samples,
    async stop() {
      state.done = true
      await running
    },
  }
}

export function latency(samples: readonly number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b)
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms))
}
