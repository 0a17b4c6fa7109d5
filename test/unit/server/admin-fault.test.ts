/**
 * Fault injection end to end, in one process: AdminService.InjectFault over loopback gRPC on a
 * real GrpcPeerTransport, through the wire, the SDK (client/admin-fault.ts) and `kvctl fault`.
 */
import { status as Grpc } from '@grpc/grpc-js'
import { afterEach, describe, expect, it } from 'vitest'
import { injectFault } from '../../../src/client/admin-fault.ts'
import { main, type CliIo } from '../../../src/cli/main.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { isKvErrorWithCode, type KvError } from '../../../src/common/errors.ts'
import { NodeId } from '../../../src/common/ids.ts'
import { limits } from '../../../src/common/limits.ts'
import { silentLogger } from '../../../src/common/logger.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { GrpcPeerTransport } from '../../../src/node/transport-grpc.ts'
import { adminServiceDefinition, createAdminService } from '../../../src/server/grpc-admin.ts'
import { RequestGate } from '../../../src/net/index.ts'
import { serve, type Served } from '../net/serve.ts'

interface Node {
  readonly address: string
  readonly transport: GrpcPeerTransport
  readonly served: Served
}
const started: Node[] = []

async function startAdmin(allowFaultInjection: boolean): Promise<Node> {
  const clock = new SystemClock()
  const transport = new GrpcPeerTransport(
    { nodeId: NodeId(1) },
    { clock, random: new SeededRandom(1), logger: silentLogger },
  )
  // The members this node knows (never dialled successfully: nothing listens on port 1).
  transport.setPeers(new Map([2, 3, 4].map((id) => [NodeId(id), '127.0.0.1:1'])))
  const served = await serve({
    services: [
      [
        adminServiceDefinition,
        createAdminService({
          replicas: () => [],
          clock,
          logger: silentLogger,
          gate: new RequestGate(16),
          node: () => ({
            nodeId: 1,
            address: 'test',
            version: 'test',
            dataDir: '/tmp/none',
            startedMs: 0,
            clusterId: 'test',
          }),
          allowFaultInjection,
          faults: () => transport,
        }),
      ],
    ],
  })
  const node = { address: served.address, transport, served }
  started.push(node)
  return node
}

afterEach(async () => {
  for (const node of started.splice(0)) {
    await node.transport.close()
    node.served.close()
  }
})

async function failure(promise: Promise<unknown>): Promise<KvError> {
  try {
    await promise
  } catch (err) {
    return err as KvError
  }
  throw new Error('expected a failure')
}

async function kvctl(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
    stdin: Object.assign((async function* () {})(), { isTTY: true }),
    env: {},
  }
  const code = await main(argv, io)
  return { code, stdout, stderr }
}

