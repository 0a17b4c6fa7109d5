/**
 * The log shell: pino lines with level names and ISO times, the pretty format, and the bindable
 * logger that lets kvd stamp its node id on lines of children made before the id was known.
 */
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { createRootLogger } from '../../../src/common/logger-pino.ts'
import { prettyLine } from '../../../src/common/log-pretty.ts'
import { BindableLogger, type Logger } from '../../../src/common/logger.ts'

/** A destination that keeps every written line. */
function memory(): { stream: NodeJS.WritableStream; lines: string[] } {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(line)
      done()
    },
  })
  return { stream, lines }
}

function jsonRoot(level: 'info' | 'debug' = 'info'): {
  root: Logger
  lines: () => Record<string, unknown>[]
  raw: string[]
} {
  const out = memory()
  const root = createRootLogger({ name: 'kvd', level, destination: out.stream })
  return { root, lines: () => out.lines.map((l) => JSON.parse(l) as Record<string, unknown>), raw: out.lines }
}

describe('common/logger-pino', () => {
  it('writes the level as a name and the time as ISO-8601 UTC', () => {
    const { root, lines } = jsonRoot()
    root.child({ node: 3 }).warn({ shard: 5 }, 'slow fsync')
    const [line] = lines()
    expect(line).toMatchObject({ level: 'warn', name: 'kvd', node: 3, shard: 5, msg: 'slow fsync' })
    expect(line?.['time']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    expect(new Date(String(line?.['time'])).toISOString()).toBe(line?.['time'])
  })

  it('writes one readable line per event in the pretty format', () => {
    const out = memory()
    const root = createRootLogger({ name: 'kvd', level: 'info', format: 'pretty', destination: out.stream })
    root.child({ node: 2 }).child({ shard: 7 }).info({ term: 4 }, 'became leader')
    root.debug({}, 'not written at info')
    expect(out.lines).toHaveLength(1)
    expect(out.lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}\[node=2 shard=7\] became leader term=4$/)
  })
})

describe('common/log-pretty', () => {
  const time = '2025-05-01T12:00:00.123Z'
  it('puts time, level, where, message, then the other fields', () => {
    const line = JSON.stringify({
      level: 'warn',
      time,
      pid: 9,
      name: 'kvd',
      peer: 3,
      node: 1,
      msg: 'peer unreachable',
      address: '10.0.0.3:7001',
      attempts: 4,
      detail: 'connection refused',
      seen: { ms: 12 },
    })
    expect(prettyLine(line, { color: false })).toBe(
      `${time} WARN  [node=1 peer=3] peer unreachable address=10.0.0.3:7001 attempts=4 detail="connection refused" seen={"ms":12}\n`,
    )
  })

  it('shows an error by its type and message and keeps one event on one line', () => {
    const err = { type: 'KvError', message: 'disk full\nno space', stack: 'KvError: ...\n    at x' }
    const out = prettyLine(JSON.stringify({ level: 'error', time, msg: 'write failed', err }), {
      color: false,
    })
    expect(out).toBe(`${time} ERROR write failed err="KvError: disk full\\nno space"\n`)
    expect(out.indexOf('\n')).toBe(out.length - 1)
  })

  it('colours only the level, and passes a line that is not a JSON object through', () => {
    const coloured = prettyLine(JSON.stringify({ level: 'error', time, msg: 'x' }), { color: true })
    expect(coloured).toBe(`${time} \u001b[31mERROR\u001b[39m x\n`)
    expect(prettyLine('not json', { color: false })).toBe('not json\n')
    expect(prettyLine('[1,2]\n', { color: false })).toBe('[1,2]\n')
  })
})

describe('common/logger BindableLogger', () => {
  it('stamps the bound fields on its own lines and on children made before and after bind', () => {
    const { root, lines } = jsonRoot()
    const log = new BindableLogger(root)
    const early = log.child({ component: 'rocksdb' })
    const grandchild = early.child({ shard: 4 })
    early.info({}, 'before')
    log.bind({ node: 7 })
    const late = log.child({ component: 'host' })
    early.info({}, 'after')
    grandchild.info({}, 'deep')
    late.info({}, 'late')
    log.info({}, 'self')
    const got = lines().map((l) => ({
      msg: l['msg'],
      node: l['node'],
      component: l['component'],
      shard: l['shard'],
    }))
    expect(got).toEqual([
      { msg: 'before', node: undefined, component: 'rocksdb', shard: undefined },
      { msg: 'after', node: 7, component: 'rocksdb', shard: undefined },
      { msg: 'deep', node: 7, component: 'rocksdb', shard: 4 },
      { msg: 'late', node: 7, component: 'host', shard: undefined },
      { msg: 'self', node: 7, component: undefined, shard: undefined },
    ])
  })

  it('replaces, not stacks, the bindings on a second bind, and keeps the level of its parent', () => {
    const { root, lines, raw } = jsonRoot('info')
    const log = new BindableLogger(root, { node: 1 })
    const child = log.child({ component: 'mover' })
    child.info({}, 'one')
    log.bind({ node: 2 })
    child.info({}, 'two')
    child.debug({}, 'hidden')
    expect(child.isLevelEnabled('debug')).toBe(false)
    expect(child.isLevelEnabled('info')).toBe(true)
    expect(lines().map((l) => [l['msg'], l['node']])).toEqual([
      ['one', 1],
      ['two', 2],
    ])
    // pino writes a key once per child that binds it; a replaced binding must not leave the old one.
    expect(raw.map((l) => l.match(/"node":/g)?.length)).toEqual([1, 1])
  })
})
