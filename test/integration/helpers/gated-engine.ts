/**
 * The storage of an in-process kvd (Kvd's `openEngine` seam) wrapped so a test can hold its
 * writes (the node's Ready loop then waits in its one batch write, and every request behind it
 * stays in flight) and count the user-data entries read by iterators (what a scan pulled).
 */
import type { Engine, Entry, IterateOptions } from '../../../src/storage/index.ts'
import { KeySpace } from '../../../src/storage/index.ts'
import { CountingEngine } from '../../unit/shard/helpers.ts'

export class GatedEngine extends CountingEngine {
  /** User-data entries handed out by iterators so far. */
  dataEntriesRead = 0

  constructor(inner: Engine) {
    super(inner)
  }

  override iterate(options: IterateOptions): AsyncIterableIterator<Entry> {
    const inner = super.iterate(options)
    const count = (): void => {
      this.dataEntriesRead++
    }
    async function* counted(): AsyncGenerator<Entry> {
      for await (const entry of inner) {
        if (entry[0][0] === KeySpace.Data) count()
        yield entry
      }
    }
    return counted()
  }
}
