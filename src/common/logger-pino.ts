/** The pino root logger factory, used by bin/ and the server shell only (never by pure rooms). */
import { pino } from 'pino'
import type { Logger } from './logger.ts'

export const LogLevel = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LogLevel)[number]

export interface RootLoggerInit {
  readonly level: LogLevel
  readonly name: string
  /** Where lines go; defaults to stderr so stdout stays for program output. */
  readonly destination?: NodeJS.WritableStream
}

export function createRootLogger(init: RootLoggerInit): Logger {
  return pino(
    {
      name: init.name,
      level: init.level,
      base: { pid: process.pid },
      serializers: { err: pino.stdSerializers.err },
    },
    init.destination ?? pino.destination({ fd: 2, sync: false }),
  ) as unknown as Logger
}
