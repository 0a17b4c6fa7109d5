import { describe } from 'vitest'
import { itRunsSeeds } from './seed-range.ts'

describe('sim/vopr: swarm seeds 151..200', () => {
  itRunsSeeds(151, 50)
})
