/**
 * The KV state machine the simulated cluster replicates: put, delete and compare-and-set on
 * versioned keys, where a key's version is the Raft index of the entry that last wrote it
 * (ARCHITECTURE.md §2), and a per-client deduplication table makes retried writes exactly-once
 * (Raft dissertation §6.3). Apply is deterministic: the same entries give the same state and the
 * same `stateHash()` on every replica.
 */
import { assert, type LogIndex } from '../../src/common/index.ts'
import type { CasExpect } from '../../src/verify/index.ts'
import { hash32 } from './simulator.ts'

export interface Command {
  readonly clientId: number
  readonly seq: number
  readonly op: 'put' | 'delete' | 'cas'
  readonly key: string
  readonly value?: string
  readonly expect?: CasExpect
}

export type CommandResult =
  | { readonly op: 'put'; readonly version: number }
  | { readonly op: 'delete' }
  | { readonly op: 'cas'; readonly swapped: true; readonly version: number }
  | { readonly op: 'cas'; readonly swapped: false; readonly currentVersion: number }
  /** An older command of a client that has moved on (it had given up on it): not applied. */
  | { readonly op: 'stale' }

export interface Versioned {
  readonly value: string
  readonly version: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function encodeCommand(c: Command): Uint8Array {
  return encoder.encode(JSON.stringify(c))
}

export function decodeCommand(data: Uint8Array): Command {
  const c = JSON.parse(decoder.decode(data)) as Command
  assert(
    typeof c.clientId === 'number' && typeof c.seq === 'number' && typeof c.key === 'string',
    'bad command',
  )
  return c
}

export class KvStateMachine {
  private data = new Map<string, Versioned>()
  private dedup = new Map<number, { seq: number; result: CommandResult }>()
  /**
   * XOR of one hash per key and one per dedup row: order-independent, so it is kept up to date
   * in O(1) per write. Invariant: hash === hashOf(data, dedup).
   */
  private hash = 0
  /** Invariant: every entry up to `applied` has been applied, in order. */
  applied = 0 as LogIndex

  get(key: string): Versioned | null {
    return this.data.get(key) ?? null
  }

  /**
   * Applies a committed normal entry. Returns the command's result, or null for a leader's no-op.
   * A duplicate of a client's last command returns the remembered result without applying it again.
   */
  apply(
    index: LogIndex,
    data: Uint8Array,
  ): { command: Command; result: CommandResult; duplicate: boolean } | null {
    assert(index === this.applied + 1, `apply ${index} after ${this.applied}`)
    this.applied = index
    if (data.byteLength === 0) return null
    const command = decodeCommand(data)
    const seen = this.dedup.get(command.clientId)
    if (seen !== undefined && command.seq <= seen.seq) {
      // A retry of the client's last write: answer what the first application answered. An older
      // one is a write the client gave up on (indeterminate) and moved on from: never applied.
      if (command.seq < seen.seq) return { command, result: { op: 'stale' }, duplicate: true }
      return { command, result: seen.result, duplicate: true }
    }
    const result = this.execute(index, command)
    this.setDedup(command.clientId, { seq: command.seq, result })
    return { command, result, duplicate: false }
  }

  /** Marks a non-KV entry (a conf change) as applied. */
  skip(index: LogIndex): void {
    assert(index === this.applied + 1, `skip ${index} after ${this.applied}`)
    this.applied = index
  }

  private execute(index: LogIndex, c: Command): CommandResult {
    const current = this.data.get(c.key)
    switch (c.op) {
      case 'put':
        assert(c.value !== undefined)
        this.setData(c.key, { value: c.value, version: index })
        return { op: 'put', version: index }
      case 'delete':
        this.setData(c.key, null)
        return { op: 'delete' }
      case 'cas': {
        assert(c.value !== undefined && c.expect !== undefined)
        const version = current?.version ?? 0
        const holds =
          'version' in c.expect ? c.expect.version === version : c.expect.value === (current?.value ?? null)
        if (!holds) return { op: 'cas', swapped: false, currentVersion: version }
        this.setData(c.key, { value: c.value, version: index })
        return { op: 'cas', swapped: true, version: index }
      }
    }
  }

  private setData(key: string, v: Versioned | null): void {
    const old = this.data.get(key)
    if (old !== undefined) this.hash ^= dataHash(key, old)
    if (v === null) this.data.delete(key)
    else {
      this.data.set(key, v)
      this.hash ^= dataHash(key, v)
    }
  }

  private setDedup(clientId: number, row: { seq: number; result: CommandResult }): void {
    const old = this.dedup.get(clientId)
    if (old !== undefined) this.hash ^= dedupHash(clientId, old)
    this.dedup.set(clientId, row)
    this.hash ^= dedupHash(clientId, row)
  }

  /** The whole state (data and dedup table) as bytes: the snapshot payload. Keys sorted. */
  serialize(): Uint8Array {
    return encoder.encode(this.canonical())
  }

  private canonical(): string {
    const data = [...this.data.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const dedup = [...this.dedup.entries()].sort(([a], [b]) => a - b)
    return JSON.stringify({ data, dedup })
  }

  /** Replaces the state with a snapshot's (empty bytes = the empty bootstrap state). */
  restore(bytes: Uint8Array, index: LogIndex): void {
    this.data = new Map()
    this.dedup = new Map()
    this.hash = 0
    if (bytes.byteLength > 0) {
      const s = JSON.parse(decoder.decode(bytes)) as {
        data: [string, Versioned][]
        dedup: [number, { seq: number; result: CommandResult }][]
      }
      for (const [k, v] of s.data) this.setData(k, v)
      for (const [c, row] of s.dedup) this.setDedup(c, row)
    }
    this.applied = index
  }

  /** A digest of data and dedup table; equal on replicas that applied the same entries. */
  stateHash(): number {
    return this.hash >>> 0
  }

  /** Recomputes the digest from scratch (tests check it against the incremental one). */
  stateHashSlow(): number {
    let h = 0
    for (const [k, v] of this.data) h ^= dataHash(k, v)
    for (const [c, row] of this.dedup) h ^= dedupHash(c, row)
    return h >>> 0
  }

  keys(): number {
    return this.data.size
  }
}

function dataHash(key: string, v: Versioned): number {
  return hash32(`d|${key}|${v.version}|${v.value}`)
}

function dedupHash(clientId: number, row: { seq: number; result: CommandResult }): number {
  return hash32(`c|${clientId}|${row.seq}|${JSON.stringify(row.result)}`)
}
