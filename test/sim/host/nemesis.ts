/**
 * Faults of the host simulator, as data: a plan of (time, kind, target, duration) drawn from the
 * seed before the run starts, then applied on the event queue. Every fault undoes itself after its
 * duration, and `healAll` undoes whatever is left at the end of the safety phase. At most
 * `downMax` nodes are down at a time (attrition with killsMax 1 or 2: with 2 of 3 down, no quorum
 * until one returns).
 */
import { metaShardId } from '../../../src/cluster/index.ts'
import type { Clock, NodeId, Random } from '../../../src/common/index.ts'
import type { HostCluster, NodeSlot } from './cluster.ts'
import { HostNemesis, type HostSimOptions } from './options.ts'

export interface HostNemesisStep {
  readonly atMs: number
  readonly kind: HostNemesis
  readonly a: NodeId
  readonly b: NodeId
  readonly durationMs: number
  /** A second draw for the fault's strength (loss rate, slowness, drop vs delay). */
  readonly strength: number
}

export function planHostNemeses(options: HostSimOptions, random: Random, startMs: number): HostNemesisStep[] {
  const steps: HostNemesisStep[] = []
  const n = options.nodes
  let t = startMs
  for (;;) {
    t += Math.round(options.faultIntervalMsMean * (0.5 + random.int(1000) / 1000))
    if (t >= startMs + options.safetyPhaseMs) break
    const a = (1 + random.int(n)) as NodeId
    let b = (1 + random.int(n - 1)) as NodeId
    if (b >= a) b = (b + 1) as NodeId
    steps.push({
      atMs: t,
      kind: options.nemeses[random.int(options.nemeses.length)]!,
      a,
      b,
      durationMs: 50 + random.int(options.faultDurationMsMax),
      strength: random.int(1000),
    })
  }
  return steps
}

/** Applies the plan; link cuts are counted so overlapping faults undo only themselves. */
export class HostNemesisRunner {
  /**
   * Called before the meta leader is crashed (sharded placement): starts a control-plane
   * transaction that the crash then catches in flight; true when one started.
   */
  beforeMetaLeaderCrash: (() => boolean) | undefined
  private readonly cuts = new Map<string, number>()
  private lossBursts = 0
  /** Faults ended by healAll (their own ends become no-ops). */
  private generation = 0

  constructor(
    private readonly cluster: HostCluster,
    private readonly random: Random,
    /** The harness's clock (the deadline of a record change). */
    private readonly clock: Clock,
  ) {}

  schedule(steps: readonly HostNemesisStep[]): void {
    for (const s of steps)
      this.cluster.sim.schedule(Math.max(0, s.atMs - this.cluster.sim.nowMs), () => this.apply(s))
  }

