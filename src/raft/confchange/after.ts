/**
 * The configuration a committed conf change entry leads to, computed from a ConfState alone (no
 * live progress): what a shell must persist beside the applied index when it applies the entry,
 * so that a restart resumes with the configuration the core itself adopted in `advance()`.
 * The core skips an entry that does not decode or is invalid (raft.ts applyConfChangeEntry); so
 * does this function, by returning null.
 */
import type { LogIndex } from '../../common/index.ts'
import { decodeConfChange } from '../messages.ts'
import type { ConfState } from '../messages.ts'
import { confStateOf } from '../tracker/tracker.ts'
import { applyConfChange } from './changer.ts'
import { restoreConfig } from './restore.ts'

export function confStateAfter(cs: ConfState, data: Uint8Array): ConfState | null {
  const cc = decodeConfChange(data)
  if (cc === null) return null
  const { config, progress } = restoreConfig(cs, 0 as LogIndex, 1)
  const result = applyConfChange({ config, progress, lastIndex: 0 as LogIndex, inflightAppendsMax: 1 }, cc)
  return result.ok ? confStateOf(result.config) : null
}
