/**
 * Clients of the host simulator: each runs one operation at a time. How an operation reaches the
 * cluster is its OpPath:
 *
 *   - `full` placement (DirectPath, below): through the RaftReplica API (`host.replicaForHash`) of
 *     the node it picks, as the server's handlers would; it picks among the nodes holding a replica
 *     of the key's shard, preferring the one it believes leads the shard (a hint per shard, from
 *     NOT_LEADER answers and successes);
 *   - `sharded` placement (SdkPath, sdk-path.ts): as an application's KvClient does, with the real
 *     SDK routing (routing cache, route choice and repair, retries) over the simulated KvService
 *     call path of each node (its real Router: serve here or forward once).
 *
 * The operations:
 *
 * - puts at write level `majority` (some at `all`), compare-and-set by version and deletes, each
 *   with an exactly-once tag (clientId, seq, firstIncompleteSeq = seq: one write in flight per
 *   client), so a retry after an unknown outcome cannot apply twice;
 * - gets at read level `linearizable` (ReadIndex, or the lease with --lease-reads);
 * - gets at level `session` on any node, with the client's token for the shard (the highest
 *   applied index of any receipt it got there), checked on the spot for read-your-writes and
 *   monotonic reads;
 * - gets at level `eventual` on any node (recorded apart: they promise only convergence).
 *
 * Every operation has a deadline on simulated time (DirectPath: each attempt has its own shorter
 * one). Errors follow the one table (common/errors.ts `writeNotApplied`): a write whose every
 * attempt certainly did not apply is `fail`, one that may have applied is `indeterminate`.
 * Acknowledged writes are also kept apart, for the durability check after healing.
 */
import {
  ErrorCode,
  deadlineSignal,
  errorCodeTable,
  isKvError,
  type Clock,
  type LogIndex,
  type NodeId,
  type Random,
  type ShardId,
} from '../../../src/common/index.ts'
import type { NodeHost } from '../../../src/node/host.ts'
import type { RaftReplica, Receipt, VersionedValue, WriteLevel } from '../../../src/shard/index.ts'
import type { CasExpect } from '../../../src/verify/index.ts'
import type { History } from '../workload.ts'
import { describeErr, type HostCluster } from './cluster.ts'
import type { HostWorkloadMix } from './options.ts'
import { SdkPath } from './sdk-path.ts'

export interface HostWorkloadOptions {
  readonly keys: number
  readonly mix: HostWorkloadMix
  readonly allWritesPer8: number
  readonly thinkMsMax: number
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
  /**
   * `full`: writes go on registered exactly-once sessions, as every network client's do (the SDK
   * registers them). `sharded`: unregistered in-process tags, which keeps that suite's seeds on
   * the interleavings its coverage marks (meta registrations after unknown outcomes) were found in.
   */
  readonly placement: 'full' | 'sharded'
}

/** Attempts per operation, within its deadline. */
const attemptsMax = 8
/** Backoff between attempts when no leader hint helps. */
const backoffMsMax = 40

/** A write some replica acknowledged: it must survive every fault. */
export interface AckedWrite {
  readonly key: string
  readonly shardId: ShardId
  readonly kind: 'put' | 'cas' | 'delete'
  /** The version the write created (puts and swapped CAS). */
  readonly version: number | null
  readonly value: string | null
  /** The log index the receipt carries (for a deduplicated retry: the retry's entry). */
  readonly appliedIndex: number
  readonly callMs: number
  readonly returnMs: number
}

/** A read as an OpPath runs it. */
export interface PathRead {
  readonly level: 'linearizable' | 'session' | 'eventual'
  /** The client's session token for the key's shard (level `session`). */
  readonly sessionIndex?: number
}

/** A write as an OpPath runs it, with its exactly-once tag. */
export interface PathWrite {
  readonly kind: 'put' | 'cas' | 'del'
  readonly value: string
  readonly level: WriteLevel
  readonly tag: {
    readonly clientId: string
    readonly seq: number
    readonly firstIncompleteSeq: number
    /** Set: the write goes on a registered session of this principal (DirectPath registers it). */
    readonly principal?: string
  }
  /** For `cas`. */
  readonly expectedVersion: number
}

