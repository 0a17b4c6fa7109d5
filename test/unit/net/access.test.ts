import * as protoLoader from '@grpc/proto-loader'
import { loadPackageDefinition, type ServiceDefinition } from '@grpc/grpc-js'
import { service as healthService } from 'grpc-health-check'
import { describe, expect, it } from 'vitest'
import { NodeId } from '../../../src/common/ids.ts'
import {
  accessError,
  allows,
  methodRules,
  ruleOf,
  type Access,
  type ListenerKind,
  type Principal,
} from '../../../src/net/index.ts'
import { adminServiceDefinition } from '../../../src/server/grpc-admin.ts'
import { kvServiceDefinition } from '../../../src/server/grpc-kv.ts'
import { raftServiceDefinition } from '../../../src/server/grpc-raft.ts'
import { replicaServiceDefinition } from '../../../src/server/grpc-replica.ts'

/** The reflection services kvd serves, as @grpc/reflection loads them. */
function reflectionServices(): ServiceDefinition[] {
  const root = new URL('../../../node_modules/@grpc/reflection/build/proto/grpc/reflection/', import.meta.url)
  const out: ServiceDefinition[] = []
  for (const version of ['v1', 'v1alpha']) {
    const pkg = loadPackageDefinition(
      protoLoader.loadSync(`${root.pathname}${version}/reflection.proto`),
    ) as unknown as {
      grpc: { reflection: Record<string, { ServerReflection: { service: ServiceDefinition } }> }
    }
    out.push(pkg.grpc.reflection[version]!.ServerReflection.service)
  }
  return out
}

/** Every service kvd registers on either listener. */
function everyService(): { name: string; definition: Record<string, { path: string }> }[] {
  return [
    { name: 'KvService', definition: kvServiceDefinition },
    { name: 'AdminService', definition: adminServiceDefinition },
    { name: 'RaftTransportService', definition: raftServiceDefinition },
    { name: 'ReplicaService', definition: replicaServiceDefinition },
    { name: 'Health', definition: healthService as unknown as Record<string, { path: string }> },
    ...reflectionServices().map((definition, i) => ({
      name: `ServerReflection ${i}`,
      definition: definition as unknown as Record<string, { path: string }>,
    })),
  ]
}

const client = (role: 'admin' | 'readwrite' | 'readonly'): Principal => ({
  kind: 'client',
  name: 'c',
  role,
  via: 'certificate',
})
const node: Principal = { kind: 'node', addresses: ['n:1'], nodeId: NodeId(2) }
const joiningNode: Principal = { kind: 'node', addresses: ['n:1'], nodeId: undefined }
const anonymous: Principal = { kind: 'anonymous' }
const open: Principal = { kind: 'open' }

