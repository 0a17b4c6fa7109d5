/**
 * The mover: replica moves as persisted step machines, run by the meta leader (ARCHITECTURE.md
 * section 4, "A node joins"). A move is recorded in the meta shard (records.ts MoveRecord) before
 * any of it happens, and each step is recorded before it is issued, so a new meta leader reads the
 * moves and carries on; every step is idempotent and carries the shard's epoch, so a replay does
 * nothing twice. The shard's own configuration (read from its leader) is the truth at every step.
 *
 *   prepare   the destination creates an empty replica (ReplicaService.PrepareReplica)
 *   learner   the shard's leader adds it as a learner (epoch + 1)
 *   catchup   wait until it installed a snapshot and is within a few entries of the leader
 *   transfer  if the source leads, leadership moves to another up-to-date voter first
 *   replace   destination in, source out, through joint consensus (epoch + 2)
 *   cleanup   the source drops its replica; the shard's record follows the new voters
 *
 * A move without a source adds a replica to a shard short of replicas (the executor's repair of a
 * shard left with fewer replicas than the replication factor): the same steps, but `transfer` has
 * nothing to do, `replace` promotes the caught-up learner to a voter (epoch + 1), and `cleanup`
 * drops no replica.
 *
 * Before `replace`, a move that cannot go on (the destination refused, died or made no progress
 * for `stallMsMax`) is rolled back: the learner is removed and the move ends `failed` with the
 * reason. Once `replace` was issued, a move always finishes. Failures of a step are retried with
 * the next poll; the reason shows in ListMoves meanwhile. Time and the network are injected.
 */
import type { Clock, TimerHandle } from '../common/clock.ts'
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError, isKvError } from '../common/errors.ts'
import type { NodeId, ShardId } from '../common/ids.ts'
import type { Logger } from '../common/logger.ts'
import { metaShardId, type ClusterMap } from './cluster-map.ts'
import type { LocalMeta } from './agent.ts'
import type { MetaStore } from './meta-store.ts'
import { type StoredMove } from './meta-store.ts'
import { checkMove, type MoveRequest } from './move-rules.ts'
import { peerAddressOf, type MoveRecord, type MoveStep, type ShardRecord } from './records.ts'
import type { ReplicaChange } from '../shard/index.ts'
import type { JobRecord } from './executor/job.ts'
import { describeError, leaderMetaStore, wholeMs, withDeadline } from './meta-leader.ts'

/** A shard's configuration as one of its replicas applied it. */
export interface ShardConfigInfo {
  readonly epoch: number
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
  readonly votersOutgoing: readonly NodeId[]
  /** 0 = unknown. */
  readonly leaderId: number
  readonly term: number
}

/** One node's replica of a shard (ReplicaService.ReplicaState). */
export interface ReplicaStateInfo {
  readonly found: boolean
  /** empty | installing | active | removing | tombstone */
  readonly state: string
  readonly role: string
  readonly config: ShardConfigInfo
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly progress: readonly {
    readonly nodeId: NodeId
    readonly match: number
    readonly isLearner: boolean
    readonly recentActive: boolean
    readonly snapshotBytesSent: number
  }[]
  readonly installBytes: number
  readonly approximateBytes: number
}

/** A change of a shard's members as its leader carries it out (shard/replica-change.ts). */
export type ReplicaChangeSpec = ReplicaChange

/** The replica service of other nodes (server/ wires it to gRPC; the simulator to its network). */
export interface ReplicaRemote {
  prepare(
    address: string,
    spec: { shardId: ShardId; kind: 'data' | 'meta'; hashStart: bigint; hashEnd: bigint; epoch: number },
    signal: AbortSignal,
  ): Promise<void>
  change(
    address: string,
    shardId: ShardId,
    epoch: number,
    change: ReplicaChangeSpec,
    signal: AbortSignal,
  ): Promise<ShardConfigInfo>
  transferLeader(address: string, shardId: ShardId, to: NodeId, signal: AbortSignal): Promise<ShardConfigInfo>
  state(address: string, shardId: ShardId, signal: AbortSignal): Promise<ReplicaStateInfo>
  destroy(
    address: string,
    shardId: ShardId,
    epoch: number,
    members: readonly NodeId[],
    signal: AbortSignal,
  ): Promise<void>
}

export interface MoverInit {
  readonly nodeId: NodeId
  /** How often the meta leader looks at the moves. */
  readonly pollMs: number
  /** Budget of one call to another node. */
  readonly callMs: number
  /** A move before `replace` that makes no progress this long is rolled back. */
  readonly stallMsMax: number
  /** Moves run at once, cluster-wide. */
  readonly concurrentMax: number
}

