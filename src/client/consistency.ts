/** The consistency dial: SDK level names <-> the wire enum. */
import { ErrorCode, KvError } from '../common/errors.ts'
import { Consistency } from '../gen/ringkv/v1/kv.ts'
import type { DeliveredConsistency, ReadConsistency, WriteConsistency } from './types.ts'

const readToWire: Readonly<Record<ReadConsistency, Consistency>> = {
  linearizable: Consistency.CONSISTENCY_LINEARIZABLE,
  session: Consistency.CONSISTENCY_SESSION,
  bounded: Consistency.CONSISTENCY_BOUNDED,
  eventual: Consistency.CONSISTENCY_EVENTUAL,
}

const writeToWire: Readonly<Record<WriteConsistency, Consistency>> = {
  majority: Consistency.CONSISTENCY_MAJORITY,
  all: Consistency.CONSISTENCY_ALL,
  leader: Consistency.CONSISTENCY_LEADER,
}

export function readConsistencyToWire(level: ReadConsistency): Consistency {
  const wire = readToWire[level]
  if (wire === undefined)
    throw new KvError(ErrorCode.InvalidArgument, `unknown read consistency '${String(level)}'`)
  return wire
}

export function writeConsistencyToWire(level: WriteConsistency): Consistency {
  const wire = writeToWire[level]
  if (wire === undefined)
    throw new KvError(ErrorCode.InvalidArgument, `unknown write consistency '${String(level)}'`)
  return wire
}

export function consistencyFromWire(wire: Consistency): DeliveredConsistency {
  switch (wire) {
    case Consistency.CONSISTENCY_LINEARIZABLE:
      return 'linearizable'
    case Consistency.CONSISTENCY_SESSION:
      return 'session'
    case Consistency.CONSISTENCY_BOUNDED:
      return 'bounded'
    case Consistency.CONSISTENCY_EVENTUAL:
      return 'eventual'
    case Consistency.CONSISTENCY_MAJORITY:
      return 'majority'
    case Consistency.CONSISTENCY_ALL:
      return 'all'
    case Consistency.CONSISTENCY_LEADER:
      return 'leader'
    default:
      return 'unspecified'
  }
}
