/**
 * The CAP demo's scenario (`kvctl cap-demo`), against a running cluster started with fault
 * injection allowed:
 *
 *   1. A demo key is written at level `all` (every replica holds v1); its shard and leader are
 *      found from the receipt and the shard map.
 *   2. The leader is cut off from every other node (InjectFault drop: Raft, forwarding and meta
 *      calls alike), and at once writes a `leader` write on it (its own key).
 *   3. Majority side (a replica of the shard that is not the old leader, asked alone, without
 *      client-side routing: it serves or forwards within its side): a majority write of v2 through
 *      a session (waits for the new leader), then every read level and every write level.
 *   4. Minority side (the old leader, asked alone, short deadlines): every read level (the session
 *      read with the session that wrote v2) and every write level.
 *   5. Heal (always, also on an error), wait until every replica serves the demo key's latest
 *      version, and read back each write's own key: kept or lost.
 *
 * Each write has a key of its own (`<key>/<side>-<level>`), so "kept or lost" is whether that key
 * holds its value after healing. The observations go to verdict.ts, which judges each promise.
 */
import { injectFault } from '../../client/admin-fault.ts'
import type { AdminCallOptions } from '../../client/admin-call.ts'
import type { KvClient, KvClientInit } from '../../client/client.ts'
import type { ReadOptions } from '../../client/types.ts'
import type { Clock } from '../../common/clock.ts'
import { isKvError } from '../../common/errors.ts'
import type {
  CapReadLevel,
  CapWriteLevel,
  Observation,
  ReadObservation,
  Side,
  WriteObservation,
} from './verdict.ts'

export interface CapDemoOptions {
  readonly endpoints: readonly string[]
  /** The demo's key prefix (a fresh one per run keeps runs apart). */
  readonly key: string
  /** Bound of the bounded reads. */
  readonly boundMs: number
  /** Budget of each call on the minority side (refusals come within it). */
  readonly callMs: number
  /** Budget of the calls that wait for the majority side's new leader, and of convergence. */
  readonly settleMs: number
}

export interface CapDemoDeps {
  /** Makes a client (the CLI's TLS and token already in `init`'s defaults). */
  readonly connect: (init: KvClientInit) => KvClient
  readonly admin: AdminCallOptions
  readonly clock: Clock
  /** Progress lines (stderr). */
  readonly say: (line: string) => void
}

export interface CapDemoResult {
  readonly key: string
  readonly shardId: number
  /** The old leader, cut off. */
  readonly leader: number
  readonly cutOffFrom: readonly number[]
  /** The node asked on the majority side. */
  readonly majorityNode: number
  readonly observations: readonly Observation[]
  /** How long after the cut the majority side acknowledged its first write. */
  readonly failoverMs: number
  /** From the heal until every replica served the demo key's latest version. */
  readonly convergedMs: number
}

const readLevels: readonly CapReadLevel[] = ['linearizable', 'session', 'bounded', 'eventual']
const writeLevels: readonly CapWriteLevel[] = ['majority', 'all', 'leader']

function codeOf(err: unknown): string {
  return isKvError(err) ? err.code : 'ERROR'
}

/** A wait the command is blocked on: it keeps the process alive. */
function sleep(clock: Clock, ms: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(ms, resolve, { keepAlive: true }))
}

