/**
 * The consistent-hashing ring (Karger et al. 1997) with virtual nodes: each node puts
 * `round(vnodesPerNode * weight)` tokens (at least one) on the 64-bit hash space, and a position
 * belongs to the first token at or after it, wrapping past 2^64 - 1 to the first token. Pure: the
 * token positions are xxh64 hashes of (node id, vnode index), so every process builds the same
 * ring from the same node set, in any input order.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import { hashSpaceEnd, type Hasher } from './xxhash.ts'

/** A member of the ring. */
export interface RingNode {
  /** Node id: a positive safe integer, unique in the ring. */
  readonly id: number
  /** Relative capacity, default 1; > 0. Scales the node's vnode count and its fair share of replicas. */
  readonly weight?: number
  /** Failure domain (rack, zone). A node without one is a failure domain of its own. */
  readonly zone?: string
}

/** A point on the ring owned by one node. */
export interface RingToken {
  readonly position: bigint
  readonly nodeId: number
}

/**
 * Vnodes per node of weight 1 by default. With 128, a node's share of the hash space has a
 * relative standard deviation of about 1/sqrt(128) = 9% (arc lengths are nearly exponential).
 */
export const defaultVnodesPerNode = 128
/** The most vnodes per node of weight 1 a caller may ask for. */
export const vnodesPerNodeMax = 4096
/** Heaviest node relative to a weight-1 node. Keeps the token count, and a node's share, bounded. */
export const nodeWeightMax = 1024
/** Tokens on one ring (summed over nodes), about 1,000 nodes at vnodesPerNodeMax. Bounds memory and build time. */
export const ringTokensMax = 1 << 22
/** Nodes on one ring. */
export const ringNodesMax = 65_536
/** Length of a zone label, in UTF-16 code units. */
export const zoneLengthMax = 256

/** Bytes hashed for a vnode token: node id (u64 big-endian), then vnode index (u32 big-endian). */
export const vnodeTokenBytes = 12

const two32 = 0x1_0000_0000
const u32Mask = 0xffff_ffffn

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

/**
 * The byte string whose xxh64 is the position of vnode `vnodeIndex` of node `nodeId`. Fixed format
 * (a change moves every replica): 8 bytes node id, 4 bytes vnode index, both big-endian.
 */
export function vnodeKey(nodeId: number, vnodeIndex: number): Uint8Array {
  assert(Number.isSafeInteger(nodeId) && nodeId > 0, `bad node id ${nodeId}`)
  assert(Number.isSafeInteger(vnodeIndex) && vnodeIndex >= 0 && vnodeIndex < two32, 'bad vnode index')
  const out = new Uint8Array(vnodeTokenBytes)
  const view = new DataView(out.buffer)
  view.setUint32(0, Math.floor(nodeId / two32))
  view.setUint32(4, nodeId % two32)
  view.setUint32(8, vnodeIndex)
  return out
}

/** Vnodes of a node: round(vnodesPerNode * weight), at least one. */
export function vnodesOf(node: RingNode, vnodesPerNode: number): number {
  return Math.max(1, Math.round(vnodesPerNode * (node.weight ?? 1)))
}

/**
 * Checks a node list as user input and returns it sorted by id. Throws KvError INVALID_ARGUMENT
 * (details.field names the culprit) for: no nodes, too many, an id that is not a positive safe
 * integer, a duplicate id, a weight that is not finite and in (0, nodeWeightMax], a zone that is
 * not a non-empty string of at most zoneLengthMax.
 */
