/**
 * MetaStore: the meta shard's transactions. The meta shard is a Raft group whose state machine is
 * the KV state machine over its own key space (keys.ts shardDataKey), as CockroachDB keeps its
 * range descriptors and liveness records in ordinary ranges; the registry and the map are records
 * (records.ts) changed only by compare-and-set batches, so two meta leaders in a row (or a retry
 * whose first attempt did land) can never tear or double-apply a change.
 *
 * Every method runs against the local replica of the meta shard and needs it to lead (the reads
 * are linearizable, the writes majority); the caller (agent.ts) sends the work to the leader.
 */
import { ErrorCode, KvError, isKvErrorWithCode } from '../common/errors.ts'
import { NodeId, ShardId } from '../common/ids.ts'
import type { BatchOp, BatchOpResult, Replica } from '../shard/index.ts'
import { ClusterMap, metaShardId } from './cluster-map.ts'
import { decodeJob, encodeJob, jobKey, type JobRecord } from './executor/job.ts'
import type { StateChange } from './liveness.ts'
import {
  decodeCluster,
  decodeCounter,
  decodeMove,
  decodeMoveIndex,
  decodeNode,
  decodeRecentMoves,
  decodeShard,
  encodeCluster,
  encodeCounter,
  encodeMove,
  encodeMoveIndex,
  encodeNode,
  encodeRecentMoves,
  encodeShard,
  metaKeys,
  type MoveRecord,
  type NodeRecord,
  type NodeState,
  type ShardRecord,
} from './records.ts'

/** Compare-and-set attempts of one transaction before it gives up (OVERLOADED). */
export const metaTxnAttemptsMax = 8
/** Records read or written per meta command (stays well under limits.batchOpsMax). */
export const metaBatchRecordsMax = 256
/** Finished moves the meta shard remembers for operators (newest first). */
export const recentMovesMax = 32

export interface LeaderReport {
  readonly shardId: ShardId
  readonly term: number
  /** The shard's epoch and voters as its leader applied them (absent: only the leader hint). */
  readonly epoch?: number
  readonly voters?: readonly NodeId[]
  /** The shard's size as the leader's storage estimates it (absent: unknown). Not stored. */
  readonly approximateBytes?: number
}

/** A move record with the version its compare-and-set needs. */
export interface StoredMove {
  readonly move: MoveRecord
  readonly version: number
}

/**
 * The shard's replicas in preference order after its voters became `voters`: the old order for the
 * voters that stay (the first is still the preferred leader when it stays), then the new ones.
 */
export function followVoters(replicas: readonly NodeId[], voters: readonly NodeId[]): NodeId[] {
  const stay = replicas.filter((id) => voters.includes(id))
  const joined = [...voters].filter((id) => !replicas.includes(id)).sort((a, b) => a - b)
  return [...stay, ...joined]
}

export class MetaStore {
  private readonly replica: Replica
  private readonly signal: AbortSignal | undefined

  constructor(replica: Replica, signal?: AbortSignal) {
    this.replica = replica
    this.signal = signal
  }

  /** The map in the meta shard, or undefined before the first meta leader wrote it. */
  async read(): Promise<ClusterMap | undefined> {
    const [clusterRaw] = await this.getMany([metaKeys.cluster])
    if (clusterRaw === undefined || clusterRaw === null) return undefined
    const cluster = decodeCluster(clusterRaw.value)
    const nextId = await this.nextNodeId()
    const nodeKeys = Array.from({ length: nextId - 1 }, (_, i) => metaKeys.node(NodeId(i + 1)))
    const nodes = (await this.getMany(nodeKeys)).flatMap((v) => (v === null ? [] : [decodeNode(v.value)]))
    const shardKeys = Array.from({ length: cluster.shardCount }, (_, i) => metaKeys.shard(ShardId(i)))
    const shards = (await this.getMany([...shardKeys, metaKeys.metaShard])).map((v) => {
      if (v === null) throw new KvError(ErrorCode.Internal, 'the meta shard lacks a shard record')
      return decodeShard(v.value)
    })
    const meta = shards.pop()!
    return new ClusterMap(cluster, nodes, shards, meta)
  }

