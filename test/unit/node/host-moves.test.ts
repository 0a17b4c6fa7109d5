/**
 * Replicas that move, on real NodeHosts in one process (MemoryEngine, an in-memory network, the
 * real clock): a learner created empty and caught up by a snapshot written in place; a voter
 * replaced through joint consensus; the replaced replica dropping its data and keeping a
 * tombstone that late messages and stale requests cannot bring back; the rules refusing what
 * would break a shard; an install cut short by a crash, reset and redone.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { ErrorCode, NodeId, ShardId, silentLogger, type Logger } from '../../../src/common/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { limits, tightenLimits, type Limits } from '../../../src/common/limits.ts'
import { hashSpaceEnd } from '../../../src/hashing/index.ts'
import { NodeHost, everyMemberShards, type HostedShard } from '../../../src/node/host.ts'
import type { PeerEnvelope, TransportHandler } from '../../../src/node/transport.ts'
import { MemoryEngine } from '../../../src/storage/engine-memory.ts'
import {
  bytesKey,
  dataRangeAll,
  loadHasher,
  raftAppliedIndexKey,
  raftRange,
  shardLocalRange,
} from '../../../src/storage/index.ts'
import type { Hasher } from '../../../src/hashing/index.ts'
import { MemoryNetwork, MemoryTransport } from './memory-transport.ts'

const enc = new TextEncoder()
const shard0 = ShardId(0)
const n = (i: number): NodeId => NodeId(i)

interface Node {
  id: NodeId
  engine: MemoryEngine
  host: NodeHost
}

class TestCluster {
  readonly nodes = new Map<NodeId, Node>()
  constructor(
    readonly net: MemoryNetwork,
    readonly hasher: Hasher,
    private readonly snapshotBytesPerSecond: number,
    private readonly limitsUsed: Readonly<Limits> = limits,
  ) {}

  async open(
    id: NodeId,
    bootstrap: readonly HostedShard[],
    engine = new MemoryEngine(),
    parts: { transport?: MemoryTransport; logger?: Logger; onFatal?: (err: unknown) => void } = {},
  ): Promise<Node> {
    const host = await NodeHost.open(
      {
        nodeId: id,
        bootstrap,
        shardCount: 1,
        tickMs: 10,
        leaseReads: false,
        snapshotBytesPerSecond: this.snapshotBytesPerSecond,
      },
      {
        engine,
        hasher: this.hasher,
        clock: new SystemClock(),
        random: new SeededRandom(id),
        logger: parts.logger ?? silentLogger,
        limits: this.limitsUsed,
        transport: parts.transport ?? this.net.transport(id),
        onFatal:
          parts.onFatal ??
          ((err) => {
            throw err
          }),
      },
    )
    host.start()
    const node = { id, engine, host }
    this.nodes.set(id, node)
    return node
  }

  node(id: NodeId): Node {
    return this.nodes.get(id)!
  }

  leader(): Node | undefined {
    for (const node of this.nodes.values()) if (node.host.replica(shard0)?.isLeader === true) return node
    return undefined
  }

  async close(): Promise<void> {
    for (const node of this.nodes.values()) await node.host.close()
  }
}

async function until<T>(what: string, f: () => T | undefined | false, ms = 10_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = f()
    if (v !== undefined && v !== false) return v
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

const wholeRing = { kind: 'data' as const, hashStart: 0n, hashEnd: hashSpaceEnd }

/** Creates shard 0's empty replica on `node`; the shard's leader adds it as a learner. */
async function addLearner(c: TestCluster, node: Node): Promise<void> {
  await node.host.createReplica({ shardId: shard0, ...wholeRing, epoch: 1 })
  const leader = await until('a leader', () => c.leader())
  await leader.host.changeReplicas(
    shard0,
    1,
    { kind: 'addLearner', node: node.id },
    AbortSignal.timeout(10_000),
  )
}

/** `chunks` until `count` of them went through, then a broken stream. */
async function* breakAfter(chunks: AsyncIterable<Uint8Array>, count: number): AsyncIterable<Uint8Array> {
  let passed = 0
  for await (const chunk of chunks) {
    if (passed++ === count) throw new Error('the stream broke')
    yield chunk
  }
}

