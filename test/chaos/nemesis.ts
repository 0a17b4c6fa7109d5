/**
 * Nemeses as data: a fault is a plain object (printable, replayable), a schedule is a seeded list
 * of faults with their start and length, and one table (`actions`) says how each kind is applied
 * to a ChaosCluster and healed. Schedules compose (`compose`): faults of several schedules may
 * overlap, each healed on its own.
 *
 * Adding a kind is adding a Fault variant and its entry in `actions`. Join, drain and node death
 * (membership.ts) came in that way: their apply starts a node or calls the admin API (`kvctl
 * node ...`), their heal is nothing or a re-join; they change the members for good, so they are
 * scheduled by hand (membership.test.ts), not drawn by `planSchedule`.
 */
import { injectFault } from '../../src/client/admin-fault.ts'
import { SeededRandom } from '../../src/common/random.ts'
import type { ChaosCluster, ChaosNode } from './cluster.ts'
import { drainAndRemove, killForGood } from './membership.ts'

export type Fault =
  /** SIGKILL the node; heal: start it again. */
  | { readonly kind: 'kill'; readonly node: number }
  /** SIGTERM (graceful stop); heal: start it again. */
  | { readonly kind: 'stop'; readonly node: number }
  /** docker pause (the process is frozen and does not know); heal: unpause. */
  | { readonly kind: 'pause'; readonly node: number }
  /** Drop every packet between `node` and the other nodes, both ways (clients still reach it). */
  | { readonly kind: 'isolate'; readonly node: number }
  /**
   * `kvctl fault --isolate`: the node's own fault injection drops its Raft traffic to and from the
   * others and refuses calls across the cut both ways (forwards, meta calls); heal: clear.
   */
  | { readonly kind: 'cut'; readonly node: number }
  /** `node` receives nothing from the other nodes but can still send to them. */
  | { readonly kind: 'one-way'; readonly node: number }
  /** `a` and `b` cannot talk; every other node talks to both (the bridge). */
  | { readonly kind: 'bridge'; readonly a: number; readonly b: number }
  /** `node` drops this share of the packets from the other nodes (iptables statistic). */
  | { readonly kind: 'loss'; readonly node: number; readonly percent: number }
  /**
   * `node` sends at most `kbit` kbit/s (a tc token bucket on its interface, in its namespace): its
   * peers and clients hear it slowly, and a leader on it falls behind what it must send.
   */
  | { readonly kind: 'bandwidth'; readonly node: number; readonly kbit: number }
  /** `node` delays every envelope to and from its peers (transport fault injection). */
  | { readonly kind: 'latency'; readonly node: number; readonly ms: number }
  /**
   * libfaketime setting of `node`'s wall clock ('+20s' jump, '+0 x0.5' slow clock); heal: '+0'.
   * The monotonic clock (timers, elections, leases) is left alone: see cluster.ts.
   */
  | { readonly kind: 'clock'; readonly node: number; readonly setting: string }
  /** Fill the node's small /data to the last byte; heal: remove the filler (and start kvd if it stopped). */
  | { readonly kind: 'disk-full'; readonly node: number }
  /** Restart every node in turn (SIGTERM, start, ready) while the workload runs; heal: nothing. */
  | { readonly kind: 'rolling-restart' }
  /** A new node starts with --join and the executor gives it its share; heal: nothing. */
  | { readonly kind: 'join' }
  /**
   * kvctl node drain, wait until the node holds nothing, kvctl node remove, stop it; it has left
   * for good. Heal: a fresh node joins when `rejoin`, else nothing.
   */
  | { readonly kind: 'drain'; readonly node: number; readonly rejoin: boolean }
  /** kill -9 for good: after --dead-after its replicas are re-created on the others; heal: nothing. */
  | { readonly kind: 'death'; readonly node: number }

export type FaultKind = Fault['kind']

export interface ScheduledFault {
  readonly atMs: number
  readonly forMs: number
  readonly fault: Fault
}

export interface Schedule {
  readonly seed: number
  readonly faults: readonly ScheduledFault[]
}

