/**
 * The history format the linearizability checker reads: one record per client operation on a
 * key-value register, with the times its call started and its answer arrived, as the client saw
 * them. The simulator records it, and `kvctl verify` will read it from a file.
 *
 * The register model (one register per key; keys are independent, Herlihy & Wing §3.3 "locality"):
 * - state: `{ value, version }`. An absent key has `value: null, version: 0`.
 * - `put`    input `{ value }`; output `{ version? }` (the version the write created, when known).
 * - `get`    input `{}`; output `{ value, version? }` (null = absent).
 * - `delete` input `{}`; output `{}`. The key becomes absent (version 0).
 * - `cas`    input `{ expect, value }` where `expect` is `{ version }` (0 = "only if absent") or
 *            `{ value }` (null = "only if absent"); output `{ swapped, version? }`. A CAS whose
 *            precondition did not hold is a completed operation (`outcome: 'ok'`, `swapped: false`):
 *            it observed the register, just like a read.
 *
 * Outcomes:
 * - `ok`: the operation took effect (or observed) exactly once between `callMs` and `returnMs`.
 * - `fail`: the operation is known not to have taken effect (e.g. NOT_LEADER before proposing);
 *   the checker drops it.
 * - `indeterminate`: the client gave up (timeout, lost connection). A write may have taken effect
 *   at any time after `callMs` (its return is +infinity) or never; its output is unknown.
 *   An indeterminate read observes nothing and is dropped.
 *
 * Versions: ringkv's versions are Raft indices, unique per write. A write whose version the
 * client did not learn (indeterminate, or an output without `version`) gives the register an
 * unknown version. NB(verify): an unknown version matches any observed version that is not the
 * known version of another write of the same key. This is a sound over-approximation (it can
 * miss a violation that hinges on an unknown version, never invent one).
 */

export const OpKind = { Put: 'put', Get: 'get', Delete: 'delete', Cas: 'cas' } as const
export type OpKind = (typeof OpKind)[keyof typeof OpKind]

export const Outcome = { Ok: 'ok', Fail: 'fail', Indeterminate: 'indeterminate' } as const
export type Outcome = (typeof Outcome)[keyof typeof Outcome]

/** What a CAS compares against: a version (0 = absent) or a value (null = absent). */
export type CasExpect = { readonly version: number } | { readonly value: string | null }

export interface PutInput {
  readonly value: string
}
export interface CasInput {
  readonly expect: CasExpect
  readonly value: string
}
export type EmptyInput = Readonly<Record<string, never>>

export interface WriteOutput {
  readonly version?: number
}
export interface GetOutput {
  readonly value: string | null
  readonly version?: number
}
export interface CasOutput {
  readonly swapped: boolean
  readonly version?: number
}

interface OpBase {
  readonly clientId: string | number
  readonly key: string
  /** When the client issued the call (any monotonic time base shared by all clients). */
  readonly callMs: number
  /** When the answer arrived. Ignored (treated as +infinity) for indeterminate operations. */
  readonly returnMs: number
  readonly outcome: Outcome
}

export interface PutOp extends OpBase {
  readonly kind: 'put'
  readonly input: PutInput
  readonly output: WriteOutput | null
}
export interface GetOp extends OpBase {
  readonly kind: 'get'
  readonly input: EmptyInput
  readonly output: GetOutput | null
}
export interface DeleteOp extends OpBase {
  readonly kind: 'delete'
  readonly input: EmptyInput
  readonly output: WriteOutput | null
}
export interface CasOp extends OpBase {
  readonly kind: 'cas'
  readonly input: CasInput
  readonly output: CasOutput | null
}

/** One client operation. `output` must be non-null when `outcome` is `ok`. */
export type Operation = PutOp | GetOp | DeleteOp | CasOp

/** The register state of one key. `version` < 0 stands for "a version the client never learned". */
export interface RegisterState {
  readonly value: string | null
  readonly version: number
}

export const absentRegister: RegisterState = { value: null, version: 0 }

/** A short, human-readable description of one operation, for violation reports. */
export function describeOperation(op: Operation): string {
  const end = op.outcome === 'indeterminate' ? '∞' : String(op.returnMs)
  const head = `c${String(op.clientId)} [${op.callMs}, ${end}] ${op.kind}`
  const tail = op.outcome === 'ok' ? '' : ` (${op.outcome})`
  switch (op.kind) {
    case 'put':
      return `${head}(${JSON.stringify(op.input.value)}) -> ${fmtVersion(op.output?.version)}${tail}`
    case 'get':
      return `${head}() -> ${op.output === null ? '?' : `${JSON.stringify(op.output.value)}${fmtAt(op.output.version)}`}${tail}`
    case 'delete':
      return `${head}() -> ok${tail}`
    case 'cas': {
      const e =
        'version' in op.input.expect ? `v${op.input.expect.version}` : JSON.stringify(op.input.expect.value)
      const out =
        op.output === null ? '?' : op.output.swapped ? `swapped${fmtAt(op.output.version)}` : 'mismatch'
      return `${head}(${e} => ${JSON.stringify(op.input.value)}) -> ${out}${tail}`
    }
  }
}

function fmtVersion(v: number | undefined): string {
  return v === undefined ? 'ok' : `v${v}`
}
function fmtAt(v: number | undefined): string {
  return v === undefined ? '' : `@v${v}`
}
