import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, KvError, NodeId, ShardId } from '../../../src/common/index.ts'
import {
  initialClusterMap,
  metaShardId,
  metaTxnAttemptsMax,
  MetaStore,
  type ClusterMap,
  type MoveRecord,
} from '../../../src/cluster/index.ts'
import { steer, type JobRecord } from '../../../src/cluster/executor/index.ts'
import type { BatchOp, Replica } from '../../../src/shard/index.ts'
import { handMap, initialNodes, kvError, node, openMetaReplica, spec, testHasher } from './fixtures.ts'

const hasher = await testHasher()
/** Nodes 1..3; shards on all three (replicaCount 3); meta on 1..3. */
const initial = initialClusterMap(spec(initialNodes(3), { shardCount: 8 }), hasher)

const opened: Replica[] = []
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close()
})

async function freshStore(): Promise<{ store: MetaStore; replica: Replica }> {
  const replica = await openMetaReplica()
  opened.push(replica)
  return { store: new MetaStore(replica), replica }
}

async function bootstrapped(map: ClusterMap = initial): Promise<{ store: MetaStore; replica: Replica }> {
  const s = await freshStore()
  expect(await s.store.bootstrap(map)).toBe(true)
  return s
}

function expectSameMap(a: ClusterMap | undefined, b: ClusterMap): void {
  expect(a).toBeDefined()
  expect(a!.cluster).toEqual(b.cluster)
  expect([...a!.nodes.values()]).toEqual([...b.nodes.values()])
  expect(a!.shards).toEqual(b.shards)
  expect(a!.meta).toEqual(b.meta)
}

/**
 * A replica that, when armed, runs `sneak` (against the inner replica) just before passing on the
 * next `times` batches that match `when`: a concurrent change landing between a transaction's
 * reads and its compare-and-set write.
 */
class RacingReplica implements Replica {
  batches = 0
  private armed = 0
  private sneak: () => Promise<unknown> = async () => {}
  private when: (ops: readonly BatchOp[]) => boolean = () => true

  constructor(readonly inner: Replica) {}

  get nodeId(): Replica['nodeId'] {
    return this.inner.nodeId
  }
  get shardId(): Replica['shardId'] {
    return this.inner.shardId
  }

  arm(times: number, sneak: () => Promise<unknown>, when: (ops: readonly BatchOp[]) => boolean): void {
    this.armed = times
    this.sneak = sneak
    this.when = when
  }

  get: Replica['get'] = (key, opts) => this.inner.get(key, opts)
  getMany: Replica['getMany'] = (keys, opts) => this.inner.getMany(keys, opts)
  put: Replica['put'] = (key, value, opts) => this.inner.put(key, value, opts)
  delete: Replica['delete'] = (key, opts) => this.inner.delete(key, opts)
  registerSession: Replica['registerSession'] = (clientId, opts) => this.inner.registerSession(clientId, opts)
  scan: Replica['scan'] = (args, opts) => this.inner.scan(args, opts)
  status: Replica['status'] = () => this.inner.status()
  close: Replica['close'] = () => this.inner.close()
  batch: Replica['batch'] = async (ops, opts) => {
    this.batches++
    if (this.armed > 0 && this.when(ops)) {
      this.armed--
      await this.sneak()
    }
    return this.inner.batch(ops, opts)
  }
}

const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const touches = (prefix: string) => (ops: readonly BatchOp[]) =>
  ops.some((o) => text(o.key).startsWith(prefix))

describe('cluster/MetaStore bootstrap and read', () => {
  it('read() is undefined before bootstrap', async () => {
    const { store } = await freshStore()
    expect(await store.read()).toBeUndefined()
  })

  it('bootstrap writes the map once; read() returns an equal map', async () => {
    const { store } = await freshStore()
    expect(await store.bootstrap(initial)).toBe(true)
    expectSameMap(await store.read(), initial)
    const other = initialClusterMap(spec(initialNodes(4), { shardCount: 4 }), hasher)
    expect(await store.bootstrap(other)).toBe(false)
    expectSameMap(await store.read(), initial)
  })

  it('round-trips a map larger than one meta batch, with leader hints and ids that skip', async () => {
    const nodes = [1, 2, 5, 9].map((id) => ({ ...initialNodes(1)[0]!, id: NodeId(id), address: `n${id}:1` }))
    const big = initialClusterMap(spec(nodes, { shardCount: 300 }), hasher).withLeaderHint(
      ShardId(299),
      NodeId(9),
      3,
    )
    const { store } = await bootstrapped(big)
    const read = await store.read()
    expectSameMap(read, big)
    expect((await store.register('n10:1', '', 1)).id).toBe(10)
  })
})