/** How an operation ended: answered (by `node`), or not, saying whether it may have applied. */
export type PathOutcome<T> =
  | {
      readonly ok: true
      readonly value: T
      readonly node: NodeId
      /** Attempts the operation took and forwards its answer took (SdkPath only; else 0). */
      readonly attempts: number
      readonly forwards: number
    }
  | { readonly ok: false; readonly maybeApplied: boolean; readonly final: unknown }

/** How a client's operations reach the cluster (see the file comment). */
export interface OpPath {
  read(
    key: string,
    read: PathRead,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly found: VersionedValue | null; readonly receipt: Receipt }>>
  write(
    key: string,
    write: PathWrite,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly version: number | null; readonly receipt: Receipt }>>
}

/**
 * What this client knows of a key as of some index at or below its session token: a present
 * value must be at least `minVersion`; absent is fine when `absentOk` (or anyone deleted the key).
 */
interface Floor {
  readonly minVersion: number
  readonly absentOk: boolean
}

type Kind = keyof HostWorkloadMix
const kinds: readonly Kind[] = ['put', 'cas', 'del', 'get', 'session', 'eventual']

const enc = new TextEncoder()
const dec = new TextDecoder()
/** The principal the simulated clients write as (one, like unauthenticated clients). */
const simPrincipal = 'sim'

export function keyName(i: number): string {
  return `k${i}`
}

export class HostClient {
  private seq = 0
  private running = false
  private busy = false
  /** The version this client last saw per key (what a CAS expects). */
  private readonly lastSeen = new Map<string, number>()
  /** Session state: the token per shard and what it guarantees per key. */
  private readonly tokens = new Map<ShardId, number>()
  private readonly floors = new Map<string, Floor>()
  /** How this client's operations reach the cluster. */
  readonly path: OpPath
  okCount = 0
  sessionReads = 0

  constructor(
    readonly id: number,
    private readonly cluster: HostCluster,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly options: HostWorkloadOptions,
    private readonly history: History,
    private readonly acked: AckedWrite[],
  ) {
    this.path =
      cluster.map === null
        ? new DirectPath(cluster, clock, random, options)
        : new SdkPath(cluster, id, clock, random.fork('sdk'))
  }

  get idle(): boolean {
    return !this.busy
  }

  start(): void {
    this.running = true
    this.next()
  }

  stop(): void {
    this.running = false
  }

  private next(): void {
    if (!this.running) return
    this.cluster.sim.schedule(this.random.int(this.options.thinkMsMax + 1), () => {
      if (!this.running || this.busy) return
      this.busy = true
      this.runOne().then(
        () => {
          this.busy = false
          this.next()
        },
        (err: unknown) => {
          this.busy = false
          this.cluster.fail('client', `client ${this.id}: unexpected error ${describeErr(err)}`)
        },
      )
    })
  }

  private pickKind(): Kind {
    const m = this.options.mix
    let r = this.random.int(kinds.reduce((s, k) => s + m[k], 0))
    for (const k of kinds) {
      if (r < m[k]) return k
      r -= m[k]
    }
    return 'get'
  }

  private async runOne(): Promise<void> {
    const key = keyName(this.random.int(this.options.keys))
    switch (this.pickKind()) {
      case 'get':
        return await this.linearizableGet(key)
      case 'session':
        return await this.sessionGet(key)
      case 'eventual':
        return await this.eventualGet(key)
      case 'put':
        return await this.write(key, 'put')
      case 'cas':
        return await this.write(key, 'cas')
      case 'del':
        return await this.write(key, 'del')
    }
  }

