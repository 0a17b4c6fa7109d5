import { describe } from 'vitest'
import { itRunsSeeds } from './seed-range.ts'

describe('sim/vopr: swarm seeds 51..100', () => {
  itRunsSeeds(51, 50)
})
