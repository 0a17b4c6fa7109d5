import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, KvError, NodeId, ShardId, silentLogger } from '../../../src/common/index.ts'
import {
  ClusterAgent,
  ClusterMap,
  initialClusterMap,
  MetaStore,
  peerAddressOf,
  type JoinArgs,
  type LocalMeta,
  type MetaRemote,
  type MoveRecord,
  type MoveRequest,
  type MoveView,
  type NodeRecord,
  type OwnReplica,
  type ReplicaRemote,
  type ReplicaStateInfo,
} from '../../../src/cluster/index.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { ManualClock, initialNodes, kvError, node, openMetaReplica, spec, testHasher } from './fixtures.ts'

const hasher = await testHasher()
/** Nodes 1..4; the meta shard on 1..3. */
const initial = initialClusterMap(spec(initialNodes(4), { shardCount: 8 }), hasher)

/** Records every call; answers joins with a node 9 and the initial map. */
class FakeRemote implements MetaRemote {
  readonly calls: { op: string; address: string; args?: unknown }[] = []
  async join(address: string, args: JoinArgs): Promise<{ node: NodeRecord; map: ClusterMap }> {
    this.calls.push({ op: 'join', address, args })
    return { node: node(9, 'joining'), map: initial }
  }
  async heartbeat(address: string, args: unknown): Promise<'active'> {
    this.calls.push({ op: 'heartbeat', address, args })
    return 'active'
  }
  async shardMap(address: string): Promise<ClusterMap> {
    this.calls.push({ op: 'shardMap', address })
    return initial
  }
  async move(address: string, req: MoveRequest): Promise<MoveView> {
    this.calls.push({ op: 'move', address, args: req })
    throw new KvError(ErrorCode.Unavailable, 'not faked')
  }
  async listMoves(address: string): Promise<{ running: MoveView[]; recent: MoveRecord[] }> {
    this.calls.push({ op: 'listMoves', address })
    return { running: [], recent: [] }
  }
}

/** The replica service of no node: every call fails (these tests move nothing). */
const noReplicas: ReplicaRemote = {
  prepare: () => Promise.reject(new KvError(ErrorCode.Unavailable, 'not faked')),
  change: () => Promise.reject(new KvError(ErrorCode.Unavailable, 'not faked')),
  transferLeader: () => Promise.reject(new KvError(ErrorCode.Unavailable, 'not faked')),
  state: () => Promise.reject(new KvError(ErrorCode.Unavailable, 'not faked')),
  destroy: () => Promise.reject(new KvError(ErrorCode.Unavailable, 'not faked')),
}

const moveInit = { movePollMs: 1000, moveStallMsMax: 60_000, movesConcurrentMax: 2 }
const replicaParts: {
  replicas: ReplicaRemote
  ownReplicas: () => readonly OwnReplica[]
  dropReplica: (shardId: ShardId, epoch: number, members: readonly NodeId[]) => Promise<void>
} = {
  replicas: noReplicas,
  ownReplicas: () => [],
  dropReplica: () => Promise.resolve(),
}

const opened: Replica[] = []
afterEach(async () => {
  for (const r of opened.splice(0)) await r.close()
})

function agentOf(
  nodeId: number,
  localMeta: () => LocalMeta | undefined,
  extra: {
    clock?: ManualClock
    maps?: ClusterMap[]
    leaders?: { shardId: ShardId; term: number }[]
    replicas?: Partial<typeof replicaParts>
  } = {},
): { agent: ClusterAgent; remote: FakeRemote; clock: ManualClock } {
  const remote = new FakeRemote()
  const clock = extra.clock ?? new ManualClock()
  const agent = new ClusterAgent(
    {
      nodeId: NodeId(nodeId),
      heartbeatMs: 100,
      mapRefreshMs: 1000,
      nodeUnreachableAfterMs: 4_000,
      nodeDeadAfterMs: 10_000,
      metaCallMs: 5000,
      initialMap: initial,
      ...moveInit,
    },
    {
      clock,
      logger: silentLogger,
      localMeta,
      leaderReports: () => extra.leaders ?? [],
      remote,
      ...replicaParts,
      ...extra.replicas,
      onMap: (m) => extra.maps?.push(m),
    },
  )
  return { agent, remote, clock }
}

