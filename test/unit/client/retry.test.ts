import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ErrorCode,
  KvError,
  RetryPolicy,
  errorCodeTable,
  type ErrorCode as Code,
} from '../../../src/common/errors.ts'
import { limits } from '../../../src/common/limits.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import {
  backoffDelayMs,
  decideRetry,
  outcomeUnknown,
  resolveRetryConfig,
  retryDefaults,
  withRetries,
} from '../../../src/client/retry.ts'
import { SimClock } from './sim-clock.ts'

const allCodes = Object.values(ErrorCode) as Code[]

describe('client/retry decisions', () => {
  it('retries reads on every code whose table policy is not never', () => {
    for (const code of allCodes) {
      const d = decideRetry(new KvError(code, 'x'), { kind: 'read', deduplicated: false })
      expect(d.retry, code).toBe(errorCodeTable[code].retry !== RetryPolicy.Never)
    }
  })

  it('retries deduplicated writes exactly like reads', () => {
    for (const code of allCodes) {
      const d = decideRetry(new KvError(code, 'x'), { kind: 'write', deduplicated: true })
      expect(d.retry, code).toBe(errorCodeTable[code].retry !== RetryPolicy.Never)
    }
  })

  it('retries an untagged write only when the error proves it was not applied', () => {
    for (const code of allCodes) {
      const entry = errorCodeTable[code]
      const d = decideRetry(new KvError(code, 'x'), { kind: 'write', deduplicated: false })
      expect(d.retry, code).toBe(entry.retry !== RetryPolicy.Never && entry.writeNotApplied)
    }
    // The cases that matter most, spelled out:
    const untagged = { kind: 'write', deduplicated: false } as const
    expect(decideRetry(new KvError(ErrorCode.NotLeader, 'x'), untagged).retry).toBe(true)
    expect(decideRetry(new KvError(ErrorCode.Overloaded, 'x'), untagged).retry).toBe(true)
    expect(decideRetry(new KvError(ErrorCode.NoQuorum, 'x'), untagged).retry).toBe(false)
    expect(decideRetry(new KvError(ErrorCode.Unavailable, 'x'), untagged).retry).toBe(false)
    expect(decideRetry(new KvError(ErrorCode.ProposalDropped, 'x'), untagged).retry).toBe(false)
  })

  it('never retries deadline, cancel, CAS mismatch, bad arguments or internal errors', () => {
    for (const code of [
      ErrorCode.DeadlineExceeded,
      ErrorCode.Cancelled,
      ErrorCode.VersionMismatch,
      ErrorCode.InvalidArgument,
      ErrorCode.KeyTooLarge,
      ErrorCode.ValueTooLarge,
      ErrorCode.NotFound,
      ErrorCode.Internal,
    ]) {
      expect(decideRetry(new KvError(code, 'x'), { kind: 'read', deduplicated: false }).retry).toBe(false)
      expect(decideRetry(new KvError(code, 'x'), { kind: 'write', deduplicated: true }).retry).toBe(false)
    }
  })

  it('routes: leader hint -> leader, unreachable/behind -> next endpoint, overloaded -> same', () => {
    const read = { kind: 'read', deduplicated: false } as const
    expect(decideRetry(new KvError(ErrorCode.NotLeader, 'x', { details: { leaderHint: 3 } }), read)).toEqual({
      retry: true,
      route: 'leader',
    })
    expect(decideRetry(new KvError(ErrorCode.NotLeader, 'x'), read)).toEqual({
      retry: true,
      route: 'next-endpoint',
    })
    expect(decideRetry(new KvError(ErrorCode.Unavailable, 'x'), read)).toEqual({
      retry: true,
      route: 'next-endpoint',
    })
    expect(decideRetry(new KvError(ErrorCode.NoQuorum, 'x'), read)).toEqual({
      retry: true,
      route: 'next-endpoint',
    })
    expect(decideRetry(new KvError(ErrorCode.SessionBehind, 'x'), read)).toEqual({
      retry: true,
      route: 'next-endpoint',
    })
    expect(decideRetry(new KvError(ErrorCode.Overloaded, 'x'), read)).toEqual({ retry: true, route: 'same' })
    expect(decideRetry(new KvError(ErrorCode.ShardMoving, 'x'), read)).toEqual({ retry: true, route: 'same' })
  })
})