  /**
   * Writes `map` as the cluster's first map unless one is there. Records go in chunks; the cluster
   * record goes last with compare-and-set "absent", so a reader sees either no map or all of it,
   * and two leaders racing write the same (deterministic) records.
   */
  async bootstrap(map: ClusterMap): Promise<boolean> {
    const [existing] = await this.getMany([metaKeys.cluster])
    if (existing !== null && existing !== undefined) return false
    const records: BatchOp[] = [
      ...[...map.nodes.values()].map((n) => put(metaKeys.node(n.id), encodeNode(n))),
      ...map.shards.map((s) => put(metaKeys.shard(s.shardId), encodeShard(s))),
      put(metaKeys.metaShard, encodeShard(map.meta)),
      put(metaKeys.nodeNextId, encodeCounter(Math.max(0, ...map.nodes.keys()) + 1)),
    ]
    for (let i = 0; i < records.length; i += metaBatchRecordsMax)
      await this.batch(records.slice(i, i + metaBatchRecordsMax))
    try {
      await this.batch([put(metaKeys.cluster, encodeCluster(map.cluster), 0)])
    } catch (err) {
      if (isKvErrorWithCode(err, ErrorCode.VersionMismatch)) return false
      throw err
    }
    return true
  }

  /**
   * Registers a node: a new id for a new address, or the existing record for an address already
   * registered (a join retried after a lost answer gets its first id).
   */
  async register(address: string, zone: string, weight: number, peerAddress?: string): Promise<NodeRecord> {
    return await this.transaction(async () => {
      // The counter first: a registration landing between it and the address scan below changes
      // its version, so this transaction's compare-and-set fails and it starts over (one id per address).
      const [counter] = await this.getMany([metaKeys.nodeNextId])
      const map = await this.read()
      if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
      for (const n of map.nodes.values()) if (n.address === address) return { done: n }
      if (counter === null || counter === undefined)
        throw new KvError(ErrorCode.Internal, 'the meta shard lacks node-next-id')
      const id = NodeId(decodeCounter(counter.value))
      const node: NodeRecord = {
        id,
        address,
        ...(peerAddress === undefined ? {} : { peerAddress }),
        zone,
        weight,
        state: 'joining',
        lastHeartbeatMs: 0,
      }
      await this.batch([
        put(metaKeys.nodeNextId, encodeCounter(id + 1), counter.version),
        put(metaKeys.node(id), encodeNode(node), 0),
      ])
      return { done: node }
    })
  }

  /**
   * A node's heartbeat at `nowMs` (the meta leader's wall clock): it is alive (joining, unreachable
   * and dead become active), and it leads these shards (their leader hints follow when the term is
   * newer). Writes only what changes, and a node's first heartbeat: a heartbeat of an active node
   * leading what the map says is a read (liveness.ts keeps when each node was last heard, in memory).
   */
  async heartbeat(nodeId: NodeId, leaders: readonly LeaderReport[], nowMs: number): Promise<NodeState> {
    return await this.transaction(async () => {
      const [nodeRaw] = await this.getMany([metaKeys.node(nodeId)])
      if (nodeRaw === null || nodeRaw === undefined)
        throw new KvError(ErrorCode.NotFound, `node ${nodeId} is not registered`, {
          details: { field: 'nodeId' },
        })
      const node = decodeNode(nodeRaw.value)
      const state: NodeState = node.state === 'draining' ? 'draining' : 'active'
      // The first heartbeat is written too (once per node): a record with lastHeartbeatMs 0 names a
      // node that never ran, which is how a bootstrap member that lost its data is told apart from
      // one starting for the first time (kvd's bootstrap guard).
      const ops: BatchOp[] =
        state === node.state && node.lastHeartbeatMs > 0
          ? []
          : [
              put(
                metaKeys.node(nodeId),
                encodeNode({ ...node, state, lastHeartbeatMs: Math.max(0, Math.floor(nowMs)) }),
                nodeRaw.version,
              ),
            ]
      const reported = leaders.slice(0, metaBatchRecordsMax - 1)
      const keys = reported.map((l) =>
        l.shardId === metaShardId ? metaKeys.metaShard : metaKeys.shard(l.shardId),
      )
      const current = await this.getMany(keys)
      for (const [i, l] of reported.entries()) {
        const raw = current[i]
        if (raw === null || raw === undefined) continue
        const shard = decodeShard(raw.value)
        // The shard's own configuration is the truth: a leader reporting a newer epoch than the
        // record (a change the mover did not get to record, e.g. its meta leader died between the
        // two) brings the record up to date.
        const newer = l.epoch !== undefined && l.voters !== undefined && l.epoch > shard.epoch
        if (newer && l.voters !== undefined && l.epoch !== undefined && l.voters.includes(nodeId)) {
          const updated: ShardRecord = {
            ...shard,
            replicas: followVoters(shard.replicas, l.voters),
            epoch: l.epoch,
            leaderHint: nodeId,
            leaderTerm: Math.max(l.term, shard.leaderTerm),
          }
          ops.push(put(keys[i]!, encodeShard(updated), raw.version))
          continue
        }
        if (!shard.replicas.includes(nodeId)) continue
        if (shard.leaderHint === nodeId && shard.leaderTerm >= l.term) continue
        if (l.term < shard.leaderTerm) continue
        const updated: ShardRecord = { ...shard, leaderHint: nodeId, leaderTerm: l.term }
        ops.push(put(keys[i]!, encodeShard(updated), raw.version))
      }
      if (ops.length > 0) await this.batch(ops)
      return { done: state }
    })
  }

