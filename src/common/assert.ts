/**
 * Assertions for programmer errors (STYLE.md 7.4). A failed assertion is a bug: it throws
 * AssertionError, nothing catches it, and the process (or the simulator run) stops. Operating
 * errors are KvError, never assertions. No node:* import, so the pure rooms can use it.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError'
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(message)
}

/** Documents that both outcomes of a condition happen and are handled (TigerBeetle `maybe`). */
export function maybe(_condition: boolean): void {}

export function unreachable(value: never): never {
  throw new AssertionError(`unreachable: ${String(value)}`)
}
