/**
 * The cluster agent's calls to other nodes (cluster/agent.ts MetaRemote) over their admin and KV
 * services: Join and Heartbeat go to the node believed to lead the meta shard (marked forwarded,
 * so that node does not pass them on again), ShardMap reads a node's copy of the map.
 */
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import type { NodeId } from '../common/ids.ts'
import type {
  JoinArgs,
  LeaderReport,
  MetaRemote,
  MoveRecord,
  MoveRequest,
  MoveView,
  NodeRecord,
  NodeState,
  ClusterMap,
} from '../cluster/index.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type {
  HeartbeatResponse,
  JoinResponse,
  ListMovesResponse,
  MoveReplicaResponse,
  NodeActionRequest,
  NodeActionResponse,
  RebalanceRequest,
  RebalanceResponse,
} from '../gen/ringkv/v1/admin.ts'
import { moveFromProto } from './move-proto.ts'
import type { ShardMapResponse } from '../gen/ringkv/v1/kv.ts'
import { mapFromProto } from './map-proto.ts'
import { peerError, type PeerClients } from './peer-clients.ts'

export class GrpcMetaRemote implements MetaRemote {
  /**
   * `passedOn`: the calls are passed on by a node that is not the meta leader, so the receiver
   * must serve them or refuse (never pass them on again). A joining node's first call is not.
   */
  constructor(
    private readonly clients: PeerClients,
    private readonly passedOn = true,
  ) {}

  async join(
    address: string,
    args: JoinArgs,
    signal: AbortSignal,
  ): Promise<{ node: NodeRecord; map: ClusterMap }> {
    const res = await this.call<JoinResponse>(address, signal, (cb, md) =>
      this.clients.of(address).admin.join(
        {
          address: args.address,
          zone: args.zone,
          weight: args.weight,
          peerAddress: args.peerAddress ?? '',
        },
        md,
        cb,
      ),
    )
    if (res.map === undefined) throw new KvError(ErrorCode.Internal, 'join answer without a map')
    const map = mapFromProto(res.map)
    const node = map.node(res.nodeId as NodeId)
    if (node === undefined) throw new KvError(ErrorCode.Internal, 'join answer whose map lacks the new node')
    return { node, map }
  }

  async heartbeat(
    address: string,
    args: { nodeId: NodeId; leaders: readonly LeaderReport[] },
    signal: AbortSignal,
  ): Promise<NodeState> {
    const res = await this.call<HeartbeatResponse>(address, signal, (cb, md) =>
      this.clients.of(address).admin.heartbeat(
        {
          nodeId: args.nodeId,
          leaders: args.leaders.map((l) => ({
            shardId: l.shardId,
            term: l.term,
            epoch: l.epoch ?? 0,
            voters: [...(l.voters ?? [])],
            approximateBytes: l.approximateBytes ?? 0,
          })),
        },
        md,
        cb,
      ),
    )
    return res.state as NodeState
  }

  async move(address: string, req: MoveRequest, signal: AbortSignal): Promise<MoveView> {
    const res = await this.call<MoveReplicaResponse>(address, signal, (cb, md) =>
      this.clients
        .of(address)
        .admin.moveReplica(
          { shardId: req.shardId, fromNode: req.from ?? 0, toNode: req.to, epoch: req.epoch },
          md,
          cb,
        ),
    )
    if (res.move === undefined) throw new KvError(ErrorCode.Internal, 'move answer without the move')
    return moveFromProto(res.move)
  }

  async listMoves(
    address: string,
    signal: AbortSignal,
  ): Promise<{ running: MoveView[]; recent: MoveRecord[] }> {
    const res = await this.call<ListMovesResponse>(address, signal, (cb, md) =>
      this.clients.of(address).admin.listMoves({}, md, cb),
    )
    return { running: res.running.map(moveFromProto), recent: res.recent.map(moveFromProto) }
  }

  /** Rebalance passed on to the meta leader, answered as it answers (server/grpc-rebalance.ts). */
  async rebalance(
    address: string,
    request: RebalanceRequest,
    signal: AbortSignal,
  ): Promise<RebalanceResponse> {
    return await this.call<RebalanceResponse>(address, signal, (cb, md) =>
      this.clients.of(address).admin.rebalance(request, md, cb),
    )
  }

  /** NodeAction passed on to the meta leader, answered as it answers. */
  async nodeAction(
    address: string,
    request: NodeActionRequest,
    signal: AbortSignal,
  ): Promise<NodeActionResponse> {
    return await this.call<NodeActionResponse>(address, signal, (cb, md) =>
      this.clients.of(address).admin.nodeAction(request, md, cb),
    )
  }

  async shardMap(address: string, signal: AbortSignal): Promise<ClusterMap> {
    const res = await this.call<ShardMapResponse>(address, signal, (cb, md) =>
      this.clients.of(address).kv.shardMap({}, md, cb),
    )
    return mapFromProto(res)
  }

  private call<T>(
    address: string,
    signal: AbortSignal,
    start: (
      cb: (err: ServiceError | null, res: T) => void,
      md: ReturnType<PeerClients['forwardedMetadata']>,
    ) => { cancel(): void },
  ): Promise<T> {
    signal.throwIfAborted()
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => pending.cancel()
      const pending = start(
        (err, res) => {
          signal.removeEventListener('abort', onAbort)
          if (err !== null) reject(signal.aborted ? (signal.reason as Error) : peerError(err, address))
          else resolve(res)
        },
        this.passedOn ? this.clients.forwardedMetadata() : new Metadata(),
      )
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}
