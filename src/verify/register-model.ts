/**
 * The sequential specification of one key: a versioned register with put, get, delete and
 * compare-and-set (see history.ts for the operation model). Both the search in
 * linearizability.ts and the brute-force oracle in the tests step operations through this one
 * function, so they judge by the same rules.
 */
import { assert, unreachable } from '../common/assert.ts'
import type { CasExpect, Operation, RegisterState } from './history.ts'

/** Facts about one key's history that the model needs beyond the register state. */
export interface KeyContext {
  /** Versions reported by some write of this key (raft indices are unique per write). */
  readonly knownVersions: ReadonlySet<number>
}

export function keyContext(ops: readonly Operation[]): KeyContext {
  const knownVersions = new Set<number>()
  for (const op of ops) {
    if (op.outcome !== 'ok' || op.output === null) continue
    if (
      (op.kind === 'put' || op.kind === 'cas') &&
      op.output.version !== undefined &&
      op.output.version > 0
    ) {
      knownVersions.add(op.output.version)
    }
  }
  return { knownVersions }
}

/**
 * Could a register whose version is `stateVersion` report `observed`? A negative state version is
 * a version the client never learned: it may be any positive version no other write reported.
 */
export function versionMatches(stateVersion: number, observed: number, ctx: KeyContext): boolean {
  if (stateVersion >= 0) return stateVersion === observed
  return observed > 0 && !ctx.knownVersions.has(observed)
}

function expectHolds(state: RegisterState, expect: CasExpect, ctx: KeyContext): boolean {
  if ('version' in expect) return versionMatches(state.version, expect.version, ctx)
  return state.value === expect.value
}

/**
 * Whether `expect` could be false in `state`. With an unknown version the comparison may go
 * either way, so both "swapped" and "mismatch" can be explained.
 */
function expectCanFail(state: RegisterState, expect: CasExpect, ctx: KeyContext): boolean {
  if ('version' in expect && state.version < 0) return true
  return !expectHolds(state, expect, ctx)
}

/** A write's new version: the reported one, which must move forward, or `unknownVersion`. */
function nextVersion(
  state: RegisterState,
  reported: number | undefined,
  unknownVersion: number,
): number | null {
  if (reported === undefined) return unknownVersion
  // Versions are Raft indices, so they grow along the linearization (the one Raft log order).
  if (state.version >= 0 && reported <= state.version) return null
  return reported
}

/**
 * Applies `op` to `state`. Returns the next state, or null when the operation cannot take effect
 * here (its observed output contradicts the state). `unknownVersion` is a negative number unique
 * to `op`, used when the write's version was not observed.
 *
 * Indeterminate operations have no output: a write takes effect unconditionally; a CAS takes
 * effect only if its precondition can hold (a CAS that does nothing is the same as one that never
 * happened, which the search already allows by leaving it out).
 */
export function stepRegister(
  state: RegisterState,
  op: Operation,
  ctx: KeyContext,
  unknownVersion: number,
): RegisterState | null {
  assert(unknownVersion < 0)
  const determinate = op.outcome === 'ok'
  assert(op.outcome !== 'fail', 'failed operations are dropped before the search')
  if (determinate) assert(op.output !== null, 'an ok operation has an output')
  switch (op.kind) {
    case 'get': {
      assert(determinate, 'indeterminate reads are dropped before the search')
      const out = op.output
      assert(out !== null)
      if (out.value !== state.value) return null
      if (out.version !== undefined && !versionMatches(state.version, out.version, ctx)) return null
      return state
    }
    case 'put': {
      const version = nextVersion(state, op.output?.version, unknownVersion)
      return version === null ? null : { value: op.input.value, version }
    }
    case 'delete':
      return state.value === null && state.version === 0 ? state : { value: null, version: 0 }
    case 'cas': {
      const out = op.output
      if (out === null || out.swapped) {
        if (!expectHolds(state, op.input.expect, ctx)) return null
        const version = nextVersion(state, out?.version, unknownVersion)
        return version === null ? null : { value: op.input.value, version }
      }
      return expectCanFail(state, op.input.expect, ctx) ? state : null
    }
    default:
      return unreachable(op)
  }
}

/** A string that identifies a register state, for memoisation. */
export function registerKey(state: RegisterState): string {
  return state.value === null ? `-|${state.version}` : `+${state.value}|${state.version}`
}

export function describeRegister(state: RegisterState): string {
  if (state.value === null) return 'absent'
  const v = state.version < 0 ? 'v?' : `v${state.version}`
  return `${JSON.stringify(state.value)}@${v}`
}