async function rangeKeys(engine: MemoryEngine, range: { gte: Uint8Array; lt: Uint8Array }): Promise<number> {
  let count = 0
  for await (const _ of engine.iterate(range)) count++
  return count
}

async function write(c: TestCluster, count: number, prefix: string, valueBytes = 16): Promise<void> {
  const leader = await until('a leader', () => c.leader())
  const r = leader.host.replica(shard0)!
  for (let i = 0; i < count; i++)
    await r.put(enc.encode(`${prefix}${i}`), new Uint8Array(valueBytes).fill(i % 251), { level: 'majority' })
}

let cluster: TestCluster | undefined
afterEach(async () => {
  await cluster?.close()
  cluster = undefined
})

async function threeNodes(
  snapshotBytesPerSecond = 64 * 1024 * 1024,
  limitsUsed: Readonly<Limits> = limits,
): Promise<TestCluster> {
  const c = new TestCluster(new MemoryNetwork(), await loadHasher(), snapshotBytesPerSecond, limitsUsed)
  const members = [n(1), n(2), n(3)]
  for (const id of members) await c.open(id, everyMemberShards(members, 1))
  cluster = c
  return c
}

describe('node/host: replicas that move', () => {
  it('adds a learner caught up by a snapshot, replaces a voter through joint consensus, and the replaced replica drops its data', async () => {
    const c = await threeNodes()
    await write(c, 200, 'before-')
    const four = await c.open(n(4), [])
    expect(four.host.replica(shard0)).toBeUndefined()

    // 1. An empty replica on node 4: it does not serve.
    await four.host.createReplica({ shardId: shard0, ...wholeRing, epoch: 1 })
    expect(four.host.replicaView(shard0)?.state).toBe('empty')
    await expect(
      four.host.replica(shard0)!.get(enc.encode('before-1'), { level: 'eventual' }),
    ).rejects.toMatchObject({
      code: ErrorCode.ShardMoving,
    })

    // 2. A learner, epoch 1 -> 2; it catches up by a snapshot written in place.
    let leader = await until('a leader', () => c.leader())
    const signal = AbortSignal.timeout(10_000)
    const afterAdd = await leader.host.changeReplicas(shard0, 1, { kind: 'addLearner', node: n(4) }, signal)
    expect(afterAdd.epoch).toBe(2)
    expect(afterAdd.conf.learners).toEqual([4])
    await until('node 4 installs a snapshot', () => four.host.replicaView(shard0)?.state === 'active')
    const got = await four.host.replica(shard0)!.get(enc.encode('before-199'), { level: 'eventual' })
    expect(got.found?.value).toEqual(new Uint8Array(16).fill(199 % 251))
    // The same request again is done already: idempotent, whatever epoch it names.
    const again = await leader.host.changeReplicas(shard0, 1, { kind: 'addLearner', node: n(4) }, signal)
    expect(again.epoch).toBe(2)

    // 3. Replace a follower: joint consensus, then the joint state is left (epoch 2 -> 4).
    leader = await until('a leader', () => c.leader())
    const victim = [n(1), n(2), n(3)].find((id) => id !== leader.id)!
    await until('node 4 caught up', () =>
      leader.host
        .replicaView(shard0)
        ?.progress.find((p) => p.nodeId === 4 && p.recentActive && p.match >= 200),
    )
    const afterReplace = await leader.host.changeReplicas(
      shard0,
      2,
      { kind: 'replace', add: n(4), remove: victim },
      signal,
    )
    expect(afterReplace.epoch).toBe(4)
    expect([...afterReplace.conf.voters].sort()).toEqual([1, 2, 3, 4].filter((id) => id !== victim))
    expect(afterReplace.conf.votersOutgoing).toEqual([])

    // 4. The victim learns it was removed (it applied the change, or it is told), drops its data,
    // keeps a tombstone.
    const gone = c.node(victim)
    await until(
      'the victim stops holding the replica',
      () => gone.host.replica(shard0) === undefined || undefined,
    )
    if (gone.host.replicaView(shard0)?.state === 'active')
      await gone.host.destroyReplica(shard0, afterReplace.epoch, afterReplace.conf.voters)
    await until(
      'the victim keeps only a tombstone',
      () => gone.host.replicaView(shard0)?.state === 'tombstone',
    )
    expect(gone.host.replicaView(shard0)?.epoch).toBe(4)
    expect(await rangeKeys(gone.engine, dataRangeAll())).toBe(0)
    expect(await rangeKeys(gone.engine, shardLocalRange(shard0))).toBe(0)
    expect(await rangeKeys(gone.engine, raftRange(shard0))).toBe(0)

    // 5. The shard goes on: a write on the new configuration reaches node 4.
    await write(c, 20, 'after-')
    await until('node 4 applied the new writes', () =>
      four.host.replica(shard0)!.status().appliedIndex >=
      (c.leader()?.host.replica(shard0)?.status().appliedIndex ?? Infinity)
        ? true
        : undefined,
    )
    const after = await four.host.replica(shard0)!.get(enc.encode('after-19'), { level: 'eventual' })
    expect(after.found).not.toBeNull()

    // 6. Late messages do not bring the tombstoned replica back; a stale create is refused; a
    // create at a newer epoch is accepted (the node may hold the shard again later).
    const dropped = gone.host.counters().envelopesForNoReplica
    await new Promise((r) => setTimeout(r, 200))
    expect(gone.host.replicaView(shard0)?.state).toBe('tombstone')
    await expect(gone.host.createReplica({ shardId: shard0, ...wholeRing, epoch: 3 })).rejects.toMatchObject({
      code: ErrorCode.StaleEpoch,
    })
    expect(gone.host.counters().envelopesForNoReplica).toBeGreaterThanOrEqual(dropped)
    // Planned at the configuration without it (the removal's epoch) or later: a move back.
    await gone.host.createReplica({
      shardId: shard0,
      ...wholeRing,
      epoch: gone.host.replicaView(shard0)!.epoch,
    })
    expect(gone.host.replicaView(shard0)?.state).toBe('empty')
  })

  it('refuses changes that break the rules, with stable codes, and changes nothing', async () => {
    const c = await threeNodes()
    await write(c, 10, 'k')
    const leader = await until('a leader', () => c.leader())
    const signal = AbortSignal.timeout(10_000)
    const follower = [n(1), n(2), n(3)].find((id) => id !== leader.id)!
    const codeOf = async (p: Promise<unknown>): Promise<string> =>
      await p.then(
        () => 'ok',
        (err: unknown) => (err as { code: string }).code,
      )
    // The leader is never removed while it leads.
    expect(
      await codeOf(leader.host.changeReplicas(shard0, 1, { kind: 'remove', node: leader.id }, signal)),
    ).toBe(ErrorCode.MoveRefused)
    // A learner that has not caught up is never promoted (node 9 has no replica: it never will).
    await leader.host.changeReplicas(shard0, 1, { kind: 'addLearner', node: n(9) }, signal)
    expect(await codeOf(leader.host.changeReplicas(shard0, 2, { kind: 'promote', node: n(9) }, signal))).toBe(
      ErrorCode.MoveRefused,
    )
    expect(
      await codeOf(
        leader.host.changeReplicas(shard0, 2, { kind: 'replace', add: n(9), remove: follower }, signal),
      ),
    ).toBe(ErrorCode.MoveRefused)
    // A change planned against an older configuration.
    expect(
      await codeOf(leader.host.changeReplicas(shard0, 1, { kind: 'addLearner', node: n(8) }, signal)),
    ).toBe(ErrorCode.StaleEpoch)
    // A follower refuses to run changes.
    const other = c.node(follower)
    expect(await codeOf(other.host.changeReplicas(shard0, 2, { kind: 'remove', node: n(9) }, signal))).toBe(
      ErrorCode.NotLeader,
    )
    // Nothing changed but the one learner.
    const view = leader.host.replicaView(shard0)!
    expect(view.epoch).toBe(2)
    expect([...view.voters].sort()).toEqual([1, 2, 3])
    expect(view.learners).toEqual([9])
    // Removing the learner is allowed, and removing a second voter would leave 2 of 3 up to date: fine.
    const removed = await leader.host.changeReplicas(shard0, 2, { kind: 'remove', node: n(9) }, signal)
    expect(removed.conf.learners).toEqual([])
    // Destroy refuses when the node is still a member.
    expect(await codeOf(other.host.destroyReplica(shard0, 9, [n(1), n(2), n(3)]))).toBe(ErrorCode.MoveRefused)
  })

  it('moves leadership on request', async () => {
    const c = await threeNodes()
    const leader = await until('a leader', () => c.leader())
    const to = [n(1), n(2), n(3)].find((id) => id !== leader.id)!
    const view = await leader.host.transferLeader(shard0, to, AbortSignal.timeout(10_000))
    expect(view.leaderId).toBe(to)
    await until('the new leader leads', () => c.node(to).host.replica(shard0)?.isLeader === true)
  })

  it('an install cut short by a crash is reset on restart and redone by a new snapshot', async () => {
    // A slow sender (~1 MiB/s) so the crash lands mid-install.
    const c = await threeNodes(1024 * 1024)
    await write(c, 1500, 'big-', 1024)
    let four = await c.open(n(4), [])
    await addLearner(c, four)
    await until('the install begins', () => four.host.replicaView(shard0)?.state === 'installing')
    await until('some data arrived', () => (four.host.replicaView(shard0)?.installBytes ?? 0) > 100_000)
    // Power cut: the unsynced chunks may be lost; the record says installing.
    const image = four.engine.crash({ loseUnsynced: false })
    await four.host.close().catch(() => undefined)
    c.nodes.delete(n(4))
    four = await c.open(n(4), [], image)
    expect(four.host.replicaView(shard0)?.state).toBe('empty')
    await until(
      'node 4 installs a new snapshot',
      () => four.host.replicaView(shard0)?.state === 'active',
      30_000,
    )
    const got = await four.host.replica(shard0)!.get(enc.encode('big-1499'), { level: 'eventual' })
    expect(got.found?.value.length).toBe(1024)
  }, 60_000)

  it('an install cut short is reset with its old group out of the loop, though a message for it arrives at once', async () => {
    const c = await threeNodes()
    await write(c, 300, 'big-', 10 * 1024)
    // Node 4: its first snapshot stream (about 3 chunks) breaks after the first; the moment the host says the
    // install was cut short, the last message of the shard's leader arrives again, so it lands in
    // the loop turn that handles the abort (a stale heartbeat: Raft answers it, making a Ready).
    let last: PeerEnvelope | undefined
    let handler: TransportHandler | undefined
    let broken = 0
    const transport = new (class extends MemoryTransport {
      override start(h: TransportHandler): void {
        handler = h
        super.start({
          onUnreachable: (peer) => h.onUnreachable(peer),
          onEnvelopes: (envs) => {
            for (const e of envs) if (e.shardId === shard0) last = e
            h.onEnvelopes(envs)
          },
          onSnapshot: (header, chunks, signal) =>
            h.onSnapshot(header, broken++ === 0 ? breakAfter(chunks, 1) : chunks, signal),
        })
      }
    })(n(4), c.net)
    c.net.nodes.set(n(4), transport)
    const fatal: unknown[] = []
    const logger: Logger = {
      ...silentLogger,
      warn: (_fields, message) => {
        if (message === 'snapshot install cut short' && last !== undefined) {
          const again = last
          queueMicrotask(() => handler?.onEnvelopes([again]))
        }
      },
      child: () => logger,
    }
    const four = await c.open(n(4), [], new MemoryEngine(), {
      transport,
      logger,
      onFatal: (err) => fatal.push(err),
    })
    await addLearner(c, four)
    await until(
      'node 4 installs a second snapshot',
      () => fatal.length > 0 || (broken >= 2 && four.host.replicaView(shard0)?.state === 'active'),
      30_000,
    )
    expect(fatal).toEqual([])
    const got = await four.host.replica(shard0)!.get(enc.encode('big-299'), { level: 'eventual' })
    expect(got.found?.value.length).toBe(10 * 1024)
  }, 60_000)

  it('keeps the Raft log within its byte budget', async () => {
    const tight = tightenLimits({ raftLogCompactBytes: 64 * 1024, raftLogRetainBytes: 16 * 1024 })
    const c = await threeNodes(64 * 1024 * 1024, tight)
    await write(c, 300, 'x', 1024)
    const leader = await until('a leader', () => c.leader())
    // The store keeps at most the budget plus the unapplied tail (here: nothing) and one entry.
    const store = (
      leader.host as unknown as { slots: Map<ShardId, { group: { logStore: { entryBytes(): number } } }> }
    ).slots
      .get(shard0)!
      .group.logStore.entryBytes()
    expect(store).toBeLessThan(64 * 1024 + 16 * 1024 + 2048)
  })
})

