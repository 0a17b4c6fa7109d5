/**
 * Oracle properties (STYLE.md 7.9): the memoised search must agree with the brute-force checker
 * on small histories, both random ones and ones recorded from a real sequential register and then
 * perturbed.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  checkLinearizability,
  type CasExpect,
  type Operation,
  type Outcome,
} from '../../../src/verify/index.ts'
import { bruteForce } from './brute-force.ts'

const values = ['x', 'y', 'z'] as const

const outcomeArb: fc.Arbitrary<Outcome> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('ok' as const) },
  { weight: 2, arbitrary: fc.constant('indeterminate' as const) },
  { weight: 1, arbitrary: fc.constant('fail' as const) },
)
const versionArb = fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined })
const expectArb: fc.Arbitrary<CasExpect> = fc.oneof(
  fc.integer({ min: 0, max: 4 }).map((version) => ({ version })),
  fc.constantFrom<string | null>(null, ...values).map((value) => ({ value })),
)

const opArb: fc.Arbitrary<Operation> = fc
  .record({
    kind: fc.constantFrom('put', 'get', 'delete', 'cas'),
    key: fc.constantFrom('a', 'a', 'a', 'b'),
    callMs: fc.integer({ min: 0, max: 20 }),
    durationMs: fc.integer({ min: 0, max: 10 }),
    outcome: outcomeArb,
    value: fc.constantFrom(...values),
    read: fc.constantFrom<string | null>(null, ...values),
    version: versionArb,
    expect: expectArb,
    swapped: fc.boolean(),
    client: fc.integer({ min: 1, max: 3 }),
  })
  .map((r): Operation => {
    const base = {
      clientId: r.client,
      key: r.key,
      callMs: r.callMs,
      returnMs: r.callMs + r.durationMs,
      outcome: r.outcome,
    }
    const ok = r.outcome === 'ok'
    const v = r.version === undefined ? {} : { version: r.version }
    switch (r.kind) {
      case 'put':
        return { ...base, kind: 'put', input: { value: r.value }, output: ok ? v : null }
      case 'get':
        return { ...base, kind: 'get', input: {}, output: ok ? { value: r.read, ...v } : null }
      case 'delete':
        return { ...base, kind: 'delete', input: {}, output: ok ? {} : null }
      default:
        return {
          ...base,
          kind: 'cas',
          input: { expect: r.expect, value: r.value },
          output: ok ? { swapped: r.swapped, ...v } : null,
        }
    }
  })

/**
 * A history recorded from a real sequential register: every operation takes effect at a point
 * inside [call, return]; indeterminate writes take effect at their point or (when `lost`) never.
 */
interface Planned {
  readonly kind: 'put' | 'get' | 'delete' | 'cas'
  readonly key: string
  readonly callMs: number
  readonly pointMs: number
  readonly returnMs: number
  readonly value: string
  readonly expect: 'current-version' | 'current-value' | 'stale-version' | 'absent'
  readonly outcome: Outcome
  readonly lost: boolean
  readonly showVersion: boolean
}

const plannedArb: fc.Arbitrary<Planned> = fc
  .record({
    kind: fc.constantFrom('put', 'get', 'get', 'delete', 'cas'),
    key: fc.constantFrom('a', 'a', 'b'),
    callMs: fc.integer({ min: 0, max: 30 }),
    before: fc.integer({ min: 0, max: 6 }),
    after: fc.integer({ min: 0, max: 6 }),
    value: fc.constantFrom(...values),
    expect: fc.constantFrom('current-version', 'current-value', 'stale-version', 'absent'),
    outcome: outcomeArb,
    lost: fc.boolean(),
    showVersion: fc.boolean(),
  })
  .map((r) => ({
    kind: r.kind,
    key: r.key,
    callMs: r.callMs,
    pointMs: r.callMs + r.before,
    returnMs: r.callMs + r.before + r.after,
    value: r.value,
    expect: r.expect,
    outcome: r.outcome,
    lost: r.lost,
    showVersion: r.showVersion,
  }))