  private async linearizableGet(key: string): Promise<void> {
    const callMs = this.cluster.sim.nowMs
    const r = await this.path.read(key, { level: 'linearizable' }, this.options.deadlineMs)
    const returnMs = this.cluster.sim.nowMs
    if (!r.ok) {
      if (r.final !== undefined) throw r.final
      this.history.ops.push({
        kind: 'get',
        clientId: this.id,
        key,
        input: {},
        output: null,
        callMs,
        returnMs,
        outcome: 'fail',
      })
      this.trace(`get ${key} -> fail`)
      return
    }
    this.okCount++
    const found = r.value.found
    const value = found === null ? null : dec.decode(found.value)
    this.lastSeen.set(key, found?.version ?? 0)
    this.observe(key, found, r.value.receipt)
    this.history.ops.push({
      kind: 'get',
      clientId: this.id,
      key,
      input: {},
      output: found === null ? { value: null } : { value, version: found.version },
      callMs,
      returnMs,
      outcome: 'ok',
    })
    this.trace(`get ${key} -> ${value ?? 'absent'}@${found?.version ?? 0} via n${r.node}`)
  }

  /** A session read on any node: it must reflect everything this client saw on the shard. */
  private async sessionGet(key: string): Promise<void> {
    const shardId = this.cluster.shardOfKey(enc.encode(key))
    const token = this.tokens.get(shardId) ?? 0
    const r = await this.path.read(key, { level: 'session', sessionIndex: token }, this.options.deadlineMs)
    if (!r.ok) {
      if (r.final !== undefined) throw r.final
      return
    }
    this.okCount++
    this.sessionReads++
    const { found, receipt } = r.value
    const floor = this.floors.get(key)
    const seen = found === null ? 'absent' : `v${found.version}`
    const where = `node ${r.node} (receipt applied ${receipt.appliedIndex}, token ${token})`
    if (receipt.appliedIndex < token)
      this.cluster.fail('session', `c${this.id} session read of ${key} on ${where}: receipt below the token`)
    else if (floor !== undefined && found !== null && found.version < floor.minVersion)
      this.cluster.fail(
        'session',
        `c${this.id} session read of ${key} on ${where} saw ${seen}, older than v${floor.minVersion} it saw before`,
      )
    else if (floor !== undefined && found === null && !floor.absentOk && !this.anyDelete(key))
      this.cluster.fail(
        'session',
        `c${this.id} session read of ${key} on ${where} saw it absent after seeing v${floor.minVersion}`,
      )
    this.observe(key, found, receipt)
    this.trace(`session ${key} -> ${seen} via n${r.node} token=${token}`)
  }

  private async eventualGet(key: string): Promise<void> {
    const callMs = this.cluster.sim.nowMs
    const r = await this.path.read(key, { level: 'eventual' }, this.options.deadlineMs)
    if (!r.ok) {
      if (r.final !== undefined) throw r.final
      return
    }
    this.history.eventual.push({
      clientId: this.id,
      key,
      value: r.value.found === null ? null : dec.decode(r.value.found.value),
      servedBy: r.node,
      callMs,
      returnMs: this.cluster.sim.nowMs,
    })
  }