describe('client/retry backoff', () => {
  it('draws delays in [0, min(max, base * 2^n)] from the injected Random', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.integer(), (n, seed) => {
        const d = backoffDelayMs(n, retryDefaults, new SeededRandom(seed))
        const cap = Math.min(retryDefaults.backoffMaxMs, retryDefaults.backoffBaseMs * 2 ** n)
        return Number.isInteger(d) && d >= 0 && d <= cap
      }),
    )
  })

  it('is deterministic for a seed (replayable)', () => {
    const a = [0, 1, 2, 3, 4].map((n) => backoffDelayMs(n, retryDefaults, new SeededRandom(7)))
    const b = [0, 1, 2, 3, 4].map((n) => backoffDelayMs(n, retryDefaults, new SeededRandom(7)))
    expect(a).toEqual(b)
  })

  it('refuses more attempts than limits.retryAttemptsMax', () => {
    expect(() => resolveRetryConfig({ attemptsMax: limits.retryAttemptsMax + 1 })).toThrow(RangeError)
    expect(() => resolveRetryConfig({ attemptsMax: 0 })).toThrow(RangeError)
    expect(resolveRetryConfig({ attemptsMax: 3 }).attemptsMax).toBe(3)
  })
})

describe('client/retry loop', () => {
  const read = { kind: 'read', deduplicated: false } as const

  it('stops after attemptsMax attempts and throws the last error', async () => {
    const clock = new SimClock()
    let calls = 0
    const run = withRetries(
      {
        op: read,
        config: { ...retryDefaults, attemptsMax: 5 },
        clock,
        random: new SeededRandom(1),
        deadlineMs: 60_000,
      },
      () => {
        calls += 1
        return Promise.reject(new KvError(ErrorCode.NoQuorum, `attempt ${calls}`))
      },
    )
    await expect(run).rejects.toMatchObject({ code: 'NO_QUORUM', message: 'attempt 5' })
    expect(calls).toBe(5)
  })

  it('succeeds on a later attempt after backing off on the clock', async () => {
    const clock = new SimClock()
    let calls = 0
    const routes: string[] = []
    const result = await withRetries(
      {
        op: read,
        config: retryDefaults,
        clock,
        random: new SeededRandom(2),
        deadlineMs: 10_000,
        onRetry: (_err, route) => routes.push(route),
      },
      () => {
        calls += 1
        return calls < 3 ? Promise.reject(new KvError(ErrorCode.Unavailable, 'down')) : Promise.resolve('ok')
      },
    )
    expect(result).toBe('ok')
    expect(routes).toEqual(['next-endpoint', 'next-endpoint'])
    // The deadline timer, then two backoff sleeps.
    expect(clock.delays[0]).toBe(10_000)
    expect(clock.delays.length).toBe(3)
    // Only the sleeps keep the process alive: the caller is blocked on them, not on the deadline.
    expect(clock.keepAlives).toEqual([false, true, true])
  })

  it('never sleeps past the deadline: total time stays within it', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 3_000 }), fc.integer(), async (deadlineMs, seed) => {
        const clock = new SimClock()
        let calls = 0
        await expect(
          withRetries(
            {
              op: read,
              config: { attemptsMax: limits.retryAttemptsMax, backoffBaseMs: 100, backoffMaxMs: 2_000 },
              clock,
              random: new SeededRandom(seed),
              deadlineMs,
            },
            () => {
              calls += 1
              return Promise.reject(new KvError(ErrorCode.Overloaded, 'busy'))
            },
          ),
        ).rejects.toMatchObject({ code: 'OVERLOADED' })
        expect(clock.nowMs()).toBeLessThan(deadlineMs)
        expect(calls).toBeGreaterThanOrEqual(1)
        expect(calls).toBeLessThanOrEqual(limits.retryAttemptsMax)
      }),
      { numRuns: 50 },
    )
  })

  it('does not retry a write that may have applied when it carries no client id', async () => {
    const clock = new SimClock()
    let calls = 0
    await expect(
      withRetries(
        {
          op: { kind: 'write', deduplicated: false },
          config: retryDefaults,
          clock,
          random: new SeededRandom(3),
          deadlineMs: 10_000,
        },
        () => {
          calls += 1
          return Promise.reject(new KvError(ErrorCode.ProposalDropped, 'dropped'))
        },
      ),
    ).rejects.toMatchObject({ code: 'PROPOSAL_DROPPED' })
    expect(calls).toBe(1)
  })

  it('ends with DEADLINE_EXCEEDED when the deadline fires during an attempt', async () => {
    const clock = new SimClock()
    await expect(
      withRetries(
        { op: read, config: retryDefaults, clock, random: new SeededRandom(4), deadlineMs: 50 },
        (attempt) =>
          new Promise((_resolve, reject) =>
            attempt.signal.addEventListener('abort', () => reject(new Error('aborted'))),
          ),
      ),
    ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' })
  })

  it('ends with CANCELLED when the caller aborts during a backoff', async () => {
    const clock = new SimClock()
    const controller = new AbortController()
    let calls = 0
    await expect(
      withRetries(
        {
          op: read,
          config: { attemptsMax: 8, backoffBaseMs: 1_000, backoffMaxMs: 1_000 },
          clock,
          random: new SeededRandom(5),
          deadlineMs: 60_000,
          signal: controller.signal,
        },
        () => {
          calls += 1
          queueMicrotask(() => controller.abort())
          return Promise.reject(new KvError(ErrorCode.Overloaded, 'busy'))
        },
      ),
    ).rejects.toMatchObject({ code: 'CANCELLED' })
    expect(calls).toBe(1)
  })

  it('skips the backoff when beforeRetry says now (a redirect), and still counts the attempt', async () => {
    const clock = new SimClock()
    let calls = 0
    const seen: string[] = []
    const result = await withRetries(
      {
        op: read,
        config: { attemptsMax: 3, backoffBaseMs: 1_000, backoffMaxMs: 1_000 },
        clock,
        random: new SeededRandom(6),
        deadlineMs: 10_000,
        beforeRetry: (err, route) => {
          seen.push(`${err.code}/${route}`)
          return 'now'
        },
      },
      () => {
        calls += 1
        return calls < 3
          ? Promise.reject(new KvError(ErrorCode.NotLeader, 'not me', { details: { leaderHint: 2 } }))
          : Promise.resolve('ok')
      },
    )
    expect(result).toBe('ok')
    expect(seen).toEqual(['NOT_LEADER/leader', 'NOT_LEADER/leader'])
    // Only the deadline timer: no sleep, no time passed.
    expect(clock.delays).toEqual([10_000])
    expect(clock.nowMs()).toBe(0)
  })

  it('ends a write that may have applied as DEADLINE_EXCEEDED when the time runs out, not as the later error', async () => {
    const clock = new SimClock()
    let calls = 0
    const write = { kind: 'write', deduplicated: true } as const
    await expect(
      withRetries(
        {
          op: write,
          config: { attemptsMax: 8, backoffBaseMs: 400, backoffMaxMs: 400 },
          clock,
          random: new SeededRandom(8),
          deadlineMs: 1_000,
        },
        () => {
          calls += 1
          // First the answer is lost (it may have applied), then the node says it is not the leader.
          return Promise.reject(
            calls === 1
              ? new KvError(ErrorCode.Unavailable, 'connection reset')
              : new KvError(ErrorCode.NotLeader, 'not me'),
          )
        },
      ),
    ).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/may or may not/) })
    expect(calls).toBeGreaterThan(1)
    expect(clock.nowMs()).toBeLessThan(1_000)
  })

  it('keeps the error of a write that certainly did not apply, and of reads', () => {
    const notLeader = new KvError(ErrorCode.NotLeader, 'not me')
    const lost = new KvError(ErrorCode.Unavailable, 'reset')
    expect(outcomeUnknown(notLeader, undefined, 'deadline')).toBe(notLeader)
    expect(outcomeUnknown(notLeader, lost, 'deadline').code).toBe('DEADLINE_EXCEEDED')
    expect(outcomeUnknown(notLeader, lost, 'attempts').code).toBe('UNAVAILABLE')
    const noQuorum = new KvError(ErrorCode.NoQuorum, 'minority')
    expect(outcomeUnknown(noQuorum, lost, 'attempts')).toBe(noQuorum)
  })
})
