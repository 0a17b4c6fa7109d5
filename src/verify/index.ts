/**
 * verify/: checks that a recorded history of key-value operations is linearizable. Pure (no I/O,
 * no clock, no randomness, no async), so the simulator, the chaos tests and `kvctl verify` share it.
 *
 * @example
 * import { checkLinearizability } from '../verify/index.ts'
 * const verdict = checkLinearizability(history, { stepsMaxPerKey: 1_000_000 })
 * if (verdict.result === 'violation') console.log(verdict.window.text)
 */
export {
  OpKind,
  Outcome,
  absentRegister,
  describeOperation,
  type CasExpect,
  type CasInput,
  type CasOp,
  type CasOutput,
  type DeleteOp,
  type EmptyInput,
  type GetOp,
  type GetOutput,
  type Operation,
  type PutInput,
  type PutOp,
  type RegisterState,
  type WriteOutput,
} from './history.ts'
export {
  checkDefaults,
  checkKey,
  checkLinearizability,
  partitionByKey,
  relevantOps,
  type CheckOptions,
  type CheckResult,
  type KeyResult,
  type KeyVerdict,
  type ViolationWindow,
} from './linearizability.ts'
export {
  describeRegister,
  keyContext,
  registerKey,
  stepRegister,
  versionMatches,
  type KeyContext,
} from './register-model.ts'