  private async write(key: string, kind: 'put' | 'cas' | 'del'): Promise<void> {
    const seq = ++this.seq
    const value = `c${this.id}s${seq}`
    // A registered session per shard, as every network client has (the SDK registers on its own).
    const sessions = this.options.placement === 'full'
    const tag = {
      clientId: `c${this.id}`,
      seq,
      firstIncompleteSeq: seq,
      ...(sessions ? { principal: simPrincipal } : {}),
    }
    const expected = this.lastSeen.get(key) ?? 0
    const level = kind === 'put' && this.random.int(8) < this.options.allWritesPer8 ? 'all' : 'majority'
    const callMs = this.cluster.sim.nowMs
    const shardId = this.cluster.shardOfKey(enc.encode(key))
    if (kind !== 'del') this.history.noteWritten(key, value)
    const r = await this.path.write(
      key,
      { kind, value, level, tag, expectedVersion: expected },
      this.options.deadlineMs,
    )
    const returnMs = this.cluster.sim.nowMs
    const base = { clientId: this.id, key, callMs, returnMs }
    const expect: CasExpect = { version: expected }
    if (r.ok) {
      this.okCount++
      const { version, receipt } = r.value
      const appliedIndex = receipt.appliedIndex
      this.acked.push({
        key,
        shardId,
        kind: kind === 'del' ? 'delete' : kind,
        version,
        value: kind === 'del' ? null : value,
        appliedIndex,
        callMs,
        returnMs,
      })
      this.tokens.set(shardId, Math.max(this.tokens.get(shardId) ?? 0, appliedIndex))
      if (kind === 'del') {
        this.lastSeen.set(key, 0)
        // NB(sim): a deduplicated retry's receipt carries the retry's index, not the delete's own;
        // anything put after the retry's index is newer than the delete either way.
        this.floors.set(key, { minVersion: appliedIndex + 1, absentOk: true })
        this.history.ops.push({ ...base, kind: 'delete', input: {}, output: {}, outcome: 'ok' })
      } else {
        const v = version ?? 0
        this.lastSeen.set(key, v)
        this.floors.set(key, { minVersion: v, absentOk: false })
        if (kind === 'put')
          this.history.ops.push({
            ...base,
            kind: 'put',
            input: { value },
            output: { version: v },
            outcome: 'ok',
          })
        else
          this.history.ops.push({
            ...base,
            kind: 'cas',
            input: { expect, value },
            output: { swapped: true, version: v },
            outcome: 'ok',
          })
      }
      this.trace(`${kind} ${key}=${value} ${level} -> ok v${version ?? '-'} @${appliedIndex} via n${r.node}`)
      return
    }
    if (isKvError(r.final) && r.final.code === ErrorCode.VersionMismatch && kind === 'cas') {
      // A completed compare that did not hold: it observed the register.
      const current = r.final.details?.currentVersion
      if (current !== undefined) this.lastSeen.set(key, current)
      this.okCount++
      this.history.ops.push({
        ...base,
        kind: 'cas',
        input: { expect, value },
        output: { swapped: false },
        outcome: 'ok',
      })
      this.trace(`cas ${key} v${expected} -> mismatch (now v${current ?? '?'})`)
      return
    }
    if (r.final !== undefined) throw r.final
    const outcome = r.maybeApplied ? 'indeterminate' : 'fail'
    if (kind === 'put')
      this.history.ops.push({ ...base, kind: 'put', input: { value }, output: null, outcome })
    else if (kind === 'cas')
      this.history.ops.push({ ...base, kind: 'cas', input: { expect, value }, output: null, outcome })
    else this.history.ops.push({ ...base, kind: 'delete', input: {}, output: null, outcome })
    this.trace(`${kind} ${key}=${value} ${level} -> ${outcome}`)
  }

  /** A read's answer: the token moves up to its receipt, and the key's floor to what it showed. */
  private observe(key: string, found: VersionedValue | null, receipt: Receipt): void {
    this.tokens.set(receipt.shardId, Math.max(this.tokens.get(receipt.shardId) ?? 0, receipt.appliedIndex))
    this.floors.set(
      key,
      found === null
        ? { minVersion: receipt.appliedIndex + 1, absentOk: true }
        : { minVersion: found.version, absentOk: false },
    )
  }

  private anyDelete(key: string): boolean {
    return this.history.ops.some((op) => op.key === key && op.kind === 'delete' && op.outcome !== 'fail')
  }

  private trace(line: string): void {
    this.cluster.sim.record(`c${this.id} ${line}`)
  }
}

/**
 * The `full` placement's path: each attempt calls the RaftReplica of a node holding the key's
 * shard, the one believed to lead it mostly (a hint per shard), with an attempt deadline inside
 * the operation's; NOT_LEADER follows the hint.
 */
class DirectPath implements OpPath {
  /** The node believed to lead, per shard (`full` placement: one belief for every shard). */
  private readonly hints = new Map<number, NodeId>()
  /** Shards this client registered its exactly-once session on. */
  private readonly registered = new Set<ShardId>()

  constructor(
    private readonly cluster: HostCluster,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly options: HostWorkloadOptions,
  ) {}

