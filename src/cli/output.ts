/**
 * kvctl output: a compact table for people (the default on a TTY) and full JSON for programs
 * (the default otherwise). Every answer shows its receipt, so the consistency trade-off made for
 * it is visible: who served it, at which applied index, at which level, how stale.
 */
import { isKvError, type ErrorDetails } from '../common/errors.ts'
import { strictUtf8 } from '../client/codec.ts'
import type { Receipt } from '../client/types.ts'

export type OutputFormat = 'table' | 'json'
export const outputFormats: readonly OutputFormat[] = ['table', 'json']

/** Bytes as text: UTF-8 when valid (and free of control characters other than tab/newline), else base64. */
export interface EncodedBytes {
  readonly text: string
  readonly encoding: 'utf8' | 'base64'
}

// eslint-disable-next-line no-control-regex
const unprintable = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/

export function encodeBytes(bytes: Uint8Array): EncodedBytes {
  const text = strictUtf8(bytes)
  if (text !== undefined && !unprintable.test(text)) return { text, encoding: 'utf8' }
  return {
    text: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
    encoding: 'base64',
  }
}

/**
 * A receipt as JSON, every field, named as the SDK names them (`delivered`: the level the answer
 * was served at). `consistency` repeats it for scripts written before; it goes in a later release.
 */
export function receiptJson(r: Receipt): Record<string, unknown> {
  return {
    nodeId: r.nodeId,
    shardId: r.shardId,
    appliedIndex: r.appliedIndex,
    delivered: r.delivered,
    consistency: r.delivered,
    stalenessMs: r.stalenessMs,
    term: r.term,
  }
}

/** A receipt in one line: `node 1, shard 3, index 42, linearizable, fresh`. */
export function receiptLine(r: Receipt): string {
  const staleness = r.stalenessMs === 0 ? 'fresh' : `up to ${r.stalenessMs} ms stale`
  return `node ${r.nodeId}, shard ${r.shardId}, index ${r.appliedIndex}, ${r.delivered}, ${staleness}`
}

/** Bytes for a table cell: UTF-8 text as is, anything else as `base64:…`. */
export function cellBytes(bytes: Uint8Array, maxChars = Infinity): string {
  const e = encodeBytes(bytes)
  const text = e.encoding === 'utf8' ? e.text.replace(/\n/g, '\\n').replace(/\t/g, '\\t') : `base64:${e.text}`
  return text.length > maxChars ? `${text.slice(0, Math.max(1, maxChars - 1))}…` : text
}

/**
 * Left-aligned columns separated by two spaces; no trailing spaces. The last cell of a row shorter
 * than the others (e.g. `unreachable (...)` in place of a node's details) runs on freely and does
 * not widen its column.
 */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = []
  const cellsMax = Math.max(0, ...rows.map((row) => row.length))
  for (const row of rows) {
    row.forEach((cell, i) => {
      if (i === row.length - 1 && row.length < cellsMax) return
      widths[i] = Math.max(widths[i] ?? 0, cell.length)
    })
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

/** A JSON document, indented by two spaces (jq reads it; people can too). */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2)
}

/** What an error line shows: the stable code, the message, and the details when there are any. */
export interface CliErrorView {
  readonly code: string
  readonly message: string
  readonly details?: ErrorDetails | Record<string, unknown>
}

export function errorView(err: unknown): CliErrorView {
  if (isKvError(err)) {
    const details = err.details !== undefined && Object.keys(err.details).length > 0 ? err.details : undefined
    return { code: err.code, message: err.message, ...(details !== undefined ? { details } : {}) }
  }
  const message = err instanceof Error ? err.message : String(err)
  return { code: 'ERROR', message }
}

/** `Error: CODE: message` (table mode) or `{"error":{...}}` (JSON mode): always exactly one line. */
export function errorText(view: CliErrorView, format: OutputFormat): string {
  if (format === 'json') return JSON.stringify({ error: view })
  const message = view.message.replace(/\s*\n\s*/g, ' ')
  return `Error: ${view.code}: ${message}`
}
