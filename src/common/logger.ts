/**
 * The logging contract (STYLE.md 7.7). Pure rooms see only this small `Logger` type; the pino
 * root is built in bin/ (logger-pino.ts) and handed down as children with fields bound
 * (`log.child({ node, shard })`). Fields first, a constant lowercase message second; never a
 * user key or value, only hashes and lengths.
 */
export type LogFields = Record<string, unknown>

export interface Logger {
  trace(fields: LogFields, message: string): void
  debug(fields: LogFields, message: string): void
  info(fields: LogFields, message: string): void
  warn(fields: LogFields, message: string): void
  error(fields: LogFields, message: string): void
  fatal(fields: LogFields, message: string): void
  child(bindings: LogFields): Logger
  /**
   * True when lines of `level` are written. Check it before building fields that cost work on a
   * hot path (e.g. hashing a key for a per-request trace line); pino's own `isLevelEnabled`.
   */
  isLevelEnabled(level: LogLevelName): boolean
}

export type LogLevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'

const noop = (): void => {}

/** A logger that drops everything: the default for tests and the simulator's quiet mode. */
export const silentLogger: Logger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  fatal: noop,
  child: () => silentLogger,
  isLevelEnabled: () => false,
}
