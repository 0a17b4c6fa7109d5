/**
 * The in-place snapshot install refuses a member's hostile stream without stopping the node: keys
 * outside the shard, user values that do not decode, and records the state machine's loaders would
 * fail stop on are INVALID_ARGUMENT (the install is aborted), never an assertion.
 */
import { describe, expect, it } from 'vitest'
import {
  AssertionError,
  LogIndex,
  NodeId,
  ShardId,
  isKvErrorWithCode,
  type Term,
} from '../../../src/common/index.ts'
import { encodeSnapshotEntries, encodeSnapshotPrelude, frame } from '../../../src/node/peer-payload.ts'
import {
  receiveSnapshotInPlace,
  type InstallPort,
  type InstallTicket,
} from '../../../src/node/snapshot-install.ts'
import type { MsgSnap } from '../../../src/raft/index.ts'
import type { InstalledSnapshot } from '../../../src/shard/index.ts'
import {
  MemoryEngine,
  dataKey,
  dataRangeForHashRange,
  encodeValueRecord,
  raftLogKey,
  shardLocalRange,
  type Entry,
} from '../../../src/storage/index.ts'

const shardId = ShardId(3)
const message: MsgSnap = {
  type: 'MsgSnap',
  from: NodeId(2),
  to: NodeId(1),
  term: 4 as Term,
  snapshot: {
    meta: {
      index: LogIndex(10),
      term: 4 as Term,
      confState: {
        voters: [NodeId(1), NodeId(2)],
        learners: [],
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    },
    data: new Uint8Array(0),
  },
}
const header = { shardId, from: NodeId(2), to: NodeId(1), index: LogIndex(10), term: 4 as Term }
const good = encodeValueRecord({ version: LogIndex(5), createVersion: LogIndex(5), value: Uint8Array.of(1) })

function port(engine: MemoryEngine, load: () => InstalledSnapshot): InstallPort & { aborted: unknown[] } {
  const aborted: unknown[] = []
  return {
    aborted,
    nodeId: NodeId(1),
    engine,
    clearChunkKeys: 64,
    frameBytesMax: 1 << 20,
    begin: (sid, m): Promise<InstallTicket> =>
      Promise.resolve({
        shardId: sid,
        from: m.from,
        id: 1,
        message: m,
        ranges: [dataRangeForHashRange(0n, 1n << 63n), shardLocalRange(sid)],
        bytes: 0,
        cancel: new AbortController(),
        finished: Promise.resolve(),
        finish: () => {},
      }),
    load: () => Promise.resolve(load()),
    end: () => Promise.resolve(),
    abort: (_t, err) => void aborted.push(err),
  }
}

async function* stream(entries: readonly Entry[]): AsyncGenerator<Uint8Array> {
  yield frame(encodeSnapshotPrelude(message))
  yield frame(encodeSnapshotEntries(entries))
}

async function outcome(p: Promise<void>): Promise<unknown> {
  try {
    await p
    return 'installed'
  } catch (err) {
    return err
  }
}

const signal = new AbortController().signal
const loads = (): InstalledSnapshot => ({}) as InstalledSnapshot

describe('node/snapshot-install against a hostile member', () => {
  it('installs entries of the shard', async () => {
    const engine = new MemoryEngine()
    const p = port(engine, loads)
    expect(
      await outcome(
        receiveSnapshotInPlace(p, header, stream([[dataKey(1n, Uint8Array.of(1)), good]]), signal),
      ),
    ).toBe('installed')
  })

  it('refuses a key outside the shard, a value that does not decode, and records that do not load', async () => {
    const cases: [Entry[], () => InstalledSnapshot][] = [
      [[[dataKey(1n << 63n, Uint8Array.of(1)), good]], loads],
      [[[raftLogKey(ShardId(4), LogIndex(1)), Uint8Array.of(1)]], loads],
      [[[dataKey(1n, Uint8Array.of(1)), Uint8Array.of(9, 9)]], loads],
      [
        [[dataKey(1n, Uint8Array.of(1)), good]],
        () => {
          throw new AssertionError('corrupt dedup header: unknown format')
        },
      ],
    ]
    for (const [entries, load] of cases) {
      const p = port(new MemoryEngine(), load)
      const err = await outcome(receiveSnapshotInPlace(p, header, stream(entries), signal))
      expect(err).not.toBeInstanceOf(AssertionError)
      expect(isKvErrorWithCode(err, 'INVALID_ARGUMENT'), String(err)).toBe(true)
      expect(p.aborted).toHaveLength(1)
    }
  })
})