export interface ScheduleOptions {
  readonly seed: number
  readonly kinds: readonly FaultKind[]
  /** Total length: faults start inside it and end before it ends. */
  readonly durationMs: number
  readonly nodes: number
  /** Nodes that must not be stopped or restarted (e.g. one whose data must stay in place). */
  readonly keepRunning?: readonly number[]
  /** The node with the small disk (disk-full targets it). */
  readonly smallDiskNode?: number
  /** How long a fault lasts: [min, max] ms. Default [3000, 6000]. */
  readonly faultMs?: readonly [number, number]
  /** Quiet time between faults: [min, max] ms. Default [1500, 3000]. */
  readonly quietMs?: readonly [number, number]
}

/** A sequential seeded schedule: fault, quiet, fault, ... drawn from `kinds`. */
export function planSchedule(options: ScheduleOptions): Schedule {
  const random = new SeededRandom(options.seed)
  const between = ([lo, hi]: readonly [number, number]): number => lo + random.int(hi - lo + 1)
  const faultMs = options.faultMs ?? [3_000, 6_000]
  const quietMs = options.quietMs ?? [1_500, 3_000]
  const pickNode = (allowed: (id: number) => boolean): number => {
    const ids = Array.from({ length: options.nodes }, (_, i) => i + 1).filter(allowed)
    if (ids.length === 0) throw new Error('no node may take this fault')
    return ids[random.int(ids.length)]!
  }
  const restartable = (id: number): boolean => !(options.keepRunning ?? []).includes(id)
  const faults: ScheduledFault[] = []
  let at = between(quietMs)
  for (;;) {
    const kind = options.kinds[random.int(options.kinds.length)]!
    const forMs = kind === 'rolling-restart' ? 0 : between(faultMs)
    if (at + forMs > options.durationMs) break
    let fault: Fault
    switch (kind) {
      case 'kill':
      case 'stop':
        fault = { kind, node: pickNode(restartable) }
        break
      case 'pause':
      case 'isolate':
      case 'cut':
      case 'one-way':
        fault = { kind, node: pickNode(() => true) }
        break
      case 'bridge': {
        const a = pickNode(() => true)
        fault = { kind, a, b: pickNode((id) => id !== a) }
        break
      }
      case 'loss':
        fault = { kind, node: pickNode(() => true), percent: 20 + random.int(41) }
        break
      case 'latency':
        fault = { kind, node: pickNode(() => true), ms: 50 + random.int(251) }
        break
      case 'bandwidth':
        fault = { kind, node: pickNode(() => true), kbit: 128 + random.int(897) }
        break
      case 'clock': {
        const settings = ['+20s', '-20s', '+0 x0.5', '+0 x2']
        fault = { kind, node: pickNode(() => true), setting: settings[random.int(settings.length)]! }
        break
      }
      case 'disk-full':
        if (options.smallDiskNode === undefined) throw new Error('disk-full needs a small-disk node')
        fault = { kind, node: options.smallDiskNode }
        break
      case 'rolling-restart':
        if ((options.keepRunning ?? []).length > 0)
          throw new Error('rolling-restart would restart a kept node')
        fault = { kind }
        break
      case 'join':
      case 'drain':
      case 'death':
        throw new Error(`${kind} changes the members for good: schedule it by hand`)
    }
    faults.push({ atMs: at, forMs, fault })
    at += forMs + between(quietMs)
    if (kind === 'rolling-restart') at += 10_000
  }
  return { seed: options.seed, faults }
}

/** Several schedules as one: their faults, by start time (they may overlap). */
export function compose(...schedules: readonly Schedule[]): Schedule {
  return {
    seed: schedules[0]?.seed ?? 0,
    faults: schedules.flatMap((s) => s.faults).sort((x, y) => x.atMs - y.atMs),
  }
}

export function describeFault(fault: Fault): string {
  const { kind, ...rest } = fault
  const args = Object.entries(rest)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ')
  return args === '' ? kind : `${kind} ${args}`
}

export function describeSchedule(schedule: Schedule): string {
  return [
    `seed ${schedule.seed}:`,
    ...schedule.faults.map(
      (f) =>
        `  +${(f.atMs / 1000).toFixed(1)}s for ${(f.forMs / 1000).toFixed(1)}s: ${describeFault(f.fault)}`,
    ),
  ].join('\n')
}