export interface MoverComponents {
  readonly clock: Clock
  readonly logger: Logger
  readonly remote: ReplicaRemote
  readonly localMeta: () => LocalMeta | undefined
  readonly map: () => ClusterMap
}

/** A move as ListMoves shows it: the record and what the mover knows of its progress. */
export interface MoveView extends MoveRecord {
  readonly bytesSent: number
  readonly bytesTotal: number
}

interface Progress {
  bytesSent: number
  bytesTotal: number
  /** The last time the learner's match or the snapshot bytes rose. */
  lastProgressMs: number
  lastMatch: number
  reason: string
}

/** Entries a learner may lag the leader by and count as caught up (shard/replica-change.ts). */
const caughtUpLag = 64

/** The nodes a move names, where the shard's leader may be found besides the map's replicas. */
function knownOf(move: MoveRecord): NodeId[] {
  return move.from === undefined ? [move.to] : [move.to, move.from]
}

export class Mover {
  private readonly init: MoverInit
  private readonly c: MoverComponents
  private readonly log: Logger
  private timer: TimerHandle | undefined
  private stopped = true
  private readonly inFlight = new Map<ShardId, Promise<void>>()
  private readonly progress = new Map<ShardId, Progress>()

  constructor(init: MoverInit, components: MoverComponents) {
    this.init = init
    this.c = components
    this.log = components.logger.child({ component: 'mover' })
  }

  start(): void {
    this.stopped = false
    this.schedule()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.timer?.cancel()
    await Promise.allSettled([...this.inFlight.values()])
  }

  // ---- operators (served on the meta leader; the agent passes calls there) ----

  /** Records a move after checking it (move-rules.ts); the meta leader runs it from the next poll. */
  async startMove(req: MoveRequest, signal: AbortSignal): Promise<MoveRecord> {
    return (await this.recordStart(req, signal)).move
  }

  /**
   * A move a rebalancing job starts: recorded only while the job record is still at `job.version`,
   * with `job.record` (the job counting it) in the same batch; VERSION_MISMATCH otherwise (an
   * operator paused or cancelled the job meanwhile: nothing starts). Answers the job's new version.
   */
  async startJobMove(
    req: MoveRequest,
    job: { readonly record: JobRecord; readonly version: number },
    signal: AbortSignal,
  ): Promise<number> {
    const { jobVersion } = await this.recordStart(req, signal, job)
    assert(jobVersion !== undefined && jobVersion > job.version, 'a job move start writes the job')
    return jobVersion
  }

  private async recordStart(
    req: MoveRequest,
    signal: AbortSignal,
    job?: { readonly record: JobRecord; readonly version: number },
  ): Promise<{ move: MoveRecord; jobVersion?: number }> {
    const store = this.store(signal)
    const map = await store.read()
    if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
    checkMove(map, req)
    const now = wholeMs(this.c.clock.wallMs())
    const move: MoveRecord = {
      shardId: req.shardId,
      ...(req.from === undefined ? {} : { from: req.from }),
      to: req.to,
      step: 'prepare',
      epoch: 0,
      startedMs: now,
      updatedMs: now,
      finishedMs: 0,
      reason: '',
    }
    const stored = await store.startMove(move, req.epoch, job)
    this.log.info({ shard: req.shardId, from: req.from, to: req.to }, 'move recorded')
    this.timer?.cancel()
    this.schedule(0)
    return stored
  }

  async list(signal: AbortSignal): Promise<{ running: MoveView[]; recent: MoveRecord[] }> {
    const store = this.store(signal)
    const running = (await store.moves()).map(({ move }) => this.viewOf(move))
    return { running, recent: await store.recentMoves() }
  }

  /** Moves `shardId`'s leadership to `to` (any node may call this); answers once `to` leads. */
  async transferLeader(shardId: ShardId, to: NodeId, signal: AbortSignal): Promise<ShardConfigInfo> {
    const shard = this.c.map().shard(shardId)
    if (shard === undefined)
      throw new KvError(ErrorCode.NotFound, `no shard ${shardId}`, { details: { field: 'shardId' } })
    const leader = await this.findLeader(shard, [to], signal)
    if (leader.nodeId === to) return leader.state.config
    return await this.c.remote.transferLeader(leader.address, shardId, to, signal)
  }