function record(plan: readonly Planned[]): Operation[] {
  const order = plan.map((p, i) => ({ p, i })).sort((a, b) => a.p.pointMs - b.p.pointMs || a.i - b.i)
  const regs = new Map<string, { value: string | null; version: number }>()
  const out: Operation[] = new Array<Operation>(plan.length)
  let nextVersion = 1
  for (const { p, i } of order) {
    const reg = regs.get(p.key) ?? { value: null, version: 0 }
    const happens = p.outcome === 'ok' || (p.outcome === 'indeterminate' && !p.lost)
    const base = { clientId: i, key: p.key, callMs: p.callMs, returnMs: p.returnMs, outcome: p.outcome }
    const ok = p.outcome === 'ok'
    switch (p.kind) {
      case 'get':
        out[i] = {
          ...base,
          kind: 'get',
          input: {},
          output: ok ? { value: reg.value, ...(p.showVersion ? { version: reg.version } : {}) } : null,
        }
        break
      case 'put': {
        const version = nextVersion++
        if (happens) regs.set(p.key, { value: p.value, version })
        out[i] = {
          ...base,
          kind: 'put',
          input: { value: p.value },
          output: ok ? (p.showVersion ? { version } : {}) : null,
        }
        break
      }
      case 'delete':
        if (happens) regs.set(p.key, { value: null, version: 0 })
        out[i] = { ...base, kind: 'delete', input: {}, output: ok ? {} : null }
        break
      case 'cas': {
        const expect: CasExpect =
          p.expect === 'current-version'
            ? { version: reg.version }
            : p.expect === 'current-value'
              ? { value: reg.value }
              : p.expect === 'absent'
                ? { version: 0 }
                : { version: reg.version + 100 }
        const holds = 'version' in expect ? expect.version === reg.version : expect.value === reg.value
        const version = nextVersion++
        if (happens && holds) regs.set(p.key, { value: p.value, version })
        const output = ok ? { swapped: holds, ...(p.showVersion && holds ? { version } : {}) } : null
        out[i] = { ...base, kind: 'cas', input: { expect, value: p.value }, output }
        break
      }
    }
  }
  return out
}

/** Small edits that may or may not break linearizability. */
const perturbationArb = fc.record({
  which: fc.nat(),
  edit: fc.constantFrom('read-value', 'flip-cas', 'shift-earlier', 'shift-later', 'drop', 'to-ok-fail'),
  value: fc.constantFrom<string | null>(null, ...values),
  shiftMs: fc.integer({ min: 1, max: 15 }),
})

type Perturbation = {
  readonly which: number
  readonly edit: string
  readonly value: string | null
  readonly shiftMs: number
}

function perturb(history: readonly Operation[], p: Perturbation): Operation[] {
  if (history.length === 0) return []
  const i = p.which % history.length
  const h = [...history]
  const op = h[i]!
  switch (p.edit) {
    case 'read-value':
      if (op.kind === 'get' && op.output !== null) h[i] = { ...op, output: { ...op.output, value: p.value } }
      break
    case 'flip-cas':
      if (op.kind === 'cas' && op.output !== null) h[i] = { ...op, output: { swapped: !op.output.swapped } }
      break
    case 'shift-earlier':
      h[i] = {
        ...op,
        callMs: op.callMs - p.shiftMs,
        returnMs: Math.max(op.callMs - p.shiftMs, op.returnMs - p.shiftMs),
      }
      break
    case 'shift-later':
      h[i] = { ...op, callMs: op.callMs + p.shiftMs, returnMs: op.returnMs + p.shiftMs }
      break
    case 'drop':
      h.splice(i, 1)
      break
    case 'to-ok-fail':
      if (op.outcome === 'ok') h[i] = { ...op, outcome: 'fail' }
      break
  }
  return h
}

function agree(history: readonly Operation[]): 'ok' | 'violation' {
  const fast = checkLinearizability(history)
  expect(fast.result).not.toBe('unknown')
  expect(fast.result === 'ok').toBe(bruteForce(history))
  return fast.result === 'ok' ? 'ok' : 'violation'
}

describe('verify/linearizability: oracle', () => {
  it('agrees with the brute-force checker on random histories', () => {
    const seen = { ok: 0, violation: 0 }
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 0, maxLength: 7 }), (h) => {
        seen[agree(h)]++
      }),
      { numRuns: 3000, seed: 0x5eed },
    )
    // Both verdicts must be well represented, or the agreement says little.
    expect(Math.min(seen.ok, seen.violation)).toBeGreaterThan(300)
  })

  it('accepts every history recorded from a real sequential register', () => {
    fc.assert(
      fc.property(fc.array(plannedArb, { minLength: 0, maxLength: 7 }), (plan) => {
        const h = record(plan)
        expect(checkLinearizability(h).result).toBe('ok')
        expect(bruteForce(h)).toBe(true)
      }),
      { numRuns: 1500, seed: 0x5eed },
    )
  })

  it('agrees with the brute-force checker on perturbed register histories', () => {
    let violations = 0
    fc.assert(
      fc.property(fc.array(plannedArb, { minLength: 1, maxLength: 7 }), perturbationArb, (plan, p) => {
        const h = perturb(record(plan), p)
        if (agree(h) === 'violation') violations++
      }),
      { numRuns: 3000, seed: 0x5eed },
    )
    // The perturbations must actually produce some violations, or the property says little.
    expect(violations).toBeGreaterThan(100)
  })

  it('agrees on larger register histories against itself with a tiny budget or none (budget only adds unknowns)', () => {
    fc.assert(
      fc.property(fc.array(plannedArb, { minLength: 5, maxLength: 25 }), perturbationArb, (plan, p) => {
        const h = perturb(record(plan), p)
        const full = checkLinearizability(h)
        const small = checkLinearizability(h, { stepsMaxPerKey: 30 })
        if (small.result !== 'unknown') expect(small.result).toBe(full.result)
      }),
      { numRuns: 500, seed: 0x5eed },
    )
  })
})
