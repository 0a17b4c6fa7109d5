/**
 * Fault injection through the admin API (admin.proto InjectFault): make one node drop or delay its
 * peer traffic to and from chosen peers, as a partition or a slow link would. For tests and demos:
 * the node refuses with KvError FAULT_INJECTION_DISABLED unless kvd runs with
 * --allow-fault-injection.
 *
 * A standalone call to one named node (faults are per node, so there is no failover): it opens a
 * channel, makes one attempt with a deadline, and closes the channel. Not re-exported from the
 * package index (client/index.ts): it is a test tool, not part of the application API.
 *
 * @example
 * import { injectFault } from './admin-fault.ts'
 * // Cut node 1 off from nodes 2 and 3 (both directions, on node 1's side).
 * await injectFault('127.0.0.1:7001', { peers: [2, 3], drop: true })
 * // ... and heal it.
 * await injectFault('127.0.0.1:7001', { clear: true })
 */
import type { InjectFaultResponse } from '../gen/ringkv/v1/admin.ts'
import { adminCall, type AdminCallOptions } from './admin-call.ts'

/** What to change on the node (admin.proto InjectFaultRequest). */
export interface FaultRequest {
  /** Node ids of the peers. Empty or absent: with `clear`, every peer; otherwise nothing changes (list only). */
  readonly peers?: readonly number[]
  /** Drop every envelope to and from `peers`, and refuse snapshots both ways. */
  readonly drop?: boolean
  /** Delay every envelope to and from `peers` by this many milliseconds (at most limits.faultDelayMsMax). */
  readonly delayMs?: number
  /** Remove the faults of `peers` (of every peer when none are named) instead of setting them. */
  readonly clear?: boolean
}

/** One fault in force on the node. */
export interface PeerFault {
  readonly peer: number
  readonly drop: boolean
  readonly delayMs: number
}

/** Options of the call (InjectFault needs role admin when the cluster has authentication). */
export type InjectFaultOptions = AdminCallOptions

/**
 * Applies `request` on the node at `endpoint` (`host:port`) and resolves with every fault in force
 * there afterwards, by peer id. Rejects with a KvError: FAULT_INJECTION_DISABLED, INVALID_ARGUMENT
 * (with details.field), UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED. Bad arguments are a TypeError.
 */
export async function injectFault(
  endpoint: string,
  request: FaultRequest,
  options: InjectFaultOptions = {},
): Promise<PeerFault[]> {
  if (typeof endpoint !== 'string' || !/^[^\s/]+:\d+$/.test(endpoint))
    throw new TypeError(`bad endpoint '${String(endpoint)}': expected host:port`)
  const peers = request.peers ?? []
  for (const peer of peers)
    if (!(Number.isSafeInteger(peer) && peer > 0)) throw new TypeError(`bad peer node id ${peer}`)
  const delayMs = request.delayMs ?? 0
  if (!(Number.isSafeInteger(delayMs) && delayMs >= 0 && delayMs <= 0xffff_ffff))
    throw new TypeError(`bad delayMs ${delayMs}`)
  const response = await adminCall<InjectFaultResponse>(endpoint, options, (client, md, deadline, cb) =>
    client.injectFault(
      { peers: [...peers], drop: request.drop ?? false, delayMs, clear: request.clear ?? false },
      md,
      { deadline },
      cb,
    ),
  )
  return response.faults.map((f) => ({ peer: f.peer, drop: f.drop, delayMs: f.delayMs }))
}
