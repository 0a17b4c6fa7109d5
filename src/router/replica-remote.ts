/**
 * The mover's calls to other nodes' ReplicaService (cluster/mover.ts ReplicaRemote), and the
 * replica collection's reads of a shard leader's state. Each call is bounded by its signal; a
 * peer's own error comes back with its ringkv code, an unreachable peer is UNAVAILABLE.
 */
import type { Metadata } from '@grpc/grpc-js'
import { type ServiceError } from '@grpc/grpc-js'
import type { NodeId, ShardId } from '../common/ids.ts'
import type { ReplicaChangeSpec, ReplicaRemote, ReplicaStateInfo, ShardConfigInfo } from '../cluster/index.ts'
import type {
  ChangeReplicasResponse,
  ReplicaStateResponse,
  TransferLeaderResponse,
} from '../gen/ringkv/v1/replica.ts'
import { changeToProto, configFromProto, replicaStateFromProto } from './move-proto.ts'
import { peerError, type PeerClients } from './peer-clients.ts'

export class GrpcReplicaRemote implements ReplicaRemote {
  constructor(private readonly clients: PeerClients) {}

  async prepare(
    address: string,
    spec: { shardId: ShardId; kind: 'data' | 'meta'; hashStart: bigint; hashEnd: bigint; epoch: number },
    signal: AbortSignal,
  ): Promise<void> {
    await this.call(address, signal, (cb, md) =>
      this.clients.of(address).replica.prepareReplica(
        {
          shardId: spec.shardId,
          kind: spec.kind,
          hashStart: spec.hashStart.toString(),
          hashEnd: spec.hashEnd.toString(),
          epoch: spec.epoch,
        },
        md,
        cb,
      ),
    )
  }

  async change(
    address: string,
    shardId: ShardId,
    epoch: number,
    change: ReplicaChangeSpec,
    signal: AbortSignal,
  ): Promise<ShardConfigInfo> {
    const res = await this.call<ChangeReplicasResponse>(address, signal, (cb, md) =>
      this.clients
        .of(address)
        .replica.changeReplicas({ shardId, epoch, change: changeToProto(change) }, md, cb),
    )
    return configFromProto(res.config)
  }

  async transferLeader(
    address: string,
    shardId: ShardId,
    to: NodeId,
    signal: AbortSignal,
  ): Promise<ShardConfigInfo> {
    const res = await this.call<TransferLeaderResponse>(address, signal, (cb, md) =>
      this.clients.of(address).replica.transferLeader({ shardId, to }, md, cb),
    )
    return configFromProto(res.config)
  }

  async state(address: string, shardId: ShardId, signal: AbortSignal): Promise<ReplicaStateInfo> {
    const res = await this.call<ReplicaStateResponse>(address, signal, (cb, md) =>
      this.clients.of(address).replica.replicaState({ shardId }, md, cb),
    )
    return replicaStateFromProto(res)
  }

  async destroy(
    address: string,
    shardId: ShardId,
    epoch: number,
    members: readonly NodeId[],
    signal: AbortSignal,
  ): Promise<void> {
    await this.call(address, signal, (cb, md) =>
      this.clients.of(address).replica.destroyReplica({ shardId, epoch, members: [...members] }, md, cb),
    )
  }

  private call<T>(
    address: string,
    signal: AbortSignal,
    start: (cb: (err: ServiceError | null, res: T) => void, md: Metadata) => { cancel(): void },
  ): Promise<T> {
    signal.throwIfAborted()
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => pending.cancel()
      const pending = start((err, res) => {
        signal.removeEventListener('abort', onAbort)
        if (err !== null) reject(signal.aborted ? (signal.reason as Error) : peerError(err, address))
        else resolve(res)
      }, this.clients.forwardedMetadata())
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }
}