interface Action {
  apply(cluster: ChaosCluster, fault: Fault): Promise<void>
  heal(cluster: ChaosCluster, fault: Fault): Promise<void>
}

const others = (cluster: ChaosCluster, id: number): ChaosNode[] => cluster.nodes.filter((n) => n.id !== id)
const nodeOf = (cluster: ChaosCluster, fault: Fault): ChaosNode => {
  if (!('node' in fault)) throw new Error(`${fault.kind} names no node`)
  return cluster.node(fault.node)
}

async function dropBetween(
  cluster: ChaosCluster,
  on: ChaosNode,
  peers: readonly ChaosNode[],
  outbound: boolean,
): Promise<void> {
  for (const peer of peers) {
    await cluster.iptables(on, ['-A', 'INPUT', '-s', peer.ip, '-j', 'DROP'])
    if (outbound) await cluster.iptables(on, ['-A', 'OUTPUT', '-d', peer.ip, '-j', 'DROP'])
  }
}

/** How each kind is applied and healed. */
export const actions: Record<FaultKind, Action> = {
  kill: {
    apply: (c, f) => c.kill(nodeOf(c, f)),
    heal: (c, f) => c.startNode(nodeOf(c, f)),
  },
  stop: {
    apply: (c, f) => c.stopNode(nodeOf(c, f)),
    heal: (c, f) => c.startNode(nodeOf(c, f)),
  },
  pause: {
    apply: (c, f) => c.pause(nodeOf(c, f)),
    heal: (c, f) => c.unpause(nodeOf(c, f)),
  },
  isolate: {
    apply: (c, f) => dropBetween(c, nodeOf(c, f), others(c, nodeOf(c, f).id), true),
    heal: (c, f) => c.flushRules(nodeOf(c, f)),
  },
  cut: {
    async apply(c, f) {
      const on = nodeOf(c, f)
      await injectFault(on.address, { peers: others(c, on.id).map((n) => n.id), drop: true })
    },
    async heal(c, f) {
      await injectFault(nodeOf(c, f).address, { clear: true })
    },
  },
  'one-way': {
    apply: (c, f) => dropBetween(c, nodeOf(c, f), others(c, nodeOf(c, f).id), false),
    heal: (c, f) => c.flushRules(nodeOf(c, f)),
  },
  bridge: {
    async apply(c, f) {
      if (f.kind !== 'bridge') throw new Error('not a bridge')
      await dropBetween(c, c.node(f.a), [c.node(f.b)], true)
      await dropBetween(c, c.node(f.b), [c.node(f.a)], true)
    },
    async heal(c, f) {
      if (f.kind !== 'bridge') throw new Error('not a bridge')
      await c.flushRules(c.node(f.a))
      await c.flushRules(c.node(f.b))
    },
  },
  loss: {
    async apply(c, f) {
      if (f.kind !== 'loss') throw new Error('not loss')
      const on = nodeOf(c, f)
      for (const peer of others(c, on.id))
        await c.iptables(on, [
          '-A',
          'INPUT',
          '-s',
          peer.ip,
          '-m',
          'statistic',
          '--mode',
          'random',
          '--probability',
          (f.percent / 100).toFixed(2),
          '-j',
          'DROP',
        ])
    },
    heal: (c, f) => c.flushRules(nodeOf(c, f)),
  },
  bandwidth: {
    async apply(c, f) {
      if (f.kind !== 'bandwidth') throw new Error('not bandwidth')
      await c.tc(nodeOf(c, f), [
        ...['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf'],
        ...['rate', `${f.kbit}kbit`, 'burst', '16kbit', 'latency', '500ms'],
      ])
    },
    async heal(c, f) {
      // A node restarted meanwhile has a fresh namespace without the limit.
      if (!(await c.running(nodeOf(c, f)))) return
      await c.tc(nodeOf(c, f), ['qdisc', 'del', 'dev', 'eth0', 'root']).catch((err: unknown) => {
        if (!/No such file|handle of zero/i.test(String(err))) throw err
      })
    },
  },
  latency: {
    async apply(c, f) {
      if (f.kind !== 'latency') throw new Error('not latency')
      const on = nodeOf(c, f)
      await injectFault(on.address, { peers: others(c, on.id).map((n) => n.id), delayMs: f.ms })
    },
    async heal(c, f) {
      await injectFault(nodeOf(c, f).address, { clear: true })
    },
  },
  clock: {
    async apply(c, f) {
      if (f.kind !== 'clock') throw new Error('not clock')
      const node = nodeOf(c, f)
      c.skewClock(node, f.setting)
      // A jump must show in the container (libfaketime re-reads its setting within a second): a
      // clock fault that did not happen would make the run prove nothing.
      const jump = /^([+-]\d+)s$/.exec(f.setting)
      if (jump === null) return
      const wantMs = Number(jump[1]) * 1000
      await new Promise((r) => setTimeout(r, 1_500))
      const seenMs = Number(await c.exec(node, 'console.log(Date.now())')) - Date.now()
      if (Math.abs(seenMs - wantMs) > Math.abs(wantMs) / 2)
        throw new Error(`node ${node.id}'s clock is ${seenMs} ms off after a ${f.setting} jump`)
    },
    async heal(c, f) {
      c.skewClock(nodeOf(c, f), '+0')
    },
  },
  'disk-full': {
    async apply(c, f) {
      c.fillDisk(nodeOf(c, f))
    },
    // kvd stops on a write that finds no space (fail-stop): start it again once there is some.
    async heal(c, f) {
      c.freeDisk(nodeOf(c, f))
      if (!(await c.running(nodeOf(c, f)))) await c.startNode(nodeOf(c, f))
    },
  },
  'rolling-restart': {
    async apply(c) {
      for (const node of c.nodes) {
        await c.stopNode(node)
        await c.startNode(node)
      }
    },
    heal: async () => undefined,
  },
  join: {
    async apply(c) {
      await c.join()
    },
    heal: async () => undefined,
  },
  drain: {
    apply: (c, f) => drainAndRemove(c, nodeOf(c, f)),
    async heal(c, f) {
      if (f.kind === 'drain' && f.rejoin) await c.join()
    },
  },
  death: {
    apply: (c, f) => killForGood(c, nodeOf(c, f)),
    heal: async () => undefined,
  },
}

