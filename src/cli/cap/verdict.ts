/**
 * The CAP table as observed (`kvctl cap-demo`), pure: what one call did on one side of a partition
 * that cut a shard's leader off, and whether that kept its level's promise (docs/consistency.md).
 * No clock, no network: the scenario (scenario.ts) measures, this judges.
 *
 * A promise is broken when:
 * - a linearizable or session read is served stale (older than the latest write acknowledged
 *   before the read began: the session's own write, for the session read);
 * - a bounded read is served with a staleness above its bound, or stale although the fresh write
 *   was acknowledged more than the bound (plus `boundSlackMs`) before the read began;
 * - an eventual read is refused (it is served while a replica lives), or served stale with a
 *   receipt that says it is fresh (staleness 0);
 * - a majority or all write is acknowledged and then lost when the partition heals, or an all write
 *   is acknowledged while one of the shard's voters is cut off;
 * - a leader write promises nothing beyond the leader's disk: lost or kept, its promise holds.
 */

export type Side = 'minority' | 'majority'
export type CapReadLevel = 'linearizable' | 'session' | 'bounded' | 'eventual'
export type CapWriteLevel = 'majority' | 'all' | 'leader'

/** What a call did: answered, refused with an error code, or (a write) its outcome unknown. */
export type Outcome = 'served' | 'refused' | 'unknown'

export interface ReadObservation {
  readonly op: 'read'
  readonly side: Side
  readonly level: CapReadLevel
  /** The node asked (it serves or forwards). */
  readonly node: number
  readonly outcome: Outcome
  /** Error code of a refused read. */
  readonly code?: string
  /** Served: the version returned, the node that served it and the receipt's staleness. */
  readonly version?: number
  readonly servedBy?: number
  readonly stalenessMs?: number
  /** Version of the latest write acknowledged before the read began. */
  readonly freshVersion: number
  /** How long before the read began that write was acknowledged. */
  readonly freshAgeMs: number
  /** Bounded reads: the bound asked. */
  readonly boundMs?: number
}

export interface WriteObservation {
  readonly op: 'write'
  readonly side: Side
  readonly level: CapWriteLevel
  readonly node: number
  readonly outcome: Outcome
  readonly code?: string
  readonly version?: number
  readonly servedBy?: number
  /** True while one of the shard's voters was cut off from the others when the write was made. */
  readonly voterCutOff: boolean
  /** After healing: the write's value is there (kept) or not (lost); undefined for a refused write. */
  readonly afterHeal?: 'kept' | 'lost'
}

export type Observation = ReadObservation | WriteObservation

export interface Verdict {
  readonly kept: boolean
  /** Why the promise is broken (empty when kept). */
  readonly why: string
}

/** How much later than its bound a bounded read may see a write: the network and two clocks. */
export const boundSlackMs = 250

/** The table's promise for each level while the shard's leader is cut off in a minority. */
export const promises: Readonly<Record<CapReadLevel | CapWriteLevel, string>> = {
  linearizable: 'never stale: the minority side refuses',
  session: 'never older than the session saw',
  bounded: 'served until the bound runs out, then refused',
  eventual: 'always served; may be stale and says how stale',
  majority: 'an acknowledged write survives: the minority side refuses',
  all: 'acknowledged only once every voter applied it: refused while one is cut off',
  leader: 'accepted by the old leader until it steps down; may be lost',
}

/** Whether a served read is older than the write acknowledged before it began. */
export function isStale(o: ReadObservation): boolean | undefined {
  if (o.outcome !== 'served' || o.version === undefined) return undefined
  return o.version < o.freshVersion
}

export function judge(o: Observation): Verdict {
  const broken = (why: string): Verdict => ({ kept: false, why })
  const kept: Verdict = { kept: true, why: '' }
  if (o.op === 'write') {
    if (o.outcome !== 'served' || o.level === 'leader') return kept
    if (o.level === 'all' && o.voterCutOff)
      return broken('an all write was acknowledged while a voter was cut off')
    if (o.afterHeal === 'lost') return broken(`an acknowledged ${o.level} write was lost`)
    return kept
  }
  const stale = isStale(o)
  switch (o.level) {
    case 'linearizable':
    case 'session':
      return stale === true ? broken(`served v${o.version} after v${o.freshVersion} was acknowledged`) : kept
    case 'bounded': {
      if (o.outcome !== 'served') return kept
      const bound = o.boundMs ?? 0
      if ((o.stalenessMs ?? Number.POSITIVE_INFINITY) > bound)
        return broken(`served with staleness ${o.stalenessMs} ms above its bound of ${bound} ms`)
      if (stale === true && o.freshAgeMs > bound + boundSlackMs)
        return broken(
          `served v${o.version}, but v${o.freshVersion} was acknowledged ${Math.round(o.freshAgeMs)} ms before (bound ${bound} ms)`,
        )
      return kept
    }
    case 'eventual':
      if (o.outcome !== 'served') return broken(`refused (${o.code ?? 'no code'}) although a replica lives`)
      if (stale === true && o.stalenessMs === 0) return broken('served stale with a receipt saying fresh')
      return kept
  }
}

/** The observations whose promise was broken, with why. */
export function brokenPromises(observations: readonly Observation[]): Array<{ o: Observation; why: string }> {
  return observations.flatMap((o) => {
    const v = judge(o)
    return v.kept ? [] : [{ o, why: v.why }]
  })
}
