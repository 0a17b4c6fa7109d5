/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so grpcurl and friends can list and
 * call the services without the .proto files. @grpc/reflection needs a proto-loader
 * PackageDefinition, loaded here from the package's proto/ folder (the source of the generated
 * code) plus the health service's proto.
 */
import * as protoLoader from '@grpc/proto-loader'
import type { Server } from '@grpc/grpc-js'
import { ReflectionService } from '@grpc/reflection'
import { protoPath as healthProtoPath } from 'grpc-health-check'
import { protoRoot } from './paths.ts'

export const ringkvProtoFiles = [
  'ringkv/v1/kv.proto',
  'ringkv/v1/admin.proto',
  'ringkv/v1/raft.proto',
] as const

/** Loads the wire contract as a proto-loader package definition. */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync([...ringkvProtoFiles, healthProtoPath], {
    includeDirs: [protoRoot()],
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  })
}

export function addReflection(server: Pick<Server, 'addService'>): void {
  new ReflectionService(loadPackageDefinition()).addToServer(server)
}