/** One line per fault applied or healed, with its time since the schedule started. */
export interface NemesisLog {
  readonly lines: string[]
  readonly errors: string[]
  /** When each fault was in force, on this host's monotonic clock (the workload's time base). */
  readonly windows: FaultWindow[]
}

export interface FaultWindow {
  readonly fault: Fault
  readonly fromMs: number
  /** When its heal completed. */
  readonly toMs: number
}

/** The nodes a fault acts on (every node for a rolling restart). */
export function faultNodes(fault: Fault, nodes: number): number[] {
  if (fault.kind === 'bridge') return [fault.a, fault.b]
  if (fault.kind === 'join') return []
  if (fault.kind === 'rolling-restart') return Array.from({ length: nodes }, (_, i) => i + 1)
  return [fault.node]
}

/** What a process fault leaves a node as while it is in force (network faults leave it as it is). */
function claimOf(fault: Fault): 'down' | 'paused' | undefined {
  switch (fault.kind) {
    case 'kill':
    case 'stop':
    case 'disk-full': // kvd stops on a write that finds no space
    case 'rolling-restart':
    case 'drain': // then gone for good
    case 'death':
      return 'down'
    case 'pause':
      return 'paused'
    default:
      return undefined
  }
}

/**
 * Runs a schedule against the cluster: each fault applied at its time and healed `forMs` later.
 * Resolves when every fault is healed; a heal that throws is retried (a node must never be left
 * down), an apply that throws is logged and its heal still runs.
 *
 * Composed schedules overlap, so faults on one node take turns: the check of whether a fault can
 * act and its apply run under the node's turn, and a process fault (kill, stop, pause, disk-full,
 * rolling restart) holds a claim on its nodes from its apply until its heal completes. A fault on
 * a node another fault took down (or froze, where the fault needs it answering) is skipped, said
 * so, and not healed. Without the turn, a packet-loss fault checked while a stop was still under
 * way found the node running and then met it gone.
 */