export function validateNodes(nodes: readonly RingNode[]): RingNode[] {
  if (!Array.isArray(nodes) || nodes.length === 0) throw invalid('nodes', 'a ring needs at least one node')
  if (nodes.length > ringNodesMax)
    throw invalid('nodes', `a ring has at most ${ringNodesMax} nodes, got ${nodes.length}`)
  for (const node of nodes) {
    if (!Number.isSafeInteger(node.id) || node.id <= 0)
      throw invalid('id', `node id must be a positive safe integer, got ${node.id}`)
    const weight = node.weight ?? 1
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0 || weight > nodeWeightMax)
      throw invalid('weight', `node ${node.id}: weight must be in (0, ${nodeWeightMax}], got ${weight}`)
    if (
      node.zone !== undefined &&
      (typeof node.zone !== 'string' || node.zone.length === 0 || node.zone.length > zoneLengthMax)
    )
      throw invalid('zone', `node ${node.id}: zone must be a non-empty string of at most ${zoneLengthMax}`)
  }
  const sorted = [...nodes].sort((a, b) => a.id - b.id)
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.id === sorted[i - 1]!.id) throw invalid('id', `duplicate node id ${sorted[i]!.id}`)
  return sorted
}

/** Checks vnodesPerNode as user input: an integer in [1, vnodesPerNodeMax]. */
export function validateVnodesPerNode(vnodesPerNode: number): void {
  if (!Number.isSafeInteger(vnodesPerNode) || vnodesPerNode < 1 || vnodesPerNode > vnodesPerNodeMax)
    throw invalid('vnodesPerNode', `vnodesPerNode must be an integer in [1, ${vnodesPerNodeMax}]`)
}

/**
 * A ring over a set of nodes. Immutable. The constructor validates its input (KvError
 * INVALID_ARGUMENT, see validateNodes) and hashes every vnode once.
 *
 * Invariant: tokens are sorted by (position, nodeId, vnode index); positions are in [0, 2^64).
 */
export class Ring {
  /** The nodes, sorted by id. */
  readonly nodes: readonly RingNode[]
  readonly vnodesPerNode: number
  /** Vnode tokens sorted by position (ties, which xxh64 makes vanishingly rare, by node id then vnode index). */
  readonly tokens: readonly RingToken[]

  // The same positions as two u32 halves, and each token's node as an index into `nodes`, so hot
  // loops (placement) compare numbers instead of bigints.
  readonly #high: Uint32Array
  readonly #low: Uint32Array
  readonly #nodeIndexes: Uint32Array
  readonly #vnodes: ReadonlyMap<number, number>
  readonly #draws: Float64Array

  constructor(nodes: readonly RingNode[], hasher: Hasher, vnodesPerNode: number = defaultVnodesPerNode) {
    validateVnodesPerNode(vnodesPerNode)
    this.nodes = validateNodes(nodes)
    this.vnodesPerNode = vnodesPerNode
    const vnodes = new Map<number, number>()
    let count = 0
    for (const node of this.nodes) {
      const v = vnodesOf(node, vnodesPerNode)
      vnodes.set(node.id, v)
      count += v
    }
    if (count > ringTokensMax)
      throw invalid('vnodesPerNode', `the ring would have ${count} tokens, more than ${ringTokensMax}`)
    this.#vnodes = vnodes

    const high = new Uint32Array(count)
    const low = new Uint32Array(count)
    const owner = new Uint32Array(count)
    const draws = new Float64Array(this.nodes.length)
    const positions: bigint[] = Array.from({ length: count })
    let t = 0
    for (const [n, node] of this.nodes.entries()) {
      const v = vnodes.get(node.id)!
      for (let i = 0; i < v; i++, t++) {
        const position = hasher.hash64(vnodeKey(node.id, i))
        assert(position >= 0n && position < hashSpaceEnd, 'hash outside the hash space')
        positions[t] = position
        high[t] = Number(position >> 32n)
        low[t] = Number(position & u32Mask)
        owner[t] = n
        if (i === 0) draws[n] = high[t]! / two32
      }
    }
    // Tokens were laid out by node id, then vnode index, so the owner index breaks position ties
    // by node id and the original token index by vnode index.
    const order = Array.from({ length: count }, (_, i) => i)
    order.sort((a, b) => high[a]! - high[b]! || low[a]! - low[b]! || owner[a]! - owner[b]! || a - b)
    this.#high = new Uint32Array(count)
    this.#low = new Uint32Array(count)
    this.#nodeIndexes = new Uint32Array(count)
    const tokens: RingToken[] = Array.from({ length: count })
    for (const [i, j] of order.entries()) {
      this.#high[i] = high[j]!
      this.#low[i] = low[j]!
      this.#nodeIndexes[i] = owner[j]!
      tokens[i] = { position: positions[j]!, nodeId: this.nodes[owner[j]!]!.id }
    }
    this.tokens = tokens
    this.#draws = draws
  }

