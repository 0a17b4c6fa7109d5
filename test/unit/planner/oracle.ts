/**
 * The rules a plan must keep, checked independently of the planner's own code (src/planner/work.ts):
 * a plain re-statement over the input, move by move in plan order. Returns the broken rules
 * (empty = all kept), so a failing property shows what broke.
 */
import type { Plan, PlanInput, PlannerNode } from '../../../src/planner/index.ts'

const rank = { repair: 0, drain: 1, balance: 2 } as const

/** Safe mode as the issue states it, from the registry alone. */
export function expectedSafeMode(input: PlanInput): 'nodes' | 'zones' | undefined {
  const active = input.nodes.filter((n) => n.state === 'active')
  if (active.length < input.replicaCount) return 'nodes'
  const zones = (ns: readonly PlannerNode[]): number =>
    new Set(ns.map((n) => n.zone).filter((z) => z !== '')).size
  if (zones(input.nodes) >= input.replicaCount && zones(active) < input.replicaCount) return 'zones'
  return undefined
}

export function brokenRules(input: PlanInput, plan: Plan): string[] {
  const broken: string[] = []
  const node = new Map(input.nodes.map((n) => [n.id as number, n]))
  const live = (id: number): boolean => node.has(id) && node.get(id)!.state !== 'dead'
  const replicas = new Map(input.shards.map((s) => [s.shardId as number, [...s.replicas] as number[]]))
  const epochs = new Map(input.shards.map((s) => [s.shardId as number, s.epoch]))
  const busy = new Set(input.inProgress.map((m) => m.shardId as number))
  const activeZones = new Set(
    input.nodes.filter((n) => n.state === 'active' && n.zone !== '').map((n) => n.zone),
  ).size
  const safe = expectedSafeMode(input)
  if (plan.safeMode?.reason !== safe) broken.push(`safe mode ${plan.safeMode?.reason} != ${safe}`)
  const seen = new Set<number>()
  let lastRank = 0
  for (const [i, m] of plan.moves.entries()) {
    const at = `move ${i} (shard ${m.shardId} ${m.from ?? '+'} -> ${m.to}, ${m.reason})`
    const list = replicas.get(m.shardId)
    if (list === undefined) {
      broken.push(`${at}: unknown shard`)
      continue
    }
    if (rank[m.reason] < lastRank) broken.push(`${at}: out of order`)
    lastRank = rank[m.reason]
    if (seen.has(m.shardId)) broken.push(`${at}: second move of the shard`)
    seen.add(m.shardId)
    if (busy.has(m.shardId)) broken.push(`${at}: shard has a move in progress`)
    if (safe !== undefined && m.reason !== 'repair') broken.push(`${at}: not a repair in safe mode`)
    if (m.epoch !== epochs.get(m.shardId)) broken.push(`${at}: epoch`)
    const to = node.get(m.to)
    if (to?.state !== 'active') broken.push(`${at}: destination ${to?.state ?? 'unknown'}`)
    if (list.includes(m.to)) broken.push(`${at}: destination holds the shard`)
    if (m.from !== undefined && !list.includes(m.from)) broken.push(`${at}: source holds no replica`)
    const fromState = m.from === undefined ? undefined : node.get(m.from)?.state
    if (m.reason === 'repair' && m.from === undefined && list.length >= input.replicaCount)
      broken.push(`${at}: add to a shard not short of replicas`)
    if (m.reason === 'repair' && m.from !== undefined && live(m.from))
      broken.push(`${at}: repair of a live replica`)
    if (m.reason === 'drain' && fromState !== 'draining') broken.push(`${at}: drain from a ${fromState} node`)
    if (m.reason === 'balance' && fromState !== 'active')
      broken.push(`${at}: balance from a ${fromState} node`)
    const quorum = (l: readonly number[]): boolean =>
      l.length > 0 && l.filter(live).length >= Math.floor(l.length / 2) + 1
    if (!quorum(list)) broken.push(`${at}: shard without a live quorum`)
    if (activeZones >= input.replicaCount && to !== undefined && to.zone !== '') {
      const others = list.filter((id) => id !== m.from).map((id) => node.get(id)?.zone ?? '')
      if (others.includes(to.zone)) broken.push(`${at}: zone ${to.zone} shared`)
    }
    const after = m.from === undefined ? [...list, m.to] : list.map((id) => (id === m.from ? m.to : id))
    if (!quorum(after)) broken.push(`${at}: leaves the shard without a live quorum`)
    replicas.set(m.shardId, after)
  }
  for (const [s, list] of replicas)
    if (!busy.has(s) && JSON.stringify(plan.placement[s]) !== JSON.stringify(list))
      broken.push(`placement of shard ${s} is not the input with the moves applied`)
  return broken
}
