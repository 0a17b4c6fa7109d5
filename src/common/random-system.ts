/** Real randomness. One of the two files outside bin/ allowed to touch ambient randomness (STYLE.md 7.6). */
import { randomInt } from 'node:crypto'
import type { Random } from './random.ts'

export class SystemRandom implements Random {
  int(maxExclusive: number): number {
    if (maxExclusive <= 2 ** 48) return randomInt(maxExclusive)
    return Math.floor(Math.random() * maxExclusive)
  }

  chance(numerator: number, denominator: number): boolean {
    return this.int(denominator) < numerator
  }

  fork(_label: string): Random {
    return this
  }
}
