/**
 * The heart of the simulator (TigerBeetle `src/testing/`, FoundationDB's simulated run loop): one
 * event queue on simulated time, a SimClock per node with its own drift, seeded randomness forked
 * per component, and a trace that every component writes to and that is hashed so that two runs of
 * one seed can be compared byte for byte.
 *
 * Determinism rules (STYLE.md 7.6): no Date, no Math.random, no real timers, no WeakRef; events at
 * one instant run in the order they were scheduled (a sequence number breaks ties); iteration is
 * over arrays or insertion-ordered maps only.
 */
import { assert, type Clock, type LogFields, type Logger, type TimerHandle } from '../../src/common/index.ts'

/** A scheduled callback. */
interface SimEvent {
  readonly atMs: number
  readonly seq: number
  readonly fire: () => void
  cancelled: boolean
}

/** A binary min-heap on (atMs, seq). */
class EventHeap {
  private readonly items: SimEvent[] = []

  get size(): number {
    return this.items.length
  }

  push(e: SimEvent): void {
    const a = this.items
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(a[i]!, a[p]!)) break
      ;[a[i], a[p]] = [a[p]!, a[i]!]
      i = p
    }
  }

  peek(): SimEvent | undefined {
    return this.items[0]
  }

  pop(): SimEvent | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    a[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < a.length && before(a[l]!, a[m]!)) m = l
      if (r < a.length && before(a[r]!, a[m]!)) m = r
      if (m === i) break
      ;[a[i], a[m]] = [a[m]!, a[i]!]
      i = m
    }
    return top
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq)
}

/** A deterministic 64-bit (two-lane FNV-1a) running hash of the trace. */
export class TraceHash {
  private h1 = 0x811c9dc5
  private h2 = 0x050c5d1f
  private count = 0

  update(line: string): void {
    let h1 = this.h1
    let h2 = this.h2
    for (let i = 0; i < line.length; i++) {
      const c = line.charCodeAt(i)
      h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0
      h2 = Math.imul(h2 ^ c, 0x01000193 ^ 0x5bd1e995) >>> 0
    }
    h1 = Math.imul(h1 ^ 10, 0x01000193) >>> 0
    h2 = Math.imul(h2 ^ 10, 0x5bd1e995) >>> 0
    this.h1 = h1
    this.h2 = h2
    this.count++
  }

  get lines(): number {
    return this.count
  }

  hex(): string {
    return this.h1.toString(16).padStart(8, '0') + this.h2.toString(16).padStart(8, '0')
  }
}

/** Where trace lines go besides the hash: nowhere (default), a collector, or a printer. */
export type TraceSink = (line: string) => void

/** Thrown when a run executes more events than its budget: a message storm or a livelock. */
export class EventBudgetExceeded extends Error {
  override readonly name = 'EventBudgetExceeded'
}

export class Simulator {
  /** Events one run may execute before it is declared runaway (normal runs use well under 1M). */
  eventsMax = 2_000_000

  private readonly heap = new EventHeap()
  private seq = 0
  private now = 0
  private steps = 0
  private readonly afterStepHooks: (() => void)[] = []
  readonly trace = new TraceHash()
  /** Lines kept in memory (the last `traceTailMax`), printed when a run fails. */
  private readonly tail: string[] = []

  constructor(
    private readonly sink: TraceSink | null = null,
    private readonly traceTailMax = 200,
  ) {}

  get nowMs(): number {
    return this.now
  }

  get stepCount(): number {
    return this.steps
  }

  get pending(): number {
    return this.heap.size
  }

  /** Runs `fire` after `delayMs` of simulated (true) time. */
  schedule(delayMs: number, fire: () => void): TimerHandle {
    assert(Number.isFinite(delayMs) && delayMs >= 0, `bad delay ${delayMs}`)
    const e: SimEvent = { atMs: this.now + delayMs, seq: this.seq++, fire, cancelled: false }
    this.heap.push(e)
    return {
      cancel: () => {
        e.cancelled = true
      },
    }
  }

  /** Called after every event (the raft-safety checker hangs here: "asserted on every step"). */
  afterEachStep(hook: () => void): void {
    this.afterStepHooks.push(hook)
  }

  /** Runs one event. False when the queue is empty. */
  step(): boolean {
    for (;;) {
      const e = this.heap.pop()
      if (e === undefined) return false
      if (e.cancelled) continue
      assert(e.atMs >= this.now, 'time went backwards')
      this.now = e.atMs
      if (++this.steps > this.eventsMax) {
        throw new EventBudgetExceeded(`more than ${this.eventsMax} events by ${fmtMs(this.now).trim()}ms`)
      }
      e.fire()
      for (const hook of this.afterStepHooks) hook()
      return true
    }
  }

  /** Runs events until simulated time passes `untilMs`, or `stop()` says so (checked after each event). */
  runUntil(untilMs: number, stop: () => boolean = () => false): boolean {
    for (;;) {
      if (stop()) return true
      const next = this.heap.peek()
      if (next === undefined || next.atMs > untilMs) {
        this.now = Math.max(this.now, untilMs)
        return stop()
      }
      this.step()
    }
  }

