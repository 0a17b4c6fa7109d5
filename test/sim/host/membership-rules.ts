/**
 * The rules of membership changes (issue 10, "Rules that must hold at every moment"), checked on
 * the live hosts every `membershipSampleMs` of simulated time while replicas move (moves.ts):
 *
 * - quorum: in the configuration a shard's leader applied, the voters whose log reaches the
 *   leader's commit index (within caughtUpLagEntriesMax, the lag replica-change.ts counts as
 *   caught up; an empty replica never counts) form a quorum of each voter set (both halves while
 *   joint). A down voter counts with the last index it was seen with (its synced log survives).
 * - joint: two configurations one epoch apart that are both simple never drop one voter and add
 *   another (a replace goes through the joint configuration); checked over every configuration any
 *   replica applied (configs.ts), and per replica as it applies them.
 * - promote: a voter a leader newly counts in its configuration holds an active, non-empty
 *   replica (a learner is promoted only once it installed the shard and caught up).
 * - leader: a leader is a voter of the configuration it applied (while joint, of either half: Raft
 *   lets a voter of the outgoing half win an election, needing both halves; the mover's rule is
 *   about what it proposes, which replica-change.ts checks).
 * - delete: a replica that turns `removing` or `tombstone` at epoch E (its data is being or was
 *   dropped) was left out by a configuration some replica applied (so committed) at E or later.
 * - resurrection: a replica that was removing or a tombstone at epoch E never shows up again
 *   (empty, installing or active), after late messages or restarts, unless a PrepareReplica planned
 *   at E or later reached its node (services.ts notePrepare; host.ts runCreate takes those).
 *
 * Linearizability and acknowledged-write durability are the run's own checks (run.ts).
 */
import { caughtUpLagEntriesMax } from '../../../src/shard/index.ts'
import type { NodeId, ShardId } from '../../../src/common/index.ts'
import type { NodeHost, ShardView } from '../../../src/node/host.ts'
import type { HostCluster } from './cluster.ts'
import { describeConfig } from './configs.ts'

/** How often the rules are checked (simulated ms; a move's steps are hundreds of ms apart). */
export const membershipSampleMs = 5

export interface MembershipRuleStats {
  samples: number
  /** Leader views judged by the quorum rule. */
  quorumChecks: number
  /** Joint configurations seen, promotions seen, replicas removed, replicas re-created. */
  jointSeen: number
  promotions: number
  removals: number
  recreations: number
}

export function emptyMembershipRuleStats(): MembershipRuleStats {
  return { samples: 0, quorumChecks: 0, jointSeen: 0, promotions: 0, removals: 0, recreations: 0 }
}

interface Seen {
  readonly state: ShardView['state']
  readonly epoch: number
  readonly voters: readonly NodeId[]
  readonly outgoing: readonly NodeId[]
  readonly role: string
  readonly term: number
}

export class MembershipRules {
  readonly stats: MembershipRuleStats = emptyMembershipRuleStats()
  /** Each replica's view at the last sample (`node:shard`). */
  private readonly last = new Map<string, Seen>()
  /** Each replica's last index when last seen (a down node keeps its value). */
  private readonly lastIndex = new Map<string, number>()
  /** The epoch of each replica's latest removal. */
  private readonly gone = new Map<string, number>()
  /** Removals to confirm against the configurations (at the end: the book is complete then). */
  private readonly removals: { node: NodeId; shardId: ShardId; epoch: number; atMs: number }[] = []

  constructor(private readonly cluster: HostCluster) {}

  sample(): void {
    const c = this.cluster
    if (c.failure !== null) return
    this.stats.samples++
    c.observeConfigs()
    // The leader at the highest term of each shard (an old one may not know yet), and every
    // replica's lifecycle state, from one status() per host.
    const leaders = new Map<ShardId, { node: NodeId; view: ShardView; host: NodeHost }>()
    this.states.clear()
    for (const s of c.slots) {
      const host = s.host
      if (host === undefined) continue
      for (const v of host.status()) {
        this.states.set(`${s.id}:${v.shardId}`, v.state)
        const k = `${s.id}:${v.shardId}`
        const prev = this.last.get(k)
        if (v.state === 'active') {
          const rv = host.replicaView(v.shardId)
          if (rv !== undefined) this.lastIndex.set(k, rv.lastIndex)
          const best = leaders.get(v.shardId)
          if (v.role === 'leader' && (best === undefined || v.term > best.view.term))
            leaders.set(v.shardId, { node: s.id, view: v, host })
          if (v.votersOutgoing.length > 0 && prev?.outgoing.length === 0) this.stats.jointSeen++
        }
        this.checkReplica(s.id, v, prev)
        this.last.set(k, {
          state: v.state,
          epoch: v.epoch,
          voters: v.voters,
          outgoing: v.votersOutgoing,
          role: v.role,
          term: v.term,
        })
        if (c.failure !== null) return
      }
    }
    for (const { node, view, host } of leaders.values()) {
      this.checkLeader(node, view, host)
      if (c.failure !== null) return
    }
  }

  /** What can only be judged once the run is over (every configuration was seen by then). */
  finish(): void {
    const c = this.cluster
    for (const r of this.removals) {
      if (c.failure !== null) return
      if (!c.configs.removedAtOrAfter(r.shardId, r.node, r.epoch))
        c.fail(
          'membership-delete',
          `node ${r.node} dropped its replica of shard ${r.shardId} at epoch ${r.epoch} (at ${r.atMs} ms), but no applied configuration at that epoch or later leaves it out`,
        )
    }
    for (const shardId of c.shardIds) {
      const newest = c.configs.newest(shardId)
      for (let e = 1; e < newest.epoch && c.failure === null; e++) {
        const a = c.configs.at(shardId, e)
        const b = c.configs.at(shardId, e + 1)
        if (a === undefined || b === undefined) continue
        this.checkStep(
          `shard ${shardId}`,
          a.epoch,
          a.voters,
          a.votersOutgoing,
          b.voters,
          b.votersOutgoing,
          b.epoch,
        )
      }
    }
  }

