/**
 * The mover's step machine against a model of one shard behind a fake replica service, with the
 * real MetaStore on a meta replica: a move runs its steps in order and records each; the source's
 * leadership moves away first; a new meta leader (a new mover over the same meta shard) carries on
 * where the last stopped; a move that cannot go on before `replace` is rolled back and fails with
 * its reason; the rules refuse bad moves before anything is recorded.
 */
import { describe, expect, it } from 'vitest'
import { ErrorCode, KvError, NodeId, ShardId, silentLogger } from '../../../src/common/index.ts'
import {
  MetaStore,
  Mover,
  checkMove,
  metaShardId,
  type ClusterMap,
  type LocalMeta,
  type ReplicaChangeSpec,
  type ReplicaRemote,
  type ReplicaStateInfo,
  type ShardConfigInfo,
} from '../../../src/cluster/index.ts'
import type { Replica } from '../../../src/shard/index.ts'
import { ManualClock, handMap, kvError, node, openMetaReplica } from './fixtures.ts'

const n = (i: number): NodeId => NodeId(i)
const shard0 = ShardId(0)
const idOf = (address: string): NodeId => n(Number(/^n(\d+):/.exec(address)![1]))

/** One shard's replicas as its leader and each node see them; moves happen to it through the fake service. */
class FakeShard implements ReplicaRemote {
  voters: NodeId[] = [n(1), n(2), n(3)]
  learners: NodeId[] = []
  leader: NodeId = n(2)
  epoch = 1
  lastIndex = 100
  /** Per node: its replica's lifecycle ('' = none). */
  readonly states = new Map<NodeId, string>([
    [n(1), 'active'],
    [n(2), 'active'],
    [n(3), 'active'],
  ])
  /** Polls of the learner's progress before it counts as caught up. */
  catchupPolls = 2
  readonly dead = new Set<NodeId>()
  readonly calls: string[] = []
  /** Makes the next prepare fail with this error. */
  prepareFails: KvError | undefined

  private check(address: string): NodeId {
    const id = idOf(address)
    if (this.dead.has(id)) throw new KvError(ErrorCode.Unavailable, `node ${id} does not answer`)
    return id
  }

  private config(): ShardConfigInfo {
    return {
      epoch: this.epoch,
      voters: [...this.voters],
      learners: [...this.learners],
      votersOutgoing: [],
      leaderId: this.leader,
      term: 3,
    }
  }

  async prepare(address: string, spec: { kind: string }): Promise<void> {
    const id = this.check(address)
    this.calls.push(`prepare ${id} ${spec.kind}`)
    if (this.prepareFails !== undefined) throw this.prepareFails
    if (this.states.get(id) !== 'active') this.states.set(id, 'empty')
  }

  async change(
    address: string,
    _shardId: ShardId,
    epoch: number,
    change: ReplicaChangeSpec,
  ): Promise<ShardConfigInfo> {
    const id = this.check(address)
    this.calls.push(`change ${change.kind} at ${epoch}`)
    if (id !== this.leader)
      throw new KvError(ErrorCode.NotLeader, 'not the leader', { details: { leaderHint: this.leader } })
    const done =
      (change.kind === 'addLearner' &&
        (this.learners.includes(change.node) || this.voters.includes(change.node))) ||
      (change.kind === 'replace' &&
        this.voters.includes(change.add) &&
        !this.voters.includes(change.remove)) ||
      (change.kind === 'remove' &&
        !this.voters.includes(change.node) &&
        !this.learners.includes(change.node)) ||
      (change.kind === 'promote' && this.voters.includes(change.node))
    if (done) return this.config()
    if (epoch !== this.epoch) throw new KvError(ErrorCode.StaleEpoch, `at epoch ${this.epoch}`)
    switch (change.kind) {
      case 'addLearner':
        this.learners.push(change.node)
        this.epoch += 1
        break
      case 'replace':
        if (change.remove === this.leader)
          throw new KvError(ErrorCode.MoveRefused, 'transfer leadership first')
        if (!this.learners.includes(change.add))
          throw new KvError(ErrorCode.MoveRefused, `node ${change.add} must be a learner of the shard first`)
        // As the leader does: a learner it does not hear from is not caught up.
        if (this.dead.has(change.add))
          throw new KvError(ErrorCode.MoveRefused, `learner ${change.add} has not caught up yet`)
        this.voters = [...this.voters.filter((v) => v !== change.remove), change.add]
        this.learners = this.learners.filter((l) => l !== change.add)
        this.epoch += 2
        break
      case 'remove':
        this.learners = this.learners.filter((l) => l !== change.node)
        this.voters = this.voters.filter((v) => v !== change.node)
        this.epoch += 1
        break
      case 'promote':
        if (!this.learners.includes(change.node))
          throw new KvError(ErrorCode.MoveRefused, `node ${change.node} is not a learner of the shard`)
        this.voters = [...this.voters, change.node]
        this.learners = this.learners.filter((l) => l !== change.node)
        this.epoch += 1
        break
    }
    return this.config()
  }

