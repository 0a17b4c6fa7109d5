import { describe } from 'vitest'
import { itRunsSeeds } from './seed-range.ts'

describe('sim/vopr: swarm seeds 1..50', () => {
  itRunsSeeds(1, 50)
})