  private apply(s: HostNemesisStep): void {
    const c = this.cluster
    const gen = this.generation
    const later = (fn: () => void): void => {
      c.sim.schedule(s.durationMs, () => {
        if (gen === this.generation) fn()
      })
    }
    const slotA = c.slot(s.a)
    c.sim.record(`nemesis ${s.kind} a=${s.a} b=${s.b} for ${s.durationMs}ms strength=${s.strength}`)
    switch (s.kind) {
      case HostNemesis.Crash:
      case HostNemesis.CrashLeader: {
        this.crash(s.kind === HostNemesis.CrashLeader ? this.busiestLeader() : slotA, s.durationMs)
        return
      }
      case HostNemesis.CrashMetaLeader: {
        // With a registration just started on the meta leader, the crash lands while it runs.
        if (this.beforeMetaLeaderCrash?.() === true)
          c.sim.schedule(1 + (s.strength % 8), () => this.crash(this.metaLeader(), s.durationMs))
        else this.crash(this.metaLeader(), s.durationMs)
        return
      }
      case HostNemesis.Isolate: {
        const others = c.members.filter((id) => id !== s.a)
        for (const o of others) {
          this.cut(s.a, o)
          this.cut(o, s.a)
        }
        later(() => {
          for (const o of others) {
            this.uncut(s.a, o)
            this.uncut(o, s.a)
          }
        })
        return
      }
      case HostNemesis.OneWay:
        this.cut(s.a, s.b)
        later(() => this.uncut(s.a, s.b))
        return
      case HostNemesis.LossBurst:
        this.lossBursts++
        c.net.lossPer10k = 1000 + (s.strength % 4000)
        later(() => {
          if (--this.lossBursts === 0) c.net.lossPer10k = c.options.lossPer10k
        })
        return
      case HostNemesis.Clog:
        c.net.clog(s.a, s.b, s.durationMs)
        return
      case HostNemesis.SlowDisk: {
        const life = slotA.life
        if (life === null) return
        life.engine.slowFactor = 5 + (s.strength % 40)
        later(() => {
          life.engine.slowFactor = 1
        })
        return
      }
      case HostNemesis.StreamReset:
        c.net.resetStreams(s.a)
        return
      case HostNemesis.ShardRecordChange: {
        if (c.map === null) return
        const shardId = c.map.shards[s.strength % c.map.shards.length]!.shardId
        c.changeShardRecord(shardId, this.clock).then(
          (done) =>
            c.sim.record(`nemesis record change of shard ${shardId}: ${done ? 'written' : 'not written'}`),
          (err: unknown) => c.fail('crash', `record change of shard ${shardId}: ${String(err)}`),
        )
        return
      }
      case HostNemesis.TransportFault: {
        const life = slotA.life
        if (life === null) return
        const drop = s.strength % 2 === 0
        life.transport.setFault(s.b, { drop, delayMs: drop ? 0 : 5 + (s.strength % 60) })
        later(() => {
          if (!life.dead) life.transport.setFault(s.b, null)
        })
        return
      }
    }
  }

  /** Power cut on `victim` (when it is up and the down budget allows), restarted after `downMs`. */
  private crash(victim: NodeSlot | undefined, downMs: number): void {
    const c = this.cluster
    if (victim === undefined || victim.life === null || c.downCount >= c.options.downMax) return
    const loseUnsynced = this.random.int(4) < c.options.loseUnsyncedPer4
    c.crash(victim, loseUnsynced)
    // The restart is not undone by healAll's generation: a down node always comes back.
    c.sim.schedule(Math.max(100, downMs), () => c.start(victim))
  }

  /** Ends every fault and restarts every down node (the liveness phase starts from here). */
  healAll(): void {
    const c = this.cluster
    this.generation++
    this.cuts.clear()
    this.lossBursts = 0
    c.net.heal(0)
    for (const s of c.slots) {
      const life = s.life
      if (life === null) {
        c.start(s)
        continue
      }
      life.engine.slowFactor = 1
      for (const peer of c.members) if (peer !== s.id) life.transport.setFault(peer, null)
    }
    c.sim.record('heal: network calm, faults cleared, every node starting')
  }

  private cut(from: NodeId, to: NodeId): void {
    const k = `${from}>${to}`
    const n = this.cuts.get(k) ?? 0
    this.cuts.set(k, n + 1)
    if (n === 0) this.cluster.net.block(from, to)
  }

  private uncut(from: NodeId, to: NodeId): void {
    const k = `${from}>${to}`
    const n = this.cuts.get(k) ?? 0
    if (n <= 1) {
      this.cuts.delete(k)
      this.cluster.net.unblock(from, to)
    } else this.cuts.set(k, n - 1)
  }

  private metaLeader(): NodeSlot | undefined {
    if (this.cluster.map === null) return undefined
    const leader = this.cluster.leaderOf(metaShardId)
    return leader === undefined ? undefined : this.cluster.slot(leader.nodeId)
  }

  private busiestLeader(): NodeSlot | undefined {
    let best: { slot: NodeSlot; count: number } | undefined
    for (const s of this.cluster.slots) {
      const h = s.host
      if (h === undefined) continue
      const count = h.status().filter((v) => v.role === 'leader').length
      if (count > 0 && (best === undefined || count > best.count)) best = { slot: s, count }
    }
    return best?.slot
  }
}
