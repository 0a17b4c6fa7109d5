/**
 * The oracle for the checker's property tests: try every subset of the indeterminate operations
 * and every order of the chosen operations that respects real time, stepping each through the
 * same register model. Exponential; only for histories of a handful of operations.
 */
import type { Operation, RegisterState } from '../../../src/verify/index.ts'
import {
  absentRegister,
  keyContext,
  partitionByKey,
  relevantOps,
  stepRegister,
} from '../../../src/verify/index.ts'

function returnOf(op: Operation): number {
  return op.outcome === 'ok' ? op.returnMs : Infinity
}

export function bruteForceKey(all: readonly Operation[]): boolean {
  const ops = relevantOps(all)
  const ctx = keyContext(ops)
  const optional = ops.map((op, i) => (op.outcome === 'indeterminate' ? i : -1)).filter((i) => i >= 0)
  for (let mask = 0; mask < 1 << optional.length; mask++) {
    const chosen = ops
      .map((_, i) => i)
      .filter((i) => !optional.includes(i) || (mask & (1 << optional.indexOf(i))) !== 0)
    if (permute(ops, chosen, [], absentRegister, ctx)) return true
  }
  return false
}

function permute(
  ops: readonly Operation[],
  remaining: readonly number[],
  done: readonly number[],
  state: RegisterState,
  ctx: ReturnType<typeof keyContext>,
): boolean {
  if (remaining.length === 0) return true
  for (const i of remaining) {
    const op = ops[i]!
    // `op` may go next only if no remaining operation returned before it was called.
    if (remaining.some((j) => j !== i && returnOf(ops[j]!) < op.callMs)) continue
    const next = stepRegister(state, op, ctx, -1 - i)
    if (next === null) continue
    if (
      permute(
        ops,
        remaining.filter((j) => j !== i),
        [...done, i],
        next,
        ctx,
      )
    )
      return true
  }
  return false
}

export function bruteForce(history: readonly Operation[]): boolean {
  for (const ops of partitionByKey(history).values()) if (!bruteForceKey(ops)) return false
  return true
}