  async transferLeader(address: string, _shardId: ShardId, to: NodeId): Promise<ShardConfigInfo> {
    this.check(address)
    this.calls.push(`transfer to ${to}`)
    this.leader = to
    return this.config()
  }

  async state(address: string): Promise<ReplicaStateInfo> {
    const id = this.check(address)
    const state = this.states.get(id) ?? ''
    const learner = this.learners.find((l) => (this.states.get(l) ?? '') !== '')
    let progress: ReplicaStateInfo['progress'] = []
    if (id === this.leader) {
      progress = [...this.voters, ...this.learners]
        .filter((m) => m !== id)
        .map((m) => {
          const caughtUp =
            !this.learners.includes(m) || (this.catchupPolls <= 0 && this.states.get(m) === 'active')
          return {
            nodeId: m,
            match: caughtUp ? this.lastIndex : 0,
            isLearner: this.learners.includes(m),
            recentActive: !this.dead.has(m),
            snapshotBytesSent: 1000,
          }
        })
      if (learner !== undefined && this.learners.includes(learner) && this.catchupPolls-- <= 0)
        this.states.set(learner, 'active')
    }
    return {
      found: state !== '',
      state,
      role: id === this.leader ? 'leader' : state === '' ? '' : 'follower',
      config: this.config(),
      appliedIndex: this.lastIndex,
      lastIndex: this.lastIndex,
      progress,
      installBytes: 0,
      approximateBytes: 4000,
    }
  }

  async destroy(address: string, _shardId: ShardId, epoch: number): Promise<void> {
    const id = this.check(address)
    this.calls.push(`destroy ${id} at ${epoch}`)
    this.states.set(id, 'tombstone')
  }
}

interface Rig {
  readonly shard: FakeShard
  readonly replica: Replica
  readonly clock: ManualClock
  map: ClusterMap
  mover(): Mover
}

async function rig(replicas: readonly number[] = [1, 2, 3]): Promise<Rig> {
  const replica = await openMetaReplica()
  const clock = new ManualClock()
  const map = handMap([node(1), node(2), node(3), node(4), node(5, 'dead')], [replicas], { hints: [2] })
  expect(await new MetaStore(replica).bootstrap(map)).toBe(true)
  const shard = new FakeShard()
  shard.voters = replicas.map(n)
  for (const id of [1, 2, 3]) if (!replicas.includes(id)) shard.states.delete(n(id))
  const r: Rig = {
    shard,
    replica,
    clock,
    map,
    mover: () =>
      new Mover(
        { nodeId: n(1), pollMs: 100, callMs: 5000, stallMsMax: 60_000, concurrentMax: 2 },
        {
          clock,
          logger: silentLogger,
          remote: shard,
          localMeta: (): LocalMeta => ({ replica, isLeader: true, leaderId: n(1) }),
          map: () => r.map,
        },
      ),
  }
  return r
}

/** Polls until the move of shard 0 ended (or `limit` polls passed). */
/** Runs the mover until no move is running; the steps the move went through, in order. */
async function stepsToEnd(mover: Mover, limit = 30): Promise<string[]> {
  const steps: string[] = []
  for (let i = 0; i < limit; i++) {
    await mover.runOnce()
    const { running, recent } = await mover.list(new AbortController().signal)
    const m = running[0] ?? recent[0]
    if (m !== undefined && steps.at(-1) !== m.step) steps.push(m.step)
    if (running.length === 0) return steps
  }
  throw new Error('the move did not end')
}

