/** The few shapes of rendered objects the chart tests read (a loose view; kube-objects.ts validates). */
import type { KubeObject } from './kube-objects.ts'

export interface EnvVar {
  readonly name: string
  readonly value?: unknown
  readonly valueFrom?: { readonly fieldRef?: { readonly fieldPath: string } }
}
export interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number }
}
export interface Container {
  readonly name: string
  readonly image: string
  readonly command?: readonly string[]
  readonly args?: readonly string[]
  readonly env?: readonly EnvVar[]
  readonly ports?: readonly { readonly name: string; readonly containerPort: number }[]
  readonly startupProbe?: Probe
  readonly livenessProbe?: Probe
  readonly readinessProbe?: Probe
  readonly resources?: {
    readonly requests?: Record<string, unknown>
    readonly limits?: Record<string, unknown>
  }
  readonly securityContext?: Record<string, unknown> & {
    readonly capabilities?: { readonly drop?: readonly string[] }
  }
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string }[]
}
export interface PodSpec {
  readonly containers: readonly Container[]
  readonly initContainers?: readonly Container[]
  readonly securityContext?: Record<string, unknown>
  readonly volumes?: readonly {
    readonly name: string
    readonly secret?: { readonly secretName: string; readonly defaultMode?: number }
    readonly emptyDir?: Record<string, unknown>
  }[]
  readonly topologySpreadConstraints?: readonly {
    readonly topologyKey: string
    readonly labelSelector: { readonly matchLabels: Record<string, string> }
  }[]
}
export interface PodTemplate {
  readonly metadata: {
    readonly labels: Record<string, string>
    readonly annotations?: Record<string, unknown>
  }
  readonly spec: PodSpec
}

export function podTemplateOf(obj: KubeObject): PodTemplate {
  const spec = obj['spec'] as Record<string, unknown>
  switch (obj.kind) {
    case 'StatefulSet':
    case 'Job':
      return spec['template'] as PodTemplate
    case 'Pod':
      return {
        metadata: obj.metadata as unknown as PodTemplate['metadata'],
        spec: spec as unknown as PodSpec,
      }
    default:
      throw new Error(`${obj.kind} has no pod template`)
  }
}

export const hasPods = (obj: KubeObject): boolean => ['StatefulSet', 'Job', 'Pod'].includes(obj.kind)

export function envOf(container: Container): Map<string, EnvVar> {
  return new Map((container.env ?? []).map((e) => [e.name, e]))
}

export function envValue(container: Container, name: string): string {
  const value = envOf(container).get(name)?.value
  if (typeof value !== 'string') throw new Error(`${container.name}: env ${name} is not a string value`)
  return value
}

/** True when every label of `selector` is on `labels` with the same value. */
export function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}
