import { describe, expect, it } from 'vitest'
import { limitEnvName, loadConfig, type ConfigFlags, type KvdConfig } from '../../../src/common/config.ts'
import { limits } from '../../../src/common/limits.ts'

function load(
  flags: ConfigFlags,
  env: Record<string, string> = {},
  files: Record<string, string> = {},
): KvdConfig {
  return loadConfig({
    flags,
    env,
    readFile: (path) => {
      const text = files[path]
      if (text === undefined) throw Object.assign(new Error('nope'), { code: 'ENOENT' })
      return text
    },
  })
}

function failure(fn: () => unknown): { code: string; field: string | undefined; message: string } {
  try {
    fn()
  } catch (err) {
    const e = err as { name: string; code: string; message: string; details?: { field?: string } }
    expect(e.name).toBe('KvError')
    expect(e.message).not.toContain('\n')
    return { code: e.code, field: e.details?.field, message: e.message }
  }
  throw new Error('did not throw')
}

describe('common/config', () => {
  it('has defaults for everything but the data dir', () => {
    const c = load({ data: '/d' })
    expect(c).toMatchObject({
      dataDir: '/d',
      listen: { host: '127.0.0.1', port: 7001 },
      httpListen: { host: '127.0.0.1', port: 8001 },
      nodeId: 1,
      logLevel: 'info',
      join: [],
      limitOverrides: {},
      configFile: undefined,
    })
    expect(c.limits).toEqual(limits)
    expect(failure(() => load({}))).toMatchObject({ code: 'INVALID_ARGUMENT', field: 'dataDir' })
  })

  it('--dead-after: minutes by default, durations with units from flag, env and file; bad ones refused', () => {
    expect(load({ data: '/d' }).deadAfterMs).toBe(5 * 60_000)
    expect(load({ data: '/d', deadAfter: '3s' }).deadAfterMs).toBe(3000)
    expect(load({ data: '/d', deadAfter: '1500ms' }).deadAfterMs).toBe(1500)
    expect(load({ data: '/d', deadAfter: '2m' }).deadAfterMs).toBe(120_000)
    expect(load({ data: '/d', deadAfter: '90' }).deadAfterMs).toBe(90_000)
    expect(load({ data: '/d' }, { RINGKV_DEAD_AFTER: '10m' }).deadAfterMs).toBe(600_000)
    expect(load({ data: '/d', config: 'c.json' }, {}, { 'c.json': '{"deadAfter": "1h"}' }).deadAfterMs).toBe(
      3_600_000,
    )
    for (const bad of ['5 minutes', '-1s', '500ms', '1e3', '', '8d'])
      expect(failure(() => load({ data: '/d', deadAfter: bad })).field).toBe('deadAfter')
  })

  it('--auto-rebalance: true by default; false from flag, env or file', () => {
    expect(load({ data: '/d' }).autoRebalance).toBe(true)
    expect(load({ data: '/d', autoRebalance: 'false' }).autoRebalance).toBe(false)
    expect(load({ data: '/d' }, { RINGKV_AUTO_REBALANCE: '0' }).autoRebalance).toBe(false)
    expect(
      load({ data: '/d', config: 'c.json' }, {}, { 'c.json': '{"autoRebalance": false}' }).autoRebalance,
    ).toBe(false)
    expect(failure(() => load({ data: '/d', autoRebalance: 'maybe' })).field).toBe('autoRebalance')
  })

  it('derives the HTTP port from the gRPC port (+1000), or 0 from 0', () => {
    expect(load({ data: '/d', listen: '0.0.0.0:7100' }).httpListen).toEqual({ host: '0.0.0.0', port: 8100 })
    expect(load({ data: '/d', listen: '127.0.0.1:0' }).httpListen).toEqual({ host: '127.0.0.1', port: 0 })
    expect(load({ data: '/d', listen: '127.0.0.1:0', http: '127.0.0.1:0' }).httpListen.port).toBe(0)
    expect(failure(() => load({ data: '/d', listen: '127.0.0.1:65000' })).field).toBe('httpListen')
    expect(failure(() => load({ data: '/d', listen: '127.0.0.1:7001', http: '127.0.0.1:7001' })).field).toBe(
      'httpListen',
    )
  })

  it('parses host:port forms and refuses bad ones', () => {
    expect(load({ data: '/d', listen: '[::1]:7001' }).listen).toEqual({ host: '::1', port: 7001 })
    expect(load({ data: '/d', listen: 'db-1.example:7001' }).listen.host).toBe('db-1.example')
    for (const bad of ['7001', 'host:', ':7001', 'h:70000', 'h:-1', 'h:1e3', 'a b:1', ''])
      expect(failure(() => load({ data: '/d', listen: bad }))).toMatchObject({
        code: 'INVALID_ARGUMENT',
        field: 'listen',
      })
  })

  it('takes flags over env over file over defaults', () => {
    const files = {
      '/c.json': JSON.stringify({ dataDir: '/file', nodeId: 3, logLevel: 'warn', listen: '127.0.0.1:7003' }),
    }
    const fileOnly = load({ config: '/c.json' }, {}, files)
    expect(fileOnly).toMatchObject({ dataDir: '/file', nodeId: 3, logLevel: 'warn', configFile: '/c.json' })
    const envOverFile = load({ config: '/c.json' }, { RINGKV_NODE_ID: '4', RINGKV_DATA_DIR: '/env' }, files)
    expect(envOverFile).toMatchObject({ dataDir: '/env', nodeId: 4, logLevel: 'warn' })
    const flagOverEnv = load({ config: '/c.json', nodeId: '5' }, { RINGKV_NODE_ID: '4' }, files)
    expect(flagOverEnv.nodeId).toBe(5)
    // RINGKV_CONFIG names the file when --config does not.
    expect(load({}, { RINGKV_CONFIG: '/c.json' }, files).dataDir).toBe('/file')
  })

  it('validates node id, log level and join', () => {
    for (const bad of ['0', '-1', '1.5', 'abc', '9007199254740993', '0x10'])
      expect(failure(() => load({ data: '/d', nodeId: bad })).field).toBe('nodeId')
    expect(load({ data: '/d', logLevel: 'DEBUG' }).logLevel).toBe('debug')
    expect(failure(() => load({ data: '/d', logLevel: 'loud' })).field).toBe('logLevel')
    expect(load({ data: '/d' }).logFormat).toBe('json')
    expect(load({ data: '/d', logFormat: 'Pretty' }).logFormat).toBe('pretty')
    expect(load({ data: '/d' }, { RINGKV_LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty')
    expect(failure(() => load({ data: '/d', logFormat: 'xml' }))).toMatchObject({ field: 'logFormat' })
    expect(failure(() => load({ data: '/d', logFormat: 'xml' })).message).toContain('json, pretty')
    expect(load({ data: '/d', join: '10.0.0.1:7001, 10.0.0.2:7001' }).join).toEqual([
      '10.0.0.1:7001',
      '10.0.0.2:7001',
    ])
    expect(failure(() => load({ data: '/d', join: 'nope' })).field).toBe('join')
  })

  it('takes --restore from flag, env or file, and refuses it with --join', () => {
    expect(load({ data: '/d' }).restoreDir).toBeUndefined()
    expect(load({ data: '/d', restore: '/backups/b1' }).restoreDir).toBe('/backups/b1')
    expect(load({ data: '/d' }, { RINGKV_RESTORE: '/backups/b2' }).restoreDir).toBe('/backups/b2')
    expect(load({ data: '/d', config: 'c.json' }, {}, { 'c.json': '{"restoreDir":"/b3"}' }).restoreDir).toBe(
      '/b3',
    )
    expect(failure(() => load({ data: '/d', restore: '/b', join: '10.0.0.1:7001' }))).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'restoreDir',
    })
  })

  it('reports an unreadable, non-JSON or unknown-key file clearly', () => {
    expect(failure(() => load({ config: '/missing.json' }))).toMatchObject({ field: 'config' })
    expect(failure(() => load({ config: '/missing.json' })).message).toContain('/missing.json')
    expect(failure(() => load({ config: '/bad.json' }, {}, { '/bad.json': '{nope' })).field).toBe('config')
    expect(failure(() => load({ config: '/arr.json' }, {}, { '/arr.json': '[]' })).field).toBe('config')
    expect(failure(() => load({ config: '/k.json' }, {}, { '/k.json': '{"dataDri":"/x"}' })).field).toBe(
      'dataDri',
    )
    expect(failure(() => load({ config: '/t.json' }, {}, { '/t.json': '{"dataDir":5}' })).field).toBe(
      'dataDir',
    )
  })

  it('tightens limits from file, env and --limit, in that precedence', () => {
    const files = {
      '/c.json': JSON.stringify({ dataDir: '/d', limits: { valueBytesMax: 1000, keyBytesMax: 100 } }),
    }
    expect(limitEnvName('valueBytesMax')).toBe('RINGKV_LIMIT_VALUE_BYTES_MAX')
    const c = load(
      { config: '/c.json', limit: ['keyBytesMax=50'] },
      { RINGKV_LIMIT_VALUE_BYTES_MAX: '2000', RINGKV_LIMIT_KEY_BYTES_MAX: '60' },
      files,
    )
    expect(c.limitOverrides).toEqual({ valueBytesMax: 2000, keyBytesMax: 50 })
    expect(c.limits.valueBytesMax).toBe(2000)
    expect(c.limits.keyBytesMax).toBe(50)
    expect(c.limits.scanLimitMax).toBe(limits.scanLimitMax)
  })

  it('refuses to loosen a limit, an unknown limit, a non-integer and a broken relationship', () => {
    expect(
      failure(() => load({ data: '/d', limit: [`valueBytesMax=${limits.valueBytesMax + 1}`] })),
    ).toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'limits.valueBytesMax',
    })
    expect(failure(() => load({ data: '/d', limit: ['fooMax=1'] })).field).toBe('limits.fooMax')
    expect(failure(() => load({ data: '/d', limit: ['keyBytesMax=0'] })).field).toBe('limits.keyBytesMax')
    expect(failure(() => load({ data: '/d', limit: ['keyBytesMax=1.5'] })).field).toBe('limits.keyBytesMax')
    expect(failure(() => load({ data: '/d', limit: ['keyBytesMax'] })).field).toBe('limits')
    expect(failure(() => load({ data: '/d' }, { RINGKV_LIMIT_SCAN_LIMIT_MAX: 'many' })).field).toBe(
      'limits.scanLimitMax',
    )
    // A frame smaller than one append would break limits.ts's relationships.
    expect(failure(() => load({ data: '/d', limit: ['grpcMessageBytesMax=1024'] })).field).toBe(
      'limits.grpcMessageBytesMax',
    )
    expect(failure(() => load({ data: '/d', limit: ['scanLimitMax=10'] })).field).toBe('limits.scanLimitMax')
    expect(failure(() => load({ data: '/d', limit: ['exportChunkBytes=10'] })).field).toBe(
      'limits.exportChunkBytes',
    )
  })
})