  /** Adds a line to the trace (hashed; kept in the tail; printed when tracing). */
  record(line: string): void {
    const stamped = `${fmtMs(this.now)} ${line}`
    this.trace.update(stamped)
    if (this.tail.length >= this.traceTailMax) this.tail.shift()
    this.tail.push(stamped)
    if (this.sink !== null) this.sink(stamped)
  }

  traceTail(): readonly string[] {
    return this.tail
  }
}

/** Milliseconds with three decimals, fixed width: stable in traces. */
export function fmtMs(ms: number): string {
  return ms.toFixed(3).padStart(11, ' ')
}

/**
 * A node's clock: monotonic time that runs `driftPpm` parts per million fast (or slow) against
 * the simulator's true time, from its own offset (TigerBeetle `TimeSim`). Timers are converted to
 * true time, so a fast clock's timers fire early in true time.
 */
export class SimClock implements Clock {
  private baseTrueMs: number
  private baseLocalMs: number
  private rate: number

  constructor(
    private readonly sim: Simulator,
    driftPpm: number,
    offsetMs: number,
  ) {
    this.baseTrueMs = sim.nowMs
    this.baseLocalMs = offsetMs
    this.rate = 1 + driftPpm / 1e6
  }

  nowMs(): number {
    return this.baseLocalMs + (this.sim.nowMs - this.baseTrueMs) * this.rate
  }

  wallMs(): number {
    return 1_700_000_000_000 + this.nowMs()
  }

  setTimer(delayMs: number, onFire: () => void): TimerHandle {
    return this.sim.schedule(Math.max(0, delayMs) / this.rate, onFire)
  }

  /** Changes the drift from now on; the clock stays continuous and monotonic. */
  setDriftPpm(driftPpm: number): void {
    this.baseLocalMs = this.nowMs()
    this.baseTrueMs = this.sim.nowMs
    this.rate = 1 + driftPpm / 1e6
    assert(this.rate > 0)
  }

  get driftPpm(): number {
    return Math.round((this.rate - 1) * 1e6)
  }
}

/**
 * A Logger (common/logger.ts) that writes into the simulator's trace with simulated time, so the
 * trace of a seed is reproducible and diffable (STYLE.md 7.7 "in simulation"). Levels below
 * `minLevel` are dropped before they are formatted.
 */
const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const
type Level = (typeof levels)[number]

export class SimLogger implements Logger {
  private readonly min: number

  constructor(
    private readonly sim: Simulator,
    minLevel: Level = 'info',
    private readonly bindings: string = '',
  ) {
    this.min = levels.indexOf(minLevel)
  }

  private write(level: number, fields: LogFields, message: string): void {
    if (level < this.min) return
    const f = stableStringify(fields)
    this.sim.record(`${levels[level]!.padEnd(5)} ${this.bindings}${message}${f === '{}' ? '' : ` ${f}`}`)
  }

  trace(fields: LogFields, message: string): void {
    this.write(0, fields, message)
  }
  debug(fields: LogFields, message: string): void {
    this.write(1, fields, message)
  }
  info(fields: LogFields, message: string): void {
    this.write(2, fields, message)
  }
  warn(fields: LogFields, message: string): void {
    this.write(3, fields, message)
  }
  error(fields: LogFields, message: string): void {
    this.write(4, fields, message)
  }
  fatal(fields: LogFields, message: string): void {
    this.write(5, fields, message)
  }
  isLevelEnabled(level: Level): boolean {
    return levels.indexOf(level) >= this.min
  }
  child(bindings: LogFields): Logger {
    const b = Object.entries(bindings)
      .map(([k, v]) => `${k}=${String(v)} `)
      .join('')
    return new SimLogger(this.sim, levels[this.min] ?? 'info', this.bindings + b)
  }
}

/** JSON with sorted keys; typed arrays by length; bigint as text. Deterministic for any input. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return `${v}n`
    if (v instanceof Uint8Array) return `<${v.byteLength}B>`
    if (v instanceof Map) return Object.fromEntries([...v.entries()].map(([k, x]) => [String(k), x]))
    if (v instanceof Set) return [...v]
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>
      return Object.fromEntries(
        Object.keys(o)
          .sort()
          .map((k) => [k, o[k]]),
      )
    }
    return v
  })
}

/** Parses "0x1f3a" or "123" into a seed (a safe non-negative integer). */
export function parseSeed(text: string): number {
  const t = text.trim().toLowerCase()
  const n = t.startsWith('0x') ? Number.parseInt(t.slice(2), 16) : Number.parseInt(t, 10)
  assert(Number.isSafeInteger(n) && n >= 0, `bad seed ${text}`)
  return n
}

export function fmtSeed(seed: number): string {
  return `0x${seed.toString(16)}`
}

/** A small, fast string hash (FNV-1a, 32 bits) as 8 hex digits, for state and entry digests. */
export function hash32(text: string, h = 0x811c9dc5): number {
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0
  return h >>> 0
}

export function hashBytes(bytes: Uint8Array, h = 0x811c9dc5): number {
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193) >>> 0
  return h >>> 0
}
