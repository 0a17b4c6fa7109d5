/**
 * The chart's rules, checked on what helm renders for every values file: the containers are
 * probed, bounded and locked down; the Services, the PDB and the spread constraints select the
 * StatefulSet's pods and nothing else; the bootstrap list, the join seeds and the advertised names
 * agree with the pods, Services and certificates; scaling changes no pod; values reach the
 * objects with their types intact.
 */
import { beforeAll, describe, expect, test } from 'vitest'
import type { KubeObject } from './kube-objects.ts'
import { chartUnavailable, ciValues, only, render } from './render.ts'
import {
  envOf,
  envValue,
  hasPods,
  podTemplateOf,
  selects,
  type Container,
  type PodTemplate,
} from './shapes.ts'

const kvdOf = (objects: readonly KubeObject[]): Container =>
  podTemplateOf(only(objects, 'StatefulSet')).spec.containers.find((c) => c.name === 'kvd')!

describe.skipIf(chartUnavailable !== undefined)('charts/ringkv rules', () => {
  for (const values of ciValues) {
    describe(`with ${values}`, () => {
      // Rendered in beforeAll: the suite is collected even where it is skipped.
      let objects: KubeObject[] = []
      let sts: KubeObject
      let pods: PodTemplate
      let selector: Record<string, string> = {}
      beforeAll(() => {
        objects = render({ values })
        sts = only(objects, 'StatefulSet')
        pods = podTemplateOf(sts)
        selector = (sts['spec'] as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels
      })

      test('every container has resources, a locked-down security context, and runs as non-root', () => {
        for (const obj of objects.filter(hasPods)) {
          const pod = podTemplateOf(obj).spec
          expect(pod.securityContext?.['runAsNonRoot'], `${obj.kind} ${obj.metadata.name}`).toBe(true)
          for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
            const where = `${obj.kind} ${obj.metadata.name} container ${c.name}`
            expect(c.resources?.requests?.['memory'], where).toBeDefined()
            expect(c.resources?.limits?.['memory'], where).toBeDefined()
            expect(c.securityContext?.['runAsNonRoot'], where).toBe(true)
            expect(c.securityContext?.['readOnlyRootFilesystem'], where).toBe(true)
            expect(c.securityContext?.['allowPrivilegeEscalation'], where).toBe(false)
            expect(c.securityContext?.capabilities?.drop, where).toContain('ALL')
            // A read-only root needs a writable /tmp.
            expect(
              c.volumeMounts?.some((m) => m.mountPath === '/tmp'),
              where,
            ).toBe(true)
          }
        }
      })

      test('every long-running container has startup, liveness (/healthz) and readiness (/readyz) probes on kvd --http', () => {
        for (const c of pods.spec.containers) {
          const http = c.ports?.find((p) => p.name === 'http')
          expect(http?.containerPort).toBe(Number(envValue(c, 'HTTP_PORT')))
          expect(c.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' })
          expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'http' })
          expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'http' })
        }
      })

      test('the Services, the PDB and the spread constraints select the StatefulSet pods and no other pod', () => {
        expect(selects(selector, pods.metadata.labels)).toBe(true)
        const selectors: [string, Record<string, string>][] = []
        for (const svc of objects.filter((o) => o.kind === 'Service'))
          selectors.push([
            `Service ${svc.metadata.name}`,
            (svc['spec'] as { selector: Record<string, string> }).selector,
          ])
        const pdb = only(objects, 'PodDisruptionBudget')
        const pdbSpec = pdb['spec'] as {
          maxUnavailable: number
          selector: { matchLabels: Record<string, string> }
        }
        expect(pdbSpec.maxUnavailable).toBe(1)
        selectors.push(['PDB', pdbSpec.selector.matchLabels])
        const spreads = pods.spec.topologySpreadConstraints ?? []
        expect(spreads.map((s) => s.topologyKey).sort()).toEqual([
          'kubernetes.io/hostname',
          'topology.kubernetes.io/zone',
        ])
        for (const s of spreads) selectors.push([`spread ${s.topologyKey}`, s.labelSelector.matchLabels])
        expect(selectors).toHaveLength(5)
        const otherPods = objects.filter((o) => hasPods(o) && o.kind !== 'StatefulSet')
        expect(otherPods.length).toBeGreaterThanOrEqual(2)
        for (const [what, sel] of selectors) {
          expect(Object.keys(sel).length, what).toBeGreaterThan(0)
          expect(selects(sel, pods.metadata.labels), `${what} selects the kvd pods`).toBe(true)
          for (const other of otherPods)
            expect(
              selects(sel, podTemplateOf(other).metadata.labels),
              `${what} selects ${other.metadata.name}`,
            ).toBe(false)
        }
      })

      test('the headless Service publishes not-ready pods and is the StatefulSet service', () => {
        const headless = only(objects, 'Service', '-headless')
        const spec = headless['spec'] as { clusterIP: string; publishNotReadyAddresses: boolean }
        expect(spec.clusterIP).toBe('None')
        expect(spec.publishNotReadyAddresses).toBe(true)
        const stsSpec = sts['spec'] as { serviceName: string; podManagementPolicy: string; replicas: number }
        expect(stsSpec.serviceName).toBe(headless.metadata.name)
        expect(stsSpec.podManagementPolicy).toBe('Parallel')
      })

      test('the bootstrap list names pods 0..2 by their stable DNS names and ports; the join seeds are the same pods', () => {
        const kvd = kvdOf(objects)
        const stsSpec = sts['spec'] as { serviceName: string }
        const domain = `${stsSpec.serviceName}.${sts.metadata['namespace'] as string}.svc.cluster.local`
        expect(envValue(kvd, 'PEER_DOMAIN')).toBe(domain)
        const port = (name: string): number => kvd.ports!.find((p) => p.name === name)!.containerPort
        const host = (i: number): string => `${sts.metadata.name}-${i}.${domain}`
        const members = envValue(kvd, 'BOOTSTRAP_CLUSTER').split(',')
        expect(members.map((m) => m.replace(/@.*$/, ''))).toEqual(
          [0, 1, 2].map((i) => `${i + 1}=${host(i)}:${port('client')}/${host(i)}:${port('peer')}`),
        )
        expect(envValue(kvd, 'JOIN_SEEDS').split(',')).toEqual(
          [0, 1, 2].map((i) => `${host(i)}:${port('client')}`),
        )
        // The client Service and the headless one carry the same ports the container listens on.
        for (const svc of objects.filter((o) => o.kind === 'Service'))
          for (const p of (svc['spec'] as { ports: { name: string; port: number }[] }).ports)
            expect(p.port, `${svc.metadata.name} ${p.name}`).toBe(port(p.name))
      })
    })
  }

  test('no pod stop touches membership: no lifecycle hook on any container', () => {
    for (const values of ciValues)
      for (const obj of render({ values }).filter(hasPods))
        for (const c of podTemplateOf(obj).spec.containers)
          expect(
            (c as unknown as Record<string, unknown>)['lifecycle'],
            `${values} ${obj.metadata.name} ${c.name}`,
          ).toBeUndefined()
  })

  test('the scale-down check runs before upgrades and rollbacks, the round trip as the helm test', () => {
    const objects = render()
    const hook = (o: KubeObject): unknown =>
      (o.metadata['annotations'] as Record<string, unknown> | undefined)?.['helm.sh/hook']
    expect(hook(only(objects, 'Job', '-scale-down-check'))).toBe('pre-upgrade,pre-rollback')
    expect(hook(only(objects, 'ConfigMap', '-scale-down-check'))).toBe('pre-upgrade,pre-rollback')
    expect(hook(only(objects, 'Pod', '-test'))).toBe('test')
    expect(
      render({ set: { scaleDownCheck: { enabled: false, activeDeadlineSeconds: 60 } } }).some(
        (o) => o.kind === 'Job',
      ),
    ).toBe(false)
  })

  test('scaling changes the replica count and nothing of the pods (no restart of a running pod)', () => {
    for (const values of ['defaults', 'cert-manager', 'zones'] as const) {
      const small = only(render({ values, set: { replicaCount: 3 } }), 'StatefulSet')
      const large = only(render({ values, set: { replicaCount: 9 } }), 'StatefulSet')
      expect((small['spec'] as { replicas: number }).replicas).toBe(3)
      expect((large['spec'] as { replicas: number }).replicas).toBe(9)
      expect(podTemplateOf(large)).toEqual(podTemplateOf(small))
    }
  })

  test("the nodes' certificate names every pod's peer address, the pods' and the client Service's DNS names", () => {
    const objects = render({ values: 'cert-manager', set: { replicaCount: 5 } })
    const cert = only(objects, 'Certificate', '-node')
    const spec = cert['spec'] as { secretName: string; uris: string[]; dnsNames: string[]; usages: string[] }
    const kvd = kvdOf(objects)
    const domain = envValue(kvd, 'PEER_DOMAIN')
    expect(spec.uris).toEqual(
      [0, 1, 2, 3, 4].map((i) => `ringkv://ringkv/node/db-ringkv-${i}.${domain}:7101`),
    )
    expect(spec.dnsNames).toContain(`*.${domain}`)
    expect(spec.dnsNames).toContain('db-ringkv.data.svc.cluster.local')
    expect(spec.usages).toEqual(expect.arrayContaining(['server auth', 'client auth']))
    const volumes = podTemplateOf(only(objects, 'StatefulSet')).spec.volumes ?? []
    expect(volumes.find((v) => v.name === 'tls')?.secret?.secretName).toBe(spec.secretName)
    const admin = only(objects, 'Certificate', '-admin')
    const adminSpec = admin['spec'] as { secretName: string; uris: string[] }
    expect(adminSpec.uris).toEqual(['ringkv://ringkv/client/db-ringkv-helm?role=admin'])
    for (const obj of objects.filter((o) => o.kind === 'Job' || o.kind === 'Pod')) {
      const pod = podTemplateOf(obj).spec
      expect(pod.volumes?.find((v) => v.name === 'admin-tls')?.secret?.secretName).toBe(adminSpec.secretName)
      expect(envValue(pod.containers[0]!, 'KVCTL_CERT_FILE')).toBe('/etc/ringkv/admin-tls/tls.crt')
    }
  })

  test('TLS from secrets: kvd gets its files, client certificate auth and the auth file', () => {
    const objects = render({ values: 'tls-secret' })
    const kvd = kvdOf(objects)
    expect(envValue(kvd, 'RINGKV_CERT_FILE')).toBe('/etc/ringkv/tls/tls.crt')
    expect(envValue(kvd, 'RINGKV_CLIENT_CERT_AUTH')).toBe('true')
    expect(envValue(kvd, 'RINGKV_AUTH_FILE')).toBe('/etc/ringkv/auth/auth.json')
    const volumes = podTemplateOf(only(objects, 'StatefulSet')).spec.volumes ?? []
    expect(volumes.find((v) => v.name === 'tls')?.secret?.secretName).toBe('ringkv-nodes-tls')
    // Readable by kvd's group (fsGroup) only, however a YAML reader takes the number.
    for (const v of volumes.filter((v) => v.secret !== undefined))
      expect(v.secret?.defaultMode, v.name).toBe(0o440)
    expect(objects.some((o) => o.kind === 'Certificate')).toBe(false)
  })

  test('zones: the bootstrap pods get theirs in --initial-cluster, the joiners from the pod label', () => {
    const kvd = kvdOf(render({ values: 'zones' }))
    expect(
      envValue(kvd, 'BOOTSTRAP_CLUSTER')
        .split(',')
        .map((m) => m.split('@')[1]),
    ).toEqual(['zone-a', 'zone-b', 'zone-c'])
    expect(envOf(kvd).get('NODE_ZONE')?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.labels['topology.kubernetes.io/zone']",
    )
    expect(
      envOf(kvdOf(render({ set: { zone: { value: 'eu-1a', fromPodLabel: '', bootstrap: [] } } }))).get(
        'NODE_ZONE',
      )?.value,
    ).toBe('eu-1a')
    expect(envOf(kvdOf(render())).has('NODE_ZONE')).toBe(false)
  })

  test('values that look like numbers or booleans reach the objects as strings where strings are due', () => {
    const objects = render({
      set: {
        image: { repository: 'registry.example:5000/ringkv/kvd', tag: '1.10', pullPolicy: 'IfNotPresent' },
        zone: { value: 'true', fromPodLabel: '', bootstrap: ['1', '2', '3'] },
        ringkv: {
          clusterName: '007',
          shards: 16,
          shardReplicas: 3,
          metaReplicas: 3,
          logLevel: 'info',
          logFormat: 'json',
          extraArgs: ['--weight', '2'],
        },
        podLabels: { team: '123', flag: 'yes' },
        podAnnotations: { 'example.com/enabled': 'true', 'example.com/count': '10' },
        service: {
          type: 'ClusterIP',
          annotations: { 'example.com/internal': 'true' },
          labels: { tier: '1' },
        },
        persistence: {
          enabled: true,
          storageClassName: '',
          size: '20Gi',
          accessModes: ['ReadWriteOnce'],
          annotations: { 'example.com/keep': 'true' },
          retentionPolicy: { whenDeleted: 'Retain', whenScaled: 'Retain' },
        },
      },
    })
    const pod = podTemplateOf(only(objects, 'StatefulSet'))
    const kvd = kvdOf(objects)
    expect(kvd.image).toBe('registry.example:5000/ringkv/kvd:1.10')
    expect(envValue(kvd, 'NODE_ZONE')).toBe('true')
    expect(envValue(kvd, 'RINGKV_CLUSTER_NAME')).toBe('007')
    expect(envValue(kvd, 'BOOTSTRAP_CLUSTER')).toMatch(/@1,2=.*@2,3=.*@3$/)
    expect(kvd.args).toEqual(['--weight', '2'])
    expect(pod.metadata.labels['team']).toBe('123')
    expect(pod.metadata.annotations?.['example.com/enabled']).toBe('true')
    expect(pod.metadata.annotations?.['example.com/count']).toBe('10')
    const svc = only(objects, 'Service', 'db-ringkv')
    expect((svc.metadata['annotations'] as Record<string, unknown>)['example.com/internal']).toBe('true')
    expect((svc.metadata['labels'] as Record<string, unknown>)['tier']).toBe('1')
    // And in general: every env value, label and annotation of every object is a string.
    for (const obj of objects) {
      for (const field of ['labels', 'annotations'] as const)
        for (const [k, v] of Object.entries(
          (obj.metadata[field] as Record<string, unknown> | undefined) ?? {},
        ))
          expect(typeof v, `${obj.kind} ${obj.metadata.name} ${field} ${k}`).toBe('string')
      if (!hasPods(obj)) continue
      const template = podTemplateOf(obj)
      for (const [k, v] of Object.entries(template.metadata.labels))
        expect(typeof v, `pod label ${k}`).toBe('string')
      for (const c of template.spec.containers)
        for (const e of c.env ?? [])
          if (e.valueFrom === undefined) expect(typeof e.value, `${c.name} env ${e.name}`).toBe('string')
    }
  })
})