  /** Index of the first token at or after `position`, wrapping to 0 past the last token. */
  successorIndex(position: bigint): number {
    assert(position >= 0n && position < hashSpaceEnd, 'position outside the hash space')
    return this.successorIndexOf(Number(position >> 32n), Number(position & u32Mask))
  }

  /** successorIndex for a position given as its u32 halves. */
  successorIndexOf(high: number, low: number): number {
    let lo = 0
    let hi = this.#high.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const h = this.#high[mid]!
      if (h < high || (h === high && this.#low[mid]! < low)) lo = mid + 1
      else hi = mid
    }
    return lo === this.#high.length ? 0 : lo
  }

  /** Number of tokens. */
  get tokenCount(): number {
    return this.#high.length
  }

  /** The index into `nodes` of token `tokenIndex`'s node (placement's hot loop uses this, not `tokens`). */
  tokenNodeIndex(tokenIndex: number): number {
    return this.#nodeIndexes[tokenIndex]!
  }

  /**
   * Clockwise distance from a position (as u32 halves) to token `tokenIndex`, in [0, 2^64), as a
   * double: exact below 2^53, otherwise correctly rounded (one rounding). Used to rank, not to address.
   */
  distanceTo(high: number, low: number, tokenIndex: number): number {
    // Borrow in u32 halves first, so the one rounding happens in the final sum.
    let dHigh = this.#high[tokenIndex]! - high
    let dLow = this.#low[tokenIndex]! - low
    if (dLow < 0) {
      dLow += two32
      dHigh -= 1
    }
    if (dHigh < 0) dHigh += two32
    return dHigh * two32 + dLow
  }

  /**
   * A value in [0, 1) fixed for node `nodes[nodeIndex]` and uniform across nodes: the top 32 bits of
   * its vnode 0 position over 2^32. Placement uses it to pick which nodes round their capacity up,
   * so that the choice is consistent as nodes come and go.
   */
  nodeDraw(nodeIndex: number): number {
    assert(nodeIndex >= 0 && nodeIndex < this.nodes.length, 'node index out of range')
    return this.#draws[nodeIndex]!
  }

  /**
   * The fraction of the hash space each node owns (the positions whose successor token is one of
   * its vnodes), by node id. The fractions sum to 1 (up to rounding of the final division).
   */
  ownership(): Map<number, number> {
    const arcs = new Map<number, bigint>(this.nodes.map((n) => [n.id, 0n]))
    const count = this.tokens.length
    for (let i = 0; i < count; i++) {
      const token = this.tokens[i]!
      const previous = this.tokens[(i + count - 1) % count]!.position
      // Token i owns (previous, position]; the first token's arc wraps past the top of the space.
      const arc = i === 0 ? hashSpaceEnd - previous + token.position : token.position - previous
      arcs.set(token.nodeId, arcs.get(token.nodeId)! + arc)
    }
    const result = new Map<number, number>()
    for (const [id, arc] of arcs) result.set(id, Number(arc) / Number(hashSpaceEnd))
    return result
  }

  /** Vnodes of node `nodeId` on this ring; 0 for a node that is not on it. */
  vnodeCount(nodeId: number): number {
    return this.#vnodes.get(nodeId) ?? 0
  }
}
