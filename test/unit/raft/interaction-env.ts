/**
 * The interaction environment (etcd-io/raft rafttest/interaction_env.go): a handful of
 * RawNodes over MemoryLogStorage, a mailbox, and a network that can be cut. Each command
 * returns the text the script expects. Randomized election timeouts are pinned to exactly
 * `electionTicks` (the injected Random returns 0), so `tick-election` always fires.
 */
import { NodeId } from '../../../src/common/index.ts'
import type { LogFields, LogIndex, Logger, Random } from '../../../src/common/index.ts'
import {
  ConfChangeTransition,
  MemoryLogStorage,
  RawNode,
  describeBytes,
  describeConfState,
  describeEntry,
  describeMessage,
  describeReady,
  emptyConfState,
} from '../../../src/raft/index.ts'
import type {
  ConfChange,
  ConfChangeSingle,
  Entry,
  Message,
  RaftConfig,
  ReadOnlyOption,
} from '../../../src/raft/index.ts'
import type { Directive } from './datadriven.ts'

/** A Random that always answers 0: election timeouts are exactly electionTicks. */
const zeroRandom: Random = {
  int: () => 0,
  chance: () => false,
  fork: () => zeroRandom,
}

type LogLevel = 'none' | 'info' | 'debug'

function formatFields(fields: LogFields): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`)
    .join(' ')
}

interface EnvNode {
  raw: RawNode
  storage: MemoryLogStorage
  config: RaftConfig
  applied: Entry[]
  /** Normal entries whose data starts with this are not acceptable to the state machine. */
  refusePrefix: string | null
}

export class InteractionEnv {
  private readonly nodes = new Map<NodeId, EnvNode>()
  /** Messages sent and not yet delivered, in send order. */
  private mailbox: Message[] = []
  /** Cut links, as "a-b" with a < b. */
  private readonly cuts = new Set<string>()
  private out: string[] = []
  private level: LogLevel = 'info'

  private logger(id: NodeId): Logger {
    const emit =
      (lvl: 'debug' | 'info' | 'warn') =>
      (fields: LogFields, message: string): void => {
        if (this.level === 'none') return
        if (lvl === 'debug' && this.level !== 'debug') return
        const f = formatFields(fields)
        this.out.push(`${lvl.toUpperCase()} ${id} ${message}${f === '' ? '' : ' ' + f}`)
      }
    const logger: Logger = {
      trace: () => {},
      debug: emit('debug'),
      info: emit('info'),
      warn: emit('warn'),
      error: emit('warn'),
      fatal: emit('warn'),
      child: () => logger,
      isLevelEnabled: (lvl) => lvl !== 'trace' && (lvl !== 'debug' || this.level === 'debug'),
    }
    return logger
  }

  run(d: Directive): string {
    this.out = []
    this.dispatch(d)
    return this.out.join('\n')
  }

  private print(line: string): void {
    this.out.push(line)
  }

  private node(id: NodeId): EnvNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  private ids(d: Directive): NodeId[] {
    if (d.args.length === 0) return [...this.nodes.keys()]
    return d.args.map((a) => NodeId(Number(a)))
  }

  private dispatch(d: Directive): void {
    switch (d.name) {
      // add-nodes 3 voters=(1,2,3) learners=(4) index=10 prevote=false checkquorum=false
      //   read-only=lease-based election=10 heartbeat=1 drift=2 max-uncommitted-bytes=100
      //   restart-fence=false
      //   max-proposal-bytes=100 max-inflight=2 max-entries=1 max-bytes=100
      //   fault=grantVoteWithoutLogCheck,commitPreviousTermByCounting
      //   term-max=1000 term-jump-max=100 refuse-entry-prefix=bad
      case 'add-nodes':
        return this.addNodes(d)
      // campaign 1
      case 'campaign': {
        const r = this.node(this.id(d, 0)).raw.campaign()
        if (!r.ok) this.print(`campaign refused: ${r.reason}`)
        return
      }
      // propose 1 data
      case 'propose': {
        const r = this.node(this.id(d, 0)).raw.propose(this.bytes(d.args[1] ?? ''))
        this.printPropose(r)
        return
      }
      // propose-bytes 1 <size>: a proposal of `size` zero bytes
      case 'propose-bytes': {
        const r = this.node(this.id(d, 0)).raw.propose(new Uint8Array(Number(d.args[1])))
        this.printPropose(r)
        return
      }
      // propose-conf-change 1 v4 l5 r2 transition=explicit (no changes: leave joint)
      case 'propose-conf-change':
        return this.proposeConfChange(d)
      // process-ready 1 2 [persist=false]
      case 'process-ready':
        for (const id of this.ids(d)) this.processReady(id, d.kv.get('persist') !== 'false')
        return
      // deliver-msgs 1 2 [drop=true]
      case 'deliver-msgs':
        for (const id of this.ids(d)) this.deliver(id, d.kv.get('drop') === 'true')
        return
      // stabilize [1 2 3]
      case 'stabilize':
        return this.stabilize(this.ids(d))
      // tick-heartbeat 1
      case 'tick-heartbeat':
        return this.tick(this.id(d, 0), this.node(this.id(d, 0)).raw.config.heartbeatTicks)
      // tick-election 1
      case 'tick-election':
        return this.tick(this.id(d, 0), this.node(this.id(d, 0)).raw.config.electionTicks)
      // tick 1 5
      case 'tick':
        return this.tick(this.id(d, 0), Number(d.args[1]))
      // cut 1 2: drop messages between 1 and 2 both ways
      case 'cut':
        this.cuts.add(this.link(this.id(d, 0), this.id(d, 1)))
        return
      // isolate 1: cut 1 from everybody
      case 'isolate': {
        const a = this.id(d, 0)
        for (const b of this.nodes.keys()) if (b !== a) this.cuts.add(this.link(a, b))
        return
      }
      // heal: restore every link
      case 'heal':
        this.cuts.clear()
        return
      // read-index 1 ctx
      case 'read-index': {
        const r = this.node(this.id(d, 0)).raw.readIndex(this.bytes(d.args[1] ?? ''))
        if (!r.ok) this.print(`read refused: ${r.reason}`)
        return
      }
      // transfer-leadership from=1 to=2
      case 'transfer-leadership': {
        const from = NodeId(Number(d.kv.get('from')))
        const to = NodeId(Number(d.kv.get('to')))
        const r = this.node(from).raw.transferLeader(to)
        if (!r.ok) this.print(`transfer refused: ${r.reason}`)
        return
      }
      // compact 1 5: snapshot node 1 at its applied index, then drop its log up to 5
      case 'compact': {
        const n = this.node(this.id(d, 0))
        const index = Number(d.args[1]) as LogIndex
        const snap = n.raw.createSnapshot(this.bytes(`snap@${n.raw.appliedIndex()}`))
        n.storage.createSnapshot(snap.meta.index, snap.meta.confState, snap.data)
        n.storage.compact(index)
        this.printLog(n)
        return
      }
      // raft-log 1
      case 'raft-log':
        return this.printLog(this.node(this.id(d, 0)))
      // raft-state: one line per node
      case 'raft-state':
        return this.raftState()
      // status 1: the leader's progress
      case 'status':
        return this.status(this.id(d, 0))
      // report-unreachable 1 2
      case 'report-unreachable':
        this.node(this.id(d, 0)).raw.reportUnreachable(this.id(d, 1))
        return
      // report-snapshot 1 2 ok|fail
      case 'report-snapshot':
        this.node(this.id(d, 0)).raw.reportSnapshot(this.id(d, 1), d.args[2] !== 'fail')
        return
      // restart 1: crash and restart from storage (unpersisted state is lost)
      case 'restart':
        return this.restart(this.id(d, 0))
      // mailbox: list undelivered messages
      case 'mailbox':
        for (const m of this.mailbox) this.print(describeMessage(m))
        return
      // applied 1: the entries node 1 applied
      case 'applied':
        for (const e of this.node(this.id(d, 0)).applied) this.print(describeEntry(e))
        return
      // inject MsgHeartbeat from=3 to=1 term=5 commit=2
      // inject MsgApp from=3 to=1 term=5 index=2 log-term=1 commit=2 entries=(a,b)
      // inject MsgAppResp from=2 to=1 term=5 index=99
      // inject MsgTimeoutNow from=3 to=1 term=5
      //   puts a message as a (buggy or hostile) member would send it into the mailbox
      case 'inject':
        return this.inject(d)
      // set-hard-state 1 term=9007199254740991: writes node 1's stored hard state as a disk
      //   written before terms were bounded might hold it (restart to load it)
      case 'set-hard-state': {
        const n = this.node(this.id(d, 0))
        const hs = n.storage.initialState().hardState
        n.storage.setHardState({ ...hs, term: Number(d.kv.get('term') ?? hs.term) as never })
        return
      }
      // log-level none|info|debug
      case 'log-level':
        this.level = (d.args[0] ?? 'info') as LogLevel
        return
      default:
        throw new Error(`line ${d.line}: unknown command ${d.name}`)
    }
  }

  private id(d: Directive, i: number): NodeId {
    const a = d.args[i]
    if (a === undefined) throw new Error(`line ${d.line}: missing node id`)
    return NodeId(Number(a))
  }

  private bytes(s: string): Uint8Array {
    return new TextEncoder().encode(s)
  }

  private link(a: NodeId, b: NodeId): string {
    return a < b ? `${a}-${b}` : `${b}-${a}`
  }

  private list(v: string | undefined): NodeId[] {
    if (v === undefined) return []
    const inner = v.replace(/^\(/, '').replace(/\)$/, '').trim()
    if (inner === '') return []
    return inner.split(',').map((x) => NodeId(Number(x)))
  }

  private addNodes(d: Directive): void {
    const count = Number(d.args[0])
    const voters = this.list(d.kv.get('voters'))
    const learners = this.list(d.kv.get('learners'))
    const index = Number(d.kv.get('index') ?? '0') as LogIndex
    const faults = (d.kv.get('fault') ?? '').split(',').filter((f) => f !== '')
    const num = (k: string): number | undefined => (d.kv.has(k) ? Number(d.kv.get(k)) : undefined)
    const config = {
      preVote: d.kv.get('prevote') !== 'false',
      checkQuorum: d.kv.get('checkquorum') !== 'false',
      readOnly: (d.kv.get('read-only') ?? 'safe') as ReadOnlyOption,
      electionTicks: num('election') ?? 10,
      heartbeatTicks: num('heartbeat') ?? 1,
      driftTicks: num('drift') ?? 1,
      ...(d.kv.has('restart-fence') ? { restartVoteFence: d.kv.get('restart-fence') === 'true' } : {}),
      uncommittedBytesMax: num('max-uncommitted-bytes'),
      proposalBytesMax: num('max-proposal-bytes'),
      inflightAppendsMax: num('max-inflight'),
      appendEntriesMax: num('max-entries'),
      appendBytesMax: num('max-bytes'),
      termMax: num('term-max'),
      termJumpMax: num('term-jump-max'),
      testingFaults: {
        grantVoteWithoutLogCheck: faults.includes('grantVoteWithoutLogCheck'),
        commitPreviousTermByCounting: faults.includes('commitPreviousTermByCounting'),
      },
    }
    for (let i = 0; i < count; i++) {
      const id = NodeId(this.nodes.size + 1)
      const confState = { ...emptyConfState, voters, learners }
      const storage =
        voters.length > 0 || learners.length > 0
          ? MemoryLogStorage.bootstrap(confState, index, (index > 0 ? 1 : 0) as never)
          : new MemoryLogStorage()
      const cfg: RaftConfig = Object.fromEntries(
        Object.entries({ id, ...config }).filter(([, v]) => v !== undefined),
      ) as unknown as RaftConfig
      const refusePrefix = d.kv.get('refuse-entry-prefix') ?? null
      const raw = new RawNode(cfg, this.components(id, storage, refusePrefix))
      this.nodes.set(id, { raw, storage, config: cfg, applied: [], refusePrefix })
    }
  }

  private printPropose(r: ReturnType<RawNode['propose']>): void {
    if (r.ok) return this.print(`proposed index=${r.index} term=${r.term}`)
    switch (r.reason) {
      case 'not-leader':
        return this.print(`proposal refused: not-leader hint=${r.leaderHint ?? 0}`)
      case 'transferring':
        return this.print(`proposal refused: transferring to=${r.leaderHint}`)
      case 'conf-change-invalid':
        return this.print(`proposal refused: conf-change-invalid (${r.detail})`)
      default:
        return this.print(`proposal refused: ${r.reason}`)
    }
  }

  private proposeConfChange(d: Directive): void {
    const changes: ConfChangeSingle[] = []
    for (const a of d.args.slice(1)) {
      const nodeId = NodeId(Number(a.slice(1)))
      if (a.startsWith('v')) changes.push({ type: 'addNode', nodeId })
      else if (a.startsWith('l')) changes.push({ type: 'addLearner', nodeId })
      else if (a.startsWith('r')) changes.push({ type: 'removeNode', nodeId })
      else throw new Error(`bad change ${a}`)
    }
    const cc: ConfChange = {
      changes,
      transition: (d.kv.get('transition') ?? ConfChangeTransition.Auto) as ConfChange['transition'],
    }
    this.printPropose(this.node(this.id(d, 0)).raw.proposeConfChange(cc))
  }

  private indent(text: string): string {
    return text
      .split('\n')
      .map((l) => '  ' + l)
      .join('\n')
  }

  /** Handles one Ready the way the shell does. With persist=false, crashes before the write. */
  private processReady(id: NodeId, persist: boolean): boolean {
    const n = this.node(id)
    if (!n.raw.hasReady()) return false
    const rd = n.raw.ready()
    this.print(this.indent(describeReady(rd)))
    this.mailbox.push(...rd.messages)
    if (!persist) {
      this.print(`  (crashed before persisting: ${rd.messagesAfterPersist.length} message(s) never sent)`)
      return true
    }
    if (rd.snapshot !== null) n.storage.applySnapshot(rd.snapshot)
    n.storage.append(rd.entries)
    if (rd.hardState !== null) n.storage.setHardState(rd.hardState)
    this.mailbox.push(...rd.messagesAfterPersist)
    if (rd.snapshot !== null) n.applied = []
    n.applied.push(...rd.committedEntries)
    for (const r of rd.readStates) {
      this.print(`  read ctx=${describeBytes(r.context)} index=${r.index} (applied=${n.raw.appliedIndex()})`)
    }
    n.raw.advance(rd)
    return true
  }

  private deliver(id: NodeId, drop: boolean): boolean {
    const mine = this.mailbox.filter((m) => m.to === id)
    if (mine.length === 0) return false
    this.mailbox = this.mailbox.filter((m) => m.to !== id)
    for (const m of mine) {
      if (drop) {
        this.print(`  dropped: ${describeMessage(m)}`)
        continue
      }
      if (this.cuts.has(this.link(m.from, m.to)) || !this.nodes.has(m.to)) {
        this.print(`  dropped: ${describeMessage(m)}`)
        continue
      }
      this.print(`  ${describeMessage(m)}`)
      const r = this.node(id).raw.step(m)
      if (!r.ok) this.print(`  (step: ${r.reason})`)
    }
    return true
  }

  private stabilize(ids: NodeId[]): void {
    for (let round = 0; round < 1000; round++) {
      let progressed = false
      for (const id of ids) {
        if (!this.node(id).raw.hasReady()) continue
        this.print(`> ${id} handling Ready`)
        this.processReady(id, true)
        progressed = true
      }
      for (const id of ids) {
        if (!this.mailbox.some((m) => m.to === id)) continue
        this.print(`> ${id} receiving messages`)
        this.deliver(id, false)
        progressed = true
      }
      if (!progressed) return
    }
    throw new Error('stabilize did not converge')
  }

  private tick(id: NodeId, n: number): void {
    for (let i = 0; i < n; i++) this.node(id).raw.tick()
  }

  private printLog(n: EnvNode): void {
    const first = n.storage.firstIndex()
    const last = n.storage.lastIndex()
    if (last < first) {
      this.print(`log is empty: first index=${first}, last index=${last}`)
      return
    }
    const r = n.storage.entries(first, (last + 1) as LogIndex, Number.POSITIVE_INFINITY)
    if (!r.ok) throw new Error('storage entries unavailable')
    for (const e of r.value) this.print(describeEntry(e))
  }

  private raftState(): void {
    for (const [id, n] of this.nodes) {
      const s = n.raw.status()
      const member = s.config.voters.includes(id) || s.config.votersOutgoing.includes(id)
      const kind = member ? 'voter' : s.config.learners.includes(id) ? 'learner' : 'non-member'
      this.print(
        `${id}: ${s.role} (${kind}) term=${s.term} lead=${s.leaderId ?? 0} commit=${s.commit} applied=${s.applied} last=${s.lastIndex} ${describeConfState(s.config)}`,
      )
    }
  }

  private status(id: NodeId): void {
    const s = this.node(id).raw.status()
    if (s.progress === null) {
      this.print(`${id} is ${s.role}, no progress`)
      return
    }
    for (const [pid, p] of s.progress) {
      const extra = p.state === 'snapshot' ? ` pendingSnapshot=${p.pendingSnapshot}` : ''
      this.print(
        `${pid}: ${p.state} match=${p.match} next=${p.next} inflight=${p.inflight}${p.isLearner ? ' learner' : ''}${extra}`,
      )
    }
  }

  private components(
    id: NodeId,
    storage: MemoryLogStorage,
    refusePrefix: string | null,
  ): ConstructorParameters<typeof RawNode>[1] {
    const base = { storage, random: zeroRandom, logger: this.logger(id) }
    if (refusePrefix === null) return base
    const prefix = this.bytes(refusePrefix)
    const refused = (data: Uint8Array): boolean =>
      data.byteLength >= prefix.byteLength && prefix.every((b, i) => data[i] === b)
    return { ...base, entryAcceptable: (data) => !refused(data) }
  }

  private inject(d: Directive): void {
    const type = d.args[0]
    const num = (k: string): number => {
      const v = d.kv.get(k)
      if (v === undefined) throw new Error(`line ${d.line}: inject needs ${k}=`)
      return Number(v)
    }
    const base = { from: NodeId(num('from')), to: NodeId(num('to')), term: num('term') as never }
    let m: Message
    switch (type) {
      case 'MsgHeartbeat':
        m = { type, ...base, commit: num('commit') as never, round: 0 }
        break
      case 'MsgTimeoutNow':
        m = { type, ...base }
        break
      case 'MsgAppResp':
        m = {
          type,
          ...base,
          index: num('index') as never,
          reject: false,
          rejectHint: 0 as never,
          logTerm: 0 as never,
        }
        break
      case 'MsgApp': {
        const index = num('index')
        const data = (d.kv.get('entries') ?? '()').replace(/^\(/, '').replace(/\)$/, '')
        const entries: Entry[] = (data === '' ? [] : data.split(',')).map((x, i) => ({
          term: base.term,
          index: (index + 1 + i) as LogIndex,
          type: 'normal' as Entry['type'],
          data: this.bytes(x),
        }))
        m = {
          type,
          ...base,
          index: index as LogIndex,
          logTerm: num('log-term') as never,
          commit: num('commit') as never,
          entries,
        }
        break
      }
      default:
        throw new Error(`line ${d.line}: inject cannot build ${type}`)
    }
    this.print(`injected: ${describeMessage(m)}`)
    this.mailbox.push(m)
  }

  private restart(id: NodeId): void {
    const n = this.node(id)
    // Undelivered messages from the crashed incarnation may still arrive; keep them.
    const raw = new RawNode(n.config, this.components(id, n.storage, n.refusePrefix))
    n.raw = raw
    n.applied = []
  }
}