describe('cluster/MetaStore register', () => {
  it('hands out increasing ids after the initial nodes; joining; idempotent by address', async () => {
    const { store } = await bootstrapped()
    const a = await store.register('new-a:7000', 'z1', 2)
    expect(a).toEqual({
      id: 4,
      address: 'new-a:7000',
      zone: 'z1',
      weight: 2,
      state: 'joining',
      lastHeartbeatMs: 0,
    })
    const again = await store.register('new-a:7000', 'other-zone', 5)
    expect(again).toEqual(a)
    const b = await store.register('new-b:7000', '', 1)
    expect(b.id).toBe(5)
    const map = await store.read()
    expect([...map!.nodes.keys()]).toEqual([1, 2, 3, 4, 5])
    expect(map!.node(NodeId(4))).toEqual(a)
    // An initial node's address gets its own id back.
    expect((await store.register('n2:7000', '', 1)).id).toBe(2)
  })

  it('before bootstrap: UNAVAILABLE', async () => {
    const { store } = await freshStore()
    expect((await kvError(() => store.register('x:1', '', 1))).code).toBe(ErrorCode.Unavailable)
  })

  it('a register landing between its read and its write: retried, both get distinct ids', async () => {
    const inner = await openMetaReplica()
    opened.push(inner)
    const racing = new RacingReplica(inner)
    const store = new MetaStore(racing)
    expect(await store.bootstrap(initial)).toBe(true)
    let sneaked: number | undefined
    racing.arm(
      1,
      async () => (sneaked = (await new MetaStore(inner).register('sneaky:1', '', 1)).id),
      touches('node-next-id'),
    )
    const before = racing.batches
    const mine = await store.register('mine:1', '', 1)
    expect(sneaked).toBe(4)
    expect(mine.id).toBe(5)
    expect(racing.batches - before).toBe(2)
    const map = await store.read()
    expect(map!.node(NodeId(4))?.address).toBe('sneaky:1')
    expect(map!.node(NodeId(5))?.address).toBe('mine:1')
  })

  it('beaten on every attempt: OVERLOADED after metaTxnAttemptsMax tries, nothing of it written', async () => {
    const inner = await openMetaReplica()
    opened.push(inner)
    const racing = new RacingReplica(inner)
    const store = new MetaStore(racing)
    await store.bootstrap(initial)
    let n = 0
    racing.arm(
      metaTxnAttemptsMax,
      () => new MetaStore(inner).register(`sneaky-${n++}:1`, '', 1),
      touches('node-next-id'),
    )
    expect((await kvError(() => store.register('mine:1', '', 1))).code).toBe(ErrorCode.Overloaded)
    const map = await store.read()
    expect([...map!.nodes.values()].some((x) => x.address === 'mine:1')).toBe(false)
    expect(map!.nodes.size).toBe(3 + metaTxnAttemptsMax)
  })
})

