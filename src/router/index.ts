/**
 * router/: key -> hash -> shard -> the replica that serves it, and forwarding when that is not
 * this node (ARCHITECTURE.md section 3). The decisions are router.ts, over injected state and the
 * one route table and leader-seeking policy of routing/ (which the SDK and the cluster agent use
 * too); map-proto.ts adapts routing/wire.ts to the cluster's map; the gRPC clients of the other
 * nodes are peer-clients.ts, forward-grpc.ts and meta-remote.ts.
 */
export {
  Router,
  forwardAvoidMs,
  type LocalReplica,
  type Need,
  type RouteHint,
  type RouterComponents,
  type Target,
} from './router.ts'
export { Forwarder, type ForwardCall } from './forward-grpc.ts'
export { GrpcMetaRemote } from './meta-remote.ts'
export { descriptorFromProto, mapFromProto, mapToProto, shardToProto } from './map-proto.ts'
export { PeerClients, forwardedByKey, isForwarded, peerClientsMax, peerError } from './peer-clients.ts'
export { GrpcReplicaRemote } from './replica-remote.ts'
export {
  changeFromProto,
  changeToProto,
  configFromProto,
  configToProto,
  moveFromProto,
  moveToProto,
  replicaStateFromProto,
  replicaStateToProto,
} from './move-proto.ts'
