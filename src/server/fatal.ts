/**
 * What a fail-stop is called (the fatal log line and kvd's one line on stderr): a full disk and a
 * failed storage write say so, with what to do, and only a failed assertion is a broken invariant.
 * Pure: reads the error and its causes.
 */
import { AssertionError } from 'node:assert'

export type FatalKind = 'disk-full' | 'storage' | 'invariant'

/** How deep the `cause` chain is followed. */
const causeDepthMax = 8

function chain(err: unknown): unknown[] {
  const out: unknown[] = []
  for (let e = err, i = 0; e !== undefined && e !== null && i < causeDepthMax; i++) {
    out.push(e)
    e = (e as { cause?: unknown }).cause
  }
  return out
}

export function fatalKind(err: unknown): FatalKind {
  const errors = chain(err)
  if (
    errors.some(
      (e) =>
        (e as { code?: unknown }).code === 'ENOSPC' ||
        /no space left on device|ENOSPC/i.test(e instanceof Error ? e.message : String(e)),
    )
  )
    return 'disk-full'
  if (errors.some((e) => e instanceof AssertionError)) return 'invariant'
  return 'storage'
}

/** The line kvd prints on stderr before it exits (without the `kvd: ` prefix). */
export function fatalMessage(err: unknown, dataDir: string): string {
  switch (fatalKind(err)) {
    case 'disk-full':
      return (
        `out of disk space under ${dataDir}: a write failed and the node stopped (fail-stop: the ` +
        `write was not acknowledged). Free space, then start kvd again: it recovers from its log`
      )
    case 'storage':
      return (
        `a storage operation under ${dataDir} failed and the node stopped (fail-stop): ` +
        `${err instanceof Error ? err.message : String(err)}. See the fatal log line`
      )
    case 'invariant':
      return 'broken invariant, stopping (see the fatal log line)'
  }
}
