/**
 * SimCluster: one simulated ringkv shard (a Raft group on 3-7 nodes) with its network, disks,
 * clients, nemeses and checkers, and a small DSL for hand-written scenarios (TigerBeetle
 * `replica_test.zig`; STYLE.md 7.9):
 *
 *   const t = SimCluster.create({ seed: 42, overrides: { nodes: 3, voters: 3 } })
 *   const leader = t.awaitLeader()
 *   t.isolate(leader.id)
 *   expect(t.get('a', { via: leader.id })).not.toMatchObject({ ok: true })
 *
 * Everything runs on the simulator's event queue; the DSL's blocking calls (`put`, `get`,
 * `awaitLeader`) just run the queue until their answer arrives or a timeout passes.
 */
import { assert, LogIndex, NodeId, SeededRandom, Term, type Logger } from '../../src/common/index.ts'
import {
  ConfChangeType,
  MemoryLogStorage,
  emptyConfState,
  type ConfChange,
  type ConfState,
  type Message,
} from '../../src/raft/index.ts'
import { RaftSafetyChecker } from './checkers/raft-safety.ts'
import { SimNetwork } from './network.ts'
import { describeStep, planNemeses, type NemesisStep } from './nemesis.ts'
import { SimNode, type ReadReply, type WriteReply } from './node.ts'
import { swarmOptions, type SimOptions, type SimOverrides } from './options.ts'
import { SimLogger, Simulator, type TraceSink } from './simulator.ts'
import type { Command } from './state-machine.ts'
import { Client, History, type ClientTransport } from './workload.ts'

export interface SimClusterInit {
  readonly seed: number
  readonly overrides?: SimOverrides
  /** Receives every trace line (for --trace); the trace is hashed either way. */
  readonly sink?: TraceSink
  /** Log level of the Raft core and the harness in the trace. Default 'info'. */
  readonly logLevel?: 'trace' | 'debug' | 'info' | 'warn'
  /** Stop at the first Raft safety violation (default), or only record it and run on. */
  readonly raftSafety?: 'enforce' | 'record'
}

export class SimCluster {
  readonly sim: Simulator
  readonly options: SimOptions
  readonly nodes: SimNode[] = []
  readonly network: SimNetwork<Message>
  readonly checker: RaftSafetyChecker
  readonly history = new History()
  readonly clients: Client[] = []
  private readonly random: SeededRandom
  private readonly nemesisRandom: SeededRandom
  private readonly clientNetRandom: SeededRandom
  private readonly logger: Logger
  /** Bumped by every network fault and by heal(): a fault's end only undoes itself. */
  private networkFaultGeneration = 0
  private readonly nodeFaultGeneration = new Map<number, number>()
  private writeSeq = 0

  static create(init: SimClusterInit): SimCluster {
    return new SimCluster(init)
  }

