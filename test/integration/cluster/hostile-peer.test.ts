/**
 * A hostile member on a real 3-node cluster: a process that speaks the peer protocol as node 3
 * (without certificates, any peer can claim an id; with mutual TLS, only node 3's holder can) sends
 * what once ended the cluster for good, then the cluster is checked:
 * - a MsgHeartbeat at term 2^53 - 1 to every shard of every other node (every node adopted and
 *   persisted it, the next election's term + 1 failed an assertion, and every restart failed again),
 *   a heartbeat just above the term ceiling, and one jumping further than one message may;
 * - an append whose entry is not a command (the node that applied it crashed);
 * - a MsgTimeoutNow storm in the current term (it moved every leader to one node).
 * Afterwards no node exited, no term rose, writes go on, and a node killed and restarted elects
 * and serves again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient } from '../../../src/client/index.ts'
import { SystemClock } from '../../../src/common/clock-system.ts'
import { NodeId, ShardId, limits, silentLogger, type LogIndex, type Term } from '../../../src/common/index.ts'
import { SeededRandom } from '../../../src/common/random.ts'
import { encodeRaftPayload } from '../../../src/node/peer-payload.ts'
import { GrpcPeerTransport } from '../../../src/node/transport-grpc.ts'
import type { Message } from '../../../src/raft/index.ts'
import { startCluster, type Cluster } from '../helpers/cluster.ts'
import { eventually } from '../helpers/cluster-ops.ts'
import { adminClient, adminStatus } from '../helpers/grpc.ts'

let cluster: Cluster
const keep = process.env['KEEP_LOGS'] === '1'
let forger: GrpcPeerTransport
const hostile = NodeId(3)

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, shards: 2 })
  forger = new GrpcPeerTransport(
    { nodeId: hostile },
    { clock: new SystemClock(), random: new SeededRandom(3), logger: silentLogger },
  )
  forger.start({
    onEnvelopes: () => {},
    onSnapshot: () => Promise.reject(new Error('not a real node')),
    onUnreachable: () => {},
  } as never)
  forger.setPeers(
    new Map([
      // Peer traffic goes to the peer listeners (plaintext here: nothing checks the claim).
      [NodeId(1), cluster.node(1).peer],
      [NodeId(2), cluster.node(2).peer],
    ]),
  )
}, 90_000)
afterAll(async () => {
  await forger?.close()
  const crashed = await cluster?.stop({ keepDir: keep })
  expect(crashed ?? []).toEqual([])
})

interface View {
  readonly shardId: number
  readonly term: number
  readonly leaderId: number
  readonly role: string
  readonly commitIndex: number
}

async function views(nodeId: number): Promise<View[]> {
  const s = await adminStatus(adminClient(cluster.node(nodeId).grpc))
  return (s.node?.shards ?? []).map((sh) => ({
    shardId: sh.shardId,
    term: Number(sh.term),
    leaderId: Number(sh.leaderId),
    role: sh.role,
    commitIndex: Number(sh.commitIndex),
  }))
}

function send(shardId: number, m: Message): void {
  forger.send({ shardId: ShardId(shardId), from: hostile, to: m.to, payload: encodeRaftPayload(m) })
}

describe('a hostile member', () => {
  it('cannot crash, corrupt or move the leaders of a real cluster', async () => {
    const client = new KvClient({ endpoints: [...cluster.endpoints] })
    try {
      await client.put('before', 'ok')
      const before = new Map<string, number>()
      let storms = 0
      for (const to of [1, 2]) {
        for (const v of await views(to)) {
          before.set(`${to}/${v.shardId}`, v.term)
          const at = (term: number) => ({ from: hostile, to: NodeId(to), term: term as Term })
          const commit = v.commitIndex as LogIndex
          for (const term of [2 ** 53 - 1, limits.raftTermMax + 1, v.term + limits.raftTermJumpMax + 1])
            send(v.shardId, { type: 'MsgHeartbeat', ...at(term), commit, round: 1 })
          // An entry that is no command, in a term no one has reached (no leader known there yet).
          send(v.shardId, {
            type: 'MsgApp',
            ...at(v.term + limits.raftTermJumpMax),
            index: commit,
            logTerm: v.term as Term,
            commit: (commit + 1) as LogIndex,
            entries: [
              {
                term: (v.term + limits.raftTermJumpMax) as Term,
                index: (commit + 1) as LogIndex,
                type: 'normal',
                data: Uint8Array.of(0xde, 0xad),
              },
            ],
          })
          // The storm: timeout-now in the current term to every follower that knows another leader.
          if (v.role === 'follower' && v.leaderId !== 0 && v.leaderId !== hostile) {
            storms++
            for (let i = 0; i < 20; i++) send(v.shardId, { type: 'MsgTimeoutNow', ...at(v.term) })
          }
        }
      }
      // Give the forgeries time to arrive and do whatever they can.
      await new Promise((r) => setTimeout(r, 1_500))
      for (const to of [1, 2]) {
        for (const v of await views(to)) {
          // No forged term was adopted (leader balancing may move a leader legitimately meanwhile).
          expect(v.term, `node ${to} shard ${v.shardId}`).toBeLessThan(before.get(`${to}/${v.shardId}`)! + 5)
        }
      }
      const logs = cluster.node(1).logs() + cluster.node(2).logs()
      expect(logs).toMatch(/refused message: term beyond the ceiling or too far ahead/)
      expect(logs).toMatch(/refused append: an entry does not decode/)
      if (storms > 0) expect(logs).toMatch(/refused timeout-now from a node that is not the leader/)
      await client.put('after', 'ok')
      expect((await client.get('before')).valueText()).toBe('ok')

      // Elections still work: the next term + 1 is fine everywhere, and a restart comes back.
      await cluster.node(1).stop()
      await eventually('writes without node 1', () => client.put('during', 'ok').then(() => true), 30_000)
      await cluster.node(1).restart()
      await client.put('again', 'ok')
      for (const key of ['before', 'after', 'during', 'again'])
        expect((await client.get(key)).valueText()).toBe('ok')
      for (const id of [1, 2])
        for (const v of await views(id)) expect(v.term).toBeLessThan(limits.raftTermJumpMax)
    } finally {
      client.close()
    }
  }, 120_000)
})