describe('cluster/MetaStore heartbeat', () => {
  it('makes a joining node active and stamps lastHeartbeatMs', async () => {
    const { store } = await bootstrapped()
    const joined = await store.register('new:1', '', 1)
    expect(await store.heartbeat(joined.id, [], 12_345)).toBe('active')
    expect((await store.read())!.node(joined.id)).toMatchObject({ state: 'active', lastHeartbeatMs: 12_345 })
  })

  it('unknown node: NOT_FOUND', async () => {
    const { store } = await bootstrapped()
    const err = await kvError(() => store.heartbeat(NodeId(42), [], 1))
    expect(err.code).toBe(ErrorCode.NotFound)
    expect(err.details?.field).toBe('nodeId')
  })

  it('updates leader hints only for shards the node holds, and never to an older term', async () => {
    // Four nodes, two replicas per shard: some shards do not hold node 1.
    const map = initialClusterMap(spec(initialNodes(4), { shardCount: 8, replicaCount: 2 }), hasher)
    const { store } = await bootstrapped(map)
    const held = map.shards.find((s) => s.replicas.includes(NodeId(1)))!
    const notHeld = map.shards.find((s) => !s.replicas.includes(NodeId(1)))!
    const other = held.replicas.find((r) => r !== NodeId(1))!

    await store.heartbeat(
      NodeId(1),
      [
        { shardId: held.shardId, term: 4 },
        { shardId: notHeld.shardId, term: 9 },
        { shardId: metaShardId, term: 2 },
      ],
      100,
    )
    let read = (await store.read())!
    expect(read.shard(held.shardId)).toMatchObject({ leaderHint: 1, leaderTerm: 4, epoch: held.epoch })
    expect(read.shard(notHeld.shardId)).toMatchObject({ leaderHint: 0, leaderTerm: 0 })
    expect(read.meta).toMatchObject({ leaderHint: 1, leaderTerm: 2 })

    // Another replica at an older term: ignored. At the same term: taken. At a newer one: taken.
    await store.heartbeat(other, [{ shardId: held.shardId, term: 3 }], 200)
    read = (await store.read())!
    expect(read.shard(held.shardId)).toMatchObject({ leaderHint: 1, leaderTerm: 4 })
    await store.heartbeat(other, [{ shardId: held.shardId, term: 6 }], 300)
    read = (await store.read())!
    expect(read.shard(held.shardId)).toMatchObject({ leaderHint: other, leaderTerm: 6 })
    // The old leader reporting its old term again changes nothing.
    await store.heartbeat(NodeId(1), [{ shardId: held.shardId, term: 4 }], 400)
    read = (await store.read())!
    expect(read.shard(held.shardId)).toMatchObject({ leaderHint: other, leaderTerm: 6 })
    // Unknown shards are skipped.
    expect(await store.heartbeat(NodeId(1), [{ shardId: ShardId(500), term: 1 }], 500)).toBe('active')
  })

  it('a heartbeat landing between its read and its write: retried, the node revived once', async () => {
    const inner = await openMetaReplica()
    opened.push(inner)
    const racing = new RacingReplica(inner)
    const store = new MetaStore(racing)
    await store.bootstrap(initial)
    await store.setNodeStates([{ nodeId: NodeId(2), from: 'active', to: 'unreachable' }])
    racing.arm(1, () => new MetaStore(inner).heartbeat(NodeId(2), [], 50), touches('node/0000000002'))
    const before = racing.batches
    expect(await store.heartbeat(NodeId(2), [{ shardId: ShardId(0), term: 1 }], 60)).toBe('active')
    expect(racing.batches - before).toBe(2)
    const read = (await store.read())!
    // The retry found the node active already: only the leader hint was left to write.
    expect(read.node(NodeId(2))).toMatchObject({ state: 'active', lastHeartbeatMs: 50 })
    expect(read.shard(ShardId(0))).toMatchObject({ leaderHint: 2, leaderTerm: 1 })
  })

  it('an active node reporting what the map says already writes nothing (a heartbeat is a read)', async () => {
    const inner = await openMetaReplica()
    opened.push(inner)
    const racing = new RacingReplica(inner)
    const store = new MetaStore(racing)
    await store.bootstrap(initial)
    // A bootstrap member's record has never heard it; its first heartbeat is written (once).
    expect((await store.read())!.nodes.get(NodeId(2))!.lastHeartbeatMs).toBe(0)
    await store.heartbeat(NodeId(2), [{ shardId: ShardId(0), term: 1 }], 10)
    expect((await store.read())!.nodes.get(NodeId(2))!.lastHeartbeatMs).toBe(10)
    const before = racing.batches
    for (let i = 0; i < 5; i++)
      expect(await store.heartbeat(NodeId(2), [{ shardId: ShardId(0), term: 1 }], 20 + i)).toBe('active')
    expect(racing.batches - before).toBe(0)
    expect((await store.read())!.nodes.get(NodeId(2))!.lastHeartbeatMs).toBe(10)
  })
})

