/**
 * YCSB's key choosers (Cooper et al., "Benchmarking Cloud Serving Systems with YCSB", SoCC 2010):
 * a zipfian distribution over `n` items with YCSB's constant 0.99, by the method of Gray et al.
 * ("Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994) that YCSB uses, and the
 * scrambled form YCSB's workloads use, where the popular items are spread over the key space
 * instead of being its first keys (here by a seeded permutation of the ranks). Randomness comes in
 * as a Random, so a run's key sequence is a function of its seed.
 */
import type { Random } from '../../src/common/random.ts'

/** YCSB's default zipfian constant. */
export const zipfianTheta = 0.99

/** Resolution of the uniform draws in [0, 1). */
const uniformSteps = 2 ** 30

export function uniform01(random: Random): number {
  return random.int(uniformSteps) / uniformSteps
}

/** Item ranks 0..n-1, rank 0 the most popular, with P(rank i) proportional to 1 / (i + 1)^theta. */
export class Zipfian {
  private readonly alpha: number
  private readonly zetan: number
  private readonly eta: number
  private readonly half: number

  constructor(
    readonly n: number,
    private readonly random: Random,
    private readonly theta = zipfianTheta,
  ) {
    if (!Number.isSafeInteger(n) || n < 2) throw new RangeError(`a zipfian needs at least 2 items, got ${n}`)
    let zetan = 0
    for (let i = 1; i <= n; i++) zetan += 1 / Math.pow(i, theta)
    const zeta2 = 1 + 1 / Math.pow(2, theta)
    this.zetan = zetan
    this.alpha = 1 / (1 - theta)
    this.eta = (1 - Math.pow(2 / n, 1 - theta)) / (1 - zeta2 / zetan)
    this.half = Math.pow(0.5, theta)
  }

  next(): number {
    const u = uniform01(this.random)
    const uz = u * this.zetan
    if (uz < 1) return 0
    if (uz < 1 + this.half) return 1
    return Math.min(this.n - 1, Math.floor(this.n * Math.pow(this.eta * u - this.eta + 1, this.alpha)))
  }
}

/** A zipfian whose ranks are mapped to items by a seeded permutation (the hot items scattered). */
export class ScrambledZipfian {
  private readonly zipfian: Zipfian
  private readonly items: Uint32Array

  constructor(n: number, random: Random) {
    this.zipfian = new Zipfian(n, random.fork('ranks'))
    const shuffle = random.fork('scramble')
    this.items = Uint32Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) {
      const j = shuffle.int(i + 1)
      const t = this.items[i]!
      this.items[i] = this.items[j]!
      this.items[j] = t
    }
  }

  next(): number {
    return this.items[this.zipfian.next()]!
  }
}
