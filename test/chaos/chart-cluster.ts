/**
 * The Helm chart's pods, run as containers: what Kubernetes would start from the rendered
 * StatefulSet, started by the docker engine instead, so the chart's own wiring (its start script,
 * bootstrap, join, advertise, probes, security context, mounts) runs for real.
 *
 * For pod `<sts>-<ordinal>` a container is started from the rendered kvd container spec:
 * - command and args as rendered; the environment with the downward-API values resolved as the
 *   kubelet would (POD_NAME, pod labels);
 * - named and aliased on the network as the pod's stable DNS name by Kubernetes' rule,
 *   `<pod>.<spec.serviceName>.<namespace>.svc.<cluster domain>` (not the chart's own idea of it),
 *   with the pod name as its hostname, and a fixed address this host dials; every pod also has
 *   the client Service's DNS name as an alias (docker's DNS answers with each pod in turn);
 * - `--user runAsUser:runAsGroup`, `--read-only` (readOnlyRootFilesystem), `--cap-drop` and
 *   no-new-privileges as the pod's and the container's securityContext say;
 * - each volumeMount: `data` a docker volume (the PersistentVolumeClaim, kept when the pod goes,
 *   as the chart's retention policy keeps it), owned by runAsUser:fsGroup as fsGroup would make it
 *   writable; an emptyDir a tmpfs.
 * Probes are read from the spec (path, and port by name) and asked from this host.
 *
 * Everything carries the chaos label with the run id (docker.ts removeLabelled cleans up).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { only, render, resolveContainer, type PodContainer, type RenderInput } from '../chart/render.ts'
import { podTemplateOf, type PodTemplate, type Probe } from '../chart/shapes.ts'
import {
  chaosImage,
  chaosLabel,
  createNetwork,
  docker,
  removeLabelled,
  run,
  type ChaosNetwork,
} from './docker.ts'

export type ProbeKind = 'startup' | 'liveness' | 'readiness'

export interface ChartPod {
  readonly ordinal: number
  /** The pod's name, `<sts>-<ordinal>` (its hostname too). */
  readonly name: string
  /** Its stable DNS name: the container's name and network alias. */
  readonly dnsName: string
  readonly ip: string
  /** The kvd container as the chart renders it for this pod. */
  readonly spec: PodContainer
}

export interface ProbeAnswer {
  readonly status: number
  readonly body: string
}

export interface ChartClusterOptions {
  /** What the chart is rendered with (values, --set-json). */
  readonly render: RenderInput
  readonly runId: string
  readonly seed: number
  /** Where pod logs go. */
  readonly dir: string
  readonly clusterDomain?: string
}

const probeCallMs = 2_000

export class ChartCluster {
  private readonly template: PodTemplate
  private readonly statefulSet: string
  private readonly serviceName: string
  private readonly namespace: string
  private readonly pods = new Map<number, ChartPod>()
  /** The client Service's DNS name: a network alias of every pod (docker answers with each in turn). */
  readonly serviceDnsName: string

  private constructor(
    readonly options: ChartClusterOptions,
    readonly network: ChaosNetwork,
  ) {
    const objects = render(options.render)
    const sts = only(objects, 'StatefulSet')
    this.template = podTemplateOf(sts)
    this.statefulSet = sts.metadata.name
    this.serviceName = String((sts['spec'] as Record<string, unknown>)['serviceName'])
    this.namespace = String(sts.metadata['namespace'] ?? 'default')
    const client = objects.filter((o) => o.kind === 'Service' && o.metadata.name !== this.serviceName)
    if (client.length !== 1) throw new Error(`expected one client Service, found ${client.length}`)
    this.serviceDnsName = this.dnsName(client[0]!.metadata.name)
  }

  /** `<name>.<namespace>.svc.<cluster domain>`. */
  private dnsName(name: string): string {
    return `${name}.${this.namespace}.svc.${this.options.clusterDomain ?? 'cluster.local'}`
  }

