/**
 * Raft's safety properties (Raft dissertation Figure 3.2), checked incrementally on every event
 * the simulated shells report, so a violation stops the run at the step that caused it:
 *
 * - Election safety: at most one leader per term.
 * - Leader append-only: a leader never overwrites or deletes entries in its log during its term.
 * - Log matching: if two logs hold an entry with the same index and term, the logs are identical
 *   up to that index. Each node's log is mirrored as a chain of hashes (entry i's hash covers
 *   entries 1..i), so the check is one comparison per appended entry.
 * - Leader completeness: a leader of term T holds every entry committed in a term before T.
 * - State machine safety: no two nodes apply different entries at one index; and, stronger, the
 *   applied state after index i (data and dedup table) hashes equal on every node, also when the
 *   state came from a snapshot.
 */
import { assert, type LogIndex, type NodeId, type Term } from '../../../src/common/index.ts'
import type { Entry, HardState, Snapshot, SoftState } from '../../../src/raft/index.ts'
import { hash32, hashBytes } from '../simulator.ts'

export const SafetyProperty = {
  ElectionSafety: 'election-safety',
  LeaderAppendOnly: 'leader-append-only',
  LogMatching: 'log-matching',
  LeaderCompleteness: 'leader-completeness',
  StateMachineSafety: 'state-machine-safety',
  Linearizability: 'linearizability',
  Liveness: 'liveness',
  Convergence: 'convergence',
  Crash: 'crash',
} as const
export type SafetyProperty = (typeof SafetyProperty)[keyof typeof SafetyProperty]

/** A broken property. Thrown from inside the simulation and caught by the runner. */
export class SimViolation extends Error {
  override readonly name = 'SimViolation'
  constructor(
    readonly property: SafetyProperty,
    readonly detail: string,
  ) {
    super(`${property}: ${detail}`)
  }
}

/** One node's log, as chain hashes. Invariant: chains[i - base] covers entries up to index i. */
class LogMirror {
  base = 0
  baseTerm = 0
  chains: number[] = [0]
  terms: number[] = [0]

  get lastIndex(): number {
    return this.base + this.chains.length - 1
  }

  chainAt(index: number): number | undefined {
    return this.chains[index - this.base]
  }

  termAt(index: number): number | undefined {
    return this.terms[index - this.base]
  }
}

interface NodeTrack {
  mirror: LogMirror
  term: number
  /** The term in which this node was last seen as leader, and whether it still is. */
  leaderTerm: number | null
}

export class RaftSafetyChecker {
  /** The first violation seen when not enforcing (the run goes on to see what else breaks). */
  firstViolation: SimViolation | null = null

  /**
   * `enforce` (the default) stops the run at the first violation. Off, violations are only
   * remembered: used to show that the end-of-run checkers (linearizability, convergence) catch
   * the same bugs on their own.
   */
  constructor(private readonly enforce = true) {}

  private violated(property: SafetyProperty, detail: string): void {
    const v = new SimViolation(property, detail)
    if (this.enforce) throw v
    this.firstViolation ??= v
  }

  private readonly leaders = new Map<number, NodeId>()
  private readonly nodes = new Map<NodeId, NodeTrack>()
  /** Global (index, term) -> chain hash: the log-matching oracle. */
  private readonly chainByIndexTerm = new Map<string, number>()
  /** The committed log as the nodes applied it: dense from `committedBase + 1`. */
  private committedBase = -1
  private readonly committed: { term: number; chain: number; identity: string; stateHash: number }[] = []
  /** Per term: the highest index its leader committed, and the chain hash there. */
  private readonly leaderCommits = new Map<number, { index: number; chain: number }>()
  checks = 0

  /** A node starts (first boot or restart) with this durable log. */
  onStart(id: NodeId, hardState: HardState, snapshot: Snapshot, entries: readonly Entry[]): void {
    const mirror = new LogMirror()
    this.resetTo(mirror, snapshot.meta.index, snapshot.meta.term)
    this.appendToMirror(id, mirror, entries)
    this.nodes.set(id, { mirror, term: hardState.term, leaderTerm: null })
  }

