/**
 * values.schema.json and the chart's own checks (templates/_validate.tpl): every value of
 * values.yaml is described by the schema, every object of the schema is closed (a misspelt key is
 * refused), and bad values are refused by helm with a message that names the value.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { describe, expect, test } from 'vitest'
import { parse } from 'yaml'
import { chartDir, chartUnavailable, render, renderError } from './render.ts'

interface SchemaNode {
  readonly type?: string | readonly string[]
  readonly properties?: Readonly<Record<string, SchemaNode>>
  readonly additionalProperties?: boolean | SchemaNode
  readonly required?: readonly string[]
  readonly description?: string
}

const schema = JSON.parse(readFileSync(resolve(chartDir, 'values.schema.json'), 'utf8')) as SchemaNode
const defaults = parse(readFileSync(resolve(chartDir, 'values.yaml'), 'utf8')) as Record<string, unknown>

describe('values.schema.json', () => {
  test('describes every value of values.yaml, requires each, and closes every object it lists fields of', () => {
    const problems: string[] = []
    const walk = (values: unknown, node: SchemaNode, path: string): void => {
      if (node.properties === undefined) return
      // `additionalProperties: true` marks a Kubernetes type passed through (the API server checks it).
      if (node.additionalProperties === true) return
      if (node.additionalProperties !== false) problems.push(`${path || '(root)'}: not closed`)
      if (typeof values !== 'object' || values === null || Array.isArray(values)) {
        problems.push(`${path}: values.yaml has no object here`)
        return
      }
      const given = Object.keys(values)
      for (const key of given)
        if (node.properties[key] === undefined) problems.push(`${path}${key}: not in the schema`)
      for (const key of Object.keys(node.properties)) {
        if (!given.includes(key)) problems.push(`${path}${key}: no default in values.yaml`)
        if (!(node.required ?? []).includes(key)) problems.push(`${path}${key}: not required`)
      }
      for (const key of given)
        walk((values as Record<string, unknown>)[key], node.properties[key] ?? {}, `${path}${key}.`)
    }
    walk(defaults, schema, '')
    expect(problems).toEqual([])
  })
})

describe.skipIf(chartUnavailable !== undefined)('bad values are refused with a message naming them', () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['too few pods', { replicaCount: 2 }, 'replicaCount: Must be greater than or equal to 3'],
    ['a misspelt key', { replicaCont: 4 }, 'Additional property replicaCont is not allowed'],
    [
      'a misspelt nested key',
      { persistence: { enabld: false } },
      'persistence: Additional property enabld is not allowed',
    ],
    [
      'an image tag written as a number',
      { image: { tag: 1.1 } },
      'image.tag: Invalid type. Expected: string, given: number',
    ],
    [
      'a cluster name kvd refuses',
      { ringkv: { clusterName: 'Prod_1' } },
      'ringkv.clusterName: Does not match pattern',
    ],
    [
      'an unknown log level',
      { ringkv: { logLevel: 'verbose' } },
      'ringkv.logLevel: ringkv.logLevel must be one of the following',
    ],
    ['a port out of range', { ports: { peer: 70000 } }, 'ports.peer: Must be less than or equal to 65535'],
    [
      'two bootstrap zones',
      { zone: { bootstrap: ['a', 'b'] } },
      'zone.bootstrap: Array must have at least 3 items',
    ],
    ['a zone kvd refuses', { zone: { value: 'eu west' } }, 'zone.value: Must validate at least one schema'],
    [
      'a writable root filesystem',
      { securityContext: { readOnlyRootFilesystem: false } },
      'securityContext.readOnlyRootFilesystem does not match: true',
    ],
    [
      'running as root',
      { podSecurityContext: { runAsNonRoot: false } },
      'podSecurityContext.runAsNonRoot does not match: true',
    ],
    [
      'a volume size that is no quantity',
      { persistence: { size: '10 GB' } },
      'persistence.size: Does not match pattern',
    ],
    [
      'a spread policy Kubernetes does not know',
      { topologySpread: { host: { whenUnsatisfiable: 'Never' } } },
      'topologySpread.host.whenUnsatisfiable: topologySpread.host.whenUnsatisfiable must be one of the following',
    ],
    [
      'TLS from secrets without the secrets',
      { tls: { enabled: true, source: 'secret' } },
      'tls.secret.nodeSecretName: String length must be greater than or equal to 1',
    ],
    [
      'TLS from secrets without the admin secret',
      { tls: { enabled: true, secret: { nodeSecretName: 'n' } } },
      'tls.secret.adminSecretName: String length must be greater than or equal to 1',
    ],
    [
      'cert-manager without an issuer',
      { tls: { enabled: true, source: 'certManager' } },
      'tls.certManager.issuerRef.name: String length must be greater than or equal to 1',
    ],
    [
      'client certificate auth without TLS',
      { tls: { clientCertAuth: true } },
      'tls.clientCertAuth does not match: false',
    ],
    [
      'a chart flag in extraArgs',
      { ringkv: { extraArgs: ['--join=10.0.0.1:7001'] } },
      'ringkv.extraArgs: --join is set by the chart itself',
    ],
    [
      'a chart label in podLabels',
      { podLabels: { 'app.kubernetes.io/instance': 'x' } },
      "podLabels: app.kubernetes.io/instance is one of the chart's own labels",
    ],
    [
      'bootstrap zones with joiners in none',
      { zone: { bootstrap: ['a', 'b', 'c'] } },
      'zone.bootstrap: the joining pods need a zone too',
    ],
    [
      'more shard replicas than bootstrap pods',
      { ringkv: { shardReplicas: 5 } },
      'ringkv.shardReplicas: 5 is more than the 3 bootstrap pods',
    ],
  ]
  for (const [what, set, message] of cases)
    test(what, () => {
      expect(renderError({ set: Object.fromEntries(flatten(set)) })).toContain(message)
    })

  test('the values of each case are otherwise good: the defaults with one fix render', () => {
    expect(render({ set: { replicaCount: 4 } }).length).toBeGreaterThan(0)
  })
})

/** {a: {b: 1}} -> [['a.b', 1]]: --set-json replaces only the leaves a case names (maps whole). */
function flatten(value: Record<string, unknown>, prefix = ''): [string, unknown][] {
  return Object.entries(value).flatMap(([k, v]) =>
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.keys(v).every((key) => !/[./]/.test(key))
      ? flatten(v as Record<string, unknown>, `${prefix}${k}.`)
      : [[`${prefix}${k}`, v] as [string, unknown]],
  )
}
