import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../../src/common/index.ts'
import type { LogIndex, Term } from '../../../src/common/index.ts'
import { RaftLog } from '../../../src/raft/log.ts'
import { EntryType, MemoryLogStorage, emptyConfState } from '../../../src/raft/index.ts'
import type { Entry } from '../../../src/raft/index.ts'

const e = (term: number, index: number): Entry => ({
  term: term as Term,
  index: index as LogIndex,
  type: EntryType.Normal,
  data: new Uint8Array([index]),
})
const i = (n: number): LogIndex => n as LogIndex
const t = (n: number): Term => n as Term

/** A log with a snapshot at 2 (term 1) and stable entries 3..5 of terms 1, 2, 3. */
function makeLog(): RaftLog {
  const s = MemoryLogStorage.bootstrap({ ...emptyConfState, voters: [] }, i(2), t(1))
  s.append([e(1, 3), e(2, 4), e(3, 5)])
  return new RaftLog(s, silentLogger)
}

describe('raft/log', () => {
  it('looks up terms across the snapshot point, storage and the unstable tail', () => {
    const log = makeLog()
    log.append([e(3, 6)])
    expect(log.term(i(1))).toEqual({ ok: false, reason: 'compacted' })
    expect(log.term(i(2))).toEqual({ ok: true, value: 1 })
    expect(log.term(i(4))).toEqual({ ok: true, value: 2 })
    expect(log.term(i(6))).toEqual({ ok: true, value: 3 })
    expect(log.term(i(7))).toEqual({ ok: false, reason: 'unavailable' })
    expect(log.lastIndex()).toBe(6)
    expect(log.firstIndex()).toBe(3)
  })

  it('finds the first conflicting entry, or 0 when all match', () => {
    const log = makeLog()
    expect(log.findConflict([e(1, 3), e(2, 4)])).toBe(0)
    expect(log.findConflict([e(2, 4), e(4, 5)])).toBe(5)
    expect(log.findConflict([e(3, 5), e(3, 6)])).toBe(6)
  })

  it('finds the last entry whose term is at most the given one (fast backtracking, §5.3)', () => {
    const log = makeLog()
    expect(log.findConflictByTerm(i(5), t(2))).toEqual({ index: 4, term: 2 })
    expect(log.findConflictByTerm(i(5), t(1))).toEqual({ index: 3, term: 1 })
    expect(log.findConflictByTerm(i(5), t(0))).toEqual({ index: 1, term: 0 })
    expect(log.findConflictByTerm(i(9), t(5))).toEqual({ index: 5, term: 3 })
  })

  it('rejects an append whose prev term mismatches (§5.3)', () => {
    const log = makeLog()
    expect(log.maybeAppend(i(4), t(1), i(5), [e(1, 5)])).toBeNull()
    expect(log.lastIndex()).toBe(5)
  })

  it('appends after a matching prev entry, truncates a conflicting suffix, and commits up to the last new entry', () => {
    const log = makeLog()
    expect(log.maybeAppend(i(4), t(2), i(10), [e(4, 5), e(4, 6)])).toBe(6)
    expect(log.term(i(5))).toEqual({ ok: true, value: 4 })
    expect(log.committed).toBe(6)
  })

  it('does not truncate when the entries already match (a duplicate append)', () => {
    const log = makeLog()
    log.append([e(3, 6)])
    expect(log.maybeAppend(i(3), t(1), i(4), [e(2, 4)])).toBe(4)
    expect(log.lastIndex()).toBe(6)
    expect(log.committed).toBe(4)
  })

  it('refuses to overwrite a committed entry (a bug, §5.4)', () => {
    const log = makeLog()
    log.commitTo(i(5))
    expect(() => log.maybeAppend(i(4), t(2), i(5), [e(4, 5)])).toThrow(/conflicts with committed/)
  })

  it('commits by counting only entries of the given term (§5.4.2)', () => {
    const log = makeLog()
    expect(log.maybeCommit(i(4), t(3))).toBe(false)
    expect(log.maybeCommit(i(5), t(3))).toBe(true)
    expect(log.committed).toBe(5)
  })

  it('compares logs by last term, then last index (§3.6.1)', () => {
    const log = makeLog()
    expect(log.isUpToDate(i(4), t(3))).toBe(false)
    expect(log.isUpToDate(i(5), t(3))).toBe(true)
    expect(log.isUpToDate(i(1), t(4))).toBe(true)
    expect(log.isUpToDate(i(9), t(2))).toBe(false)
  })

  it('slices across storage and unstable entries, bounded by bytes but at least one entry', () => {
    const log = makeLog()
    log.append([e(3, 6), e(3, 7)])
    const all = log.slice(i(3), i(8), Number.POSITIVE_INFINITY)
    expect(all.ok && all.value.map((x) => x.index)).toEqual([3, 4, 5, 6, 7])
    const two = log.slice(i(3), i(8), 2)
    expect(two.ok && two.value.map((x) => x.index)).toEqual([3, 4])
    const one = log.slice(i(6), i(8), 0)
    expect(one.ok && one.value.map((x) => x.index)).toEqual([6])
    expect(log.slice(i(2), i(4), 10)).toEqual({ ok: false, reason: 'compacted' })
  })
})