  /**
   * Records state changes judged by liveness.ts (or an operator's drain), each only if the node is
   * still in the state it was judged in (a heartbeat may have landed since); returns those applied.
   */
  async setNodeStates(changes: readonly StateChange[]): Promise<StateChange[]> {
    return await this.transaction(async () => {
      const candidates = changes.slice(0, metaBatchRecordsMax)
      if (candidates.length === 0) return { done: [] }
      const raws = await this.getMany(candidates.map((c) => metaKeys.node(c.nodeId)))
      const ops: BatchOp[] = []
      const applied: StateChange[] = []
      for (const [i, c] of candidates.entries()) {
        const raw = raws[i]
        if (raw === null || raw === undefined) continue
        const fresh = decodeNode(raw.value)
        if (fresh.state !== c.from || c.from === c.to) continue
        ops.push(put(metaKeys.node(c.nodeId), encodeNode({ ...fresh, state: c.to }), raw.version))
        applied.push(c)
      }
      if (ops.length > 0) await this.batch(ops)
      return { done: applied }
    })
  }

  /**
   * Deletes a node's record (kvctl node remove): only a node no shard lists, and only if it is
   * still in the state the caller checked (the caller judged the rest against the map it read).
   */
  async removeNode(nodeId: NodeId, expected: NodeState): Promise<void> {
    await this.transaction(async () => {
      const map = await this.read()
      if (map === undefined) throw new KvError(ErrorCode.Unavailable, 'the cluster is still bootstrapping')
      const [raw] = await this.getMany([metaKeys.node(nodeId)])
      if (raw === null || raw === undefined)
        throw new KvError(ErrorCode.NotFound, `no node ${nodeId}`, { details: { field: 'nodeId' } })
      const fresh = decodeNode(raw.value)
      if (fresh.state !== expected)
        throw new KvError(ErrorCode.MoveRefused, `node ${nodeId} is ${fresh.state}, not ${expected}`, {
          details: { field: 'nodeId' },
        })
      const holding = map.shardsOf(nodeId)
      if (holding.length > 0)
        throw new KvError(
          ErrorCode.MoveRefused,
          `node ${nodeId} still holds replicas of ${holding.length} shards: drain it first`,
          { details: { field: 'nodeId' } },
        )
      await this.batch([{ kind: 'delete', key: metaKeys.node(nodeId), expectedVersion: raw.version }])
      return { done: undefined }
    })
  }

  // ---- moves (cluster/mover.ts) ----

  /** The moves in progress, by shard id. */
  async moves(): Promise<StoredMove[]> {
    const [index] = await this.getMany([metaKeys.moves])
    if (index === null || index === undefined) return []
    const ids = decodeMoveIndex(index.value)
    const raws = await this.getMany(ids.map((id) => metaKeys.move(id)))
    const out: StoredMove[] = []
    for (const raw of raws) if (raw !== null) out.push({ move: decodeMove(raw.value), version: raw.version })
    return out
  }

