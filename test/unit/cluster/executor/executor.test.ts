/**
 * The executor's poll against the real MetaStore and Mover on a meta replica: an operator's pause
 * that lands while a poll starts its moves (after the poll wrote the job listing them, before the
 * mover records them) is obeyed: nothing starts after the pause was acknowledged, and a resume
 * starts the move.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { NodeId, silentLogger } from '../../../../src/common/index.ts'
import { Executor } from '../../../../src/cluster/executor/index.ts'
import {
  MetaStore,
  Mover,
  type LocalMeta,
  type MoveRequest,
  type ReplicaRemote,
} from '../../../../src/cluster/index.ts'
import type { Replica } from '../../../../src/shard/index.ts'
import { ManualClock, handMap, node, openMetaReplica, testHasher } from '../fixtures.ts'

const hasher = await testHasher()
const signal = (): AbortSignal => new AbortController().signal

/** No move runs in these tests (the mover is never polled): any call to a replica is a bug. */
const noRemote = new Proxy({} as ReplicaRemote, {
  get: (_, name) => () => {
    throw new Error(`unexpected replica call ${String(name)}`)
  },
})

/** A mover that lets `beforeStart` run between the poll's job write and each start (n: 0, 1, ...). */
class SteeredMover extends Mover {
  beforeStart: ((n: number) => Promise<unknown>) | undefined
  private starts = 0
  override async startJobMove(
    req: MoveRequest,
    job: Parameters<Mover['startJobMove']>[1],
    s: AbortSignal,
  ): Promise<number> {
    await this.beforeStart?.(this.starts++)
    return await super.startJobMove(req, job, s)
  }
}

const opened: Replica[] = []
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close()
})

async function rig(inPerNodeMax = 1): Promise<{ executor: Executor; mover: SteeredMover; store: MetaStore }> {
  const replica = await openMetaReplica()
  opened.push(replica)
  const clock = new ManualClock()
  // Node 1 drains: shard 0 (and the meta shard) plan a move to node 4.
  const map = handMap([node(1, 'draining'), node(2), node(3), node(4)], [[1, 2, 3]], { hints: [2] })
  const store = new MetaStore(replica)
  expect(await store.bootstrap(map)).toBe(true)
  const localMeta = (): LocalMeta => ({ replica, isLeader: true, leaderId: NodeId(2) })
  const mover = new SteeredMover(
    { nodeId: NodeId(2), pollMs: 100, callMs: 5000, stallMsMax: 60_000, concurrentMax: 2 },
    { clock, logger: silentLogger, remote: noRemote, localMeta, map: () => map },
  )
  const executor = new Executor(
    {
      pollMs: 100,
      callMs: 5000,
      autoRebalance: true,
      throttles: { movesMax: 4, repairSlots: 1, inPerNodeMax, outPerNodeMax: 2 },
      listedMax: 16,
    },
    { clock, logger: silentLogger, hasher, localMeta, mover },
  )
  return { executor, mover, store }
}

describe('cluster/Executor poll: steering while moves start', () => {
  it('a pause acknowledged after the poll wrote its job and before the start: nothing starts; a resume starts it', async () => {
    const { executor, mover, store } = await rig()
    let pausedBy: number | undefined
    mover.beforeStart = async () => {
      mover.beforeStart = undefined
      pausedBy = (await executor.steer('pause', signal())).id
    }
    await executor.runOnce()
    expect(pausedBy).toBe(1)
    expect(await store.moves()).toEqual([])
    const paused = (await store.job())!.job
    expect(paused).toMatchObject({ id: 1, state: 'paused', started: 0 })

    // Still paused: the next poll starts nothing either.
    await executor.runOnce()
    expect(await store.moves()).toEqual([])
    expect((await store.job())!.job).toMatchObject({ state: 'paused', started: 0 })

    await executor.steer('resume', signal())
    await executor.runOnce()
    const moves = await store.moves()
    expect(moves.map(({ move }) => [move.from, move.to])).toEqual([[1, 4]])
    expect((await store.job())!.job).toMatchObject({ id: 1, state: 'running', started: 1 })
  })

  it('a cancel acknowledged in the same window: nothing starts and the job ends cancelled', async () => {
    const { executor, mover, store } = await rig()
    mover.beforeStart = async () => {
      mover.beforeStart = undefined
      await executor.steer('cancel', signal())
    }
    await executor.runOnce()
    await executor.runOnce()
    expect(await store.moves()).toEqual([])
    expect((await store.job())!.job).toMatchObject({ id: 1, state: 'cancelled', started: 0 })
  })

  it('a pause between two starts of one poll: the first is counted by the job as it is recorded, the second never starts', async () => {
    // Two moves into node 4 at once: shard 0's and the meta shard's (both leave draining node 1).
    const { executor, mover, store } = await rig(2)
    let pausedStarted: number | undefined
    mover.beforeStart = async (n) => {
      if (n !== 1) return
      pausedStarted = (await executor.steer('pause', signal())).started
    }
    await executor.runOnce()
    expect(pausedStarted).toBe(1)
    expect((await store.moves()).length).toBe(1)
    await executor.runOnce()
    expect((await store.moves()).length).toBe(1)
    expect((await store.job())!.job).toMatchObject({ state: 'paused', started: 1 })
  })

  it('no steering: the poll starts the move and counts it in one job write after the start', async () => {
    const { executor, store } = await rig()
    await executor.runOnce()
    expect((await store.moves()).length).toBe(1)
    expect((await store.job())!.job).toMatchObject({ id: 1, state: 'running', started: 1 })
  })
})