/** Holds the first batch that writes shard 0's applied index, until released. */
class HoldAppliedEngine extends MemoryEngine {
  held = false
  private open: (() => void) | undefined
  private released = false
  release(): void {
    this.released = true
    this.open?.()
  }
  override async write(...args: Parameters<MemoryEngine['write']>): Promise<void> {
    const [batch] = args
    const applied = bytesKey(raftAppliedIndexKey(shard0))
    if (
      !this.released &&
      !this.held &&
      batch.ops().some((op) => op.kind === 'put' && bytesKey(op.key) === applied)
    ) {
      this.held = true
      await new Promise<void>((resolve) => (this.open = resolve))
    }
    await super.write(...args)
  }
}

describe('node/host: a replica installed from a snapshot', () => {
  it('serves only once the batch with the applied index of its snapshot is written', async () => {
    const c = await threeNodes()
    await write(c, 50, 'before-')
    const engine = new HoldAppliedEngine()
    const four = await c.open(n(4), [], engine)
    await four.host.createReplica({ shardId: shard0, ...wholeRing, epoch: 1 })
    const leader = await until('a leader', () => c.leader())
    const added = leader.host
      .changeReplicas(shard0, 1, { kind: 'addLearner', node: n(4) }, AbortSignal.timeout(10_000))
      .catch(() => undefined)
    // The snapshot's data is in place; the batch that restores it (its applied index) is held.
    await until('the restoring batch held', () => engine.held)
    const r = four.host.replica(shard0)!
    const read = await r.get(enc.encode('before-49'), { level: 'eventual' }).then(
      (got) => ({ got }),
      (err: unknown) => ({ err }),
    )
    engine.release()
    await added
    if ('got' in read) {
      // Served: then its receipt must cover what it showed.
      expect(read.got.found).not.toBeNull()
      expect(read.got.receipt.appliedIndex).toBeGreaterThanOrEqual(read.got.found!.version)
    } else expect((read.err as { code?: string }).code).toBe(ErrorCode.ShardMoving)
    const after = await until('serving again', () => r.serving)
    expect(after).toBe(true)
    const got = await r.get(enc.encode('before-49'), { level: 'eventual' })
    expect(got.receipt.appliedIndex).toBeGreaterThanOrEqual(got.found!.version)
  })
})