  private constructor(init: SimClusterInit) {
    this.options = swarmOptions(init.seed, init.overrides)
    this.checker = new RaftSafetyChecker(init.raftSafety !== 'record')
    const o = this.options
    assert(o.voters >= 1 && o.voters <= o.nodes)
    this.sim = new Simulator(init.sink ?? null)
    this.random = new SeededRandom(o.seed)
    this.logger = new SimLogger(this.sim, init.logLevel ?? 'info')
    const netRandom = this.random.fork('network')
    this.nemesisRandom = this.random.fork('nemesis')
    this.clientNetRandom = this.random.fork('client-network')
    this.network = new SimNetwork<Message>(
      this.sim,
      netRandom,
      {
        oneWayDelayMsMean: o.oneWayDelayMsMean,
        packetLossPer10k: o.packetLossPer10k,
        duplicatePer10k: o.duplicatePer10k,
        reorderPer10k: o.reorderPer10k,
      },
      (_from, to, m) => this.deliver(to, m),
      (from, to, m, why) => this.lost(from, to, m, why),
    )
    const voters: NodeId[] = []
    for (let i = 1; i <= o.voters; i++) voters.push(NodeId(i))
    const bootConf: ConfState = { ...emptyConfState, voters }
    for (let i = 1; i <= o.nodes; i++) {
      const id = NodeId(i)
      const r = this.random.fork(`node-${i}`)
      // Initial voters boot from a snapshot at (1, 1) holding the configuration; spares start
      // empty and learn everything from a snapshot when they are added (etcd-io/raft bootstrap).
      const storage =
        i <= o.voters ? MemoryLogStorage.bootstrap(bootConf, LogIndex(1), Term(1)) : new MemoryLogStorage()
      const drift = o.clockDriftPpmMax === 0 ? 0 : r.int(2 * o.clockDriftPpmMax + 1) - o.clockDriftPpmMax
      const node = new SimNode(
        {
          id,
          tickMs: o.tickMs,
          electionTicks: o.electionTicks,
          heartbeatTicks: o.heartbeatTicks,
          readOnly: o.readOnly,
          preVote: o.preVote,
          checkQuorum: o.checkQuorum,
          testingFaults: o.testingFaults,
          snapshotEntries: o.snapshotEntries,
          appendEntriesMax: o.appendEntriesMax,
          fsyncMsMean: o.diskFsyncMsMean,
          clockDriftPpm: drift,
          clockOffsetMs: r.int(1_000_000),
          inboxItemsMax: 4096,
        },
        {
          sim: this.sim,
          network: this.network,
          random: r,
          logger: this.logger.child({ n: i }),
          checker: this.checker,
        },
        storage,
      )
      this.nodes.push(node)
    }
    for (const n of this.nodes) n.start()
  }

  // -------------------------------------------------------------------------------------------
  // Wiring.

  private deliver(to: NodeId, m: Message): void {
    const node = this.node(to)
    if (!node.up) {
      if (m.type === 'MsgSnap') this.node(m.from).admin((raw) => raw.reportSnapshot(to, false))
      return
    }
    node.receive(m)
    if (m.type === 'MsgSnap') this.node(m.from).admin((raw) => raw.reportSnapshot(to, true))
  }

  private lost(from: NodeId, to: NodeId, m: Message, why: 'drop' | 'partition'): void {
    const sender = this.node(from)
    if (m.type === 'MsgSnap') sender.admin((raw) => raw.reportSnapshot(to, false))
    // A cut connection is noticed by the sender's transport; a lost packet is not.
    if (why === 'partition' && m.type === 'MsgApp') sender.admin((raw) => raw.reportUnreachable(to))
  }

  /** Clients reach nodes over their own links: a little latency, lost only if the node is down. */
  private clientHop(fn: () => void): void {
    this.sim.schedule(0.2 + this.clientNetRandom.int(1000) / 1000, fn)
  }

  readonly transport: ClientTransport = {
    nodeIds: () => this.nodes.map((n) => n.id),
    write: (to: NodeId, command: Command, reply: (r: WriteReply) => void): void => {
      this.clientHop(() =>
        this.node(to).request({ kind: 'write', command, reply: (r) => this.clientHop(() => reply(r)) }),
      )
    },
    read: (
      to: NodeId,
      key: string,
      mode: 'linearizable' | 'eventual',
      reply: (r: ReadReply) => void,
    ): void => {
      this.clientHop(() =>
        this.node(to).request({ kind: 'read', key, mode, reply: (r) => this.clientHop(() => reply(r)) }),
      )
    },
  }

  // -------------------------------------------------------------------------------------------
  // Queries.

  node(id: number): SimNode {
    const n = this.nodes[id - 1]
    assert(n !== undefined, `no node ${id}`)
    return n
  }

  /** The up node that believes it leads the highest term, if any. */
  leader(): SimNode | null {
    let best: SimNode | null = null
    for (const n of this.nodes) if (n.isLeader && (best === null || n.term > best.term)) best = n
    return best
  }