async function runToEnd(mover: Mover, limit = 30): Promise<void> {
  await stepsToEnd(mover, limit)
}

/** Runs the mover until its running move reaches `step` (at most `limit` rounds). */
async function runToStep(mover: Mover, step: string, limit = 30): Promise<void> {
  for (let i = 0; i < limit; i++) {
    await mover.runOnce()
    if ((await mover.list(new AbortController().signal)).running[0]?.step === step) return
  }
}

const signal = (): AbortSignal => new AbortController().signal

/** Node 4, a move's destination holding a learner, dies: the move ends failed, rolled back. */
async function expectRolledBackAfterDestinationDies(r: Rig, mover: Mover): Promise<void> {
  r.shard.dead.add(n(4))
  r.map = handMap([node(1), node(2), node(3), node(4, 'dead'), node(5, 'dead')], [[1, 2, 3]], {
    hints: [2],
  })
  await runToEnd(mover)
  const { recent } = await mover.list(signal())
  expect(recent[0]?.step).toBe('failed')
  expect(r.shard.learners).toEqual([])
  expect(r.shard.voters.sort()).toEqual([1, 2, 3])
}

describe('cluster/mover', () => {
  it('runs a move step by step and records it: learner, catch-up, replace, cleanup; the map follows', async () => {
    const r = await rig()
    const mover = r.mover()
    const move = await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    expect(move.step).toBe('prepare')
    const steps = await stepsToEnd(mover)
    expect(steps).toEqual(['learner', 'catchup', 'transfer', 'replace', 'cleanup', 'done'])
    expect(r.shard.voters.sort()).toEqual([2, 3, 4])
    expect(r.shard.states.get(n(1))).toBe('tombstone')
    expect(r.shard.calls.filter((c) => c.startsWith('transfer'))).toEqual([]) // node 1 did not lead
    const after = await new MetaStore(r.replica).read()
    expect(after?.shard(shard0)).toMatchObject({ replicas: [2, 3, 4], epoch: r.shard.epoch })
    const { recent } = await mover.list(signal())
    expect(recent[0]).toMatchObject({ shardId: 0, from: 1, to: 4, step: 'done', reason: '' })
  })

  it('adds a replica to a shard short of one (no source): learner, catch-up, promote; nothing is dropped', async () => {
    const r = await rig([1, 2])
    const mover = r.mover()
    const move = await mover.startMove({ shardId: shard0, to: n(4), epoch: 0 }, signal())
    expect(move.from).toBeUndefined()
    const steps = await stepsToEnd(mover)
    expect(steps).toEqual(['learner', 'catchup', 'transfer', 'replace', 'cleanup', 'done'])
    expect(r.shard.voters.sort()).toEqual([1, 2, 4])
    expect(r.shard.learners).toEqual([])
    expect(r.shard.calls.filter((c) => c.startsWith('change'))).toEqual([
      'change addLearner at 1',
      'change promote at 2',
    ])
    expect(r.shard.calls.filter((c) => c.startsWith('destroy') || c.startsWith('transfer'))).toEqual([])
    const after = await new MetaStore(r.replica).read()
    expect(after?.shard(shard0)).toMatchObject({ replicas: [1, 2, 4], epoch: 3 })
    const { recent } = await mover.list(signal())
    expect(recent[0]).toMatchObject({ shardId: 0, to: 4, step: 'done', reason: '' })
    expect(recent[0]?.from).toBeUndefined()
  })

  it('an add carried on by a new meta leader promotes once; one rolled back leaves the shard as it was', async () => {
    const r = await rig([1, 2])
    const first = r.mover()
    await first.startMove({ shardId: shard0, to: n(4), epoch: 0 }, signal())
    await runToStep(first, 'replace')
    await runToEnd(r.mover())
    expect(r.shard.voters.sort()).toEqual([1, 2, 4])
    expect(r.shard.calls.filter((c) => c.startsWith('change promote'))).toHaveLength(1)

    const failing = await rig([1, 2])
    failing.shard.prepareFails = new KvError(ErrorCode.MoveRefused, 'disk full')
    const mover = failing.mover()
    await mover.startMove({ shardId: shard0, to: n(4), epoch: 0 }, signal())
    await runToEnd(mover)
    expect((await mover.list(signal())).recent[0]).toMatchObject({ step: 'failed' })
    expect(failing.shard.voters.sort()).toEqual([1, 2])
    expect(failing.shard.learners).toEqual([])
  })

  it('moves the meta shard like a data shard: a meta replica is prepared, and the meta record of the map follows', async () => {
    const r = await rig()
    const mover = r.mover()
    await mover.startMove({ shardId: metaShardId, from: n(2), to: n(4), epoch: 0 }, signal())
    await runToEnd(mover)
    expect((await mover.list(signal())).recent[0]).toMatchObject({ shardId: metaShardId, step: 'done' })
    expect(r.shard.calls).toContain('prepare 4 meta')
    // Node 2 led: leadership moved first, then the replace.
    expect(r.shard.calls.findIndex((c) => c.startsWith('transfer'))).toBeLessThan(
      r.shard.calls.findIndex((c) => c.startsWith('change replace')),
    )
    expect(r.shard.voters.sort()).toEqual([1, 3, 4])
    const after = await new MetaStore(r.replica).read()
    expect(after?.meta).toMatchObject({ replicas: [1, 3, 4], epoch: r.shard.epoch })
    expect(after?.shard(shard0)?.replicas).toEqual([1, 2, 3])
  })

  it('records whole milliseconds when the wall clock reads a fraction (the record stays decodable)', async () => {
    const r = await rig()
    r.clock.wall = 1_700_000_000_000.25
    const mover = r.mover()
    const move = await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    expect(move.startedMs).toBe(1_700_000_000_000)
    r.clock.wall = 1_700_000_000_123.75
    await runToEnd(mover)
    const { recent } = await mover.list(signal())
    expect(recent[0]).toMatchObject({
      step: 'done',
      startedMs: 1_700_000_000_000,
      finishedMs: 1_700_000_000_123,
    })
  })

  it('moves leadership away from a source that leads before replacing it', async () => {
    const r = await rig()
    r.shard.leader = n(1)
    const mover = r.mover()
    await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    await runToEnd(mover)
    const transfer = r.shard.calls.findIndex((c) => c.startsWith('transfer'))
    const replace = r.shard.calls.findIndex((c) => c.startsWith('change replace'))
    expect(transfer).toBeGreaterThanOrEqual(0)
    expect(transfer).toBeLessThan(replace)
    expect(r.shard.leader).not.toBe(1)
    expect(r.shard.voters.sort()).toEqual([2, 3, 4])
  })

  it('a new meta leader carries on from the recorded step; nothing is done twice', async () => {
    const r = await rig()
    const first = r.mover()
    await first.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    await first.runOnce()
    await first.runOnce()
    await first.runOnce()
    const { running } = await first.list(signal())
    expect(running[0]?.step).toBe('catchup')
    // The meta leader dies; another (a fresh mover, same meta shard) takes over.
    const second = r.mover()
    await runToEnd(second)
    expect(r.shard.voters.sort()).toEqual([2, 3, 4])
    expect(r.shard.calls.filter((c) => c.startsWith('change addLearner'))).toHaveLength(1)
    expect(r.shard.calls.filter((c) => c.startsWith('change replace'))).toHaveLength(1)
    expect(r.shard.epoch).toBe(4)
  })

  it('a move recorded at replace whose learner is gone (a rollback cut short) catches it up again', async () => {
    const r = await rig()
    const first = r.mover()
    await first.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    await runToStep(first, 'replace')
    expect((await first.list(signal())).running[0]?.step).toBe('replace')
    // A rollback removed the learner, and the meta leader died before it recorded the move failed.
    r.shard.learners = []
    r.shard.epoch += 1
    r.shard.states.set(n(4), 'tombstone')
    const second = r.mover()
    await runToEnd(second)
    const { recent } = await second.list(signal())
    expect(recent[0]).toMatchObject({ step: 'done' })
    expect(r.shard.voters.sort()).toEqual([2, 3, 4])
    expect(r.shard.calls.filter((c) => c.startsWith('change addLearner'))).toHaveLength(2)
  })

  it('rolls back a move whose destination refuses, and ends it failed with the reason', async () => {
    const r = await rig()
    r.shard.prepareFails = new KvError(ErrorCode.StaleEpoch, 'node 4 left shard 0 later')
    const mover = r.mover()
    await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    await runToEnd(mover)
    const { recent } = await mover.list(signal())
    expect(recent[0]).toMatchObject({ step: 'failed' })
    expect(recent[0]?.reason).toContain('STALE_EPOCH')
    expect(r.shard.voters.sort()).toEqual([1, 2, 3])
    expect(r.shard.learners).toEqual([])
  })

  it('rolls back a move whose destination died before replace: the learner leaves, the source stays', async () => {
    const r = await rig()
    r.shard.catchupPolls = 1000
    const mover = r.mover()
    await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    for (let i = 0; i < 4; i++) await mover.runOnce()
    expect(r.shard.learners).toEqual([4])
    await expectRolledBackAfterDestinationDies(r, mover)
  })

  it('rolls back a move whose destination died at replace, after it caught up (the leader refuses the replace for ever)', async () => {
    const r = await rig()
    const mover = r.mover()
    await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 0 }, signal())
    await runToStep(mover, 'replace')
    expect((await mover.list(signal())).running[0]?.step).toBe('replace')
    expect(r.shard.learners).toEqual([4])
    await expectRolledBackAfterDestinationDies(r, mover)
  })

  it('refuses bad moves before recording anything, with stable codes', async () => {
    const r = await rig()
    const mover = r.mover()
    const code = async (req: {
      from: number
      to: number
      shardId?: number
      epoch?: number
    }): Promise<string> =>
      (
        await kvError(() =>
          mover.startMove(
            { shardId: ShardId(req.shardId ?? 0), from: n(req.from), to: n(req.to), epoch: req.epoch ?? 0 },
            signal(),
          ),
        )
      ).code
    expect(await code({ shardId: 7, from: 1, to: 4 })).toBe(ErrorCode.NotFound)
    expect(await code({ from: 1, to: 9 })).toBe(ErrorCode.NotFound)
    expect(await code({ from: 4, to: 1 })).toBe(ErrorCode.MoveRefused) // source holds none
    expect(await code({ from: 1, to: 2 })).toBe(ErrorCode.MoveRefused) // destination holds one
    expect(await code({ from: 1, to: 5 })).toBe(ErrorCode.MoveRefused) // destination dead
    expect(await code({ from: 1, to: 4, epoch: 3 })).toBe(ErrorCode.StaleEpoch)
    // No source: only a shard short of replicas gains one.
    const add = await kvError(() => mover.startMove({ shardId: shard0, to: n(4), epoch: 0 }, signal()))
    expect(add.code).toBe(ErrorCode.MoveRefused)
    expect(add.details?.field).toBe('from')
    await mover.startMove({ shardId: shard0, from: n(1), to: n(4), epoch: 1 }, signal())
    expect(await code({ from: 2, to: 4 })).toBe(ErrorCode.ShardBusy)
    expect((await mover.list(signal())).running).toHaveLength(1)
  })

  it('keeps a zone for each replica while the cluster has zones enough', () => {
    const map = handMap(
      [
        node(1, 'active', 'a'),
        node(2, 'active', 'b'),
        node(3, 'active', 'c'),
        node(4, 'active', 'a'),
        node(5, 'active', 'd'),
      ],
      [[1, 2, 3]],
    )
    // Moving 2 (zone b) to 4 (zone a) puts two replicas in zone a, with 4 zones about: refused.
    const err = (() => {
      try {
        checkMove(map, { shardId: shard0, from: n(2), to: n(4), epoch: 0 })
      } catch (e) {
        return e as KvError
      }
      return undefined
    })()
    expect(err?.code).toBe(ErrorCode.MoveRefused)
    expect(err?.details?.field).toBe('to')
    // Moving 1 (zone a) to 4 (zone a) or to 5 (zone d) is fine.
    expect(checkMove(map, { shardId: shard0, from: n(1), to: n(4), epoch: 0 }).shardId).toBe(0)
    expect(checkMove(map, { shardId: shard0, from: n(2), to: n(5), epoch: 0 }).shardId).toBe(0)
  })
})
