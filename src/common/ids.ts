/**
 * Branded integer kinds (STYLE.md 7.3): a term, a log index, a node id and a shard id are all
 * numbers, and the type system keeps them apart. Values that arrive from the wire go through the
 * checked constructors; values made inside trusted code may use the unchecked casts.
 */
import { assert } from './assert.ts'

export type Term = number & { readonly __brand: 'Term' }
export type LogIndex = number & { readonly __brand: 'LogIndex' }
export type NodeId = number & { readonly __brand: 'NodeId' }
export type ShardId = number & { readonly __brand: 'ShardId' }

export const Term = (n: number): Term => {
  assert(Number.isSafeInteger(n) && n >= 0, `bad term ${n}`)
  return n as Term
}
export const LogIndex = (n: number): LogIndex => {
  assert(Number.isSafeInteger(n) && n >= 0, `bad log index ${n}`)
  return n as LogIndex
}
export const NodeId = (n: number): NodeId => {
  assert(Number.isSafeInteger(n) && n > 0, `bad node id ${n}`)
  return n as NodeId
}
export const ShardId = (n: number): ShardId => {
  assert(Number.isSafeInteger(n) && n >= 0, `bad shard id ${n}`)
  return n as ShardId
}

/** True when `n` can be a uint64 from the wire carried as a safe JavaScript number. */
export function isSafeUint(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}
