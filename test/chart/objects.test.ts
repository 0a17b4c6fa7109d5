/**
 * charts/ringkv as Kubernetes sees it: helm lint --strict passes for every values file, and every
 * object rendered from them is valid against its API's schema with no unknown field. A field the
 * schemas do not know is caught (kube-objects.ts): the last tests prove the check can fail.
 */
import { describe, expect, test } from 'vitest'
import { problemsOf, type KubeObject } from './kube-objects.ts'
import { chartDir, chartUnavailable, ciValues, kubeVersion, only, render, runHelm } from './render.ts'
import { resolve } from 'node:path'

if (chartUnavailable !== undefined) console.log(`chart tests cannot run here: ${chartUnavailable}`)

describe.skipIf(chartUnavailable !== undefined)('charts/ringkv objects', () => {
  for (const values of ciValues) {
    test(`helm lint --strict passes with ${values}`, () => {
      const args = ['lint', '--strict', chartDir, '--kube-version', kubeVersion]
      if (values !== 'defaults') args.push('--values', resolve(chartDir, 'ci', `${values}.yaml`))
      const run = runHelm(args)
      expect(run.stdout + run.stderr).toContain('1 chart(s) linted, 0 chart(s) failed')
      expect(run.status).toBe(0)
    })

    test(`every object rendered with ${values} is valid and has no unknown field`, () => {
      const objects = render({ values })
      expect(objects.length).toBeGreaterThanOrEqual(7)
      const problems = objects.flatMap((o) => problemsOf(o).map((p) => `${o.kind} ${o.metadata.name}: ${p}`))
      expect(problems).toEqual([])
    })
  }

  test('the kinds rendered are the ones the chart promises', () => {
    const kinds = (values: (typeof ciValues)[number]): string[] =>
      render({ values })
        .map((o) => o.kind)
        .sort()
    expect(kinds('defaults')).toEqual([
      'ConfigMap',
      'Job',
      'Pod',
      'PodDisruptionBudget',
      'Service',
      'Service',
      'StatefulSet',
    ])
    expect(kinds('cert-manager')).toEqual([
      'Certificate',
      'Certificate',
      'ConfigMap',
      'Job',
      'Pod',
      'PodDisruptionBudget',
      'Service',
      'Service',
      'ServiceMonitor',
      'StatefulSet',
    ])
  })

  test('the check finds an unknown field, at any depth, and a wrong type', () => {
    const sts = structuredClone(only(render(), 'StatefulSet')) as KubeObject & {
      spec: { replicas: unknown; template: { spec: { containers: Record<string, unknown>[] } } }
    }
    expect(problemsOf(sts)).toEqual([])
    sts.spec.template.spec.containers[0]!['readinesProbe'] = { httpGet: { path: '/readyz', port: 'http' } }
    ;(sts.spec as Record<string, unknown>)['podManagementPolcy'] = 'Parallel'
    sts.spec.replicas = '3'
    expect(problemsOf(sts)).toEqual([
      'schema: data/spec/replicas must be integer',
      'unknown field .spec.template.spec.containers[0].readinesProbe',
      'unknown field .spec.podManagementPolcy',
    ])
  })

  test('maps (labels, annotations, resource lists) take any key', () => {
    const sts = structuredClone(only(render(), 'StatefulSet')) as KubeObject & {
      spec: { template: { metadata: { labels: Record<string, string> } } }
    }
    sts.spec.template.metadata.labels['example.com/anything'] = 'x'
    expect(problemsOf(sts)).toEqual([])
  })

  test('a Certificate with a misspelt field is caught (the CRD schemas are closed the same way)', () => {
    const cert = structuredClone(
      only(render({ values: 'cert-manager' }), 'Certificate', '-node'),
    ) as KubeObject & {
      spec: Record<string, unknown>
    }
    cert.spec['dnsName'] = ['x']
    expect(problemsOf(cert)).toEqual(['unknown field .spec.dnsName'])
  })
})
