/** Command-line flags of the benchmarks. */

/** The positive number after `name` in `argv` (`--mb 32`), or `dflt` when the flag is absent. */
export function positiveNumber(argv: readonly string[], name: string, dflt: number): number {
  const i = argv.indexOf(name)
  if (i < 0) return dflt
  const v = Number(argv[i + 1])
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`)
  return v
}