  async read(
    key: string,
    read: PathRead,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly found: VersionedValue | null; readonly receipt: Receipt }>> {
    if (read.level === 'eventual') return await this.eventual(key)
    const deadline = deadlineSignal(this.clock, deadlineMs)
    try {
      const r = await this.attempts(
        key,
        deadline.signal,
        (shardId) => (read.level === 'linearizable' ? this.pickNode(shardId) : this.anyNode(shardId)),
        (replica, signal) =>
          replica.get(
            enc.encode(key),
            read.level === 'linearizable'
              ? { level: 'linearizable', signal }
              : { level: 'session', sessionIndex: (read.sessionIndex ?? 0) as LogIndex, signal },
          ),
      )
      if (r.ok && read.level === 'linearizable')
        this.setHint(this.cluster.shardOfKey(enc.encode(key)), r.node)
      return r
    } finally {
      deadline.dispose()
    }
  }

  async write(
    key: string,
    w: PathWrite,
    deadlineMs: number,
  ): Promise<PathOutcome<{ readonly version: number | null; readonly receipt: Receipt }>> {
    const deadline = deadlineSignal(this.clock, deadlineMs)
    try {
      const r = await this.attempts(
        key,
        deadline.signal,
        (shardId) => this.pickNode(shardId),
        async (replica, signal) => {
          const shardId = this.cluster.shardOfKey(enc.encode(key))
          const principal = w.tag.principal
          if (principal !== undefined && !this.registered.has(shardId)) {
            await replica.registerSession(w.tag.clientId, { principal, floor: w.tag.seq, signal })
            this.registered.add(shardId)
          }
          if (w.kind === 'del') {
            const d = await replica.delete(enc.encode(key), { level: w.level, signal, ...w.tag })
            return { version: null, receipt: d.receipt }
          }
          const p = await replica.put(enc.encode(key), enc.encode(w.value), {
            level: w.level,
            signal,
            ...w.tag,
            ...(w.kind === 'cas' ? { expectedVersion: w.expectedVersion } : {}),
          })
          return { version: p.version as number | null, receipt: p.receipt }
        },
      )
      if (r.ok) this.setHint(this.cluster.shardOfKey(enc.encode(key)), r.node)
      return r
    } finally {
      deadline.dispose()
    }
  }

  /** One eventual read on any node holding the shard (no retry: a dead node is simply skipped). */
  private async eventual(
    key: string,
  ): Promise<PathOutcome<{ readonly found: VersionedValue | null; readonly receipt: Receipt }>> {
    const node = this.anyNode(this.cluster.shardOfKey(enc.encode(key)))
    const host = this.cluster.hostOf(node)
    const none = { ok: false, maybeApplied: false, final: undefined } as const
    if (host === undefined) return none
    try {
      const r = await replicaOn(this.cluster, host, this.cluster.hasher.hash64(enc.encode(key)), key).get(
        enc.encode(key),
        { level: 'eventual' },
      )
      return { ok: true, value: r, node, attempts: 1, forwards: 0 }
    } catch (err) {
      // The node died under the read, or its replica is installing a snapshot (it says so).
      if (isKvError(err) && (err.code === ErrorCode.Unavailable || err.code === ErrorCode.ShardMoving))
        return none
      throw err
    }
  }

  private hintSlot(shardId: ShardId): number {
    return this.cluster.map === null ? -1 : shardId
  }

  private hintOf(shardId: ShardId): NodeId | null {
    return this.hints.get(this.hintSlot(shardId)) ?? null
  }

  private setHint(shardId: ShardId, node: NodeId | null): void {
    if (node === null) this.hints.delete(this.hintSlot(shardId))
    else this.hints.set(this.hintSlot(shardId), node)
  }

  /** The node believed to lead `shardId` (mostly), else any node holding a replica of it. */
  private pickNode(shardId: ShardId): NodeId {
    const hint = this.hintOf(shardId)
    if (hint !== null && this.random.int(8) !== 0) return hint
    return this.anyNode(shardId)
  }

  /** Any node holding a replica of `shardId`. */
  private anyNode(shardId: ShardId): NodeId {
    const ids = this.cluster.replicasOf(shardId)
    return ids[this.random.int(ids.length)]!
  }

