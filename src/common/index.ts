/**
 * common/: the leaf utilities every room may import. Nothing here imports another room.
 * (logger-pino.ts and the *-system.ts files are deliberately not re-exported: the pure rooms
 * import this index, and must not pull pino, node:crypto or real time into their graph.)
 *
 * @example
 * import { assert, KvError, ErrorCode, limits } from '../common/index.ts'
 * if (key.length > limits.keyBytesMax) throw new KvError(ErrorCode.KeyTooLarge, 'key too large')
 */
export { AssertionError, assert, maybe, unreachable } from './assert.ts'
export * from './errors.ts'
export * from './ids.ts'
export { limits, tightenLimits, type Limits } from './limits.ts'
export { deadlineSignal, DeadlineError, type Clock, type TimerHandle, type TimerOptions } from './clock.ts'
export { SeededRandom, type Random } from './random.ts'
export { silentLogger, type Logger, type LogFields, type LogLevelName } from './logger.ts'