  /** The configuration as the current leader applied it (null without a leader). */
  config(): ConfState | null {
    return this.leader()?.status()?.config ?? null
  }

  log(fields: Record<string, unknown>, message: string): void {
    this.logger.info(fields, message)
  }

  // -------------------------------------------------------------------------------------------
  // Running.

  runFor(ms: number): void {
    this.sim.runUntil(this.sim.nowMs + ms)
  }

  /** Runs until `pred` holds; false if `maxMs` passed first. */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    return this.sim.runUntil(this.sim.nowMs + maxMs, pred)
  }

  awaitLeader(maxMs = 5000): SimNode {
    const ok = this.runUntil(() => this.leader() !== null, maxMs)
    const l = this.leader()
    assert(ok && l !== null, 'no leader elected')
    return l
  }

  /** Sends one write to `via` (default: the leader) and runs until it is answered or `timeoutMs` passes. */
  put(key: string, value: string, opts: { via?: number; timeoutMs?: number } = {}): WriteReply | 'timeout' {
    const command: Command = { clientId: 1_000_000, seq: ++this.writeSeq, op: 'put', key, value }
    return this.call<WriteReply>(opts, (to, reply) => this.transport.write(to, command, reply))
  }

  get(
    key: string,
    opts: { via?: number; timeoutMs?: number; mode?: 'linearizable' | 'eventual' } = {},
  ): ReadReply | 'timeout' {
    return this.call<ReadReply>(opts, (to, reply) =>
      this.transport.read(to, key, opts.mode ?? 'linearizable', reply),
    )
  }

  private call<R>(
    opts: { via?: number; timeoutMs?: number },
    send: (to: NodeId, reply: (r: R) => void) => void,
  ): R | 'timeout' {
    const to = opts.via ?? this.leader()?.id ?? 1
    let answer: R | null = null
    send(NodeId(to), (r) => {
      answer ??= r
    })
    this.runUntil(() => answer !== null, opts.timeoutMs ?? 1000)
    return answer ?? 'timeout'
  }

  // -------------------------------------------------------------------------------------------
  // Faults (also the DSL's verbs).

  crash(id: number): void {
    this.log({ node: id }, 'crash')
    this.node(id).crash()
  }

  restart(id: number): void {
    const n = this.node(id)
    if (n.up) return
    this.log({ node: id }, 'restart')
    n.start()
  }

  partition(a: readonly number[], b: readonly number[]): void {
    this.log({ a, b }, 'partition')
    this.network.partition(a.map(NodeId), b.map(NodeId))
  }

  /** Cuts `id` off from every other node, both ways. */
  isolate(id: number): void {
    this.partition(
      [id],
      this.nodes.map((n) => n.id).filter((x) => x !== id),
    )
  }

  heal(): void {
    this.networkFaultGeneration++
    this.network.heal()
    this.log({}, 'heal network')
  }

  /** Ends every fault: network calm (no loss), all nodes up, disks fast. */
  healAll(): void {
    this.networkFaultGeneration++
    for (const [id, g] of this.nodeFaultGeneration) this.nodeFaultGeneration.set(id, g + 1)
    this.network.calm()
    for (const n of this.nodes) {
      n.disk.slowFactor = 1
      if (!n.up) n.start()
    }
    this.log({}, 'heal all')
  }

  proposeConfChange(cc: ConfChange): void {
    const l = this.leader()
    if (l === null) return
    l.admin((raw) => {
      const r = raw.proposeConfChange(cc)
      this.log({ changes: cc.changes, ok: r.ok, reason: r.ok ? null : r.reason }, 'conf change proposed')
    })
  }

  // -------------------------------------------------------------------------------------------
  // Workload and nemeses.

  startWorkload(): void {
    const o = this.options
    for (let i = 1; i <= o.clients; i++) {
      const c = new Client(
        i,
        this.sim,
        this.random.fork(`client-${i}`),
        this.transport,
        {
          clients: o.clients,
          keys: o.keys,
          mix: o.mix,
          thinkMsMax: o.thinkMsMax,
          attemptTimeoutMs: o.attemptTimeoutMs,
          deadlineMs: o.deadlineMs,
          attemptsMax: 4,
        },
        this.history,
      )
      this.clients.push(c)
      c.start()
    }
  }

  stopWorkload(): void {
    for (const c of this.clients) c.stop()
  }

  clientsIdle(): boolean {
    return this.clients.every((c) => c.idle)
  }

  /** Schedules the seed's nemesis plan; returns it (it is part of the trace). */
  scheduleNemeses(): NemesisStep[] {
    const plan = planNemeses(this.options, this.nemesisRandom)
    for (const step of plan) this.sim.schedule(step.atMs - this.sim.nowMs, () => this.runNemesis(step))
    return plan
  }

  private runNemesis(step: NemesisStep): void {
    const ids = this.nodes.map((n) => n.id)
    const pickFrom = <T>(xs: readonly T[], salt = 0): T | undefined =>
      xs[(step.pick + salt) % Math.max(1, xs.length)]
    const leader = this.leader()
    this.log({ step: describeStep(step), leader: leader?.id ?? null }, 'nemesis')
    const nodeFault = (id: number, undo: () => void): void => {
      const g = (this.nodeFaultGeneration.get(id) ?? 0) + 1
      this.nodeFaultGeneration.set(id, g)
      this.sim.schedule(step.durationMs, () => {
        if (this.nodeFaultGeneration.get(id) === g) undo()
      })
    }
    const networkFault = (apply: () => void): void => {
      this.network.heal()
      const g = ++this.networkFaultGeneration
      apply()
      this.sim.schedule(step.durationMs, () => {
        if (this.networkFaultGeneration === g) this.heal()
      })
    }
    switch (step.kind) {
      case 'crash':
      case 'crash-leader': {
        const up = this.nodes.filter((n) => n.up)
        const target = step.kind === 'crash-leader' ? leader : pickFrom(up)
        if (target === null || target === undefined) return
        // Keep a majority of the nodes up most of the time: at most half may be down at once.
        if (this.nodes.length - up.length + 1 > Math.floor(this.nodes.length / 2)) return
        this.crash(target.id)
        nodeFault(target.id, () => this.restart(target.id))
        return
      }
      case 'partition-random': {
        const shuffled = [...ids].sort(
          (a, b) => ((a * 7919 + step.pick) % 97) - ((b * 7919 + step.pick) % 97) || a - b,
        )
        const cut = 1 + (step.pick % (ids.length - 1))
        networkFault(() => this.partition(shuffled.slice(0, cut), shuffled.slice(cut)))
        return
      }
      case 'isolate-leader': {
        if (leader === null) return
        networkFault(() => this.isolate(leader.id))
        return
      }
      case 'partition-one-way': {
        const a = leader?.id ?? pickFrom(ids)!
        const others = ids.filter((x) => x !== a)
        const inbound = step.pick % 2 === 0
        networkFault(() => {
          for (const o of others) {
            if (inbound) this.network.block(o, a)
            else this.network.block(a, o)
          }
          this.log({ node: a, inbound }, 'one-way partition')
        })
        return
      }
      case 'partition-bridge': {
        // Two sides that only talk through one bridge node (Jepsen's "bridge").
        const bridge = pickFrom(ids)!
        const rest = ids.filter((x) => x !== bridge)
        const half = Math.floor(rest.length / 2)
        networkFault(() => this.partition(rest.slice(0, half), rest.slice(half)))
        return
      }
      case 'loss-burst': {
        networkFault(() => {
          this.network.setLossPer10k(1000 + (step.pick % 4000))
          this.log({ per10k: 1000 + (step.pick % 4000) }, 'loss burst')
        })
        return
      }
      case 'clog': {
        const a = pickFrom(ids)!
        networkFault(() => {
          for (const o of ids)
            if (o !== a) {
              this.network.clog(a, o, step.durationMs)
              this.network.clog(o, a, step.durationMs)
            }
          this.log({ node: a }, 'clog')
        })
        return
      }
      case 'clock-drift': {
        const n = pickFrom(this.nodes)!
        const max = this.options.clockDriftPpmMax
        const ppm = max === 0 ? 0 : (step.pick % (2 * max + 1)) - max
        n.clock.setDriftPpm(ppm)
        this.log({ node: n.id, ppm }, 'clock drift')
        return
      }
      case 'slow-disk': {
        const n = pickFrom(this.nodes)!
        n.disk.slowFactor = 5 + (step.pick % 20)
        this.log({ node: n.id, factor: n.disk.slowFactor }, 'slow disk')
        nodeFault(n.id, () => {
          n.disk.slowFactor = 1
        })
        return
      }
      case 'add-learner':
      case 'promote-learner':
      case 'remove-voter':
      case 'replace-voter': {
        const conf = this.config()
        if (conf === null) return
        const members = new Set([...conf.voters, ...conf.learners])
        const outside = ids.filter((x) => !members.has(x))
        const learners = [...conf.learners]
        const voters = [...conf.voters]
        if (step.kind === 'add-learner') {
          const t = pickFrom(outside)
          if (t !== undefined)
            this.proposeConfChange({
              changes: [{ type: ConfChangeType.AddLearner, nodeId: t }],
              transition: 'auto',
            })
        } else if (step.kind === 'promote-learner') {
          const t = pickFrom(learners)
          if (t !== undefined)
            this.proposeConfChange({
              changes: [{ type: ConfChangeType.AddNode, nodeId: t }],
              transition: 'auto',
            })
        } else if (step.kind === 'remove-voter') {
          const t = pickFrom(voters)
          if (t !== undefined && voters.length > 3) {
            this.proposeConfChange({
              changes: [{ type: ConfChangeType.RemoveNode, nodeId: t }],
              transition: 'auto',
            })
          }
        } else {
          // Swap a voter for a learner or an outsider in one joint-consensus change (§4.3).
          const incoming = pickFrom([...learners, ...outside])
          const outgoing = pickFrom(voters, 1)
          if (incoming !== undefined && outgoing !== undefined) {
            this.proposeConfChange({
              changes: [
                { type: ConfChangeType.AddNode, nodeId: incoming },
                { type: ConfChangeType.RemoveNode, nodeId: outgoing },
              ],
              transition: 'auto',
            })
          }
        }
        return
      }
      case 'isolate-new-leaders': {
        // Watches for leadership changes and cuts each new leader off a few milliseconds after
        // it wins, so leaders keep losing their tails: the ground for the Figure 3.7 bug.
        const until = this.sim.nowMs + step.durationMs
        let seen = leader === null ? '' : `${leader.id}@${leader.term}`
        const poll = (): void => {
          if (this.sim.nowMs > until) return
          const l = this.leader()
          const key = l === null ? '' : `${l.id}@${l.term}`
          if (l !== null && key !== seen) {
            seen = key
            const delayMs = this.nemesisRandom.int(12)
            const forMs = 100 + this.nemesisRandom.int(300)
            this.sim.schedule(delayMs, () => {
              if (!l.isLeader) return
              this.network.heal()
              const g = ++this.networkFaultGeneration
              this.isolate(l.id)
              this.sim.schedule(forMs, () => {
                if (this.networkFaultGeneration === g) this.heal()
              })
            })
          }
          this.sim.schedule(2, poll)
        }
        poll()
        return
      }
      case 'transfer-leader': {
        const conf = this.config()
        if (leader === null || conf === null) return
        const target = pickFrom(conf.voters.filter((v) => v !== leader.id))
        if (target === undefined) return
        leader.admin((raw) => {
          const r = raw.transferLeader(target)
          this.log({ from: leader.id, to: target, ok: r.ok }, 'transfer leader')
        })
        return
      }
    }
  }
}