describe('cluster/MetaStore setNodeStates', () => {
  it('records changes judged in the state the node is still in; a later heartbeat revives the node', async () => {
    const { store } = await bootstrapped()
    const joining = await store.register('new:1', '', 1)
    const applied = await store.setNodeStates([
      { nodeId: NodeId(2), from: 'active', to: 'unreachable' },
      { nodeId: NodeId(3), from: 'active', to: 'dead' },
      { nodeId: joining.id, from: 'joining', to: 'dead' },
      // Judged on a stale view: node 1 is active, not unreachable.
      { nodeId: NodeId(1), from: 'unreachable', to: 'dead' },
      // Unknown node: skipped.
      { nodeId: NodeId(42), from: 'active', to: 'dead' },
    ])
    expect(applied.map((c) => c.nodeId)).toEqual([2, 3, joining.id])
    let read = (await store.read())!
    expect(read.node(NodeId(1))?.state).toBe('active')
    expect(read.node(NodeId(2))?.state).toBe('unreachable')
    for (const id of [3, joining.id]) expect(read.node(NodeId(id))?.state).toBe('dead')
    // Applied once: the same changes again find other states.
    expect(await store.setNodeStates([{ nodeId: NodeId(3), from: 'active', to: 'dead' }])).toEqual([])
    expect(await store.heartbeat(NodeId(3), [], 2000)).toBe('active')
    read = (await store.read())!
    expect(read.node(NodeId(3))).toMatchObject({ state: 'active', lastHeartbeatMs: 2000 })
  })

  it('nothing to change: nothing written', async () => {
    const { store } = await bootstrapped()
    expect(await store.setNodeStates([])).toEqual([])
  })

  it('a heartbeat keeps a draining node draining', async () => {
    const { store } = await bootstrapped()
    await store.setNodeStates([{ nodeId: NodeId(2), from: 'active', to: 'draining' }])
    expect(await store.heartbeat(NodeId(2), [], 700)).toBe('draining')
    expect((await store.read())!.node(NodeId(2))?.state).toBe('draining')
  })

  it('a heartbeat landing between its read and its write spares the node', async () => {
    const inner = await openMetaReplica()
    opened.push(inner)
    const racing = new RacingReplica(inner)
    const store = new MetaStore(racing)
    await store.bootstrap(initial)
    await store.setNodeStates([{ nodeId: NodeId(2), from: 'active', to: 'unreachable' }])
    racing.arm(1, () => new MetaStore(inner).heartbeat(NodeId(2), [], 1000), touches('node/0000000002'))
    const applied = await store.setNodeStates([{ nodeId: NodeId(2), from: 'unreachable', to: 'dead' }])
    expect(applied).toEqual([])
    expect((await store.read())!.node(NodeId(2))).toMatchObject({ state: 'active', lastHeartbeatMs: 1000 })
  })
})

describe('cluster/MetaStore removeNode', () => {
  it('refuses a node that still holds replicas, removes one that holds none', async () => {
    const { store } = await bootstrapped()
    const joined = await store.register('new:1', '', 1)
    const err = await kvError(() => store.removeNode(NodeId(2), 'active'))
    expect(err.code).toBe(ErrorCode.MoveRefused)
    expect((await kvError(() => store.removeNode(joined.id, 'active'))).code).toBe(ErrorCode.MoveRefused)
    await store.removeNode(joined.id, 'joining')
    expect((await store.read())!.node(joined.id)).toBeUndefined()
    expect((await kvError(() => store.removeNode(joined.id, 'joining'))).code).toBe(ErrorCode.NotFound)
  })
})