  /** The latest finished moves, newest first. */
  async recentMoves(): Promise<MoveRecord[]> {
    const [raw] = await this.getMany([metaKeys.movesRecent])
    return raw === null || raw === undefined ? [] : decodeRecentMoves(raw.value)
  }

  /**
   * Records a new move (the caller checked the rules against the map it read). SHARD_BUSY when
   * the shard has a move in progress already; STALE_EPOCH when the shard's record is no longer at
   * `expectedEpoch` (0: no check).
   *
   * `job` (a move a rebalancing job starts): the job record must still be at `job.version`, and
   * `job.record` (the job counting this move as started) is written in the same batch, so an
   * operator's pause or cancel is ordered before or after the start, never between its check and
   * its write, and the job counts the move from the moment it exists. VERSION_MISMATCH (not
   * retried) when the job changed; `jobVersion` in the answer is the job's version after the start.
   */
  async startMove(
    move: MoveRecord,
    expectedEpoch: number,
    job?: { readonly record: JobRecord; readonly version: number },
  ): Promise<StoredMove & { readonly jobVersion?: number }> {
    const out = await this.transaction(async () => {
      const [index, existing, shardRaw, jobRaw] = await this.getMany([
        metaKeys.moves,
        metaKeys.move(move.shardId),
        move.shardId === metaShardId ? metaKeys.metaShard : metaKeys.shard(move.shardId),
        ...(job === undefined ? [] : [jobKey]),
      ])
      if (job !== undefined && jobRaw?.version !== job.version) return { done: undefined }
      if (existing !== null && existing !== undefined)
        throw new KvError(ErrorCode.ShardBusy, `shard ${move.shardId} has a move in progress already`, {
          details: { shardId: move.shardId },
        })
      if (shardRaw === null || shardRaw === undefined)
        throw new KvError(ErrorCode.NotFound, `no shard ${move.shardId}`, { details: { field: 'shardId' } })
      const shard = decodeShard(shardRaw.value)
      if (expectedEpoch !== 0 && shard.epoch !== expectedEpoch)
        throw new KvError(
          ErrorCode.StaleEpoch,
          `shard ${move.shardId} is at epoch ${shard.epoch}, not ${expectedEpoch}`,
          { details: { shardId: move.shardId, shardMapEpoch: shard.epoch } },
        )
      const ids = index === null || index === undefined ? [] : decodeMoveIndex(index.value)
      const stored = { ...move, epoch: shard.epoch }
      const results = await this.batch([
        put(metaKeys.move(move.shardId), encodeMove(stored), 0),
        put(metaKeys.moves, encodeMoveIndex([...ids, move.shardId]), index?.version ?? 0),
        ...(job === undefined ? [] : [put(jobKey, encodeJob(job.record), job.version)]),
      ])
      const rewritten = results[2]
      return {
        done: {
          move: stored,
          version: 0,
          ...(rewritten?.kind === 'put' ? { jobVersion: rewritten.version } : {}),
        },
      }
    })
    if (out === undefined)
      throw new KvError(
        ErrorCode.VersionMismatch,
        'the rebalancing job changed since it was read (an operator steered it): the move did not start',
        { details: { field: 'job' } },
      )
    return out
  }

  /** Replaces a move record if it is still at `version` (VERSION_MISMATCH otherwise: re-read). */
  async updateMove(move: MoveRecord, version: number): Promise<void> {
    await this.batch([put(metaKeys.move(move.shardId), encodeMove(move), version)])
  }

  /** Ends a move: its record leaves the index and joins the recent list (bounded). */
  async finishMove(move: MoveRecord, version: number): Promise<void> {
    await this.transaction(async () => {
      const [index, recent] = await this.getMany([metaKeys.moves, metaKeys.movesRecent])
      const ids = index === null || index === undefined ? [] : decodeMoveIndex(index.value)
      const past = recent === null || recent === undefined ? [] : decodeRecentMoves(recent.value)
      await this.batch([
        { kind: 'delete', key: metaKeys.move(move.shardId), expectedVersion: version },
        put(metaKeys.moves, encodeMoveIndex(ids.filter((id) => id !== move.shardId)), index?.version ?? 0),
        put(
          metaKeys.movesRecent,
          encodeRecentMoves([move, ...past].slice(0, recentMovesMax)),
          recent?.version ?? 0,
        ),
      ])
      return { done: undefined }
    })
  }

