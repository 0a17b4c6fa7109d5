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

/**
 * A logger whose bindings can be set once they are known, for itself and every child made from it,
 * before or after: kvd learns its node id only after opening its data directory (a joined node
 * even later, from the meta shard), but the storage engine and the credential reloader log from
 * before that. Lines written before `bind` carry the bindings known then; lines after, the new ones.
 */
export class BindableLogger implements Logger {
  private readonly parent: Logger
  private current: Logger
  private generation = 0

  constructor(parent: Logger, bindings: LogFields = {}) {
    this.parent = parent
    this.current = parent.child(bindings)
  }

  /** Replaces the bindings of this logger (and of its children, from their next line on). */
  bind(bindings: LogFields): void {
    this.current = this.parent.child(bindings)
    this.generation++
  }

  trace(fields: LogFields, message: string): void {
    this.current.trace(fields, message)
  }
  debug(fields: LogFields, message: string): void {
    this.current.debug(fields, message)
  }
  info(fields: LogFields, message: string): void {
    this.current.info(fields, message)
  }
  warn(fields: LogFields, message: string): void {
    this.current.warn(fields, message)
  }
  error(fields: LogFields, message: string): void {
    this.current.error(fields, message)
  }
  fatal(fields: LogFields, message: string): void {
    this.current.fatal(fields, message)
  }
  isLevelEnabled(level: LogLevelName): boolean {
    return this.current.isLevelEnabled(level)
  }

  child(bindings: LogFields): Logger {
    return new BoundChild(this, bindings)
  }

  /** The logger lines go to now, and a number that changes whenever it does. */
  target(): { readonly logger: Logger; readonly generation: number } {
    return { logger: this.current, generation: this.generation }
  }
}

/** A child of a BindableLogger: re-derived from its parent's logger when that changes. */
class BoundChild implements Logger {
  private readonly parent: { target(): { readonly logger: Logger; readonly generation: number } }
  private readonly bindings: LogFields
  private made: Logger | undefined
  private madeGeneration = -1

  constructor(
    parent: { target(): { readonly logger: Logger; readonly generation: number } },
    bindings: LogFields,
  ) {
    this.parent = parent
    this.bindings = bindings
  }

  target(): { readonly logger: Logger; readonly generation: number } {
    const { logger, generation } = this.parent.target()
    if (this.made === undefined || generation !== this.madeGeneration) {
      this.made = logger.child(this.bindings)
      this.madeGeneration = generation
    }
    return { logger: this.made, generation }
  }

  trace(fields: LogFields, message: string): void {
    this.target().logger.trace(fields, message)
  }
  debug(fields: LogFields, message: string): void {
    this.target().logger.debug(fields, message)
  }
  info(fields: LogFields, message: string): void {
    this.target().logger.info(fields, message)
  }
  warn(fields: LogFields, message: string): void {
    this.target().logger.warn(fields, message)
  }
  error(fields: LogFields, message: string): void {
    this.target().logger.error(fields, message)
  }
  fatal(fields: LogFields, message: string): void {
    this.target().logger.fatal(fields, message)
  }
  isLevelEnabled(level: LogLevelName): boolean {
    return this.target().logger.isLevelEnabled(level)
  }
  child(bindings: LogFields): Logger {
    return new BoundChild(this, bindings)
  }
}