  static async create(options: ChartClusterOptions): Promise<ChartCluster> {
    const network = await createNetwork(`ringkv-${options.runId}`, options.runId, options.seed)
    try {
      return new ChartCluster(options, network)
    } catch (err) {
      await removeLabelled(options.runId).catch(() => undefined)
      throw err
    }
  }

  /** The pod of `ordinal` (its spec rendered, not necessarily started). */
  pod(ordinal: number): ChartPod {
    let pod = this.pods.get(ordinal)
    if (pod === undefined) {
      const name = `${this.statefulSet}-${ordinal}`
      pod = {
        ordinal,
        name,
        dnsName: `${name}.${this.dnsName(this.serviceName)}`,
        ip: `${this.network.prefix}${20 + ordinal}`,
        spec: resolveContainer(this.template, 'kvd', name),
      }
      this.pods.set(ordinal, pod)
    }
    return pod
  }

  /** Creates the pod's volume (once) and starts its container. */
  async start(ordinal: number): Promise<ChartPod> {
    const pod = this.pod(ordinal)
    const { container } = pod.spec
    const podSecurity = this.template.spec.securityContext ?? {}
    const security = container.securityContext ?? {}
    const user = numberOf(podSecurity['runAsUser'] ?? security['runAsUser'], 'runAsUser')
    const group = numberOf(podSecurity['runAsGroup'] ?? security['runAsGroup'] ?? user, 'runAsGroup')
    const fsGroup = numberOf(podSecurity['fsGroup'] ?? group, 'fsGroup')
    const args = [
      'run',
      '--detach',
      '--name',
      pod.dnsName,
      '--hostname',
      pod.name,
      '--network',
      this.network.name,
      '--ip',
      pod.ip,
      '--network-alias',
      pod.dnsName,
      '--network-alias',
      this.serviceDnsName,
      '--label',
      `${chaosLabel}=${this.options.runId}`,
      '--user',
      `${user}:${group}`,
    ]
    if (security['readOnlyRootFilesystem'] === true) args.push('--read-only')
    for (const cap of security.capabilities?.drop ?? []) args.push('--cap-drop', cap)
    if (security['allowPrivilegeEscalation'] === false) args.push('--security-opt', 'no-new-privileges')
    for (const mount of container.volumeMounts ?? []) {
      const volume = this.template.spec.volumes?.find((v) => v.name === mount.name)
      if (mount.name === 'data' && volume === undefined) {
        const name = await this.dataVolume(pod, `${user}:${fsGroup}`)
        args.push('--mount', `type=volume,source=${name},target=${mount.mountPath}`)
      } else if (volume?.emptyDir !== undefined) {
        args.push('--tmpfs', `${mount.mountPath}:rw,mode=1777`)
      } else throw new Error(`volume mount ${mount.name}: this runner starts only data and emptyDir volumes`)
    }
    for (const [key, value] of Object.entries(pod.spec.env)) args.push('--env', `${key}=${value}`)
    const [entrypoint, ...rest] = pod.spec.argv
    if (entrypoint === undefined) throw new Error('the kvd container has no command')
    args.push('--entrypoint', entrypoint, chaosImage, ...rest)
    await docker(args)
    return pod
  }

  /** The pod's PersistentVolumeClaim: a docker volume, made writable as fsGroup would. */
  private async dataVolume(pod: ChartPod, owner: string): Promise<string> {
    const name = `ringkv-${this.options.runId}-data-${pod.name}`
    const exists = await docker(['volume', 'inspect', name]).then(
      () => true,
      () => false,
    )
    if (exists) return name
    await docker(['volume', 'create', '--label', `${chaosLabel}=${this.options.runId}`, name])
    await docker([
      'run',
      '--rm',
      '--label',
      `${chaosLabel}=${this.options.runId}`,
      '--user',
      '0:0',
      '--mount',
      `type=volume,source=${name},target=/volume`,
      '--entrypoint',
      'chown',
      chaosImage,
      owner,
      '/volume',
    ])
    return name
  }