async function metaLeaderReplica(): Promise<Replica> {
  const replica = await openMetaReplica()
  opened.push(replica)
  expect(await new MetaStore(replica).bootstrap(initial)).toBe(true)
  return replica
}

/** Resolves once a round has ended and scheduled the next one (a live heartbeat timer). */
async function nextRoundScheduled(clock: ManualClock): Promise<void> {
  while (!clock.timers.some((t) => !t.cancelled && t.delayMs === 100))
    await new Promise<void>((resolve) => setImmediate(resolve))
}

const joinArgs: JoinArgs = { address: 'new:7000', zone: 'z', weight: 2 }

describe('cluster/ClusterAgent serveJoin', () => {
  it('on the meta leader: registers through MetaStore and adopts the new map', async () => {
    const replica = await metaLeaderReplica()
    const maps: ClusterMap[] = []
    const { agent, remote } = agentOf(1, () => ({ replica, isLeader: true, leaderId: NodeId(1) }), { maps })
    const { node: joined, map } = await agent.serveJoin(joinArgs, false)
    expect(joined).toMatchObject({ id: 5, address: 'new:7000', zone: 'z', weight: 2, state: 'joining' })
    expect(map.node(NodeId(5))).toEqual(joined)
    expect(agent.map).toBe(map)
    expect(maps).toEqual([map])
    expect(remote.calls).toEqual([])
    // A retried join gets the same id.
    expect((await agent.serveJoin(joinArgs, true)).node.id).toBe(5)
  })

  it('on a meta follower: passed once to the leader its replica knows', async () => {
    const replica = await metaLeaderReplica()
    const { agent, remote } = agentOf(2, () => ({ replica, isLeader: false, leaderId: NodeId(3) }))
    const answer = await agent.serveJoin(joinArgs, false)
    expect(answer.node.id).toBe(9)
    expect(remote.calls).toEqual([{ op: 'join', address: 'n3:7100', args: joinArgs }])
  })

  it('without a meta replica and no leader hint: the preferred meta replica (it passes the call on)', async () => {
    const { agent, remote } = agentOf(4, () => undefined)
    await agent.serveJoin(joinArgs, false)
    await agent.serveJoin(joinArgs, false)
    expect(remote.calls.map((c) => c.address)).toEqual(['n1:7100', 'n1:7100'])
  })

  it('a meta replica that answers NOT_LEADER naming nobody is asked last', async () => {
    const { agent, remote } = agentOf(4, () => undefined)
    const answer = remote.heartbeat.bind(remote)
    remote.heartbeat = async (address: string, args: unknown): Promise<'active'> => {
      if (address === 'n1:7100') {
        remote.calls.push({ op: 'heartbeat', address, args })
        throw new KvError(ErrorCode.NotLeader, 'no leader known')
      }
      return await answer(address, args)
    }
    const beat = { nodeId: NodeId(4), leaders: [] }
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('no leader known')
    await agent.serveHeartbeat(beat, false)
    await agent.serveHeartbeat(beat, false)
    expect(remote.calls.map((c) => c.address)).toEqual(['n1:7100', 'n2:7100', 'n2:7100'])
  })

  it('without a meta replica: the map hint of the meta leader', async () => {
    const { agent, remote } = agentOf(4, () => undefined)
    agent.offer(initial.withLeaderHint(initial.meta.shardId, NodeId(2), 3))
    await agent.serveJoin(joinArgs, false)
    expect(remote.calls.map((c) => c.address)).toEqual(['n2:7100'])
  })

  it('a dead meta leader named by the map does not trap the node: after a failed call it tries the others', async () => {
    const { agent, remote, clock } = agentOf(4, () => undefined)
    agent.offer(initial.withLeaderHint(initial.meta.shardId, NodeId(2), 3))
    const failing = remote.heartbeat.bind(remote)
    remote.heartbeat = async (address: string, args: unknown): Promise<'active'> => {
      if (address === 'n2:7100') {
        remote.calls.push({ op: 'heartbeat', address, args })
        throw new KvError(ErrorCode.Unavailable, 'connection refused')
      }
      return await failing(address, args)
    }
    const beat = { nodeId: NodeId(4), leaders: [] }
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('connection refused')
    await agent.serveHeartbeat(beat, false)
    await agent.serveHeartbeat(beat, false)
    // Node 2 is passed over (and forgotten as the leader): the preferred meta replica, node 1.
    expect(remote.calls.map((c) => c.address)).toEqual(['n2:7100', 'n1:7100', 'n1:7100'])
    // A newer map hint naming node 2 again does not trap the node while it is passed over.
    agent.offer(initial.withLeaderHint(initial.meta.shardId, NodeId(2), 4))
    await agent.serveHeartbeat(beat, false)
    expect(remote.calls.at(-1)?.address).toBe('n1:7100')
    // After a few heartbeats it is tried again.
    clock.now += 400
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('connection refused')
    expect(remote.calls.at(-1)?.address).toBe('n2:7100')
  })

  it('goes back to a leader whose call failed once when another node names it (no NOT_LEADER loop)', async () => {
    const replica = await metaLeaderReplica()
    // Node 3 holds a meta replica whose Raft view says node 2 leads.
    const { agent, remote } = agentOf(3, () => ({ replica, isLeader: false, leaderId: NodeId(2) }))
    let refuseOnce = true
    const answer = remote.heartbeat.bind(remote)
    remote.heartbeat = async (address: string, args: unknown): Promise<'active'> => {
      if (address === 'n2:7100' && refuseOnce) {
        refuseOnce = false
        remote.calls.push({ op: 'heartbeat', address, args })
        throw new KvError(ErrorCode.Unavailable, 'channel still connecting')
      }
      if (address === 'n1:7100') {
        remote.calls.push({ op: 'heartbeat', address, args })
        throw new KvError(ErrorCode.NotLeader, 'not me', { details: { leaderHint: 2 } })
      }
      return await answer(address, args)
    }
    const beat = { nodeId: NodeId(3), leaders: [] }
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('connecting')
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('not me')
    await agent.serveHeartbeat(beat, false)
    await agent.serveHeartbeat(beat, false)
    expect(remote.calls.map((c) => c.address)).toEqual(['n2:7100', 'n1:7100', 'n2:7100', 'n2:7100'])
  })

  it('follows a NOT_LEADER hint to the new meta leader', async () => {
    const { agent, remote } = agentOf(4, () => undefined)
    agent.offer(initial.withLeaderHint(initial.meta.shardId, NodeId(2), 3))
    const answer = remote.heartbeat.bind(remote)
    remote.heartbeat = async (address: string, args: unknown): Promise<'active'> => {
      if (address === 'n2:7100') {
        remote.calls.push({ op: 'heartbeat', address, args })
        throw new KvError(ErrorCode.NotLeader, 'not me', { details: { leaderHint: 3 } })
      }
      return await answer(address, args)
    }
    const beat = { nodeId: NodeId(4), leaders: [] }
    await expect(agent.serveHeartbeat(beat, false)).rejects.toThrow('not me')
    await agent.serveHeartbeat(beat, false)
    expect(remote.calls.map((c) => c.address)).toEqual(['n2:7100', 'n3:7100'])
  })

  it('forwarded to a node that does not lead the meta shard: NOT_LEADER with its hint, nothing sent', async () => {
    const replica = await metaLeaderReplica()
    const { agent, remote } = agentOf(2, () => ({ replica, isLeader: false, leaderId: NodeId(3) }))
    const err = await kvError(() => agent.serveJoin(joinArgs, true))
    expect(err.code).toBe(ErrorCode.NotLeader)
    expect(err.details).toEqual({ leaderHint: 3, shardId: initial.meta.shardId })
    expect(remote.calls).toEqual([])
  })

  it('the only meta replica, not leading: NOT_LEADER rather than a call to itself', async () => {
    const solo = initialClusterMap(spec(initialNodes(1), { shardCount: 2, metaReplicaCount: 1 }), hasher)
    const replica = await metaLeaderReplica()
    const remote = new FakeRemote()
    const agent = new ClusterAgent(
      {
        nodeId: NodeId(1),
        heartbeatMs: 1,
        mapRefreshMs: 1,
        nodeUnreachableAfterMs: 1,
        nodeDeadAfterMs: 1,
        metaCallMs: 1,
        initialMap: solo,
        ...moveInit,
      },
      {
        clock: new ManualClock(),
        logger: silentLogger,
        localMeta: () => ({ replica, isLeader: false, leaderId: null }),
        leaderReports: () => [],
        remote,
        ...replicaParts,
      },
    )
    expect((await kvError(() => agent.serveJoin(joinArgs, false))).code).toBe(ErrorCode.NotLeader)
    expect(remote.calls).toEqual([])
  })
})