  onCrash(id: NodeId): void {
    const t = this.nodes.get(id)
    if (t !== undefined) t.leaderTerm = null
  }

  /**
   * A Ready's write is durable. `soft` is the Ready's soft state; the node's term is its last hard
   * state's. Checks leader append-only, log matching, election safety and leader completeness.
   */
  onPersisted(
    id: NodeId,
    soft: SoftState,
    hardState: HardState | null,
    snapshot: Snapshot | null,
    entries: readonly Entry[],
  ): void {
    const t = this.track(id)
    if (hardState !== null) {
      if (hardState.term < t.term)
        this.violated(
          SafetyProperty.ElectionSafety,
          `node ${id} term went back ${t.term} -> ${hardState.term}`,
        )
      t.term = hardState.term
    }
    const isLeader = soft.role === 'leader'
    const wasLeaderThisTerm = t.leaderTerm === t.term
    if (snapshot !== null) {
      if (wasLeaderThisTerm && isLeader)
        this.violated(SafetyProperty.LeaderAppendOnly, `leader ${id} installed a snapshot in term ${t.term}`)
      this.resetTo(t.mirror, snapshot.meta.index, snapshot.meta.term)
    }
    const first = entries[0]
    if (first !== undefined && isLeader && wasLeaderThisTerm && first.index !== t.mirror.lastIndex + 1) {
      this.violated(
        SafetyProperty.LeaderAppendOnly,
        `leader ${id} of term ${t.term} wrote from index ${first.index} over its log ending at ${t.mirror.lastIndex}`,
      )
    }
    this.appendToMirror(id, t.mirror, entries)
    if (isLeader) {
      const other = this.leaders.get(t.term)
      if (other !== undefined && other !== id) {
        this.violated(
          SafetyProperty.ElectionSafety,
          `nodes ${other} and ${id} are both leader of term ${t.term}`,
        )
      }
      if (other === undefined) {
        this.leaders.set(t.term, id)
        this.checkLeaderCompleteness(id, t)
      }
      t.leaderTerm = t.term
      if (hardState !== null) this.recordLeaderCommit(t, hardState.commit)
    } else {
      t.leaderTerm = null
    }
    this.checks++
  }

  /** A node applied `entry`; `stateHash` is its state machine right after. */
  onApplied(id: NodeId, entry: Entry, stateHash: number): void {
    const t = this.track(id)
    const chain = t.mirror.chainAt(entry.index)
    assert(
      chain !== undefined || entry.index <= t.mirror.base,
      `node ${id} applies ${entry.index} beyond its log`,
    )
    const identity = `${entry.term}:${entry.type}:${hashBytes(entry.data)}`
    this.checks++
    const known = this.committedAt(entry.index)
    if (known === undefined) {
      assert(
        this.committedBase < 0 || entry.index === this.committedBase + this.committed.length + 1,
        `hole in the committed log at ${entry.index}`,
      )
      if (this.committedBase < 0) this.committedBase = entry.index - 1
      this.committed.push({ term: entry.term, chain: chain ?? 0, identity, stateHash })
      return
    }
    if (known.identity !== identity) {
      this.violated(
        SafetyProperty.StateMachineSafety,
        `node ${id} applied ${identity} at index ${entry.index}, another node applied ${known.identity}`,
      )
    }
    if (known.stateHash !== stateHash) {
      this.violated(
        SafetyProperty.StateMachineSafety,
        `node ${id} state after index ${entry.index} differs from another node's`,
      )
    }
  }

  /** A node restored its state machine from a snapshot at `index`. */
  onRestored(id: NodeId, index: LogIndex, stateHash: number): void {
    this.checks++
    const known = this.committedAt(index)
    if (known !== undefined && known.stateHash !== stateHash) {
      this.violated(
        SafetyProperty.StateMachineSafety,
        `node ${id} restored a snapshot at ${index} whose state differs from the applied one`,
      )
    }
    void id
  }