describe('server/admin InjectFault', () => {
  it('is refused with FAULT_INJECTION_DISABLED (FAILED_PRECONDITION) without --allow-fault-injection', async () => {
    const node = await startAdmin(false)
    const err = await failure(injectFault(node.address, { peers: [2], drop: true }))
    expect(err.name).toBe('KvError')
    expect(err.code).toBe('FAULT_INJECTION_DISABLED')
    expect((err.cause as { code: number }).code).toBe(Grpc.FAILED_PRECONDITION)
    expect(node.transport.faults().size).toBe(0)
  })

  it('with the flag: sets drop and delay faults, lists them, and clears them', async () => {
    const node = await startAdmin(true)
    expect(await injectFault(node.address, { peers: [3, 2], drop: true })).toEqual([
      { peer: 2, drop: true, delayMs: 0 },
      { peer: 3, drop: true, delayMs: 0 },
    ])
    expect([...node.transport.faults().keys()]).toEqual([2, 3])
    expect(await injectFault(node.address, { peers: [4], delayMs: 250 })).toContainEqual({
      peer: 4,
      drop: false,
      delayMs: 250,
    })
    // No peers, no clear: changes nothing and lists.
    expect(await injectFault(node.address, {})).toHaveLength(3)
    expect(await injectFault(node.address, { clear: true, peers: [2] })).toEqual([
      { peer: 3, drop: true, delayMs: 0 },
      { peer: 4, drop: false, delayMs: 250 },
    ])
    expect(await injectFault(node.address, { clear: true })).toEqual([])
    expect(node.transport.faults().size).toBe(0)
  })

  it('refuses bad requests with INVALID_ARGUMENT and the field', async () => {
    const node = await startAdmin(true)
    const cases: [Parameters<typeof injectFault>[1], string][] = [
      [{ peers: [1], drop: true }, 'peers'], // itself
      [{ drop: true }, 'peers'], // no peers named
      [{ peers: [2] }, 'drop'], // neither drop nor delay
      [{ peers: [2], delayMs: limits.faultDelayMsMax + 1 }, 'delay_ms'],
      [{ clear: true, drop: true }, 'clear'],
      [{ peers: [9], drop: true }, 'peers'], // not a member
      [{ peers: [2, 9], delayMs: 5 }, 'peers'], // one of them not a member: nothing is set
      [{ peers: [9], clear: true }, 'peers'],
    ]
    for (const [request, field] of cases) {
      const err = await failure(injectFault(node.address, request))
      expect({ code: err.code, field: err.details?.field }).toEqual({ code: 'INVALID_ARGUMENT', field })
    }
    const many = Array.from({ length: limits.faultPeersMax + 1 }, (_, i) => i + 2)
    const err = await failure(injectFault(node.address, { peers: many, drop: true }))
    expect(err.details).toEqual({ field: 'peers', limit: limits.faultPeersMax })
    expect(node.transport.faults().size).toBe(0)
  })

  it('the SDK refuses misuse before calling', async () => {
    await expect(injectFault('nope', {})).rejects.toThrow(TypeError)
    await expect(injectFault('127.0.0.1:1', { peers: [0] })).rejects.toThrow(TypeError)
    await expect(injectFault('127.0.0.1:1', { delayMs: -1 })).rejects.toThrow(TypeError)
  })

  it('an unreachable node is UNAVAILABLE', async () => {
    const err = await failure(injectFault('127.0.0.1:1', {}, { deadlineMs: 2000 }))
    expect(isKvErrorWithCode(err, 'UNAVAILABLE') || isKvErrorWithCode(err, 'DEADLINE_EXCEEDED')).toBe(true)
  })
})

describe('cli/kvctl fault', () => {
  it('isolates peers and prints the faults in force (json and table)', async () => {
    const node = await startAdmin(true)
    const ep = ['fault', '--node-endpoint', node.address]
    const isolate = await kvctl([...ep, '--isolate', '2,3'])
    expect(isolate).toMatchObject({ code: 0, stderr: '' })
    expect(JSON.parse(isolate.stdout)).toEqual({
      endpoint: node.address,
      faults: [
        { peer: 2, drop: true, delayMs: 0 },
        { peer: 3, drop: true, delayMs: 0 },
      ],
    })
    const delay = await kvctl(['-o', 'table', ...ep, '--peers', '4', '--delay-ms', '150'])
    expect(delay.code).toBe(0)
    expect(delay.stdout).toBe('PEER  DROP  DELAY MS\n2     yes   0\n3     yes   0\n4     no    150\n')
    const cleared = await kvctl(['-o', 'table', ...ep, '--clear'])
    expect(cleared).toMatchObject({ code: 0, stdout: `no faults in force on ${node.address}\n` })
  })

  it('exits 1 with the stable code when the node does not allow fault injection', async () => {
    const node = await startAdmin(false)
    const res = await kvctl(['fault', '--node-endpoint', node.address, '--isolate', '2'])
    expect(res.code).toBe(1)
    expect(res.stderr).toContain('FAULT_INJECTION_DISABLED')
  })

  it('contradictory or missing flags are usage errors (exit 2)', async () => {
    const ep = ['fault', '--node-endpoint', '127.0.0.1:1']
    for (const argv of [
      ['fault', '--isolate', '2'], // no --node-endpoint
      [...ep, '--isolate', '2', '--peers', '3'],
      [...ep, '--clear', '--isolate', '2'],
      [...ep, '--delay-ms', '100'],
      [...ep, '--peers', '2'],
      [...ep, '--isolate', '2,x'],
      [...ep, '--isolate', '0'],
    ]) {
      const res = await kvctl(argv)
      expect({ argv, code: res.code }).toEqual({ argv, code: 2 })
    }
  })
})