  viewOf(move: MoveRecord): MoveView {
    const p = this.progress.get(move.shardId)
    return {
      ...move,
      reason: move.reason !== '' ? move.reason : (p?.reason ?? ''),
      bytesSent: p?.bytesSent ?? 0,
      bytesTotal: p?.bytesTotal ?? 0,
    }
  }

  // ---- the loop (meta leader only) ----

  private schedule(delayMs = this.init.pollMs): void {
    if (this.stopped) return
    this.timer = this.c.clock.setTimer(delayMs, () => {
      void this.poll().finally(() => this.schedule())
    })
  }

  /** One poll and the steps it starts, awaited (the loop does this every pollMs; tests drive it). */
  async runOnce(): Promise<void> {
    await this.poll()
    await Promise.allSettled([...this.inFlight.values()])
  }

  private async poll(): Promise<void> {
    const local = this.c.localMeta()
    if (local?.isLeader !== true) return
    let moves: StoredMove[]
    try {
      moves = await this.withDeadline((signal) => this.store(signal).moves())
    } catch (err) {
      this.log.debug({ err: describeError(err) }, 'reading the moves failed')
      return
    }
    for (const id of this.progress.keys())
      if (!moves.some((m) => m.move.shardId === id) && !this.inFlight.has(id)) this.progress.delete(id)
    for (const stored of moves) {
      if (this.inFlight.has(stored.move.shardId)) continue
      if (this.inFlight.size >= this.init.concurrentMax) break
      const run = this.advance(stored).finally(() => this.inFlight.delete(stored.move.shardId))
      this.inFlight.set(stored.move.shardId, run)
    }
  }

  /** Runs the move's current step; records the next one (or the end), or the reason it waits. */
  private async advance(stored: StoredMove): Promise<void> {
    const { move } = stored
    const p = this.progressOf(move)
    try {
      const next = await this.withDeadline((signal) => this.step(move, p, signal))
      if (next.step !== move.step) p.reason = ''
      else if (move.step === 'catchup' && this.c.clock.nowMs() - p.lastProgressMs > this.init.stallMsMax)
        throw new KvError(
          ErrorCode.Unavailable,
          `no progress for ${Math.round((this.c.clock.nowMs() - p.lastProgressMs) / 1000)} s (${p.reason})`,
        )
      await this.record(stored, next)
    } catch (err) {
      p.reason = describeError(err)
      if (move.step === 'replace' || move.step === 'cleanup' || !this.givesUp(move, p, err)) {
        this.log.debug({ shard: move.shardId, step: move.step, err: p.reason }, 'move step did not complete')
        return
      }
      this.log.warn(
        { shard: move.shardId, step: move.step, err: p.reason },
        'move cannot go on: rolling back',
      )
      try {
        await this.withDeadline((signal) => this.rollBack(move, signal))
        await this.record(stored, { ...move, step: 'failed', reason: p.reason })
      } catch (rollbackErr) {
        this.log.warn(
          { shard: move.shardId, err: describeError(rollbackErr) },
          'rolling back the move failed; retrying',
        )
      }
    }
  }

  /** True when a move before `replace` should stop: a refusal that will not change, a dead destination, or no progress for too long. */
  private givesUp(move: MoveRecord, p: Progress, err: unknown): boolean {
    if (isKvError(err) && (err.code === ErrorCode.MoveRefused || err.code === ErrorCode.StaleEpoch))
      return true
    const to = this.c.map().node(move.to)
    if (to === undefined || to.state === 'dead') return true
    return this.c.clock.nowMs() - p.lastProgressMs > this.init.stallMsMax
  }

  private async record(stored: StoredMove, next: MoveRecord): Promise<void> {
    const now = wholeMs(this.c.clock.wallMs())
    if (next.step === 'done' || next.step === 'failed' || next.step === 'cancelled') {
      const ended = { ...next, updatedMs: now, finishedMs: now }
      await this.withDeadline((signal) => this.store(signal).finishMove(ended, stored.version))
      this.log.info(
        { shard: next.shardId, from: next.from, to: next.to, step: next.step, reason: next.reason },
        'move ended',
      )
      return
    }
    if (next.step === stored.move.step && next.epoch === stored.move.epoch) return
    await this.withDeadline((signal) =>
      this.store(signal).updateMove({ ...next, updatedMs: now }, stored.version),
    )
    this.log.info({ shard: next.shardId, step: next.step, epoch: next.epoch }, 'move step')
  }

