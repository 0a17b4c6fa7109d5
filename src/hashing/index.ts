/**
 * hashing/: key hashing (xxh64), and later the ring and placement. Pure: no I/O, no awaits.
 *
 * @example
 * const hasher = await loadHasher()              // shell side (src/storage/hasher-load.ts)
 * const position = hasher.hash64(new TextEncoder().encode('user:42'))
 */
export { createHasher, hashSpaceEnd, u64ToBytes, bytesToU64, type Hasher, type Xxh64Api } from './xxhash.ts'
export { equalHashRanges, rangeIndexOf, type HashRange } from './ranges.ts'
export {
  Ring,
  defaultVnodesPerNode,
  vnodesPerNodeMax,
  nodeWeightMax,
  ringTokensMax,
  ringNodesMax,
  zoneLengthMax,
  vnodeTokenBytes,
  vnodeKey,
  vnodesOf,
  validateNodes,
  type RingNode,
  type RingToken,
} from './ring.ts'
export {
  placeShards,
  placeShardsOnRing,
  placeShardsPlain,
  fairShares,
  replicaCounts,
  loadRatio,
  movedFraction,
  defaultReplicaCount,
  replicaCountMax,
  shardCountMax,
  loadRatioMax,
  loadSlackMin,
  augmentStepsMax,
  nodeCapacities,
  type PlacementInput,
  type PlacementTuning,
} from './placement.ts'