describe('cluster/MetaStore followShard', () => {
  it('a shard record following its voters drops a leader hint naming a node that left', async () => {
    const map = handMap(
      [node(1), node(2), node(3), node(4)],
      [
        [1, 2, 3],
        [1, 2, 3],
      ],
      { hints: [1, 2] },
    )
    const { store } = await bootstrapped(map)
    const moved = await store.followShard(ShardId(0), [NodeId(2), NodeId(3), NodeId(4)], 4)
    expect(moved).toMatchObject({ replicas: [2, 3, 4], epoch: 4, leaderHint: 0, leaderTerm: 1 })
    const kept = await store.followShard(ShardId(1), [NodeId(2), NodeId(3), NodeId(4)], 4)
    expect(kept).toMatchObject({ replicas: [2, 3, 4], epoch: 4, leaderHint: 2 })
    expect((await store.read())?.shard(ShardId(0))?.leaderHint).toBe(0)
  })
})

describe('cluster/MetaStore: a job move start and an operator steering the job', () => {
  const job: JobRecord = {
    id: 1,
    trigger: 'drain',
    state: 'running',
    createdMs: 1,
    updatedMs: 1,
    finishedMs: 0,
    registry: 'r',
    moves: [],
    unlisted: 0,
    started: 0,
    done: 0,
    failed: 0,
    bytes: 0,
    reason: '',
  }
  const move: MoveRecord = {
    shardId: ShardId(0),
    from: NodeId(1),
    to: NodeId(3),
    step: 'prepare',
    epoch: 0,
    startedMs: 1,
    updatedMs: 1,
    finishedMs: 0,
    reason: '',
  }
  const pause = (store: MetaStore): Promise<JobRecord | undefined> =>
    store.updateJob((j) => steer(j, 'pause', 2))

  async function racing(): Promise<{
    store: MetaStore
    inner: Replica
    racing: RacingReplica
    version: number
  }> {
    const inner = await openMetaReplica()
    opened.push(inner)
    const r = new RacingReplica(inner)
    const store = new MetaStore(r)
    expect(await store.bootstrap(initial)).toBe(true)
    await store.writeJob(job, 0)
    return { store, inner, racing: r, version: (await store.job())!.version }
  }

  it('a job move start at the job version records the move and the job counting it, in one batch', async () => {
    const { store, version } = await racing()
    const counted = { ...job, started: 1 }
    const started = await store.startMove(move, 0, { record: counted, version })
    expect(started.jobVersion).toBeGreaterThan(version)
    expect((await store.moves()).map(({ move: m }) => m.shardId)).toEqual([0])
    expect(await store.job()).toEqual({ job: counted, version: started.jobVersion })
    // A write that read the job before the start loses: the start is ordered with it.
    expect((await kvError(() => store.writeJob({ ...job, state: 'paused' }, version))).code).toBe(
      ErrorCode.VersionMismatch,
    )
  })

  it('a pause landing between a job move start reading the job and writing: the start is refused, nothing recorded', async () => {
    const { store, inner, racing: r, version } = await racing()
    r.arm(1, () => pause(new MetaStore(inner)), touches('move/'))
    const err = await kvError(() => store.startMove(move, 0, { record: job, version }))
    expect(err.code).toBe(ErrorCode.VersionMismatch)
    expect(err.details).toMatchObject({ field: 'job' })
    expect(await store.moves()).toEqual([])
    expect((await store.job())!.job.state).toBe('paused')
  })

  it('a job move start landing between a pause reading the job and writing: the pause is retried and wins after it', async () => {
    const { store, inner, racing: r, version } = await racing()
    r.arm(1, () => new MetaStore(inner).startMove(move, 0, { record: job, version }), touches('job'))
    const before = r.batches
    expect(await pause(store)).toMatchObject({ state: 'paused' })
    expect(r.batches - before).toBe(2)
    expect((await store.moves()).length).toBe(1)
    expect((await store.job())!.job.state).toBe('paused')
  })

  it('steering nothing open throws what the change throws, and writes nothing', async () => {
    const { store } = await freshStore()
    const err = await kvError(() =>
      store.updateJob(() => {
        throw new KvError(ErrorCode.NotFound, 'no job')
      }),
    )
    expect(err.code).toBe(ErrorCode.NotFound)
    expect(await store.job()).toBeUndefined()
  })
})
