/** The shape of one kvctl command in main.ts's command table. */
import { InvalidArgumentError, type Option } from 'commander'
import type { CliContext } from '../context.ts'
import type { ExitCode } from '../exit-codes.ts'

export interface CommandSpec {
  readonly name: string
  readonly aliases?: readonly string[]
  /** Commander argument syntax, e.g. `<key> [value]`. */
  readonly arguments: string
  readonly summary: string
  /** Decides the exit code of errors (a write's deadline is "outcome unknown"). */
  readonly kind: 'read' | 'write'
  readonly options?: readonly Option[]
  /** Lines shown under the command's --help, before the examples. */
  readonly details?: readonly string[]
  readonly examples?: readonly string[]
  /** Commands under this one (`kvctl shards move`); the parent runs when none is named. */
  readonly subcommands?: readonly CommandSpec[]
  run(ctx: CliContext, args: readonly string[], options: Readonly<Record<string, unknown>>): Promise<ExitCode>
}

/** Commander parser for a non-negative safe integer (versions, limits, milliseconds). */
export function parseUint(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a non-negative integer')
  const n = Number(value)
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('too large')
  return n
}

/** Commander parser for a positive safe integer. */
export function parsePositive(value: string): number {
  const n = parseUint(value)
  if (n === 0) throw new InvalidArgumentError('expected a positive integer')
  return n
}
