/**
 * Findings of the chaos suite that are reported and not fixed yet, each with the narrowest test
 * that recognises it. A violation one of them explains is listed in the run's result and printed
 * (`known`), not counted as a new problem; any other violation fails the run. Remove an entry when
 * its fix lands: the suite then fails if the behaviour comes back.
 */
import type { FaultWindow } from './nemesis.ts'
import { faultNodes } from './nemesis.ts'
import type { ChaosOp } from './workload.ts'

/** Faults after which a node receives peer messages that were sent long before (socket buffers, TCP retransmits). */
const delayingKinds = new Set(['pause', 'isolate', 'one-way', 'bridge', 'loss'])
const afterHealMs = 2_000

/**
 * F2, follower staleness from a delayed message: a follower measures its staleness from the time
 * a leader message *arrives*, not from when it was sent. A paused or cut-off follower that gets a
 * heartbeat the leader sent seconds ago (kept in a socket buffer, or retransmitted once the link
 * heals) counts itself fresh and serves bounded reads older than their bound (seen: a read with
 * bound 1000 ms answering v148 when v158 had been acknowledged 1.8 s before, staleness said 99 ms).
 * Recognised: a bounded read served by a node under such a fault (or within 2 s of its heal).
 */
export function excuseKnown(
  windows: readonly FaultWindow[],
  nodes: number,
): (op: ChaosOp) => string | undefined {
  return (op) => {
    if (op.kind !== 'get' || op.level !== 'bounded' || op.receipt === undefined) return undefined
    const served = op.receipt.nodeId
    const hit = windows.some(
      (w) =>
        delayingKinds.has(w.fault.kind) &&
        faultNodes(w.fault, nodes).includes(served) &&
        op.callMs <= w.toMs + afterHealMs &&
        op.returnMs >= w.fromMs,
    )
    return hit ? 'known F2 (follower staleness counts from a delayed message)' : undefined
  }
}
