/**
 * CPU time of the processes a benchmark drives, read from each process's own accounting, so that a
 * phase can report CPU microseconds per operation for the client and for every server process:
 * - this process (the bench's client): `process.cpuUsage()`, user + system;
 * - a kvd: its `/metrics` `process_cpu_seconds_total` (prom-client's default metric, which reads
 *   the node's own `process.cpuUsage()` at scrape time);
 * - any other local process (an etcd member): utime + stime from `/proc/PID/stat` (Linux, in clock
 *   ticks of 1/100 s, so a phase of a few seconds resolves to about 1%).
 * A meter reads cumulative seconds; a phase takes the difference of two reads. Reading costs the
 * process a little CPU (one scrape), which the figures include: twice per phase, negligible.
 */
import { readFile } from 'node:fs/promises'

export interface CpuMeter {
  /** `client`, `node 2`, `etcd e1`. */
  readonly name: string
  /** CPU seconds the process has used so far (user + system). */
  read(): Promise<number>
}

/** This process: the client side of the bench. */
export function selfMeter(name = 'client'): CpuMeter {
  return {
    name,
    read: () => {
      const usage = process.cpuUsage()
      return Promise.resolve((usage.user + usage.system) / 1e6)
    },
  }
}

/** The `process_cpu_seconds_total` sample of a Prometheus text exposition, or undefined. */
export function cpuSecondsOfMetrics(text: string): number | undefined {
  const match = /^process_cpu_seconds_total(?:\{[^}]*\})? (\S+)$/m.exec(text)
  if (match === null) return undefined
  const seconds = Number(match[1])
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined
}

/** A process exporting Prometheus metrics at `http://ADDRESS/metrics` (a kvd's --http-listen). */
export function metricsMeter(name: string, address: string): CpuMeter {
  return {
    name,
    read: async () => {
      const response = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(5000) })
      const seconds = cpuSecondsOfMetrics(await response.text())
      if (response.status !== 200 || seconds === undefined)
        throw new Error(`${name}: no process_cpu_seconds_total at http://${address}/metrics`)
      return seconds
    },
  }
}

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux's usual builds). */
const procTicksPerSecond = 100

/** utime + stime in seconds from the text of /proc/PID/stat, or undefined when it does not parse. */
export function cpuSecondsOfProcStat(text: string): number | undefined {
  // Field 2 (the command) is in parentheses and may hold spaces: count fields after the last ')'.
  const rest = text
    .slice(text.lastIndexOf(')') + 1)
    .trim()
    .split(/\s+/)
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11])
  const stime = Number(rest[12])
  if (!Number.isSafeInteger(utime) || !Number.isSafeInteger(stime) || utime < 0 || stime < 0) return undefined
  return (utime + stime) / procTicksPerSecond
}

/** Any local process, by pid, from /proc (Linux). */
export function procMeter(name: string, pid: number): CpuMeter {
  return {
    name,
    read: async () => {
      const seconds = cpuSecondsOfProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'))
      if (seconds === undefined) throw new Error(`${name}: /proc/${pid}/stat does not parse`)
      return seconds
    },
  }
}

/** Reads every meter (concurrently: the phase boundary is one instant for all of them). */
export function readMeters(meters: readonly CpuMeter[]): Promise<number[]> {
  return Promise.all(meters.map((m) => m.read()))
}

/**
 * CPU microseconds per operation of each meter between two reads; NaN for all when no operation
 * completed.
 */
export function microsPerOp(before: readonly number[], after: readonly number[], ops: number): number[] {
  return before.map((b, i) => (ops > 0 ? ((after[i]! - b) * 1e6) / ops : NaN))
}
