/**
 * What routing knows of a cluster, as plain values: shards (a slice of the ring, replicas in
 * preference order, an epoch and the map's leader hint) and nodes (where they listen, their zone,
 * their state). The SDK, the router and the cluster agent all decide with these. Pure.
 */
import type { ShardDescriptorDetail } from '../common/errors.ts'

/**
 * One shard as routing sees it: [hashStart, hashEnd) of the 64-bit ring (hashEnd may be 2^64),
 * its replicas in preference order (the first is the preferred leader), the map's leader hint
 * (0 = none) with the term it was seen leading in, and the epoch, which rises with every change of
 * range or replicas (not of the leader). A WRONG_SHARD answer carries exactly this: a descriptor
 * is a shard route.
 */
export type ShardRoute = ShardDescriptorDetail

/**
 * A node's lifecycle state in the registry. `unreachable`: the meta leader has not heard from it
 * for a few heartbeats (routing passes it over, as it does a dead node; its replicas stay where
 * they are); `dead`: not heard from for the cluster's dead-after period (its replicas are
 * re-created elsewhere). A heartbeat makes either active again.
 */
export type NodeState = 'joining' | 'active' | 'draining' | 'unreachable' | 'dead'
export const nodeStates: readonly NodeState[] = ['joining', 'active', 'draining', 'unreachable', 'dead']

/** A node routing passes over unless it was seen alive first hand: unreachable or dead. */
export function isNodeDown(state: NodeState | undefined): boolean {
  return state === 'unreachable' || state === 'dead'
}

/** One node as routing sees it. */
export interface NodeRoute {
  readonly id: number
  /** Where the node says it listens ('' when it does not say; see `dialable`). */
  readonly address: string
  /** Failure-domain label; '' = none. */
  readonly zone: string
  readonly state: NodeState
}

/** The shard and epoch a request's sender routed it by (kv.proto RouteHint). */
export interface RouteHint {
  readonly shardId: number
  readonly epoch: number
}

/**
 * The local replica's view of its Raft group, when the deciding node holds a replica of the shard:
 * the freshest news of its leader there is (plain field reads of the live group).
 */
export interface LocalView {
  readonly isLeader: boolean
  readonly leaderId: number | null
}

/**
 * True for an address a client or a peer can dial: not empty and not a wildcard listen address
 * (a node listening on 0.0.0.0 that advertises it has said nothing about where it is reached).
 */
export function dialable(address: string): boolean {
  if (address.trim() === '') return false
  const host = address.replace(/:\d+$/, '')
  return host !== '0.0.0.0' && host !== '[::]' && host !== '::' && host !== ''
}
