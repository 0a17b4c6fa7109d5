/**
 * The checkers every chaos run ends with, over the recorded calls (workload.ts). Each returns the
 * problems it found as lines of text (empty = the property held). Linearizability is src/verify's
 * checker; the others are plain passes over the history.
 *
 * - linearizable: majority and `all` puts and linearizable gets, per key (src/verify).
 * - no acknowledged write lost: the final linearizable read of each key is at or after the
 *   highest version any acknowledged majority/all write of that key created, and, when it is that
 *   very version, holds that write's value.
 * - sessions: within one worker's session, a session read of a key returns a version at or after
 *   every version that session saw for that key before the read (its own writes and reads).
 * - bounded reads: the receipt's staleness is within the bound asked, and the value is at or
 *   after every write of that key acknowledged more than bound + `boundSlackMs` before the read
 *   was issued (the slack covers the network and the two clocks measuring the same interval).
 * - receipts: every answer's receipt delivers the level asked or a stronger one, linearizable
 *   answers say staleness 0, a write's receipt has an applied index at or after its version, and all
 *   answers for one key name one shard.
 */
import { checkLinearizability, type Operation } from '../../src/verify/index.ts'
import type { ChaosOp, Level } from './workload.ts'

export const boundSlackMs = 250

export function linearizableOps(ops: readonly ChaosOp[]): Operation[] {
  const out: Operation[] = []
  for (const op of ops) {
    if (op.kind === 'put' && (op.level === 'majority' || op.level === 'all'))
      out.push({
        kind: 'put',
        clientId: op.worker,
        key: op.key,
        callMs: op.callMs,
        returnMs: op.returnMs,
        outcome: op.outcome,
        input: { value: op.value ?? '' },
        output: op.outcome === 'ok' ? { version: op.version! } : null,
      })
    else if (op.kind === 'get' && op.level === 'linearizable' && op.outcome === 'ok')
      out.push({
        kind: 'get',
        clientId: op.worker,
        key: op.key,
        callMs: op.callMs,
        returnMs: op.returnMs,
        outcome: 'ok',
        input: {},
        output: op.read === null ? { value: null } : { value: op.read!, version: op.version! },
      })
  }
  return out
}

export function checkLinearizable(ops: readonly ChaosOp[]): { problems: string[]; result: string } {
  const verdict = checkLinearizability(linearizableOps(ops))
  if (verdict.result === 'violation')
    return { problems: [`not linearizable:\n${verdict.window.text}`], result: 'violation' }
  return { problems: [], result: verdict.result }
}

/** `finals`: the final linearizable read of each key. */
export function checkNoAckedWriteLost(
  ops: readonly ChaosOp[],
  finals: ReadonlyMap<string, ChaosOp>,
): string[] {
  const problems: string[] = []
  const highest = new Map<string, ChaosOp>()
  for (const op of ops) {
    if (op.kind !== 'put' || op.outcome !== 'ok' || op.version === undefined) continue
    const seen = highest.get(op.key)
    if (seen === undefined || op.version > seen.version!) highest.set(op.key, op)
  }
  for (const [key, write] of highest) {
    const final = finals.get(key)
    if (final === undefined || final.outcome !== 'ok') {
      problems.push(`key ${key}: no final read to check its writes against`)
      continue
    }
    if (final.version! < write.version!)
      problems.push(
        `key ${key}: acknowledged ${write.level} write v${write.version} (${JSON.stringify(write.value)}) lost: the final read has v${final.version}`,
      )
    else if (final.version === write.version && final.read !== write.value)
      problems.push(
        `key ${key}: v${write.version} reads ${JSON.stringify(final.read)}, the write put ${JSON.stringify(write.value)}`,
      )
  }
  return problems
}

export function checkSessions(ops: readonly ChaosOp[]): string[] {
  const problems: string[] = []
  // worker -> key -> highest version the session saw
  const seen = new Map<string, number>()
  const byReturn = [...ops].filter((op) => typeof op.worker === 'number').sort((a, b) => a.callMs - b.callMs)
  for (const op of byReturn) {
    if (op.outcome !== 'ok' || op.version === undefined) continue
    const id = `${String(op.worker)}\u0000${op.key}`
    const before = seen.get(id) ?? 0
    if (op.kind === 'get' && op.level === 'session' && op.version < before)
      problems.push(
        `worker ${String(op.worker)} key ${op.key}: session read returned v${op.version} after the session saw v${before} (node ${op.receipt?.nodeId})`,
      )
    // A worker's calls are sequential: calls in call order are its program order.
    if (op.version > before) seen.set(id, op.version)
  }
  return problems
}

/**
 * `excuse` names a known, reported finding that explains a violating read (known.ts); such reads
 * are listed apart (`known`), every other violation is a problem.
 */
export function checkBounded(
  ops: readonly ChaosOp[],
  excuse: (op: ChaosOp) => string | undefined = () => undefined,
): { problems: string[]; known: string[] } {
  const problems: string[] = []
  const known: string[] = []
  const acked = ops.filter((op) => op.kind === 'put' && op.outcome === 'ok')
  for (const op of ops) {
    if (op.kind !== 'get' || op.level !== 'bounded' || op.outcome !== 'ok') continue
    const bound = op.boundMs!
    const staleness = op.receipt?.stalenessMs ?? Number.POSITIVE_INFINITY
    if (staleness > bound)
      problems.push(`key ${op.key}: bounded read (bound ${bound} ms) answered with staleness ${staleness} ms`)
    const mustSee = acked
      .filter((w) => w.key === op.key && w.returnMs < op.callMs - bound - boundSlackMs)
      .reduce((max, w) => Math.max(max, w.version!), 0)
    if (op.version! < mustSee) {
      const text = `key ${op.key}: bounded read (bound ${bound} ms, node ${op.receipt?.nodeId}) returned v${op.version}, but v${mustSee} was acknowledged more than ${bound + boundSlackMs} ms before it was issued`
      const why = excuse(op)
      if (why === undefined) problems.push(text)
      else known.push(`${why}: ${text}`)
    }
  }
  return { problems, known }
}

const strength: Record<string, number> = {
  eventual: 0,
  bounded: 1,
  session: 2,
  linearizable: 3,
  leader: 0,
  majority: 1,
  all: 2,
}

export function checkReceipts(ops: readonly ChaosOp[]): string[] {
  const problems: string[] = []
  const shardOf = new Map<string, number>()
  for (const op of ops) {
    if (op.outcome !== 'ok') continue
    const r = op.receipt
    const what = `${op.kind} ${op.level} of ${op.key}`
    if (r === undefined) {
      problems.push(`${what}: no receipt`)
      continue
    }
    const asked: Level = op.level
    if (!(r.delivered in strength) || strength[r.delivered]! < strength[asked]!)
      problems.push(`${what}: receipt delivers '${r.delivered}', weaker than asked`)
    if (op.kind === 'get' && asked === 'linearizable' && r.stalenessMs !== 0)
      problems.push(`${what}: linearizable answer with staleness ${r.stalenessMs} ms`)
    // At or after the write: an answer to a retried write (deduplicated by its client id and
    // sequence number) names the replica's applied index when it answered, past the write's own.
    if (op.kind === 'put' && r.appliedIndex < op.version!)
      problems.push(
        `${what}: receipt applied index ${r.appliedIndex} is before the write's version ${op.version}`,
      )
    const shard = shardOf.get(op.key)
    if (shard === undefined) shardOf.set(op.key, r.shardId)
    else if (shard !== r.shardId)
      problems.push(`${what}: receipt names shard ${r.shardId}, earlier ones ${shard}`)
  }
  return problems
}
