/**
 * The ringkv client SDK: a typed client over the public gRPC API with the consistency dial,
 * sessions, exactly-once write retries, deadlines, endpoint failover, and shard routing from the
 * cluster's shard map (writes and linearizable reads go straight to the leader of their key's
 * shard, weaker reads to a nearby replica, every request with a route hint that a node whose map
 * knows better corrects in one step).
 *
 * @example
 * import { KvClient, ErrorCode, isKvErrorWithCode } from 'ringkv'
 *
 * const client = new KvClient({ endpoints: ['127.0.0.1:7001'], consistency: { read: 'linearizable' } })
 * const { version } = await client.put('cart/42', JSON.stringify({ items: 1 }))
 * try {
 *   await client.cas('cart/42', { expectedVersion: version, value: JSON.stringify({ items: 2 }) })
 * } catch (err) {
 *   if (isKvErrorWithCode(err, ErrorCode.VersionMismatch)) console.log('lost the race', err.details?.currentVersion)
 *   else throw err
 * }
 * const session = client.session()
 * await session.put('profile/7', 'v2')
 * console.log((await session.get('profile/7')).valueText()) // read-your-writes on any replica
 * for await (const entry of client.scan({ prefix: 'cart/', limit: 100 })) console.log(entry.keyText())
 * client.close()
 */
export {
  KvClient,
  KvSession,
  type KvClientInit,
  type KvClientComponents,
  type SessionInit,
} from './client.ts'
export { KvScan } from './scan.ts'
export type { ClientTls } from '../net/index.ts'
export type { SessionToken } from './session.ts'
export type { RetryInit } from './retry.ts'
export type { RoutingInit, RoutingTable } from './routing.ts'
export type { BatchingInit } from './batcher.ts'
export type { Bytes } from './codec.ts'
export { readConsistencies, writeConsistencies } from './types.ts'
export type {
  BatchOp,
  BatchOpResult,
  BatchResult,
  CallOptions,
  DeleteOptions,
  DeleteResult,
  DeliveredConsistency,
  Entry,
  GetManyEntry,
  GetManyResult,
  GetResult,
  MapNode,
  MapShard,
  NodeStatus,
  PutOptions,
  PutResult,
  ReadConsistency,
  ReadOptions,
  Receipt,
  ScanOptions,
  ShardMapResult,
  ShardStatus,
  StatusOptions,
  StatusResult,
  WriteConsistency,
  WriteOptions,
} from './types.ts'
export {
  ErrorCode,
  KvError,
  isKvError,
  isKvErrorWithCode,
  type ErrorDetails,
  type KvErrorOptions,
  type ShardDescriptorDetail,
} from '../common/errors.ts'