  /** Removes the pod's container (a scale-down); its volume stays, as the retention policy says. */
  async remove(ordinal: number): Promise<void> {
    await docker(['rm', '--force', this.pod(ordinal).dnsName])
  }

  /** True while the pod's container runs. */
  async running(ordinal: number): Promise<boolean> {
    const state = await docker([
      'inspect',
      '--format',
      '{{.State.Running}}',
      this.pod(ordinal).dnsName,
    ]).catch(() => 'false')
    return state.trim() === 'true'
  }

  /** Asks the pod's probe of `kind` as the kubelet would: GET path on the named port. */
  async probe(ordinal: number, kind: ProbeKind): Promise<ProbeAnswer> {
    const pod = this.pod(ordinal)
    const probe: Probe | undefined = pod.spec.container[`${kind}Probe`]
    const get = probe?.httpGet
    if (get === undefined) throw new Error(`the kvd container has no HTTP ${kind} probe`)
    const port =
      typeof get.port === 'number'
        ? get.port
        : pod.spec.container.ports?.find((p) => p.name === get.port)?.containerPort
    if (port === undefined) throw new Error(`${kind} probe: no container port named ${String(get.port)}`)
    try {
      const response = await fetch(`http://${pod.ip}:${port}${get.path}`, {
        signal: AbortSignal.timeout(probeCallMs),
      })
      return { status: response.status, body: await response.text() }
    } catch (err) {
      return { status: 0, body: String(err) }
    }
  }

  /** Polls the probe until it answers `status`; its answer, or throws after `ms`. */
  async waitProbe(ordinal: number, kind: ProbeKind, status: number, ms: number): Promise<ProbeAnswer> {
    const started = performance.now()
    let last: ProbeAnswer = { status: 0, body: '' }
    while (performance.now() - started < ms) {
      if (!(await this.running(ordinal)))
        throw new Error(`pod ${this.pod(ordinal).name} exited while waiting for its ${kind} probe`)
      last = await this.probe(ordinal, kind)
      if (last.status === status) return last
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    throw new Error(
      `pod ${this.pod(ordinal).name}: ${kind} probe not ${status} after ${ms} ms (last ${last.status} ${last.body.trim()})`,
    )
  }

  /** Runs `kvctl` in the pod (its own image and network), against its own client port. */
  async kvctl(ordinal: number, args: readonly string[]): Promise<string> {
    const pod = this.pod(ordinal)
    const port = pod.spec.container.ports?.find((p) => p.name === 'client')?.containerPort
    if (port === undefined) throw new Error('the kvd container has no port named client')
    return await docker(['exec', pod.dnsName, 'kvctl', '--endpoints', `${pod.dnsName}:${port}`, ...args])
  }

  /** Writes every started pod's log to `dir/<pod>.log`. */
  async saveLogs(): Promise<string[]> {
    const paths: string[] = []
    for (const pod of this.pods.values()) {
      const path = join(this.options.dir, `${pod.name}.log`)
      const out = await run('sh', ['-c', `docker logs ${pod.dnsName} 2>&1`]).catch((err: unknown) =>
        String(err),
      )
      writeFileSync(path, out)
      paths.push(path)
    }
    return paths
  }

  /** Removes every container, volume and the network of the run. */
  async stop(): Promise<void> {
    await removeLabelled(this.options.runId).catch(() => undefined)
    const volumes = (
      await docker(['volume', 'ls', '-q', '--filter', `label=${chaosLabel}=${this.options.runId}`]).catch(
        () => '',
      )
    )
      .split('\n')
      .filter(Boolean)
    if (volumes.length > 0) await docker(['volume', 'rm', '--force', ...volumes]).catch(() => undefined)
  }
}

function numberOf(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    throw new Error(`securityContext.${what} is not a uid/gid: ${String(value)}`)
  return value
}