describe('node/host: `all` writes across a change of leader', () => {
  it('an `all` write is answered though its leader handed over before the last voter reported', async () => {
    const c = await threeNodes()
    await write(c, 5, 'w-')
    const leader = await until('a leader', () => c.leader())
    const [f2, f3] = [n(1), n(2), n(3)].filter((id) => id !== leader.id) as [NodeId, NodeId]
    // f3's applied reports to the leader are lost until the leadership has moved on to f2.
    const t3 = c.net.nodes.get(f3)!
    let dropReports = true
    const send = t3.send.bind(t3)
    t3.send = (env) => {
      if (dropReports && env.to === leader.id && env.payload[0] === 2) return
      send(env)
    }
    const r = leader.host.replica(shard0)!
    const before = r.status().appliedIndex
    const put = r
      .put(enc.encode('all-key'), enc.encode('v'), { level: 'all', signal: AbortSignal.timeout(5_000) })
      .then(
        () => 'ok',
        (err: unknown) => String(err),
      )
    await until('f3 applied it', () => c.node(f3).host.replica(shard0)!.status().appliedIndex > before)
    await leader.host.transferLeader(shard0, f2, AbortSignal.timeout(5_000))
    dropReports = false
    await until('f2 leads', () => c.node(f2).host.replica(shard0)!.isLeader)
    // Later applies on every voter report again; the old leader hears them too.
    for (let i = 0; i < 5; i++)
      await c
        .node(f2)
        .host.replica(shard0)!
        .put(enc.encode(`more-${i}`), enc.encode('v'), { level: 'majority' })
    expect(await put).toBe('ok')
  })
})
