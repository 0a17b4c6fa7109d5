/**
 * The pino root logger factory, used by bin/ and the server shell only (never by pure rooms).
 *
 * Every line has its level as a name (`"level":"info"`) and an ISO-8601 UTC time
 * (`"time":"2025-05-01T12:00:00.123Z"`), so it reads without a decoder and sorts as text.
 * `format: 'pretty'` writes one readable line per event instead (log-pretty.ts).
 */
import { pino } from 'pino'
import { prettyLine } from './log-pretty.ts'
import type { Logger } from './logger.ts'

export const LogLevel = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LogLevel)[number]

export interface RootLoggerInit {
  readonly level: LogLevel
  readonly name: string
  /** json (default): one JSON object per line; pretty: one readable line per event. */
  readonly format?: 'json' | 'pretty'
  /** Where lines go; defaults to stderr so stdout stays for program output. */
  readonly destination?: NodeJS.WritableStream
  /** Pretty format: colour the levels (default: when the destination is a terminal). */
  readonly color?: boolean
}

export function createRootLogger(init: RootLoggerInit): Logger {
  const destination: { write(line: string): unknown; readonly isTTY?: boolean } =
    init.destination ?? pino.destination({ fd: 2, sync: false })
  const stream =
    init.format === 'pretty'
      ? prettyStream(destination, init.color ?? destination.isTTY === true)
      : destination
  return pino(
    {
      name: init.name,
      level: init.level,
      base: { pid: process.pid },
      serializers: { err: pino.stdSerializers.err },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  ) as unknown as Logger
}

/** A stream that turns each JSON line into a pretty one and writes it to `out`, as synchronous as `out`. */
function prettyStream(out: { write(line: string): unknown }, color: boolean): { write(line: string): void } {
  return {
    write: (line: string) => {
      out.write(prettyLine(line, { color }))
    },
  }
}