export async function runCapDemo(options: CapDemoOptions, deps: CapDemoDeps): Promise<CapDemoResult> {
  const { clock, say } = deps
  const clients: KvClient[] = []
  const connect = (init: KvClientInit): KvClient => {
    const c = deps.connect(init)
    clients.push(c)
    return c
  }
  try {
    const routed = connect({
      endpoints: options.endpoints,
      deadlineMs: options.settleMs,
      routing: { enabled: true },
    })
    const main = options.key
    const first = await routed.put(main, 'v1', { consistency: 'all' })
    const shardId = first.receipt.shardId
    const map = await routed.shardMap()
    const shard = map.shards.find((s) => s.shardId === shardId)
    if (shard === undefined) throw new Error(`the shard map has no shard ${shardId}`)
    const leader = first.receipt.nodeId
    const address = (id: number): string => {
      const node = map.nodes.find((n) => n.nodeId === id)
      if (node === undefined) throw new Error(`the shard map has no node ${id}`)
      return node.address
    }
    const cutOffFrom = map.nodes.map((n) => n.nodeId).filter((id) => id !== leader)
    const majorityNode = shard.replicas.find((id) => id !== leader)
    if (majorityNode === undefined || shard.replicas.length < 3)
      throw new Error(`shard ${shardId} has ${shard.replicas.length} replica(s): the demo needs 3 or more`)
    say(`key ${main}: shard ${shardId} on nodes ${shard.replicas.join(', ')}, leader node ${leader}`)

    const directs = new Map<string, KvClient>()
    const direct = (node: number, deadlineMs: number): KvClient => {
      const id = `${node}/${deadlineMs}`
      const made =
        directs.get(id) ?? connect({ endpoints: [address(node)], deadlineMs, routing: { enabled: false } })
      directs.set(id, made)
      return made
    }
    // Without exactly-once tags: a tagged write first registers its session on the shard, a
    // majority write of its own, which would stall the old leader's `leader` write for that alone.
    const minority = connect({
      endpoints: [address(leader)],
      deadlineMs: options.callMs,
      routing: { enabled: false },
      dedup: false,
    })
    const majority = direct(majorityNode, options.settleMs)
    const observations: Observation[] = []
    const written: WriteObservation[] = []
    const values = new Map<WriteObservation, string>()

    const write = async (
      side: Side,
      node: number,
      client: KvClient,
      level: CapWriteLevel,
    ): Promise<WriteObservation> => {
      const key = `${main}/${side}-${level}`
      const value = `${side}-${level}`
      let o: WriteObservation
      try {
        const r = await client.put(key, value, { consistency: level })
        o = {
          op: 'write',
          side,
          level,
          node,
          outcome: 'served',
          version: r.version,
          servedBy: r.receipt.nodeId,
          voterCutOff: true,
        }
      } catch (err) {
        const code = codeOf(err)
        o = {
          op: 'write',
          side,
          level,
          node,
          outcome: code === 'DEADLINE_EXCEEDED' ? 'unknown' : 'refused',
          code,
          voterCutOff: true,
        }
      }
      values.set(o, value)
      written.push(o)
      return o
    }

    const fresh = { version: 0, atMs: 0 }
    const read = async (
      side: Side,
      node: number,
      level: CapReadLevel,
      get: (opts: ReadOptions) => ReturnType<KvClient['get']>,
    ): Promise<ReadObservation> => {
      const startedMs = clock.nowMs()
      const base = {
        op: 'read' as const,
        side,
        level,
        node,
        freshVersion: fresh.version,
        freshAgeMs: Math.round(startedMs - fresh.atMs),
      }
      const opts: ReadOptions =
        level === 'bounded' ? { consistency: level, maxStalenessMs: options.boundMs } : { consistency: level }
      const bound = level === 'bounded' ? { boundMs: options.boundMs } : {}
      try {
        const r = await get(opts)
        return {
          ...base,
          ...bound,
          outcome: 'served',
          version: r.version,
          servedBy: r.receipt.nodeId,
          stalenessMs: r.receipt.stalenessMs,
        }
      } catch (err) {
        return { ...base, ...bound, outcome: 'refused', code: codeOf(err) }
      }
    }

    // 2. The cut, and the old leader's `leader` write while it may still believe it leads.
    let healed = false
    const cutAtMs = clock.nowMs()
    await injectFault(address(leader), { peers: cutOffFrom, drop: true }, deps.admin)
    say(`node ${leader} cut off from node ${cutOffFrom.join(', node ')}`)
    let failoverMs = Number.NaN
    let convergedMs = Number.NaN
    try {
      const leaderWrite = await write('minority', leader, minority, 'leader')
      observations.push(leaderWrite)
      say(
        `minority side: the leader write ${leaderWrite.outcome === 'served' ? 'was acknowledged' : `ended ${leaderWrite.code}`}`,
      )

      // 3. The majority side: a new leader takes v2 (through a session), then every level.
      const session = majority.session()
      const v2 = await session.put(main, 'v2', { consistency: 'majority' })
      fresh.version = v2.version
      fresh.atMs = clock.nowMs()
      failoverMs = fresh.atMs - cutAtMs
      say(
        `majority side: v2 acknowledged by node ${v2.receipt.nodeId} ${Math.round(failoverMs)} ms after the cut`,
      )
      const token = session.token()
      for (const level of readLevels)
        observations.push(
          await read('majority', majorityNode, level, (opts) =>
            level === 'session' ? session.get(main, opts) : majority.get(main, opts),
          ),
        )
      for (const level of writeLevels)
        if (level !== 'leader') observations.push(await write('majority', majorityNode, majority, level))
      observations.push(await write('majority', majorityNode, majority, 'leader'))

      // 4. The minority side, once the bound of bounded reads has run out for it.
      const waitMs = fresh.atMs + options.boundMs + 2 * 250 - clock.nowMs()
      if (waitMs > 0) await sleep(clock, waitMs)
      const resumed = minority.session({ token })
      for (const level of readLevels)
        observations.push(
          await read('minority', leader, level, (opts) =>
            level === 'session' ? resumed.get(main, opts) : minority.get(main, opts),
          ),
        )
      for (const level of writeLevels)
        if (level !== 'leader') observations.push(await write('minority', leader, minority, level))

      // 5. Heal, converge, and read every write's key back.
      await injectFault(address(leader), { clear: true }, deps.admin)
      healed = true
      const healedMs = clock.nowMs()
      say(`healed; waiting for every replica of shard ${shardId} to serve the latest version`)
      const latest = await routed.get(main, { consistency: 'linearizable' })
      for (;;) {
        const behind: number[] = []
        for (const id of shard.replicas) {
          const got = await direct(id, options.callMs)
            .get(main, { consistency: 'eventual' })
            .catch(() => undefined)
          if (got === undefined || got.version < latest.version) behind.push(id)
        }
        if (behind.length === 0) break
        if (clock.nowMs() - healedMs > options.settleMs)
          throw new Error(
            `node ${behind.join(', node ')} did not catch up within ${options.settleMs} ms of healing`,
          )
        await sleep(clock, 200)
      }
      convergedMs = clock.nowMs() - healedMs
      const withHeal = new Map<WriteObservation, WriteObservation>()
      for (const o of written) {
        if (o.outcome === 'refused') continue
        const got = await routed.get(`${main}/${o.side}-${o.level}`, { consistency: 'linearizable' })
        withHeal.set(o, { ...o, afterHeal: got.valueText() === values.get(o) ? 'kept' : 'lost' })
      }
      return {
        key: main,
        shardId,
        leader,
        cutOffFrom,
        majorityNode,
        observations: observations.map((o) => (o.op === 'write' ? (withHeal.get(o) ?? o) : o)),
        failoverMs,
        convergedMs,
      }
    } finally {
      if (!healed) await injectFault(address(leader), { clear: true }, deps.admin).catch(() => undefined)
    }
  } finally {
    for (const c of clients) c.close()
  }
}
