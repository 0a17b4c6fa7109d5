/**
 * The planted bugs (RaftConfig.testingFaults) and the fault mix that exposes them. A checker that
 * never fails proves nothing; these runs prove the simulator finds real Raft bugs.
 *
 * - grant-vote: votes without the §3.6.1 up-to-date check. A node that missed committed entries
 *   (it was partitioned or down) can win an election and overwrite them. Exposed by partitions
 *   that leave a node behind followed by leader crashes.
 * - commit-counting: a leader commits an entry of an earlier term by counting replicas (the
 *   Figure 3.7 / Figure 8 bug). Needs a leader to crash after replicating its entries to a
 *   minority, a new leader of a later term to replicate the old entries to a majority and crash
 *   before its own entry commits, and a third leader to overwrite them: frequent leader crashes,
 *   short leaderships, slow replication.
 */
import type { SimOverrides } from './options.ts'

export type PlantedBug = 'grant-vote' | 'commit-counting'

export function plantedBugOverrides(bug: PlantedBug): SimOverrides {
  const common: SimOverrides = {
    nemeses: ['crash-leader', 'isolate-leader', 'partition-random', 'crash'],
    faultIntervalMsMean: 200,
    faultDurationMsMax: 600,
    packetLossPer10k: 200,
    preVote: false,
    snapshotEntries: 0,
    readOnly: 'safe',
  }
  if (bug === 'grant-vote') {
    return { ...common, testingFaults: { grantVoteWithoutLogCheck: true } }
  }
  return {
    ...common,
    nemeses: ['isolate-new-leaders', 'crash-leader', 'isolate-leader'],
    faultIntervalMsMean: 300,
    faultDurationMsMax: 3000,
    voters: 3,
    nodes: 3,
    // One entry per append: a new leader's appends of old-term entries are acknowledged before
    // its own no-op reaches a quorum, which is the window in which counting commits them.
    appendEntriesMax: 1,
    testingFaults: { commitPreviousTermByCounting: true },
  }
}
