/**
 * kvd's log lines as an operator reads them: level names and ISO times by default, one readable
 * line per event with --log-format pretty, and the node id of a joined node (not the default 1)
 * on every line that names a node, its children's included.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { eventually } from '../helpers/cluster-ops.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'

const handles: KvdHandle[] = []
afterAll(async () => {
  await Promise.all(handles.map((h) => h.stop()))
})

const isoTime = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

function jsonLines(logs: string): Record<string, unknown>[] {
  return logs
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe('kvd logs', () => {
  let seed: KvdHandle

  it('writes JSON lines with level names and ISO times by default', async () => {
    seed = await startKvd({ args: ['--shards', '4'] })
    handles.push(seed)
    const lines = jsonLines(seed.logs())
    expect(lines.length).toBeGreaterThan(0)
    for (const line of lines) {
      expect(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).toContain(line['level'])
      expect(line['time']).toMatch(isoTime)
    }
    expect(lines.some((l) => l['node'] === 1)).toBe(true)
  })

  it('stamps a joined node id on its lines and its children lines, never the default 1', async () => {
    const joined = await startKvd({ args: ['--join', seed.address, '--shards', '4'] })
    handles.push(joined)
    await eventually('lines of the joined node', async () => {
      const lines = jsonLines(joined.logs())
      const joinedLine = lines.find((l) => l['msg'] === 'joined the cluster')
      expect(joinedLine).toBeDefined()
      const id = joinedLine?.['nodeId']
      expect(id).not.toBe(1)
      const named = lines.filter((l) => l['node'] !== undefined)
      // Every line that names a node names this one; some come from children (components, shards).
      expect(named.map((l) => l['node'])).toEqual(named.map(() => id))
      expect(named.some((l) => l['component'] !== undefined || l['shard'] !== undefined)).toBe(true)
      return await Promise.resolve(true)
    })
  })

  it('writes one readable line per event with --log-format pretty', async () => {
    const node = await startKvd({ args: ['--shards', '4', '--log-format', 'pretty'] })
    handles.push(node)
    const lines = node
      .logs()
      .split('\n')
      .filter((l) => l !== '')
    expect(lines.length).toBeGreaterThan(0)
    expect(lines.filter((l) => l.startsWith('{'))).toEqual([])
    expect(lines.some((l) => /^\S+Z INFO {2}\[node=1[\] ].* kvd serving/.test(l))).toBe(true)
  })
})
