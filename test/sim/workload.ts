/**
 * Clients and the history they record. Each client runs one operation at a time, in a loop:
 * puts, linearizable gets (ReadIndex, or lease reads when the run uses lease-based ReadIndex),
 * compare-and-set by version or by value, deletes, and eventual reads. Every linearizable
 * operation is recorded for the checker (src/verify) with its call and return times on true
 * simulated time; eventual reads are recorded separately and only checked for phantom values.
 *
 * Writes retry like the SDK (STYLE.md 7.10): bounded attempts within a deadline, following the
 * leader hint, with the same (client, seq) so the state machine's dedup table keeps them
 * exactly-once. An operation whose every attempt certainly did not apply is `fail`; one that
 * may have applied but got no answer is `indeterminate`.
 */
import { assert, type NodeId, type Random, type TimerHandle } from '../../src/common/index.ts'
import type { CasExpect, Operation } from '../../src/verify/index.ts'
import type { ReadReply, WriteReply } from './node.ts'
import type { Simulator } from './simulator.ts'
import type { Command } from './state-machine.ts'

/** Relative weights of the operation kinds a client picks from. */
export interface WorkloadMix {
  readonly put: number
  readonly get: number
  readonly cas: number
  readonly delete: number
  readonly eventual: number
}

export interface WorkloadOptions {
  readonly clients: number
  readonly keys: number
  /** Relative weights of the operation kinds. */
  readonly mix: WorkloadMix
  readonly thinkMsMax: number
  readonly attemptTimeoutMs: number
  readonly deadlineMs: number
  readonly attemptsMax: number
}

/** How clients reach nodes: a request, and a reply that may never come. */
export interface ClientTransport {
  nodeIds(): readonly NodeId[]
  write(to: NodeId, command: Command, reply: (r: WriteReply) => void): void
  read(to: NodeId, key: string, mode: 'linearizable' | 'eventual', reply: (r: ReadReply) => void): void
}

export interface EventualRead {
  readonly clientId: number
  readonly key: string
  readonly value: string | null
  readonly servedBy: NodeId
  readonly callMs: number
  readonly returnMs: number
}

export class History {
  readonly ops: Operation[] = []
  readonly eventual: EventualRead[] = []
  /** Every value any write carried, per key: an eventual read must return one of these or null. */
  readonly written = new Map<string, Set<string>>()

  noteWritten(key: string, value: string): void {
    let s = this.written.get(key)
    if (s === undefined) this.written.set(key, (s = new Set()))
    s.add(value)
  }

  counts(): { ok: number; fail: number; indeterminate: number } {
    const c = { ok: 0, fail: 0, indeterminate: 0 }
    for (const op of this.ops) c[op.outcome]++
    return c
  }

  /** Phantom check on eventual reads: the value was written by someone (or the key is absent). */
  phantomReads(): EventualRead[] {
    return this.eventual.filter((r) => r.value !== null && !(this.written.get(r.key)?.has(r.value) ?? false))
  }
}

type Kind = 'put' | 'get' | 'cas' | 'delete' | 'eventual'

export class Client {
  private seq = 0
  private leaderHint: NodeId | null = null
  private running = false
  private busy = false
  private lastSeen = new Map<string, { value: string | null; version: number }>()
  private timer: TimerHandle | null = null
  /** Records the operation in flight as indeterminate (used when a run is cut short). */
  private abandonCurrent: (() => void) | null = null
  okCount = 0

  constructor(
    readonly id: number,
    private readonly sim: Simulator,
    private readonly random: Random,
    private readonly transport: ClientTransport,
    private readonly options: WorkloadOptions,
    private readonly history: History,
  ) {}

  start(): void {
    this.running = true
    this.next()
  }

  /** No new operations; the one in flight finishes (or times out). */
  stop(): void {
    this.running = false
    this.timer?.cancel()
    this.timer = null
  }

  get idle(): boolean {
    return !this.busy
  }

  /** The run ends now: an operation still in flight is recorded as indeterminate. */
  abandon(): void {
    this.stop()
    this.abandonCurrent?.()
    this.abandonCurrent = null
  }

  private next(): void {
    if (!this.running) return
    this.timer = this.sim.schedule(this.random.int(this.options.thinkMsMax + 1), () => {
      this.timer = null
      if (this.running && !this.busy) this.runOne()
    })
  }

  private pickKind(): Kind {
    const m = this.options.mix
    const total = m.put + m.get + m.cas + m.delete + m.eventual
    let r = this.random.int(total)
    for (const k of ['put', 'get', 'cas', 'delete', 'eventual'] as const) {
      if (r < m[k]) return k
      r -= m[k]
    }
    return 'get'
  }

  private pickNode(): NodeId {
    const ids = this.transport.nodeIds()
    if (this.leaderHint !== null && this.random.int(8) !== 0) return this.leaderHint
    const id = ids[this.random.int(ids.length)]
    assert(id !== undefined)
    return id
  }

  private runOne(): void {
    this.busy = true
    const key = `k${this.random.int(this.options.keys)}`
    const kind = this.pickKind()
    const done = (): void => {
      this.busy = false
      this.next()
    }
    if (kind === 'get' || kind === 'eventual') this.read(key, kind, done)
    else this.write(key, kind, done)
  }

