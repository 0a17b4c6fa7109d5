/**
 * `--log-format pretty`: one readable line per log event, for people at a terminal. Takes the line
 * pino would write (JSON, level as a name, ISO time) and returns
 *
 *     2025-05-01T12:00:00.123Z INFO  [node=2 shard=5] became leader term=7
 *
 * time, level, the bindings that say where (node, component, shard, peer) in brackets, the message,
 * then every other field as key=value (strings with spaces or quotes JSON-quoted, objects as JSON,
 * an `err` as its message). `pid`, `name` and `hostname` are left out. A line that is not a JSON
 * object passes through unchanged. Pure: no I/O.
 */

/** The fields shown in brackets before the message, in this order. */
const whereKeys = ['node', 'component', 'shard', 'peer'] as const
const skippedKeys = new Set(['time', 'level', 'msg', 'pid', 'name', 'hostname', ...whereKeys])

const levelColors: Readonly<Record<string, string>> = {
  trace: '\u001b[90m',
  debug: '\u001b[90m',
  info: '\u001b[32m',
  warn: '\u001b[33m',
  error: '\u001b[31m',
  fatal: '\u001b[35m',
}
const colorReset = '\u001b[39m'

export interface PrettyOptions {
  /** Colour the level (for a terminal). */
  readonly color: boolean
}

/** One pino JSON line (with or without its newline) as one readable line, newline included. */
export function prettyLine(line: string, options: PrettyOptions): string {
  let event: unknown
  try {
    event = JSON.parse(line)
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`
  }
  if (typeof event !== 'object' || event === null || Array.isArray(event))
    return line.endsWith('\n') ? line : `${line}\n`
  const e = event as Record<string, unknown>
  const level = typeof e['level'] === 'string' ? e['level'] : String(e['level'] ?? '')
  const levelText = level.toUpperCase().padEnd(5)
  const parts: string[] = []
  if (e['time'] !== undefined) parts.push(String(e['time']))
  parts.push(
    options.color && levelColors[level] !== undefined
      ? `${levelColors[level]}${levelText}${colorReset}`
      : levelText,
  )
  const where = whereKeys.filter((k) => e[k] !== undefined).map((k) => `${k}=${valueText(e[k])}`)
  if (where.length > 0) parts.push(`[${where.join(' ')}]`)
  if (e['msg'] !== undefined) parts.push(String(e['msg']))
  for (const [key, value] of Object.entries(e)) {
    if (skippedKeys.has(key) || value === undefined) continue
    parts.push(`${key}=${key === 'err' ? errorText(value) : valueText(value)}`)
  }
  return `${parts.join(' ').replace(/\n/g, '\\n')}\n`
}

function valueText(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value)
  return JSON.stringify(value)
}

/** An error as pino serializes it (`{ type, message, stack }`): its message, quoted. */
function errorText(value: unknown): string {
  if (typeof value === 'object' && value !== null && 'message' in value) {
    const { type, message } = value as { type?: unknown; message?: unknown }
    const text =
      typeof type === 'string' && type !== 'Error' ? `${type}: ${String(message)}` : String(message)
    return JSON.stringify(text)
  }
  return valueText(value)
}