  /** The highest term with a leader, and that leader (for tests and nemeses). */
  latestLeader(): { term: number; id: NodeId } | null {
    let best: { term: number; id: NodeId } | null = null
    for (const [term, id] of this.leaders) if (best === null || term > best.term) best = { term, id }
    return best
  }

  leaderCount(): number {
    return this.leaders.size
  }

  committedCount(): number {
    return this.committed.length
  }

  private committedAt(index: number): (typeof this.committed)[number] | undefined {
    if (this.committedBase < 0) return undefined
    return this.committed[index - this.committedBase - 1]
  }

  private track(id: NodeId): NodeTrack {
    const t = this.nodes.get(id)
    assert(t !== undefined, `node ${id} not started`)
    return t
  }

  private resetTo(mirror: LogMirror, index: number, term: number): void {
    const key = `${index}:${term}`
    let chain = this.chainByIndexTerm.get(key)
    if (chain === undefined) {
      chain = hash32(`snapshot:${key}`)
      this.chainByIndexTerm.set(key, chain)
    }
    mirror.base = index
    mirror.baseTerm = term
    mirror.chains = [chain]
    mirror.terms = [term]
  }

  private appendToMirror(id: NodeId, mirror: LogMirror, entries: readonly Entry[]): void {
    for (const e of entries) {
      if (e.index <= mirror.base) continue
      assert(e.index <= mirror.lastIndex + 1, `node ${id} log gap at ${e.index}`)
      mirror.chains.length = e.index - mirror.base
      mirror.terms.length = e.index - mirror.base
      const prev = mirror.chains[mirror.chains.length - 1]!
      const prevTerm = mirror.terms[mirror.terms.length - 1]!
      if (e.term < prevTerm)
        this.violated(SafetyProperty.LogMatching, `node ${id} log term decreases at index ${e.index}`)
      const chain = hash32(`${e.term}:${e.type}:${hashBytes(e.data)}`, prev)
      const key = `${e.index}:${e.term}`
      const seen = this.chainByIndexTerm.get(key)
      if (seen === undefined) this.chainByIndexTerm.set(key, chain)
      else if (seen !== chain) {
        this.violated(
          SafetyProperty.LogMatching,
          `node ${id} holds entry ${e.index}/${e.term} with a different history than another node`,
        )
      }
      mirror.chains.push(chain)
      mirror.terms.push(e.term)
    }
  }

  /**
   * Leader completeness (§3.6.3): every entry that a leader of an earlier term committed (its
   * persisted commit index covered it) is in the new leader's log. Checked when a node is first
   * seen as leader of a term; the property does not depend on when the commit was observed.
   */
  private checkLeaderCompleteness(id: NodeId, t: NodeTrack): void {
    let best: { term: number; index: number; chain: number } | null = null
    for (const [term, c] of this.leaderCommits)
      if (term < t.term && (best === null || c.index > best.index)) best = { term, ...c }
    if (best === null || best.index <= t.mirror.base) return
    const mine = t.mirror.chainAt(best.index)
    if (mine === undefined) {
      this.violated(
        SafetyProperty.LeaderCompleteness,
        `leader ${id} of term ${t.term} lacks entry ${best.index} committed by the leader of term ${best.term} (its log ends at ${t.mirror.lastIndex})`,
      )
    }
    if (mine !== best.chain) {
      this.violated(
        SafetyProperty.LeaderCompleteness,
        `leader ${id} of term ${t.term} holds a different entry at index ${best.index}, committed by the leader of term ${best.term}`,
      )
    }
  }

  private recordLeaderCommit(t: NodeTrack, commit: number): void {
    if (commit <= t.mirror.base) return
    const chain = t.mirror.chainAt(commit)
    assert(chain !== undefined, `a leader committed ${commit} beyond its log ${t.mirror.lastIndex}`)
    const prev = this.leaderCommits.get(t.term)
    if (prev === undefined || commit > prev.index) this.leaderCommits.set(t.term, { index: commit, chain })
  }
}

/** For traces: a short name of a node's term and role. */
export function describeTerm(term: Term, role: string): string {
  return `${role}@${term}`
}