  private read(key: string, kind: 'get' | 'eventual', done: () => void): void {
    const callMs = this.sim.nowMs
    const to =
      kind === 'eventual'
        ? this.transport.nodeIds()[this.random.int(this.transport.nodeIds().length)]!
        : this.pickNode()
    let finished = false
    // A linearizable get that never answered may still have been served: indeterminate.
    // (Eventual reads are not checked for linearizability, so they leave no record.)
    const abandon = (): void => {
      finished = true
      if (kind === 'get')
        this.record({
          kind: 'get',
          key,
          input: {},
          output: null,
          callMs,
          returnMs: this.sim.nowMs,
          outcome: 'indeterminate',
        })
    }
    this.abandonCurrent = () => {
      if (!finished) abandon()
    }
    const timeout = this.sim.schedule(this.options.attemptTimeoutMs, () => {
      if (finished) return
      abandon()
      this.leaderHint = null
      done()
    })
    this.transport.read(to, key, kind === 'get' ? 'linearizable' : 'eventual', (r) => {
      if (finished) return
      finished = true
      timeout.cancel()
      const returnMs = this.sim.nowMs
      if (kind === 'eventual') {
        if (r.ok)
          this.history.eventual.push({
            clientId: this.id,
            key,
            value: r.value,
            servedBy: r.servedBy,
            callMs,
            returnMs,
          })
      } else if (r.ok) {
        this.lastSeen.set(key, { value: r.value, version: r.version })
        this.okCount++
        this.record({
          kind: 'get',
          key,
          input: {},
          output: { value: r.value, version: r.version },
          callMs,
          returnMs,
          outcome: 'ok',
        })
      } else {
        this.leaderHint = r.leaderHint
        this.record({ kind: 'get', key, input: {}, output: null, callMs, returnMs, outcome: 'fail' })
      }
      done()
    })
  }

  private write(key: string, kind: 'put' | 'cas' | 'delete', done: () => void): void {
    const seq = ++this.seq
    const value = `c${this.id}s${seq}`
    const callMs = this.sim.nowMs
    let command: Command
    let expect: CasExpect | null = null
    if (kind === 'cas') {
      const seen = this.lastSeen.get(key) ?? { value: null, version: 0 }
      expect = this.random.int(2) === 0 ? { version: seen.version } : { value: seen.value }
      command = { clientId: this.id, seq, op: 'cas', key, value, expect }
    } else if (kind === 'put') {
      command = { clientId: this.id, seq, op: 'put', key, value }
    } else {
      command = { clientId: this.id, seq, op: 'delete', key }
    }
    if (kind !== 'delete') this.history.noteWritten(key, value)
    let attempts = 0
    let maybeApplied = false
    let finished = false
    const finish = (outcome: 'fail' | 'indeterminate', returnMs: number, next = true): void => {
      finished = true
      const base = { clientId: this.id, key, callMs, returnMs, outcome }
      if (kind === 'put') this.record({ ...base, kind: 'put', input: { value }, output: null })
      else if (kind === 'delete') this.record({ ...base, kind: 'delete', input: {}, output: null })
      else this.record({ ...base, kind: 'cas', input: { expect: expect!, value }, output: null })
      if (next) done()
    }
    this.abandonCurrent = () => {
      if (!finished) finish('indeterminate', this.sim.nowMs, false)
    }
    const attempt = (): void => {
      attempts++
      const to = this.pickNode()
      let answered = false
      const retryOrGiveUp = (): void => {
        const elapsed = this.sim.nowMs - callMs
        if (attempts >= this.options.attemptsMax || elapsed >= this.options.deadlineMs) {
          finish(maybeApplied ? 'indeterminate' : 'fail', this.sim.nowMs)
          return
        }
        this.sim.schedule(5 + this.random.int(20), () => {
          if (!finished) attempt()
        })
      }
      const timeout = this.sim.schedule(this.options.attemptTimeoutMs, () => {
        if (answered || finished) return
        answered = true
        maybeApplied = true
        this.leaderHint = null
        retryOrGiveUp()
      })
      this.transport.write(to, command, (r) => {
        if (answered || finished) return
        answered = true
        timeout.cancel()
        const returnMs = this.sim.nowMs
        if (r.ok) {
          finished = true
          this.leaderHint = r.servedBy
          this.okCount++
          const res = r.result
          const base = { clientId: this.id, key, callMs, returnMs, outcome: 'ok' as const }
          if (res.op === 'put') {
            this.lastSeen.set(key, { value, version: res.version })
            this.record({ ...base, kind: 'put', input: { value }, output: { version: res.version } })
          } else if (res.op === 'delete') {
            this.lastSeen.set(key, { value: null, version: 0 })
            this.record({ ...base, kind: 'delete', input: {}, output: {} })
          } else if (res.op === 'cas') {
            assert(expect !== null)
            if (res.swapped) this.lastSeen.set(key, { value, version: res.version })
            const output = res.swapped ? { swapped: true, version: res.version } : { swapped: false }
            this.record({ ...base, kind: 'cas', input: { expect, value }, output })
          } else {
            assert(false, `a client's current write cannot be stale: ${res.op}`)
          }
          done()
          return
        }
        if (!r.notApplied) maybeApplied = true
        this.leaderHint = r.leaderHint
        retryOrGiveUp()
      })
    }
    attempt()
  }

  private record(op: Omit<Operation, 'clientId'> & { clientId?: number }): void {
    this.history.ops.push({ ...op, clientId: this.id } as Operation)
  }
}
