/**
 * Liveness: which nodes the meta leader has heard from, kept in memory (pure: times come in as
 * arguments). Heartbeats are served by the meta leader; each one notes its node here, and only a
 * change of a node's state is written to the meta shard (a heartbeat is a read, not a Raft write).
 *
 *   active | joining  -> unreachable  not heard from for `unreachableAfterMs` (routing passes it over)
 *   active | joining | unreachable -> dead  not heard from for `deadAfterMs` (its replicas are re-created)
 *   unreachable | dead | joining -> active  on its next heartbeat (MetaStore.heartbeat writes that)
 *
 * A draining node keeps its state (it is being emptied whatever it answers). A new meta leader
 * knows nothing of its predecessor's clocks, so `reset` counts every node as heard at the moment
 * it took over: a failover never marks anyone unreachable or dead before a full period passed.
 * Two clocks: the monotonic one judges; the wall one is what the map shows (lastHeartbeatMs).
 */
import type { NodeId } from '../common/ids.ts'
import type { NodeRecord, NodeState } from './records.ts'

export interface LivenessInit {
  /** Silence after which a node is unreachable (a few heartbeats). */
  readonly unreachableAfterMs: number
  /** Silence after which a node is dead (minutes: a restart must not cause a storm of repairs). */
  readonly deadAfterMs: number
}

/** A state the registry should record for a node. */
export interface StateChange {
  readonly nodeId: NodeId
  readonly from: NodeState
  readonly to: NodeState
}

interface Heard {
  readonly monoMs: number
  readonly wallMs: number
}

export class Liveness {
  private readonly init: LivenessInit
  private readonly heardAt = new Map<NodeId, Heard>()
  /** When this leadership began (every node counts as heard then); undefined before `reset`. */
  private since: Heard | undefined

  constructor(init: LivenessInit) {
    this.init = init
  }

  /** Whether `reset` was called since the last `forget` (this node leads the meta shard). */
  get tracking(): boolean {
    return this.since !== undefined
  }

  /** Leadership begins: forget what was heard before and count every node as heard now. */
  reset(monoMs: number, wallMs: number): void {
    this.heardAt.clear()
    this.since = { monoMs, wallMs }
  }

  /** Leadership ended. */
  forget(): void {
    this.heardAt.clear()
    this.since = undefined
  }

  /** A heartbeat of `nodeId` was served now. */
  heard(nodeId: NodeId, monoMs: number, wallMs: number): void {
    if (this.since === undefined) return
    this.heardAt.set(nodeId, { monoMs, wallMs })
  }

  /**
   * Wall-clock ms when this leadership last heard `nodeId`; undefined when it has not (or is not
   * tracking). Only a heartbeat counts: the map shows it, and a node that lost its data directory
   * is told apart from one that never ran by it (kvd's bootstrap guard), so the moment the
   * leadership began, which judging counts as heard, is not a heartbeat here.
   */
  lastHeardWallMs(nodeId: NodeId): number | undefined {
    return this.heardAt.get(nodeId)?.wallMs
  }

  /** Ms of silence of `nodeId` at `monoMs`; 0 when not tracking. */
  silentMs(nodeId: NodeId, monoMs: number): number {
    const heard = this.heardAt.get(nodeId) ?? this.since
    return heard === undefined ? 0 : Math.max(0, monoMs - heard.monoMs)
  }

  /** The state changes the registry needs at `monoMs` (none when not tracking); ordered by node id. */
  judge(nodes: Iterable<NodeRecord>, monoMs: number): StateChange[] {
    if (this.since === undefined) return []
    const out: StateChange[] = []
    for (const n of nodes) {
      if (n.state !== 'active' && n.state !== 'joining' && n.state !== 'unreachable') continue
      const silent = this.silentMs(n.id, monoMs)
      const to: NodeState | undefined =
        silent >= this.init.deadAfterMs
          ? 'dead'
          : silent >= this.init.unreachableAfterMs && n.state !== 'unreachable'
            ? 'unreachable'
            : undefined
      if (to !== undefined) out.push({ nodeId: n.id, from: n.state, to })
    }
    return out.sort((a, b) => a.nodeId - b.nodeId)
  }
}
