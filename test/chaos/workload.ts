/**
 * The chaos workload: SDK clients (not kvctl) doing a seeded mix of writes and reads at every level
 * on a small key set, every call recorded with the time it was issued and answered (this host's
 * monotonic clock), the level asked for, the outcome and the receipt.
 *
 * Each worker works through its own session (`client.session()`), so its session reads must see
 * its own writes and never go back. The mix (per operation): 40% majority put, 5% `all` put, 25%
 * linearizable get, 15% session get, 15% bounded get (bound `boundedMs`).
 *
 * Outcomes follow src/verify/history.ts: a write that failed with a code whose table entry says
 * "not applied" is `fail`, any other failure is `indeterminate`; a failed read is `fail` (it
 * observed nothing).
 */
import type { KvClient, KvSession, Receipt } from '../../src/client/index.ts'
import { errorCodeTable, isErrorCode } from '../../src/common/errors.ts'
import { SeededRandom } from '../../src/common/random.ts'

export type Level = 'majority' | 'all' | 'linearizable' | 'session' | 'bounded'

/** One recorded call. */
export interface ChaosOp {
  readonly worker: number | string
  readonly key: string
  readonly kind: 'put' | 'get'
  readonly level: Level
  /** The bound of a bounded read. */
  readonly boundMs?: number
  readonly value?: string
  readonly callMs: number
  readonly returnMs: number
  readonly outcome: 'ok' | 'fail' | 'indeterminate'
  /** The error code of a failed call. */
  readonly code?: string
  /** ok put: the version written; ok get: the version read (0 = absent). */
  readonly version?: number
  /** ok get: the value read (null = absent). */
  readonly read?: string | null
  readonly receipt?: Receipt
}

export interface WorkloadOptions {
  readonly seed: number
  readonly keys: readonly string[]
  readonly workers: number
  readonly deadlineMs: number
  readonly boundedMs: number
}

export interface Workload {
  readonly ops: ChaosOp[]
  stop(): Promise<void>
}

const now = (): number => performance.now()

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' ? code : 'UNKNOWN'
}

/** True for the error of a call on a closed client (the run is over). */
function closed(err: unknown): boolean {
  return codeOf(err) === 'CANCELLED'
}

/** One put through `session`, recorded. */
export async function recordedPut(
  ops: ChaosOp[],
  session: KvSession | KvClient,
  worker: number | string,
  key: string,
  value: string,
  level: 'majority' | 'all',
  deadlineMs: number,
): Promise<ChaosOp> {
  const callMs = now()
  let op: ChaosOp
  try {
    const put = await session.put(key, value, { consistency: level, deadlineMs })
    op = {
      worker,
      key,
      kind: 'put',
      level,
      value,
      callMs,
      returnMs: now(),
      outcome: 'ok',
      version: put.version,
      receipt: put.receipt,
    }
  } catch (err) {
    const code = codeOf(err)
    const notApplied = isErrorCode(code) && errorCodeTable[code].writeNotApplied
    op = {
      worker,
      key,
      kind: 'put',
      level,
      value,
      callMs,
      returnMs: now(),
      outcome: notApplied ? 'fail' : 'indeterminate',
      code,
    }
  }
  ops.push(op)
  return op
}

/** One get through `session`, recorded. */
export async function recordedGet(
  ops: ChaosOp[],
  session: KvSession | KvClient,
  worker: number | string,
  key: string,
  level: 'linearizable' | 'session' | 'bounded',
  deadlineMs: number,
  boundMs?: number,
): Promise<ChaosOp> {
  const callMs = now()
  let op: ChaosOp
  try {
    const got = await session.get(key, {
      consistency: level,
      deadlineMs,
      ...(level === 'bounded' && boundMs !== undefined ? { maxStalenessMs: boundMs } : {}),
    })
    op = {
      worker,
      key,
      kind: 'get',
      level,
      ...(boundMs === undefined ? {} : { boundMs }),
      callMs,
      returnMs: now(),
      outcome: 'ok',
      version: got.version,
      read: got.valueText(),
      receipt: got.receipt,
    }
  } catch (err) {
    op = { worker, key, kind: 'get', level, callMs, returnMs: now(), outcome: 'fail', code: codeOf(err) }
  }
  ops.push(op)
  return op
}

export function startWorkload(client: KvClient, options: WorkloadOptions): Workload {
  const ops: ChaosOp[] = []
  const state = { done: false }
  const worker = async (w: number): Promise<void> => {
    const random = new SeededRandom(options.seed).fork(`worker-${w}`)
    const session = client.session()
    for (let n = 0; !state.done; n++) {
      const key = options.keys[random.int(options.keys.length)]!
      const roll = random.int(100)
      let op: ChaosOp
      if (roll < 45) {
        const level = roll < 40 ? 'majority' : 'all'
        op = await recordedPut(ops, session, w, key, `w${w}-${n}`, level, options.deadlineMs)
      } else {
        const level = roll < 70 ? 'linearizable' : roll < 85 ? 'session' : 'bounded'
        op = await recordedGet(
          ops,
          session,
          w,
          key,
          level,
          options.deadlineMs,
          level === 'bounded' ? options.boundedMs : undefined,
        )
      }
      if (op.code === 'CANCELLED' && state.done) return
      // A refused call comes back at once while a node is down: do not spin.
      if (op.outcome !== 'ok' && op.returnMs - op.callMs < 50) await new Promise((r) => setTimeout(r, 50))
    }
  }
  const running = Promise.all(
    Array.from({ length: options.workers }, (_, w) =>
      worker(w).catch((err: unknown) => {
        if (!closed(err)) throw err
      }),
    ),
  )
  return {
    ops,
    async stop() {
      state.done = true
      await running
    },
  }
}
