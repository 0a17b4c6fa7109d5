/**
 * Checks a rendered Kubernetes object against its API's schema: the OpenAPI schemas of Kubernetes
 * (kubernetes-models, v1.27 API) and of the CRDs the chart uses (cert-manager Certificate,
 * Prometheus Operator ServiceMonitor), compiled into validators by those packages.
 *
 * Those validators check the type, enum and required fields of every field they know, but let
 * any field they do not know through (the schemas do not close their objects), and an unknown
 * field is exactly what a typo in a template makes (`readinesProbe:`), which the API server then
 * drops or refuses. So the object is validated through a Proxy that records which fields the
 * validator reads: a compiled validator reads every field its schema names, so a field of the
 * object it never read is unknown. An object whose keys the validator enumerates (a map such as
 * labels or resource limits) is a map: its keys are all known.
 */
import * as core from 'kubernetes-models/v1'
import * as apps from 'kubernetes-models/apps/v1'
import * as batch from 'kubernetes-models/batch/v1'
import * as policy from 'kubernetes-models/policy/v1'
import * as certManager from '@kubernetes-models/cert-manager/cert-manager.io/v1'
import * as monitoring from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1'

/** One rendered object, as parsed from helm's output. */
export type KubeObject = {
  readonly apiVersion: string
  readonly kind: string
  readonly metadata: { readonly name: string; readonly [k: string]: unknown }
  readonly [k: string]: unknown
}

type Validating = { prototype: { validate(): void } }
const groups: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  v1: core,
  'apps/v1': apps,
  'batch/v1': batch,
  'policy/v1': policy,
  'cert-manager.io/v1': certManager,
  'monitoring.coreos.com/v1': monitoring,
}

/** Every API version the chart may render (helm template --api-versions for the CRDs). */
export const crdApiVersions = ['cert-manager.io/v1', 'monitoring.coreos.com/v1'] as const

function modelOf(obj: KubeObject): Validating {
  const model = groups[obj.apiVersion]?.[obj.kind]
  if (typeof model !== 'function') throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`)
  return model as unknown as Validating
}

/** The problems of one object: schema violations, then unknown fields (by JSON path). */
export function problemsOf(obj: KubeObject): string[] {
  const reads = new Map<object, Set<PropertyKey>>()
  const enumerated = new Set<object>()
  const proxies = new WeakMap<object, object>()
  const wrap = (target: unknown): unknown => {
    if (typeof target !== 'object' || target === null) return target
    const known = proxies.get(target)
    if (known !== undefined) return known
    reads.set(target, new Set())
    const proxy = new Proxy(target, {
      get(t, key, receiver) {
        reads.get(t)!.add(key)
        return wrap(Reflect.get(t, key, receiver))
      },
      has(t, key) {
        reads.get(t)!.add(key)
        return Reflect.has(t, key)
      },
      ownKeys(t) {
        enumerated.add(t)
        return Reflect.ownKeys(t)
      },
    })
    proxies.set(target, proxy)
    return proxy
  }
  const problems: string[] = []
  try {
    modelOf(obj).prototype.validate.call(wrap(obj))
  } catch (err) {
    problems.push(`schema: ${(err as Error).message}`)
  }
  const walk = (value: unknown, path: string): void => {
    if (typeof value !== 'object' || value === null) return
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, `${path}[${i}]`))
      return
    }
    const read = reads.get(value)
    const isMap = enumerated.has(value)
    for (const [key, child] of Object.entries(value)) {
      if (read === undefined) continue // never reached: inside a field already reported
      if (!isMap && !read.has(key)) {
        problems.push(`unknown field ${path}.${key}`)
        continue
      }
      walk(child, `${path}.${key}`)
    }
  }
  walk(obj, '')
  return problems
}
