/**
 * The liveness phase's verdict (STYLE.md 7.6): once every fault is healed and the clients have
 * stopped, the group must elect a leader and every member of its configuration must apply the
 * same entries and reach the same state (equal applied index and equal state hash).
 */
import type { SimCluster } from '../cluster.ts'

export interface ConvergenceState {
  readonly converged: boolean
  readonly detail: string
}

export function convergence(t: SimCluster): ConvergenceState {
  const leader = t.leader()
  if (leader === null) return { converged: false, detail: 'no leader' }
  const status = leader.status()
  if (status === null) return { converged: false, detail: 'leader has no status' }
  const members = [...status.config.voters, ...status.config.learners, ...status.config.votersOutgoing]
  const parts: string[] = []
  let converged = status.config.votersOutgoing.length === 0
  if (!converged) parts.push('joint configuration not left')
  const target = status.commit
  if (status.lastIndex !== status.commit) {
    converged = false
    parts.push(`leader ${leader.id} commit ${status.commit} < last ${status.lastIndex}`)
  }
  const hashes = new Set<number>()
  for (const id of members) {
    const n = t.node(id)
    if (!n.up) {
      converged = false
      parts.push(`member ${id} down`)
      continue
    }
    const h = n.sm.stateHash()
    hashes.add(h)
    if (n.appliedIndex !== target) converged = false
    parts.push(`${id}:applied=${n.appliedIndex},hash=${h.toString(16)}`)
  }
  if (hashes.size > 1) converged = false
  return { converged, detail: `leader=${leader.id} term=${leader.term} commit=${target} ${parts.join(' ')}` }
}

/** True when the members converged on different states at the same applied index: a safety bug, not slowness. */
export function divergedAtSameIndex(t: SimCluster): string | null {
  const byIndex = new Map<number, Set<number>>()
  for (const n of t.nodes) {
    if (!n.up) continue
    let s = byIndex.get(n.appliedIndex)
    if (s === undefined) byIndex.set(n.appliedIndex, (s = new Set()))
    s.add(n.sm.stateHash())
  }
  for (const [index, s] of byIndex)
    if (s.size > 1) return `replicas at applied index ${index} have ${s.size} different states`
  return null
}
