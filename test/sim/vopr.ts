/**
 * The VOPR entry point (TigerBeetle `src/vopr.zig`; STYLE.md 7.6):
 *
 *   npm run sim -- --seed 0x1f3a9c          replay one seed exactly (same trace hash)
 *   npm run sim -- --seeds 500 [--from 1]    run seeds from..from+N-1
 *   npm run sim -- --seed 7 --trace          print the whole trace
 *   --planted grant-vote|commit-counting     switch a deliberate Raft bug on (and bias the faults)
 *
 * Prints SEED= and the swarm options per seed (with --verbose or on failure), one result line per
 * seed, and on the first failing seed its replay command; the exit code is then 1.
 *
 * Deterministic: this file and everything it runs use only the simulator's clock and seeded
 * randomness (see determinism.test.ts for the guard).
 */
import { readFileSync } from 'node:fs'
import { describeResult, runSeed, type RunResult } from './run.ts'
import { parseSeed, fmtSeed } from './simulator.ts'
import { plantedBugOverrides, type PlantedBug } from './planted.ts'

interface Args {
  seed: number | null
  seeds: number
  from: number
  trace: boolean
  verbose: boolean
  keepGoing: boolean
  planted: PlantedBug | null
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    seed: null,
    seeds: 0,
    from: 1,
    trace: false,
    verbose: false,
    keepGoing: false,
    planted: null,
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${arg} needs a value`)
      return v
    }
    if (arg === '--seed') a.seed = parseSeed(value())
    else if (arg === '--seeds') a.seeds = parseSeed(value())
    else if (arg === '--from') a.from = parseSeed(value())
    else if (arg === '--trace') a.trace = true
    else if (arg === '--verbose' || arg === '-v') a.verbose = true
    else if (arg === '--keep-going') a.keepGoing = true
    else if (arg === '--planted') {
      const p = value()
      if (p !== 'grant-vote' && p !== 'commit-counting') throw new Error(`unknown planted bug ${p}`)
      a.planted = p
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write(
        'usage: vopr (--seed S | --seeds N [--from S]) [--trace] [--verbose] [--keep-going] [--planted grant-vote|commit-counting]\n',
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${arg}`)
  }
  if (a.seed === null && a.seeds === 0) a.seeds = 20
  return a
}

function replayCommand(seed: number, planted: PlantedBug | null): string {
  return `npm run sim -- --seed ${fmtSeed(seed)}${planted === null ? '' : ` --planted ${planted}`} --trace`
}

function runOne(seed: number, args: Args): RunResult {
  const out = process.stdout
  const r = runSeed({
    seed,
    ...(args.planted === null ? {} : { overrides: plantedBugOverrides(args.planted) }),
    ...(args.trace
      ? { sink: (line: string) => void out.write(`${line}\n`), logLevel: 'debug' as const }
      : {}),
  })
  if (args.verbose || !r.ok || args.seed !== null) for (const line of r.optionsLines) out.write(`${line}\n`)
  out.write(`${describeResult(r)}\n`)
  if (!r.ok && r.failure !== null) {
    out.write(`${r.failure.detail}\n`)
    if (!args.trace) {
      out.write('last trace lines:\n')
      for (const line of r.traceTail.slice(-40)) out.write(`  ${line}\n`)
    }
    out.write(`replay: ${replayCommand(seed, args.planted)}\n`)
  }
  return r
}

/** The checked-out commit, read from .git without running git (best effort, for the header). */
function gitCommit(): string {
  try {
    const head = readFileSync('.git/HEAD', 'utf8').trim()
    if (!head.startsWith('ref: ')) return head.slice(0, 12)
    return readFileSync(`.git/${head.slice(5)}`, 'utf8')
      .trim()
      .slice(0, 12)
  } catch {
    return 'unknown'
  }
}

function main(argv: readonly string[]): number {
  const args = parseArgs(argv)
  process.stdout.write(
    `vopr commit=${gitCommit()}${args.planted === null ? '' : ` planted=${args.planted}`}\n`,
  )
  if (args.seed !== null) return runOne(args.seed, args).ok ? 0 : 1
  let failed = 0
  let passed = 0
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    const r = runOne(seed, args)
    if (r.ok) passed++
    else {
      failed++
      if (!args.keepGoing) break
    }
  }
  process.stdout.write(`seeds passed=${passed} failed=${failed}\n`)
  return failed === 0 ? 0 : 1
}

// A closed pipe (`| head`) ends the run quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})
process.exitCode = main(process.argv.slice(2))
