/**
 * A linearizability checker for key-value histories: the Wing & Gong search with Lowe's
 * memoisation ("Testing for linearizability", Concurrency and Computation 2017, §3–4), in the
 * shape of porcupine (anishathalye/porcupine `checker.go`).
 *
 * - The history is partitioned per key (linearizability is local, Herlihy & Wing 1990 §3.3), and
 *   each key is searched on its own.
 * - Calls and returns form one time-ordered list. The search walks it, "lifting" an operation out
 *   of the list when it linearizes it next, and backtracks when it meets the return of an
 *   operation it has not linearized yet.
 * - A cache of (set of linearized operations, register state) pairs prunes configurations seen
 *   before (Lowe §4): two paths that linearized the same operations and reached the same state
 *   have the same future.
 * - Failed operations are dropped; indeterminate ones have no return (+infinity), so they may be
 *   linearized anywhere after their call, and the search succeeds once every completed operation
 *   is linearized (the indeterminate ones left over never happened).
 * - The search is bounded by a step budget (not wall time, so results are reproducible): when it
 *   runs out, the answer for that key is `unknown`.
 *
 * Real-time order: `a` precedes `b` iff `a.returnMs < b.callMs`. Operations that touch at one
 * instant count as concurrent.
 *
 * Pure: no I/O, no clock, no randomness, no async.
 */
import { assert } from '../common/assert.ts'
import { absentRegister, describeOperation, type Operation, type RegisterState } from './history.ts'
import { describeRegister, keyContext, registerKey, stepRegister } from './register-model.ts'

export interface CheckOptions {
  /** Search steps allowed per key before answering `unknown`. Default 1_000_000. */
  readonly stepsMaxPerKey?: number
  /** Operations of the longest partial linearization shown before the failing one. Default 4. */
  readonly windowPrefixOps?: number
}

export const checkDefaults = { stepsMaxPerKey: 1_000_000, windowPrefixOps: 4 } as const

/** Why a key's history has no linearization, narrowed to the part a human needs to look at. */
export interface ViolationWindow {
  readonly key: string
  /** The longest sequence of operations the search managed to linearize, last few only. */
  readonly linearizedTail: readonly Operation[]
  /** How many operations that longest partial linearization held in total. */
  readonly linearizedCount: number
  /** The register state after that partial linearization. */
  readonly stateBefore: RegisterState
  /** The completed operation that could not be placed before it returned. */
  readonly failing: Operation
  /**
   * Operations not yet linearized that were callable before `failing` returned (it included):
   * every one of them was tried next and none could explain the history.
   */
  readonly pending: readonly Operation[]
  /** The window as text, one operation a line. */
  readonly text: string
}

export interface KeyVerdict {
  readonly key: string
  readonly result: 'ok' | 'violation' | 'unknown'
  readonly ops: number
  readonly steps: number
}

export type CheckResult =
  | { readonly result: 'ok'; readonly keys: readonly KeyVerdict[]; readonly steps: number }
  | {
      readonly result: 'violation'
      readonly key: string
      readonly window: ViolationWindow
      readonly keys: readonly KeyVerdict[]
      readonly steps: number
    }
  | {
      readonly result: 'unknown'
      readonly unknownKeys: readonly string[]
      readonly keys: readonly KeyVerdict[]
      readonly steps: number
    }

