import { describe } from 'vitest'
import { itRunsSeeds } from './seed-range.ts'

describe('sim/vopr: swarm seeds 101..150', () => {
  itRunsSeeds(101, 50)
})