describe('net/access: the authorization table', () => {
  it('has a rule for every method of every service kvd serves (a new method forces a decision)', () => {
    const missing: string[] = []
    for (const { definition } of everyService())
      for (const method of Object.values(definition))
        if (ruleOf(method.path) === undefined) missing.push(method.path)
    expect(missing).toEqual([])
  })

  it('names no method that does not exist (no typo can leave a real method unruled)', () => {
    const served = new Set(
      everyService().flatMap(({ definition }) => Object.values(definition).map((m) => m.path)),
    )
    expect(Object.keys(methodRules).filter((path) => !served.has(path))).toEqual([])
  })

  it('denies a method it does not know, on both listeners', () => {
    expect(ruleOf('/ringkv.v1.KvService/DropEverything')).toBeUndefined()
    expect(ruleOf('__proto__')).toBeUndefined()
    expect(ruleOf('toString')).toBeUndefined()
  })

  it('keeps peer traffic off the client listener and client-only calls off the peer listener', () => {
    expect(ruleOf('/ringkv.v1.RaftTransportService/Stream')?.client).toBe('deny')
    expect(ruleOf('/ringkv.v1.RaftTransportService/Snapshot')?.client).toBe('deny')
    expect(ruleOf('/ringkv.v1.AdminService/InjectFault')?.peer).toBe('deny')
    expect(ruleOf('/ringkv.v1.AdminService/Status')?.peer).toBe('deny')
    for (const method of Object.values(replicaServiceDefinition)) {
      expect(ruleOf(method.path)?.client, method.path).toBe('deny')
      expect(ruleOf(method.path)?.peer, method.path).toBe('node')
    }
    for (const path of Object.keys(methodRules).filter((p) => p.startsWith('/ringkv.v1.KvService/')))
      expect(ruleOf(path)?.peer, path).toBe('node')
  })

  it('gives writes, admin calls and meta calls the roles the issue asks for', () => {
    const client = (m: string): Access | undefined => ruleOf(m)?.client
    expect(client('/ringkv.v1.KvService/Get')).toBe('readonly')
    expect(client('/ringkv.v1.KvService/Scan')).toBe('readonly')
    expect(client('/ringkv.v1.KvService/Put')).toBe('readwrite')
    expect(client('/ringkv.v1.KvService/Batch')).toBe('readwrite')
    expect(client('/ringkv.v1.KvService/Delete')).toBe('readwrite')
    expect(client('/ringkv.v1.KvService/RegisterSession')).toBe('readwrite')
    expect(client('/ringkv.v1.AdminService/InjectFault')).toBe('admin')
    expect(client('/ringkv.v1.AdminService/Join')).toBe('admin-or-node')
    expect(client('/ringkv.v1.AdminService/Heartbeat')).toBe('admin-or-node')
    expect(client('/ringkv.v1.AdminService/MoveReplica')).toBe('admin')
    expect(client('/ringkv.v1.AdminService/ListMoves')).toBe('admin')
    expect(client('/ringkv.v1.AdminService/TransferShardLeader')).toBe('admin')
    expect(client('/grpc.health.v1.Health/Check')).toBe('public')
  })

  const levels: Access[] = ['public', 'readonly', 'readwrite', 'admin', 'admin-or-node', 'node', 'deny']
  const table: [string, Principal, ListenerKind, Record<Access, boolean>][] = [
    [
      'open (no credentials configured)',
      open,
      'client',
      {
        public: true,
        readonly: true,
        readwrite: true,
        admin: true,
        'admin-or-node': true,
        node: true,
        deny: false,
      },
    ],
    [
      'anonymous',
      anonymous,
      'client',
      {
        public: true,
        readonly: false,
        readwrite: false,
        admin: false,
        'admin-or-node': false,
        node: false,
        deny: false,
      },
    ],
    [
      'readonly',
      client('readonly'),
      'client',
      {
        public: true,
        readonly: true,
        readwrite: false,
        admin: false,
        'admin-or-node': false,
        node: false,
        deny: false,
      },
    ],
    [
      'readwrite',
      client('readwrite'),
      'client',
      {
        public: true,
        readonly: true,
        readwrite: true,
        admin: false,
        'admin-or-node': false,
        node: false,
        deny: false,
      },
    ],
    [
      'admin',
      client('admin'),
      'client',
      {
        public: true,
        readonly: true,
        readwrite: true,
        admin: true,
        'admin-or-node': true,
        node: false,
        deny: false,
      },
    ],
    [
      'a node on the client listener',
      node,
      'client',
      {
        public: true,
        readonly: false,
        readwrite: false,
        admin: false,
        'admin-or-node': true,
        node: true,
        deny: false,
      },
    ],
    [
      'a node on the peer listener',
      node,
      'peer',
      {
        public: true,
        readonly: true,
        readwrite: true,
        admin: false,
        'admin-or-node': true,
        node: true,
        deny: false,
      },
    ],
    [
      'a joining node (no id yet)',
      joiningNode,
      'client',
      {
        public: true,
        readonly: false,
        readwrite: false,
        admin: false,
        'admin-or-node': true,
        node: false,
        deny: false,
      },
    ],
    [
      'a joining node on the peer listener',
      joiningNode,
      'peer',
      {
        public: true,
        readonly: false,
        readwrite: false,
        admin: false,
        'admin-or-node': true,
        node: false,
        deny: false,
      },
    ],
  ]
  for (const [name, principal, listener, expected] of table)
    it(`allows exactly what it should: ${name}`, () => {
      for (const access of levels) expect(allows(access, principal, listener), access).toBe(expected[access])
    })

  it('says UNAUTHENTICATED without an identity and PERMISSION_DENIED with one', () => {
    expect(accessError('readonly', anonymous, 'x').code).toBe('UNAUTHENTICATED')
    expect(accessError('readwrite', client('readonly'), 'x').code).toBe('PERMISSION_DENIED')
    expect(accessError('node', joiningNode, 'x').code).toBe('PERMISSION_DENIED')
    expect(accessError('deny', client('admin'), 'x').code).toBe('PERMISSION_DENIED')
  })
})
