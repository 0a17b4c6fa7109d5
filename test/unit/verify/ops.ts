/** Tiny builders for hand-written histories: `put('a', 'x', 0, 10)` is client 1 writing x during [0, 10]. */
import type { CasExpect, Operation, Outcome } from '../../../src/verify/index.ts'

interface Extra {
  readonly client?: string | number
  readonly outcome?: Outcome
  readonly version?: number
}

export function put(
  key: string,
  value: string,
  callMs: number,
  returnMs: number,
  extra: Extra = {},
): Operation {
  const outcome = extra.outcome ?? 'ok'
  return {
    clientId: extra.client ?? 1,
    kind: 'put',
    key,
    input: { value },
    output: outcome === 'ok' ? (extra.version === undefined ? {} : { version: extra.version }) : null,
    callMs,
    returnMs,
    outcome,
  }
}

export function get(
  key: string,
  value: string | null,
  callMs: number,
  returnMs: number,
  extra: Extra = {},
): Operation {
  const outcome = extra.outcome ?? 'ok'
  return {
    clientId: extra.client ?? 2,
    kind: 'get',
    key,
    input: {},
    output:
      outcome === 'ok' ? (extra.version === undefined ? { value } : { value, version: extra.version }) : null,
    callMs,
    returnMs,
    outcome,
  }
}

export function del(key: string, callMs: number, returnMs: number, extra: Extra = {}): Operation {
  const outcome = extra.outcome ?? 'ok'
  return {
    clientId: extra.client ?? 3,
    kind: 'delete',
    key,
    input: {},
    output: outcome === 'ok' ? {} : null,
    callMs,
    returnMs,
    outcome,
  }
}

export function cas(
  key: string,
  expect: CasExpect,
  value: string,
  swapped: boolean,
  callMs: number,
  returnMs: number,
  extra: Extra = {},
): Operation {
  const outcome = extra.outcome ?? 'ok'
  const output =
    outcome !== 'ok' ? null : extra.version === undefined ? { swapped } : { swapped, version: extra.version }
  return {
    clientId: extra.client ?? 4,
    kind: 'cas',
    key,
    input: { expect, value },
    output,
    callMs,
    returnMs,
    outcome,
  }
}