/** Groups operations by key, keeping each key's operations in input order. Keys sort by name. */
export function partitionByKey(history: readonly Operation[]): Map<string, Operation[]> {
  const byKey = new Map<string, Operation[]>()
  for (const op of history) {
    let list = byKey.get(op.key)
    if (list === undefined) byKey.set(op.key, (list = []))
    list.push(op)
  }
  return new Map([...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/**
 * The operations the search must consider: failed ones and indeterminate reads are dropped (they
 * cannot have changed anything and observed nothing).
 */
export function relevantOps(ops: readonly Operation[]): Operation[] {
  return ops.filter((op) => {
    if (op.outcome === 'fail') return false
    if (op.outcome === 'indeterminate' && op.kind === 'get') return false
    return true
  })
}

export function validateOperation(op: Operation): void {
  assert(Number.isFinite(op.callMs), 'callMs must be finite')
  if (op.outcome === 'ok') {
    assert(op.output !== null, `an ok ${op.kind} needs an output`)
    assert(Number.isFinite(op.returnMs) && op.returnMs >= op.callMs, 'returnMs must be >= callMs')
  }
}

/** Checks a whole history: ok only if every key's history is linearizable. */
export function checkLinearizability(history: readonly Operation[], options: CheckOptions = {}): CheckResult {
  for (const op of history) validateOperation(op)
  const verdicts: KeyVerdict[] = []
  let steps = 0
  let violation: ViolationWindow | null = null
  const unknownKeys: string[] = []
  for (const [key, ops] of partitionByKey(history)) {
    const r = checkKey(key, ops, options)
    steps += r.steps
    verdicts.push({ key, result: r.result, ops: r.ops, steps: r.steps })
    if (r.result === 'violation' && violation === null) violation = r.window
    if (r.result === 'unknown') unknownKeys.push(key)
  }
  if (violation !== null)
    return { result: 'violation', key: violation.key, window: violation, keys: verdicts, steps }
  if (unknownKeys.length > 0) return { result: 'unknown', unknownKeys, keys: verdicts, steps }
  return { result: 'ok', keys: verdicts, steps }
}

interface Entry {
  readonly isCall: boolean
  /** Index into the key's relevant operations. */
  readonly op: number
  readonly timeMs: number
  /** Call entry -> its return entry (null for indeterminate operations, which never return). */
  match: Entry | null
  prev: Entry | null
  next: Entry | null
}

export type KeyResult =
  | { readonly result: 'ok'; readonly ops: number; readonly steps: number }
  | { readonly result: 'unknown'; readonly ops: number; readonly steps: number }
  | {
      readonly result: 'violation'
      readonly ops: number
      readonly steps: number
      readonly window: ViolationWindow
    }

/** Checks the operations of one key (all must carry `key`). */
export function checkKey(key: string, allOps: readonly Operation[], options: CheckOptions = {}): KeyResult {
  const stepsMax = options.stepsMaxPerKey ?? checkDefaults.stepsMaxPerKey
  const windowPrefixOps = options.windowPrefixOps ?? checkDefaults.windowPrefixOps
  const ops = relevantOps(allOps)
  for (const op of ops) assert(op.key === key, 'operation of another key')
  const ctx = keyContext(ops)
  const n = ops.length

  // The event list, sorted by time; at one instant calls come before returns (touching = concurrent).
  const events: Entry[] = []
  for (let i = 0; i < n; i++) {
    const op = ops[i]
    assert(op !== undefined)
    const call: Entry = { isCall: true, op: i, timeMs: op.callMs, match: null, prev: null, next: null }
    events.push(call)
    if (op.outcome === 'ok') {
      const ret: Entry = { isCall: false, op: i, timeMs: op.returnMs, match: null, prev: null, next: null }
      call.match = ret
      events.push(ret)
    }
  }
  events.sort((a, b) => a.timeMs - b.timeMs || Number(b.isCall) - Number(a.isCall) || a.op - b.op)
  const head: Entry = { isCall: false, op: -1, timeMs: -Infinity, match: null, prev: null, next: null }
  let last = head
  for (const e of events) {
    e.prev = last
    last.next = e
    last = e
  }

  const lift = (call: Entry): void => {
    assert(call.prev !== null)
    call.prev.next = call.next
    if (call.next !== null) call.next.prev = call.prev
    const ret = call.match
    if (ret !== null) {
      assert(ret.prev !== null)
      ret.prev.next = ret.next
      if (ret.next !== null) ret.next.prev = ret.prev
    }
  }
  // Unlifting in the reverse order of lifting restores the list exactly (dancing links).
  const unlift = (call: Entry): void => {
    const ret = call.match
    if (ret !== null) {
      assert(ret.prev !== null)
      ret.prev.next = ret
      if (ret.next !== null) ret.next.prev = ret
    }
    assert(call.prev !== null)
    call.prev.next = call
    if (call.next !== null) call.next.prev = call
  }

  const words = new Uint32Array(Math.max(1, Math.ceil(n / 32)))
  const cache = new Set<string>()
  const stack: { call: Entry; state: RegisterState }[] = []
  let state: RegisterState = absentRegister
  let steps = 0
  let best: { prefix: number[]; state: RegisterState; failing: number } | null = null

  let entry = head.next
  while (entry !== null) {
    if (++steps > stepsMax) return { result: 'unknown', ops: n, steps: steps - 1 }
    if (entry.isCall) {
      const op = ops[entry.op]
      assert(op !== undefined)
      const next = stepRegister(state, op, ctx, -1 - entry.op)
      if (next !== null) {
        const w = entry.op >>> 5
        const bit = 1 << (entry.op & 31)
        words[w] = (words[w] ?? 0) | bit
        const cacheKey = `${words.join(',')}#${registerKey(next)}`
        if (!cache.has(cacheKey)) {
          cache.add(cacheKey)
          stack.push({ call: entry, state })
          state = next
          lift(entry)
          entry = head.next
          continue
        }
        words[w] = (words[w] ?? 0) & ~bit
      }
      entry = entry.next
      continue
    }
    // A return of an operation not yet linearized: this path is dead, backtrack.
    if (best === null || stack.length > best.prefix.length) {
      best = { prefix: stack.map((s) => s.call.op), state, failing: entry.op }
    }
    const top = stack.pop()
    if (top === undefined) break
    state = top.state
    const w = top.call.op >>> 5
    words[w] = (words[w] ?? 0) & ~(1 << (top.call.op & 31))
    unlift(top.call)
    entry = top.call.next
  }
  if (entry === null) return { result: 'ok', ops: n, steps }
  assert(best !== null)
  return { result: 'violation', ops: n, steps, window: explain(key, ops, best, windowPrefixOps) }
}

function explain(
  key: string,
  ops: readonly Operation[],
  best: { prefix: number[]; state: RegisterState; failing: number },
  windowPrefixOps: number,
): ViolationWindow {
  const failing = ops[best.failing]
  assert(failing !== undefined)
  const inPrefix = new Set(best.prefix)
  const pending = ops
    .map((op, i) => ({ op, i }))
    .filter(({ op, i }) => !inPrefix.has(i) && op.callMs <= failing.returnMs)
    .sort((a, b) => a.op.callMs - b.op.callMs || a.i - b.i)
    .map(({ op }) => op)
  const linearizedTail = best.prefix.slice(-windowPrefixOps).map((i) => {
    const op = ops[i]
    assert(op !== undefined)
    return op
  })
  const lines = [
    `key ${JSON.stringify(key)}: no linearization explains the history`,
    `longest partial linearization: ${best.prefix.length} ops, ending with:`,
    ...linearizedTail.map((op) => `  ${describeOperation(op)}`),
    `register is then ${describeRegister(best.state)}; no order of these pending operations explains the rest:`,
    ...pending.map((op) => `  ${op === failing ? '!' : ' '} ${describeOperation(op)}`),
    `and ${describeOperation(failing)} must take effect before it returns`,
  ]
  return {
    key,
    linearizedTail,
    linearizedCount: best.prefix.length,
    stateBefore: best.state,
    failing,
    pending,
    text: lines.join('\n'),
  }
}
