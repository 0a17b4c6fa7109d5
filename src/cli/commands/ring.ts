import { isKvError } from '../../common/errors.ts'
import { loadClientHasher } from '../../client/hasher.ts'
import type { ShardMapResult } from '../../client/types.ts'
import { Ring, defaultVnodesPerNode, type RingNode } from '../../hashing/ring.ts'
import { ExitCode } from '../exit-codes.ts'
import { errorView, json, table } from '../output.ts'
import { fetchMap, formatShare, holdings } from './cluster-view.ts'
import type { CommandSpec } from './command.ts'

/** Node states whose nodes are on the ring (a draining node is leaving it, a dead one has left). */
const ringStates: ReadonlySet<string> = new Set(['active', 'joining', ''])

/**
 * `kvctl ring`: every node of the shard map with its place on the consistent-hashing ring
 * (src/hashing/ring.ts, built here from the map's nodes, weights, zones and vnodes per node
 * exactly as the nodes build it): vnodes, its share of the hash space, and what it holds today
 * (replicas, share of all replicas, leaderships). Ownership and holdings differ while the
 * rebalancer is still moving replicas towards the ring's placement.
 */
export const ringCommand: CommandSpec = {
  name: 'ring',
  arguments: '',
  summary: 'show every node on the hash ring: weight, vnodes, ownership share, replicas and leaders held',
  kind: 'read',
  details: [
    "OWNERSHIP is the share of the 64-bit hash space whose ring successor is one of the node's",
    'vnodes (active and joining nodes are on the ring). REPLICA SHARE is its share of all replicas',
    'of the shard map today; REPLICAS and LEADERS count them.',
  ],
  examples: ['kvctl ring', 'kvctl ring -o json'],
  async run(ctx) {
    const map = await fetchMap(ctx)
    const vnodesPerNode = map.vnodesPerNode > 0 ? map.vnodesPerNode : defaultVnodesPerNode
    const ring = await buildRing(map, vnodesPerNode).catch((err: unknown) => {
      if (!isKvError(err)) throw err
      // The map's nodes do not make a valid ring (e.g. a weight out of range): show the rest.
      ctx.io.stderr.write(`warning: no ring: ${errorView(err).message}\n`)
      return undefined
    })
    const ownership = ring?.ownership()
    const held = holdings(map)
    const replicasTotal = map.shards.reduce((n, s) => n + s.replicas.length, 0)
    const nodes = map.nodes.map((n) => {
      const h = held.get(n.nodeId) ?? { replicas: 0, leaders: 0 }
      return {
        nodeId: n.nodeId,
        address: n.address,
        zone: n.zone,
        state: n.state,
        weight: weightOf(n.weight),
        vnodes: ring?.vnodeCount(n.nodeId) ?? 0,
        ownership: ownership?.get(n.nodeId) ?? null,
        replicaShare: replicasTotal === 0 ? 0 : h.replicas / replicasTotal,
        replicas: h.replicas,
        leaders: h.leaders,
      }
    })
    if (ctx.format === 'json') {
      ctx.print(
        json({
          clusterId: map.clusterId,
          vnodesPerNode,
          replicaCount: map.replicaCount,
          shards: map.shards.length,
          replicas: replicasTotal,
          nodes,
        }),
      )
      return ExitCode.Ok
    }
    ctx.print(
      table([
        [
          'NODE',
          'ADDRESS',
          'ZONE',
          'STATE',
          'WEIGHT',
          'VNODES',
          'OWNERSHIP',
          'REPLICA SHARE',
          'REPLICAS',
          'LEADERS',
        ],
        ...nodes.map((n) => [
          String(n.nodeId),
          n.address === '' ? '-' : n.address,
          n.zone === '' ? '-' : n.zone,
          n.state === '' ? '-' : n.state,
          String(n.weight),
          String(n.vnodes),
          n.ownership === null ? '-' : formatShare(n.ownership),
          formatShare(n.replicaShare),
          String(n.replicas),
          String(n.leaders),
        ]),
      ]),
    )
    return ExitCode.Ok
  },
}

/** A weight as the ring takes it: 0 (unset) is the default, 1. */
function weightOf(weight: number): number {
  return weight > 0 ? weight : 1
}

/** The ring of the map's nodes that are on it; undefined when none is. */
async function buildRing(map: ShardMapResult, vnodesPerNode: number): Promise<Ring | undefined> {
  const members: RingNode[] = map.nodes
    .filter((n) => ringStates.has(n.state))
    .map((n) => ({ id: n.nodeId, weight: weightOf(n.weight), ...(n.zone !== '' ? { zone: n.zone } : {}) }))
  if (members.length === 0) return undefined
  return new Ring(members, await loadClientHasher(), vnodesPerNode)
}