  private checkReplica(node: NodeId, v: ShardView, prev: Seen | undefined): void {
    const c = this.cluster
    const k = `${node}:${v.shardId}`
    const removed = v.state === 'removing' || v.state === 'tombstone'
    if (removed && (prev === undefined || (prev.state !== 'removing' && prev.state !== 'tombstone'))) {
      this.stats.removals++
      this.gone.set(k, Math.max(this.gone.get(k) ?? 0, v.epoch))
      this.removals.push({ node, shardId: v.shardId, epoch: v.epoch, atMs: Math.round(c.sim.nowMs) })
    }
    if (!removed && (prev === undefined || prev.state === 'removing' || prev.state === 'tombstone')) {
      const goneAt = this.gone.get(k)
      if (goneAt !== undefined) {
        this.stats.recreations++
        const prepared = c.prepared.get(k) ?? 0
        // The host takes a request planned at the removal's epoch or later (it knows the node left).
        if (prepared < goneAt)
          return c.fail(
            'membership-resurrection',
            `node ${node}'s replica of shard ${v.shardId}, removed at epoch ${goneAt}, is back (${v.state}, epoch ${v.epoch}) without a PrepareReplica planned at that epoch or later (newest: ${prepared})`,
          )
        this.gone.delete(k)
      }
    }
    if (prev?.state === 'active' && v.state === 'active' && v.epoch === prev.epoch + 1)
      this.checkStep(
        `node ${node} shard ${v.shardId}`,
        prev.epoch,
        prev.voters,
        prev.outgoing,
        v.voters,
        v.votersOutgoing,
        v.epoch,
      )
    // While joint, a voter of the outgoing half only may lead (it needs both halves' votes, and
    // leaving the joint configuration ends its term as a member); outside a joint configuration the
    // leader is one of its voters.
    const voting = [...v.voters, ...v.votersOutgoing]
    if (v.state === 'active' && v.role === 'leader' && !voting.includes(node))
      c.fail(
        'membership-leader',
        `node ${node} leads shard ${v.shardId} (term ${v.term}) in a configuration that removed it: ${describeConfig(v)}`,
      )
  }

  /** Joint consensus: two simple configurations one epoch apart never both drop and add a voter. */
  private checkStep(
    what: string,
    fromEpoch: number,
    fromVoters: readonly NodeId[],
    fromOutgoing: readonly NodeId[],
    toVoters: readonly NodeId[],
    toOutgoing: readonly NodeId[],
    toEpoch: number,
  ): void {
    if (fromOutgoing.length > 0 || toOutgoing.length > 0) return
    const added = toVoters.filter((id) => !fromVoters.includes(id))
    const dropped = fromVoters.filter((id) => !toVoters.includes(id))
    if (added.length > 0 && dropped.length > 0)
      this.cluster.fail(
        'membership-joint',
        `${what}: epoch ${fromEpoch} voters ${fromVoters.join(',')} became epoch ${toEpoch} voters ${toVoters.join(',')} without a joint configuration`,
      )
  }

  private checkLeader(node: NodeId, v: ShardView, leader: NodeHost): void {
    const c = this.cluster
    this.stats.quorumChecks++
    const k = (id: NodeId): string => `${id}:${v.shardId}`
    const commit = v.commitIndex
    const rv = leader.replicaView(v.shardId)
    const match = new Map<NodeId, number>((rv?.progress ?? []).map((p) => [p.nodeId, p.match]))
    const indexOf = (id: NodeId): number =>
      id === node ? (rv?.lastIndex ?? 0) : Math.max(match.get(id) ?? 0, this.lastIndex.get(k(id)) ?? 0)
    const upToDate = (id: NodeId): boolean => {
      const i = indexOf(id)
      return i > 0 && i + caughtUpLagEntriesMax >= commit
    }
    for (const set of [v.voters, v.votersOutgoing]) {
      if (set.length === 0) continue
      const fresh = set.filter(upToDate)
      if (fresh.length < Math.floor(set.length / 2) + 1)
        return c.fail(
          'membership-quorum',
          `shard ${v.shardId}: leader n${node} (term ${v.term}, commit ${commit}) has ${fresh.length} up-to-date voters of ${set.join(',')}: ${set.map((id) => `n${id}@${indexOf(id)}`).join(' ')} (${describeConfig(v)})`,
        )
    }
    // A voter the leader newly counts (same leader, same term) holds an active, non-empty replica.
    const prev = this.lastLeaderVoters.get(k(node))
    if (prev !== undefined && prev.term === v.term) {
      for (const id of [...v.voters, ...v.votersOutgoing]) {
        if (prev.voters.includes(id)) continue
        this.stats.promotions++
        const state = this.states.get(k(id))
        if ((state !== undefined && state !== 'active') || !upToDate(id))
          return c.fail(
            'membership-promote',
            `shard ${v.shardId}: leader n${node} made n${id} a voter while its replica was ${state ?? 'down'} at index ${indexOf(id)} (commit ${commit})`,
          )
      }
    }
    this.lastLeaderVoters.set(k(node), { term: v.term, voters: [...v.voters, ...v.votersOutgoing] })
  }

  /** Each live replica's lifecycle state at this sample (`node:shard`). */
  private readonly states = new Map<string, ShardView['state']>()
  private readonly lastLeaderVoters = new Map<string, { term: number; voters: NodeId[] }>()
}