  private async step(move: MoveRecord, p: Progress, signal: AbortSignal): Promise<MoveRecord> {
    const map = this.c.map()
    const shard = map.shard(move.shardId)
    if (shard === undefined) throw new KvError(ErrorCode.NotFound, `no shard ${move.shardId}`)
    const next = (step: MoveStep, epoch = move.epoch): MoveRecord => ({ ...move, step, epoch, reason: '' })
    switch (move.step) {
      case 'prepare': {
        await this.c.remote.prepare(
          this.addressOf(move.to),
          {
            shardId: move.shardId,
            kind: move.shardId === metaShardId ? 'meta' : 'data',
            hashStart: shard.hashStart,
            hashEnd: shard.hashEnd,
            epoch: Math.max(shard.epoch, move.epoch, 1),
          },
          signal,
        )
        return next('learner')
      }
      case 'learner': {
        const leader = await this.findLeader(shard, knownOf(move), signal)
        const config = await this.c.remote.change(
          leader.address,
          move.shardId,
          leader.state.config.epoch,
          { kind: 'addLearner', node: move.to },
          signal,
        )
        p.lastProgressMs = this.c.clock.nowMs()
        return next('catchup', config.epoch)
      }
      case 'catchup': {
        const leader = await this.findLeader(shard, knownOf(move), signal)
        const config = leader.state.config
        const member = config.learners.includes(move.to) || config.voters.includes(move.to)
        if (!member) return next('learner', config.epoch)
        const dest = await this.c.remote.state(this.addressOf(move.to), move.shardId, signal)
        // The destination lost its empty replica (dropped as unused while this move waited, or its
        // data directory was replaced): create it again.
        if (!dest.found || dest.state === 'tombstone' || dest.state === 'removing')
          return next('prepare', config.epoch)
        const peer = leader.state.progress.find((x) => x.nodeId === move.to)
        const bytes = Math.max(peer?.snapshotBytesSent ?? 0, dest.installBytes)
        const match = peer?.match ?? 0
        if (bytes > p.bytesSent || match > p.lastMatch) p.lastProgressMs = this.c.clock.nowMs()
        p.bytesSent = Math.max(p.bytesSent, bytes)
        p.lastMatch = Math.max(p.lastMatch, match)
        p.bytesTotal = Math.max(p.bytesTotal, leader.state.approximateBytes)
        const caughtUp =
          dest.state === 'active' &&
          peer !== undefined &&
          peer.recentActive &&
          peer.match > 0 &&
          peer.match + caughtUpLag >= leader.state.lastIndex
        if (!caughtUp) {
          p.reason =
            dest.state === 'active'
              ? `catching up with the log (${leader.state.lastIndex - match} entries behind)`
              : dest.state === 'installing'
                ? 'receiving a snapshot'
                : 'waiting for a snapshot'
          return { ...move, epoch: config.epoch }
        }
        return next('transfer', config.epoch)
      }
      case 'transfer': {
        const leader = await this.findLeader(shard, knownOf(move), signal)
        if (move.from === undefined || leader.nodeId !== move.from)
          return next('replace', leader.state.config.epoch)
        const target = leader.state.config.voters.find(
          (id) =>
            id !== move.from &&
            leader.state.progress.some(
              (x) => x.nodeId === id && x.recentActive && x.match + caughtUpLag >= leader.state.lastIndex,
            ),
        )
        if (target === undefined)
          throw new KvError(ErrorCode.Unavailable, 'no up-to-date voter to lead the shard')
        await this.c.remote.transferLeader(leader.address, move.shardId, target, signal)
        return next('replace', leader.state.config.epoch)
      }
      case 'replace': {
        const leader = await this.findLeader(shard, knownOf(move), signal)
        const config = leader.state.config
        const done =
          config.votersOutgoing.length === 0 &&
          config.voters.includes(move.to) &&
          (move.from === undefined ||
            (!config.voters.includes(move.from) && !config.learners.includes(move.from)))
        if (done) return next('cleanup', config.epoch)
        // The destination is no member (a rollback cut short by a crash removed its learner, and
        // the move was never recorded failed): catch it up again (catch-up adds it back first).
        if (![...config.voters, ...config.learners, ...config.votersOutgoing].includes(move.to))
          return next('catchup', config.epoch)
        // The learner fell behind after catching up (it died or was cut off): back to catch-up,
        // which rolls the move back when it stays behind or is dead (the leader would refuse the
        // replace for ever, and a move never gives up at replace).
        const peer = leader.state.progress.find((x) => x.nodeId === move.to)
        const behind =
          peer === undefined || !peer.recentActive || peer.match + caughtUpLag < leader.state.lastIndex
        if (config.learners.includes(move.to) && behind) {
          p.lastProgressMs = this.c.clock.nowMs()
          return next('catchup', config.epoch)
        }
        if (leader.nodeId === move.from) return next('transfer', config.epoch)
        const after = await this.c.remote.change(
          leader.address,
          move.shardId,
          config.epoch,
          move.from === undefined
            ? { kind: 'promote', node: move.to }
            : { kind: 'replace', add: move.to, remove: move.from },
          signal,
        )
        return next('cleanup', after.epoch)
      }
      case 'cleanup': {
        const leader = await this.findLeader(shard, [move.to], signal)
        const config = leader.state.config
        const members = [...config.voters, ...config.learners, ...config.votersOutgoing]
        const from = move.from === undefined ? undefined : map.node(move.from)
        if (from !== undefined && from.state !== 'dead') {
          try {
            await this.c.remote.destroy(peerAddressOf(from), move.shardId, config.epoch, members, signal)
          } catch (err) {
            // The source comes back to a replica the shard no longer has; its own check (agent.ts,
            // replica collection) drops it then. The move does not wait for it.
            this.log.warn(
              { shard: move.shardId, from: move.from, err: describeError(err) },
              'source not told to drop its replica',
            )
          }
        }
        await this.store(signal).followShard(move.shardId, config.voters, config.epoch)
        return next('done', config.epoch)
      }
      case 'done':
      case 'failed':
      case 'cancelled':
        return move
    }
  }