export async function runSchedule(cluster: ChaosCluster, schedule: Schedule, log: NemesisLog): Promise<void> {
  const started = performance.now()
  const stamp = (): string => `+${((performance.now() - started) / 1000).toFixed(1)}s`
  const turns = new Map<number, Promise<void>>()
  const claims = new Map<number, Array<'down' | 'paused'>>()
  /** Runs `body` once every earlier turn on `nodes` is over. */
  const inTurn = async <T>(nodes: readonly number[], body: () => Promise<T>): Promise<T> => {
    const before = nodes.map((id) => turns.get(id) ?? Promise.resolve())
    let done!: () => void
    const mine = new Promise<void>((resolve) => (done = resolve))
    for (const id of nodes) turns.set(id, mine)
    try {
      await Promise.all(before)
      return await body()
    } finally {
      done()
    }
  }
  await Promise.all(
    schedule.faults.map(async ({ atMs, forMs, fault }) => {
      await sleepUntil(started + atMs)
      const what = describeFault(fault)
      const nodes = faultNodes(fault, cluster.nodes.length)
      const claim = claimOf(fault)
      let fromMs = 0
      const applied = await inTurn(nodes, async () => {
        const unfit = await unfitNodes(cluster, fault, claims)
        if (unfit.length > 0) {
          log.lines.push(`${stamp()} skip ${what}: ${unfit.join(', ')}`)
          return false
        }
        if (claim !== undefined) for (const id of nodes) claims.set(id, [...(claims.get(id) ?? []), claim])
        log.lines.push(`${stamp()} apply ${what}`)
        fromMs = performance.now()
        try {
          await actions[fault.kind].apply(cluster, fault)
        } catch (err) {
          log.errors.push(`${stamp()} apply ${what}: ${String(err)}`)
        }
        return true
      })
      if (!applied) return
      await sleepUntil(started + atMs + forMs)
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            await actions[fault.kind].heal(cluster, fault)
            log.lines.push(`${stamp()} heal ${what}`)
            log.windows.push({ fault, fromMs, toMs: performance.now() })
            return
          } catch (err) {
            if (attempt >= 10) {
              log.errors.push(`${stamp()} heal ${what}: ${String(err)}`)
              return
            }
            await new Promise((r) => setTimeout(r, 1_000))
          }
        }
      } finally {
        if (claim !== undefined)
          for (const id of nodes) {
            const held = claims.get(id) ?? []
            held.splice(held.indexOf(claim), 1)
            if (held.length === 0) claims.delete(id)
          }
      }
    }),
  )
}

/**
 * Why a fault cannot act now: its nodes that are down or frozen where it needs them answering,
 * by another fault's claim or as docker sees them (kvd may also have stopped on its own).
 */
async function unfitNodes(
  cluster: ChaosCluster,
  fault: Fault,
  claims: ReadonlyMap<number, ReadonlyArray<'down' | 'paused'>>,
): Promise<string[]> {
  if (
    fault.kind === 'clock' ||
    fault.kind === 'disk-full' ||
    fault.kind === 'rolling-restart' ||
    fault.kind === 'join'
  )
    return []
  // iptables works on a frozen node's namespace; kill, stop, pause and InjectFault need it running.
  const pausedIsFine =
    fault.kind === 'isolate' ||
    fault.kind === 'one-way' ||
    fault.kind === 'bridge' ||
    fault.kind === 'loss' ||
    fault.kind === 'bandwidth'
  const unfit: string[] = []
  for (const id of faultNodes(fault, cluster.nodes.length)) {
    const held = claims.get(id) ?? []
    const state = held.includes('down')
      ? 'down'
      : held.includes('paused')
        ? 'paused'
        : await cluster.state(cluster.node(id))
    if (state === 'down' || (state === 'paused' && !pausedIsFine)) unfit.push(`node ${id} is ${state}`)
  }
  return unfit
}

function sleepUntil(atMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, atMs - performance.now())))
}
