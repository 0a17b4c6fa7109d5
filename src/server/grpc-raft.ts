/**
 * RaftTransportService: registered so peers get a clear answer, served once replication lands.
 * Until then every call is UNIMPLEMENTED.
 * TODO(server): wire to node/transport-grpc.ts in the Raft issue.
 */
import type { handleBidiStreamingCall, handleClientStreamingCall } from '@grpc/grpc-js'
import {
  RaftTransportServiceService,
  type RaftTransportServiceServer,
  type SnapshotRequest,
  type SnapshotResponse,
  type StreamRequest,
  type StreamResponse,
} from '../gen/ringkv/v1/raft.ts'
import { withTolerantDecoding } from './decode.ts'
import { unimplementedStatus } from './status.ts'

export const raftServiceDefinition = withTolerantDecoding(RaftTransportServiceService)

export function createRaftService(): RaftTransportServiceServer {
  const stream: handleBidiStreamingCall<StreamRequest, StreamResponse> = (call) => {
    call.on('data', () => {})
    call.emit('error', unimplementedStatus('RaftTransportService/Stream'))
  }
  const snapshot: handleClientStreamingCall<SnapshotRequest, SnapshotResponse> = (call, callback) => {
    call.on('data', () => {})
    callback(unimplementedStatus('RaftTransportService/Snapshot'))
  }
  return { stream, snapshot }
}