  /** Undoes a move before `replace`: the learner leaves the shard, the destination drops its replica. */
  private async rollBack(move: MoveRecord, signal: AbortSignal): Promise<void> {
    const shard = this.c.map().shard(move.shardId)
    if (shard === undefined) return
    const leader = await this.findLeader(shard, move.from === undefined ? [] : [move.from], signal)
    const config = leader.state.config
    let after = config
    if (config.learners.includes(move.to))
      after = await this.c.remote.change(
        leader.address,
        move.shardId,
        config.epoch,
        { kind: 'remove', node: move.to },
        signal,
      )
    const to = this.c.map().node(move.to)
    if (to !== undefined && to.state !== 'dead') {
      const members = [...after.voters, ...after.learners]
      await this.c.remote
        .destroy(peerAddressOf(to), move.shardId, after.epoch, members, signal)
        .catch((err: unknown) =>
          this.log.warn(
            { shard: move.shardId, to: move.to, err: describeError(err) },
            'destination not told to drop its replica',
          ),
        )
    }
  }

  /**
   * The shard's leader and its view: the map's hint first, then every replica the map and the move
   * know of, following the leader each names. UNAVAILABLE when none leads (an election).
   */
  private async findLeader(
    shard: ShardRecord,
    extra: readonly NodeId[],
    signal: AbortSignal,
  ): Promise<{ nodeId: NodeId; address: string; state: ReplicaStateInfo }> {
    const queue: NodeId[] = []
    const add = (id: number): void => {
      if (id > 0 && !queue.includes(id as NodeId)) queue.push(id as NodeId)
    }
    add(shard.leaderHint)
    for (const id of shard.replicas) add(id)
    for (const id of extra) add(id)
    let last: unknown
    for (let i = 0; i < queue.length; i++) {
      const id = queue[i]!
      const node = this.c.map().node(id)
      if (node === undefined || node.state === 'dead') continue
      try {
        const state = await this.c.remote.state(peerAddressOf(node), shard.shardId, signal)
        if (state.found && state.role === 'leader') return { nodeId: id, address: peerAddressOf(node), state }
        if (state.found) add(state.config.leaderId)
      } catch (err) {
        last = err
      }
    }
    throw new KvError(ErrorCode.Unavailable, `shard ${shard.shardId} has no leader that answers`, {
      details: { shardId: shard.shardId },
      ...(last === undefined ? {} : { cause: last }),
    })
  }

  private addressOf(id: NodeId): string {
    const node = this.c.map().node(id)
    if (node === undefined) throw new KvError(ErrorCode.NotFound, `no node ${id}`)
    return peerAddressOf(node)
  }

  private progressOf(move: MoveRecord): Progress {
    let p = this.progress.get(move.shardId)
    if (p === undefined) {
      p = { bytesSent: 0, bytesTotal: 0, lastProgressMs: this.c.clock.nowMs(), lastMatch: 0, reason: '' }
      this.progress.set(move.shardId, p)
    }
    return p
  }

  private store(signal: AbortSignal): MetaStore {
    return leaderMetaStore(this.c.localMeta(), signal)
  }

  private async withDeadline<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return await withDeadline(this.c.clock, this.init.callMs, run)
  }
}
