/**
 * Builds a configuration and a fresh progress map from a ConfState (at boot and when a
 * snapshot is restored; restoring resets the configuration).
 */
import type { LogIndex, NodeId } from '../../common/index.ts'
import type { ConfState } from '../messages.ts'
import { Progress } from '../tracker/progress.ts'
import { checkConfigInvariants } from '../tracker/tracker.ts'
import type { TrackerConfig } from '../tracker/tracker.ts'

export function restoreConfig(
  cs: ConfState,
  lastIndex: LogIndex,
  inflightAppendsMax: number,
): { config: TrackerConfig; progress: Map<NodeId, Progress> } {
  const config: TrackerConfig = {
    voters: { incoming: new Set(cs.voters), outgoing: new Set(cs.votersOutgoing) },
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.votersOutgoing.length > 0 && cs.autoLeave,
  }
  const progress = new Map<NodeId, Progress>()
  const add = (id: NodeId, isLearner: boolean): void => {
    if (progress.has(id)) return
    progress.set(
      id,
      new Progress({
        match: 0 as LogIndex,
        next: (lastIndex + 1) as LogIndex,
        isLearner,
        inflightAppendsMax,
      }),
    )
  }
  for (const id of cs.voters) add(id, false)
  for (const id of cs.votersOutgoing) add(id, false)
  for (const id of cs.learners) add(id, true)
  for (const id of cs.learnersNext) add(id, false)
  checkConfigInvariants(config, progress)
  return { config, progress }
}
