/**
 * A small datadriven runner (etcd-io/raft testdata/, cockroachdb/datadriven): a script is a
 * sequence of blocks,
 *
 *   # comment lines and blank lines are kept as they are
 *   command arg key=value key=(1,2,3)
 *   ----
 *   expected output (no blank lines)
 *
 * `rewrite` regenerates every expected output from the actual one (REWRITE=1).
 */

export interface Directive {
  readonly line: number
  readonly name: string
  readonly args: readonly string[]
  readonly kv: ReadonlyMap<string, string>
  readonly raw: string
}

interface Block {
  readonly preamble: string[]
  readonly command: string
  readonly line: number
  readonly expected: string
}

export function parseDirective(raw: string, line: number): Directive {
  const tokens = raw.trim().match(/(?:[^\s(]+\([^)]*\)|\S)+/g) ?? []
  const [name, ...rest] = tokens
  if (name === undefined) throw new Error(`line ${line}: empty command`)
  const args: string[] = []
  const kv = new Map<string, string>()
  for (const t of rest) {
    const eq = t.indexOf('=')
    if (eq > 0) kv.set(t.slice(0, eq), t.slice(eq + 1))
    else args.push(t)
  }
  return { line, name, args, kv, raw: raw.trim() }
}

function parseBlocks(text: string): { blocks: Block[]; trailer: string[] } {
  const lines = text.split('\n')
  const blocks: Block[] = []
  let preamble: string[] = []
  let i = 0
  while (i < lines.length) {
    const l = lines[i]!
    if (l.trim() === '' || l.startsWith('#')) {
      preamble.push(l)
      i++
      continue
    }
    const command = l
    const line = i + 1
    i++
    if (lines[i] !== '----') throw new Error(`line ${line}: expected ---- after command`)
    i++
    const out: string[] = []
    while (i < lines.length && lines[i]!.trim() !== '') out.push(lines[i++]!)
    blocks.push({ preamble, command, line, expected: out.join('\n') })
    preamble = []
  }
  return { blocks, trailer: preamble }
}

/**
 * Runs every block through `run` and returns the script with actual outputs filled in, plus
 * the first mismatch, if any.
 */
export function runScript(
  text: string,
  run: (d: Directive) => string,
): { actual: string; mismatch: { line: number; command: string; expected: string; actual: string } | null } {
  const { blocks, trailer } = parseBlocks(text)
  const out: string[] = []
  let mismatch: { line: number; command: string; expected: string; actual: string } | null = null
  for (const b of blocks) {
    out.push(...b.preamble)
    const actual = run(parseDirective(b.command, b.line))
      .split('\n')
      .filter((l) => l.trim() !== '')
      .join('\n')
    out.push(b.command, '----', actual === '' ? 'ok' : actual)
    const got = actual === '' ? 'ok' : actual
    if (mismatch === null && got !== b.expected) {
      mismatch = { line: b.line, command: b.command, expected: b.expected, actual: got }
    }
  }
  let result = out.join('\n')
  if (trailer.length > 0) result += '\n' + trailer.join('\n')
  if (!result.endsWith('\n')) result += '\n'
  return { actual: result, mismatch }
}
