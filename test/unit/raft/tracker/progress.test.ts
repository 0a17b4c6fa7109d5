import { describe, expect, it } from 'vitest'
import type { LogIndex } from '../../../../src/common/index.ts'
import { Progress, ProgressState } from '../../../../src/raft/tracker/progress.ts'

const i = (n: number): LogIndex => n as LogIndex
const make = (match: number, next: number): Progress =>
  new Progress({ match: i(match), next: i(next), isLearner: false, inflightAppendsMax: 2 })

describe('raft/tracker/progress', () => {
  it('pauses a probing peer after one append until it answers', () => {
    const p = make(0, 5)
    expect(p.isPaused()).toBe(false)
    p.sentEntries(i(6), 2, 2)
    expect(p.isPaused()).toBe(true)
    expect(p.next).toBe(5)
    expect(p.maybeUpdate(i(6))).toBe(true)
    expect(p.isPaused()).toBe(false)
  })

  it('pipelines in replicate state up to the inflight window', () => {
    const p = make(4, 5)
    p.becomeReplicate()
    p.sentEntries(i(6), 2, 2)
    expect(p.next).toBe(7)
    p.sentEntries(i(8), 2, 2)
    expect(p.isPaused()).toBe(true)
    p.maybeUpdate(i(6))
    p.inflights.freeLE(i(6))
    expect(p.isPaused()).toBe(false)
  })

  it('ignores a stale rejection in replicate state and falls back to match+1 otherwise (§5.3)', () => {
    const p = make(4, 5)
    p.becomeReplicate()
    p.sentEntries(i(9), 5, 5)
    expect(p.maybeDecrTo(i(3), i(3))).toBe(false)
    expect(p.maybeDecrTo(i(7), i(7))).toBe(true)
    expect(p.next).toBe(5)
  })

  it('moves next back to the hint when the last probe is rejected', () => {
    const p = make(0, 10)
    p.sentEntries(i(9), 0, 0)
    expect(p.maybeDecrTo(i(8), i(3))).toBe(false)
    expect(p.maybeDecrTo(i(9), i(3))).toBe(true)
    expect(p.next).toBe(4)
    expect(p.isPaused()).toBe(false)
  })

  it('resumes above the snapshot after it is installed', () => {
    const p = make(2, 3)
    p.becomeSnapshot(i(10))
    expect(p.state).toBe(ProgressState.Snapshot)
    expect(p.isPaused()).toBe(true)
    p.becomeProbe()
    expect(p.next).toBe(11)
  })
})
