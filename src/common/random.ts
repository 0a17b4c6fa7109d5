/**
 * Randomness as an injected dependency (STYLE.md 7.6). The simulator injects a seeded PRNG so a
 * run replays exactly; production injects SystemRandom (random-system.ts).
 */
export interface Random {
  /** A uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number
  /** True with probability numerator/denominator. */
  chance(numerator: number, denominator: number): boolean
  /** An independent stream for one component; with a seeded parent the fork is seeded too. */
  fork(label: string): Random
}

/**
 * A small, fast, seedable PRNG (xoshiro128**), pure TypeScript, used by the simulator and by
 * anything that needs reproducible randomness. Forks derive their seed from the parent's state
 * and the label, so adding a component does not shift the streams of the others.
 */
export class SeededRandom implements Random {
  private s0: number
  private s1: number
  private s2: number
  private s3: number

  constructor(seed: number) {
    let x = seed >>> 0 || 0x9e3779b9
    const next = (): number => {
      // splitmix32 to spread the seed over the state
      x = (x + 0x9e3779b9) >>> 0
      let z = x
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.s0 = next()
    this.s1 = next()
    this.s2 = next()
    this.s3 = next()
    // Mix in the high bits of seeds beyond 32 bits.
    this.s3 = (this.s3 ^ Math.floor(seed / 0x1_0000_0000)) >>> 0
  }

  /** A uniform uint32. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0
    const t = (this.s1 << 9) >>> 0
    this.s2 ^= this.s0
    this.s3 ^= this.s1
    this.s1 ^= this.s2
    this.s0 ^= this.s3
    this.s2 ^= t
    this.s3 = rotl(this.s3, 11)
    return result
  }

  int(maxExclusive: number): number {
    if (!(Number.isSafeInteger(maxExclusive) && maxExclusive > 0))
      throw new RangeError(`int(${maxExclusive})`)
    if (maxExclusive <= 0x1_0000_0000) return Math.floor((this.nextUint32() / 0x1_0000_0000) * maxExclusive)
    const hi = this.nextUint32() * 0x1_0000_0000 + this.nextUint32()
    return hi % maxExclusive
  }

  chance(numerator: number, denominator: number): boolean {
    return this.int(denominator) < numerator
  }

  fork(label: string): SeededRandom {
    let h = this.nextUint32()
    for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0
    return new SeededRandom(h)
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}