  /**
   * Runs `attempt` against the replica of `key` on the nodes `pick` chooses until one succeeds, a
   * final error comes back (VERSION_MISMATCH, INVALID_ARGUMENT), the attempts run out or the
   * deadline passes.
   */
  private async attempts<T>(
    key: string,
    deadline: AbortSignal,
    pick: (shardId: ShardId) => NodeId,
    attempt: (replica: RaftReplica, signal: AbortSignal) => Promise<T>,
  ): Promise<PathOutcome<T>> {
    const hash = this.cluster.hasher.hash64(enc.encode(key))
    const shardId = this.cluster.shardOfKey(enc.encode(key))
    let maybeApplied = false
    for (let n = 0; n < attemptsMax && !deadline.aborted; n++) {
      const node = pick(shardId)
      const host = this.cluster.hostOf(node)
      if (host === undefined) {
        // Connection refused: nothing was sent.
        this.setHint(shardId, null)
        await this.cluster.driver.sleep(1 + this.random.int(backoffMsMax))
        continue
      }
      const replica = replicaOn(this.cluster, host, hash, key)
      const a = deadlineSignal(this.clock, this.options.attemptTimeoutMs, deadline)
      try {
        return { ok: true, value: await attempt(replica, a.signal), node, attempts: n + 1, forwards: 0 }
      } catch (err) {
        if (!isKvError(err)) throw err
        if (err.code === ErrorCode.VersionMismatch || err.code === ErrorCode.InvalidArgument)
          return { ok: false, maybeApplied, final: err }
        if (!errorCodeTable[err.code].writeNotApplied) maybeApplied = true
        const hint =
          err.code === ErrorCode.NotLeader ? ((err.details?.leaderHint as NodeId | undefined) ?? null) : null
        if (hint !== null && !this.cluster.everHeld(hint, shardId))
          this.cluster.fail(
            'routing',
            `node ${node} names node ${hint} the leader of shard ${shardId}, which holds no replica of it`,
          )
        this.setHint(shardId, hint)
        if (hint === null || hint === node) await this.cluster.driver.sleep(1 + this.random.int(backoffMsMax))
      } finally {
        a.dispose()
      }
    }
    return { ok: false, maybeApplied, final: undefined }
  }
}

/**
 * `host`'s replica of the shard of `key` (hash `hash`). The clients only ask nodes the placement
 * put the shard on, so WRONG_SHARD here means the host and the map disagree: the run fails.
 */
function replicaOn(cluster: HostCluster, host: NodeHost, hash: bigint, key: string): RaftReplica {
  try {
    return host.replicaForHash(hash)
  } catch (err) {
    const shardId = cluster.shardOfKey(enc.encode(key))
    const detail = `node ${host.nodeId} has no replica of ${key} (shard ${shardId}, placed on ${cluster.replicasOf(shardId).join(',')}): ${describeErr(err)}`
    cluster.fail('routing', detail)
    throw new RoutingError(detail)
  }
}

/** Thrown at a client whose request reached a node without the key's shard (the run has failed). */
class RoutingError extends Error {
  override readonly name = 'RoutingError'
}

/** After healing: one linearizable read of `key` through its shard's leader (retried until `deadlineMs`). */
export async function finalRead(
  cluster: HostCluster,
  clock: Clock,
  key: string,
  deadlineMs: number,
): Promise<{
  readonly value: string | null
  readonly version: number
  readonly callMs: number
  readonly returnMs: number
} | null> {
  const keyBytes = enc.encode(key)
  const shardId = cluster.shardOfKey(keyBytes)
  const callMs = cluster.sim.nowMs
  const until = callMs + deadlineMs
  while (cluster.sim.nowMs < until) {
    const leader = cluster.leaderOf(shardId)
    if (leader !== undefined) {
      const d = deadlineSignal(clock, 500)
      try {
        const r = await cluster.driver.until(
          leader.replicaForHash(cluster.hasher.hash64(keyBytes)).get(keyBytes, {
            level: 'linearizable',
            signal: d.signal,
          }),
          1_000,
          `final read of ${key}`,
        )
        return {
          value: r.found === null ? null : dec.decode(r.found.value),
          version: r.found?.version ?? 0,
          callMs,
          returnMs: cluster.sim.nowMs,
        }
      } catch (err) {
        if (!isKvError(err)) throw err
      } finally {
        d.dispose()
      }
    }
    await cluster.driver.runFor(20)
  }
  return null
}