describe('cluster/ClusterAgent serveHeartbeat and rounds', () => {
  it('on the meta leader: records leader hints; an active node is heard in memory, its record unwritten', async () => {
    const replica = await metaLeaderReplica()
    const store = new MetaStore(replica)
    const { agent, clock } = agentOf(1, () => ({ replica, isLeader: true, leaderId: NodeId(1) }))
    clock.wall = 1_700_000_000_000
    // The first heartbeat of a bootstrap member is written, once (it ran: kvd's bootstrap guard).
    expect(await agent.serveHeartbeat({ nodeId: NodeId(2), leaders: [] }, true)).toBe('active')
    const before = (await store.read())!.node(NodeId(2))!
    expect(before.lastHeartbeatMs).toBe(1_700_000_000_000)
    clock.wall = 1_700_000_123_456
    expect(
      await agent.serveHeartbeat({ nodeId: NodeId(2), leaders: [{ shardId: ShardId(0), term: 7 }] }, true),
    ).toBe('active')
    const read = (await store.read())!
    expect(read.node(NodeId(2))).toEqual(before)
    expect(read.shard(ShardId(0))).toMatchObject({ leaderHint: 2, leaderTerm: 7 })
  })

  it('on the meta leader: a node marked unreachable is active again at its next heartbeat, stamped', async () => {
    const replica = await metaLeaderReplica()
    const store = new MetaStore(replica)
    await store.setNodeStates([{ nodeId: NodeId(2), from: 'active', to: 'unreachable' }])
    const { agent, clock } = agentOf(1, () => ({ replica, isLeader: true, leaderId: NodeId(1) }))
    clock.wall = 1_700_000_123_456
    expect(await agent.serveHeartbeat({ nodeId: NodeId(2), leaders: [] }, true)).toBe('active')
    expect((await store.read())!.node(NodeId(2))).toMatchObject({
      state: 'active',
      lastHeartbeatMs: 1_700_000_123_456,
    })
  })

  it('on a follower: passed to the leader; forwarded: NOT_LEADER', async () => {
    const { agent, remote } = agentOf(4, () => undefined)
    agent.offer(initial.withLeaderHint(initial.meta.shardId, NodeId(3), 1))
    const args = { nodeId: NodeId(4), leaders: [] }
    expect(await agent.serveHeartbeat(args, false)).toBe('active')
    expect(remote.calls).toEqual([{ op: 'heartbeat', address: 'n3:7100', args }])
    expect((await kvError(() => agent.serveHeartbeat(args, true))).code).toBe(ErrorCode.NotLeader)
  })

  it('a round on the meta leader writes the first map, heartbeats itself, and refreshes the map', async () => {
    const replica = await openMetaReplica()
    opened.push(replica)
    const maps: ClusterMap[] = []
    const { agent, clock, remote } = agentOf(1, () => ({ replica, isLeader: true, leaderId: NodeId(1) }), {
      maps,
      leaders: [{ shardId: ShardId(1), term: 2 }],
    })
    agent.start()
    expect(clock.fire(0)).toBe(true)
    await agent.stop()
    const read = (await new MetaStore(replica).read())!
    expect(read.cluster).toEqual(initial.cluster)
    // A node's first heartbeat is written; the map the leader serves shows when it last heard it.
    expect(read.node(NodeId(1))).toMatchObject({ state: 'active', lastHeartbeatMs: clock.wall })
    expect(agent.map.node(NodeId(1))).toMatchObject({ state: 'active', lastHeartbeatMs: clock.wall })
    expect(read.shard(ShardId(1))).toMatchObject({ leaderHint: 1, leaderTerm: 2 })
    expect(maps).toHaveLength(1)
    expect(agent.map.shard(ShardId(1))).toMatchObject({ leaderHint: 1, leaderTerm: 2 })
    expect(agent.counters()).toMatchObject({
      heartbeats: 1,
      heartbeatFailures: 0,
      refreshes: 1,
      refreshFailures: 0,
    })
    expect(remote.calls).toEqual([])
  })

  it('a meta leader marks silent nodes unreachable, then dead, counting from when it took over', async () => {
    const replica = await metaLeaderReplica()
    const store = new MetaStore(replica)
    const { agent, clock } = agentOf(1, () => ({ replica, isLeader: true, leaderId: NodeId(1) }))
    agent.start()
    clock.fire(0)
    await nextRoundScheduled(clock)
    // Nodes 2..4 never heartbeated, but the leader is new: nobody is judged yet.
    expect((await store.read())!.node(NodeId(2))?.state).toBe('active')

    clock.now += 4_000
    clock.wall += 4_000
    // Node 3 reports in meanwhile: it stays active.
    await agent.serveHeartbeat({ nodeId: NodeId(3), leaders: [] }, true)
    expect(clock.fire(100)).toBe(true)
    await nextRoundScheduled(clock)
    let read = (await store.read())!
    for (const id of [2, 4]) expect(read.node(NodeId(id))?.state).toBe('unreachable')
    expect(read.node(NodeId(3))?.state).toBe('active')

    clock.now += 6_000
    clock.wall += 6_000
    expect(clock.fire(100)).toBe(true)
    await nextRoundScheduled(clock)
    await agent.stop()
    read = (await store.read())!
    expect(read.node(NodeId(1))?.state).toBe('active')
    for (const id of [2, 4]) expect(read.node(NodeId(id))?.state).toBe('dead')
    // Node 3 was heard 6 s ago: unreachable, not dead yet.
    expect(read.node(NodeId(3))?.state).toBe('unreachable')
  })

  it('a meta leader that lost and regained leadership judges from the regain (no storm after a failover)', async () => {
    const replica = await metaLeaderReplica()
    const store = new MetaStore(replica)
    let leading = true
    const { agent, clock } = agentOf(1, () => ({ replica, isLeader: leading, leaderId: NodeId(1) }))
    agent.start()
    clock.fire(0)
    await nextRoundScheduled(clock)
    leading = false
    clock.now += 9_000
    clock.wall += 9_000
    clock.fire(100)
    await nextRoundScheduled(clock)
    leading = true
    clock.now += 3_000
    clock.wall += 3_000
    clock.fire(100)
    await nextRoundScheduled(clock)
    await agent.stop()
    // 12 s since the first leadership began, but 0 s since this one did: nobody judged.
    for (const id of [2, 3, 4]) expect((await store.read())!.node(NodeId(id))?.state).toBe('active')
  })

  it('drops a replica the shard no longer has once its leader confirms, and an unused empty one after a grace period', async () => {
    // Node 4 holds an active replica of a shard the map (at a newer epoch) no longer gives it, and
    // an empty replica of another, created for a move that never added it.
    const gone = initial.shards.find((s) => !s.replicas.includes(NodeId(4)))
    const unused = initial.shards.find((s) => s.replicas.includes(NodeId(4)))
    const newer = new ClusterMap(
      initial.cluster,
      [...initial.nodes.values()],
      initial.shards.map((s) =>
        s.shardId === gone!.shardId
          ? { ...s, epoch: 5 }
          : s.shardId === unused!.shardId
            ? {
                ...s,
                replicas: s.replicas.map((r) =>
                  r === 4 ? ([1, 2, 3].find((x) => !s.replicas.includes(NodeId(x))) as NodeId) : r,
                ),
              }
            : s,
      ),
      initial.meta,
    )
    const dropped: { shardId: number; epoch: number; members: readonly number[] }[] = []
    const leaderState = (shard: typeof gone): ReplicaStateInfo => ({
      found: true,
      state: 'active',
      role: 'leader',
      config: {
        epoch: 5,
        voters: shard!.replicas,
        learners: [],
        votersOutgoing: [],
        leaderId: shard!.replicas[0]!,
        term: 2,
      },
      appliedIndex: 10,
      lastIndex: 10,
      progress: [],
      installBytes: 0,
      approximateBytes: 0,
    })
    const { agent, clock, remote } = agentOf(4, () => undefined, {
      replicas: {
        replicas: {
          ...noReplicas,
          state: async (address, shardId) => {
            const shard = newer.shard(shardId)!
            // Only the first replica (the one the state names) leads.
            // Node-to-node calls go to the peer address.
            return address === peerAddressOf(newer.node(shard.replicas[0]!)!)
              ? leaderState(shard)
              : { ...leaderState(shard), role: 'follower' }
          },
        },
        ownReplicas: () => [
          {
            shardId: gone!.shardId,
            state: dropped.some((d) => d.shardId === gone!.shardId) ? 'removing' : 'active',
            epoch: 3,
          },
          {
            shardId: unused!.shardId,
            state: dropped.some((d) => d.shardId === unused!.shardId) ? 'removing' : 'empty',
            epoch: 0,
          },
        ],
        dropReplica: async (shardId, epoch, members) => {
          dropped.push({ shardId, epoch, members })
        },
      },
    })
    remote.shardMap = async () => newer
    agent.start()
    clock.fire(0)
    for (let round = 0; round < 5; round++) {
      await nextRoundScheduled(clock)
      clock.fire(100)
    }
    await nextRoundScheduled(clock)
    // The removed one is gone at the first check; the empty one waits out its grace period.
    expect(dropped.map((d) => d.shardId)).toEqual([gone!.shardId])
    expect(dropped[0]).toMatchObject({ epoch: 5, members: gone!.replicas })
    clock.now += 61_000
    for (let round = 0; round < 5; round++) {
      clock.fire(100)
      await nextRoundScheduled(clock)
    }
    await agent.stop()
    expect(dropped.map((d) => d.shardId)).toEqual([gone!.shardId, unused!.shardId])
    expect(agent.counters().replicasCollected).toBe(2)
  })

  it('offer() ignores a map of another cluster', () => {
    const { agent } = agentOf(4, () => undefined)
    const foreign = initialClusterMap(
      spec(initialNodes(2), { clusterId: 'ffffffffffffffffffffffffffffffff', shardCount: 2 }),
      hasher,
    )
    agent.offer(foreign)
    expect(agent.map).toBe(initial)
  })
})
