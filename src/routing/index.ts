/**
 * routing/: ONE route table and ONE leader-seeking policy (ARCHITECTURE.md section 3), used alike
 * by the SDK (client/routing.ts: which node a call goes to), by every node's router (router/: where
 * it forwards what it does not serve) and by the cluster agent (cluster/agent.ts: where a call to
 * the meta shard goes), and the one place that maps the wire's shard maps and descriptors to it.
 *
 *   - RouteTable (route-table.ts): shards in hash order (range, replicas in preference order,
 *     epoch, the map's leader hint and term), nodes (address, zone, state); lookups by hash, by
 *     id, the next shard. Immutable; a WRONG_SHARD descriptor gives a new one.
 *   - RoutePolicy (policy.ts): who a request goes to (the local Raft view, a learned leader, the
 *     map's hint, the preferred replica; replica reads by zone and round robin), passing over a
 *     node that just failed, and what each refusal teaches (NOT_LEADER hints, receipts, WRONG_SHARD
 *     descriptors) in one step.
 *   - wire.ts: kv.proto ShardMapResponse / ShardDescriptor / NodeInfo <-> routing values, every
 *     field checked.
 *
 * Pure, like raft/ and hashing/: no clock (time comes in as `nowMs`), no randomness but the
 * injected Random, no I/O, no awaits. The SDK may import it (it routes like the servers do).
 *
 * @example
 * const decoded = decodeShardMap(answer)                    // a ShardMap answer, checked
 * const table = new RouteTable(decoded.shards, decoded.nodes)
 * const policy = new RoutePolicy({ self: 0, avoidMs: 1_000, zone: '' })
 * const shard = table.shardOfHash(hasher.hash64(key))!
 * const nodeId = policy.leaderTarget(table, shard.shardId, clock.nowMs())
 * // ... the call fails with NOT_LEADER naming node 3:
 * policy.learn(table, { shardId: shard.shardId, from: nodeId, code: 'NOT_LEADER', leaderHint: 3 }, clock.nowMs())
 */
export { RouteTable } from './route-table.ts'
export {
  RoutePolicy,
  type ChoiceOptions,
  type Lesson,
  type Refusal,
  type RoutePolicyComponents,
  type RoutePolicyConfig,
} from './policy.ts'
export {
  decodeDescriptor,
  decodeHash,
  decodeHashRange,
  decodeNode,
  decodeShardMap,
  encodeDescriptor,
  encodeNode,
  encodeShardMap,
  type Decoded,
  type DecodedShardMap,
  type ShardMapParts,
  type WireNode,
} from './wire.ts'
export {
  dialable,
  isNodeDown,
  nodeStates,
  type LocalView,
  type NodeRoute,
  type NodeState,
  type RouteHint,
  type ShardRoute,
} from './types.ts'