  // ---- the rebalancing job (cluster/executor) ----

  /** The job record with its version (undefined: none yet). */
  async job(): Promise<{ job: JobRecord; version: number } | undefined> {
    const [raw] = await this.getMany([jobKey])
    return raw === null || raw === undefined ? undefined : { job: decodeJob(raw.value), version: raw.version }
  }

  /** Writes the job record if it is still at `version` (0: absent); VERSION_MISMATCH otherwise. */
  async writeJob(job: JobRecord, version: number): Promise<void> {
    await this.batch([put(jobKey, encodeJob(job), version)])
  }

  /**
   * Replaces the job record with `change(job)` by compare-and-set, re-reading and retrying when a
   * concurrent write (a poll, a move's start) got there first. `change` answers undefined to leave
   * it as it is; the answer is what the record holds after the call.
   */
  async updateJob(
    change: (job: JobRecord | undefined) => JobRecord | undefined,
  ): Promise<JobRecord | undefined> {
    return await this.transaction(async () => {
      const stored = await this.job()
      const next = change(stored?.job)
      if (next === undefined || next === stored?.job) return { done: stored?.job }
      await this.writeJob(next, stored?.version ?? 0)
      return { done: next }
    })
  }

  /** Brings a shard's record up to the configuration its leader applied at `epoch` (no-op if older). */
  async followShard(
    shardId: ShardId,
    voters: readonly NodeId[],
    epoch: number,
  ): Promise<ShardRecord | undefined> {
    return await this.transaction(async () => {
      const key = shardId === metaShardId ? metaKeys.metaShard : metaKeys.shard(shardId)
      const [raw] = await this.getMany([key])
      if (raw === null || raw === undefined) return { done: undefined }
      const shard = decodeShard(raw.value)
      if (epoch <= shard.epoch) return { done: shard }
      // A leader hint naming a node that left would send routers to a node without the shard.
      const leaderHint = voters.includes(shard.leaderHint as NodeId) ? shard.leaderHint : 0
      const updated: ShardRecord = {
        ...shard,
        replicas: followVoters(shard.replicas, voters),
        epoch,
        leaderHint,
      }
      await this.batch([put(key, encodeShard(updated), raw.version)])
      return { done: updated }
    })
  }

  // ---- plumbing ----

  private async nextNodeId(): Promise<number> {
    const [raw] = await this.getMany([metaKeys.nodeNextId])
    return raw === null || raw === undefined ? 1 : decodeCounter(raw.value)
  }

  private async getMany(
    keys: readonly Uint8Array[],
  ): Promise<({ value: Uint8Array; version: number } | null)[]> {
    const out: ({ value: Uint8Array; version: number } | null)[] = []
    for (let i = 0; i < keys.length; i += metaBatchRecordsMax) {
      const { found } = await this.replica.getMany(keys.slice(i, i + metaBatchRecordsMax), {
        level: 'linearizable',
        ...(this.signal === undefined ? {} : { signal: this.signal }),
      })
      for (const f of found) out.push(f === null ? null : { value: f.value, version: f.version })
    }
    return out
  }

  private async batch(ops: readonly BatchOp[]): Promise<readonly BatchOpResult[]> {
    const { results } = await this.replica.batch(ops, {
      level: 'majority',
      ...(this.signal === undefined ? {} : { signal: this.signal }),
    })
    return results
  }

  /** Runs `attempt` until it is not beaten by a concurrent change (VERSION_MISMATCH). */
  private async transaction<T>(attempt: () => Promise<{ done: T }>): Promise<T> {
    for (let i = 0; i < metaTxnAttemptsMax; i++) {
      try {
        return (await attempt()).done
      } catch (err) {
        if (!isKvErrorWithCode(err, ErrorCode.VersionMismatch)) throw err
      }
    }
    throw new KvError(
      ErrorCode.Overloaded,
      'the meta shard is too busy: a change lost every compare-and-set race',
    )
  }
}

function put(key: Uint8Array, value: Uint8Array, expectedVersion?: number): BatchOp {
  return expectedVersion === undefined
    ? { kind: 'put', key, value }
    : { kind: 'put', key, value, expectedVersion }
}
