/**
 * The kvd container's start script, run as the chart renders it (command, args, environment) for
 * pods of several ordinals, with a stand-in `kvd` that prints the flags it was given; those flags
 * and the environment then go through kvd's own configuration loader (src/common/config.ts),
 * which refuses what a real kvd would refuse (an --advertise that is not the node's
 * --initial-cluster entry, --join with --node-id, ...). So the bootstrap, join and advertise
 * wiring is checked end to end short of a network.
 */
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { loadConfig, type ConfigFlags, type KvdConfig } from '../../src/common/config.ts'
import { chartUnavailable, podContainer, type RenderInput } from './render.ts'

const bin = mkdtempSync(join(tmpdir(), 'ringkv-chart-start-'))
writeFileSync(join(bin, 'kvd'), '#!/bin/sh\nprintf "%s\\n" "$@"\n')
chmodSync(join(bin, 'kvd'), 0o755)
afterAll(() => rmSync(bin, { recursive: true, force: true }))

interface Started {
  readonly status: number | null
  readonly stderr: string
  readonly argv: string[]
  readonly env: Record<string, string>
}

/** Runs the kvd container of the rendered StatefulSet as pod `podName` would. */
function start(input: RenderInput, podName: string, podLabels: Record<string, string> = {}): Started {
  const { argv, env } = podContainer(input, podName, podLabels)
  const [shell, ...shellArgs] = argv
  const run = spawnSync(shell!, shellArgs, {
    encoding: 'utf8',
    env: { ...env, PATH: `${bin}:/usr/bin:/bin` },
  })
  return {
    status: run.status,
    stderr: run.stderr,
    argv: run.stdout.split('\n').filter((l) => l !== ''),
    env: { ...env },
  }
}

/** kvd's flags as commander hands them to loadConfig (every flag the script passes takes a value). */
function flagsOf(argv: readonly string[]): ConfigFlags {
  const flags: Record<string, string> = {}
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!
    expect(flag.startsWith('--'), `flag at ${i}: ${flag}`).toBe(true)
    const key = flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
    expect(flags[key], `${flag} given twice`).toBeUndefined()
    flags[key] = argv[i + 1]!
  }
  return flags as ConfigFlags
}

const configOf = (s: Started): KvdConfig => loadConfig({ flags: flagsOf(s.argv), env: s.env })
const domain = 'db-ringkv-headless.data.svc.cluster.local'

describe.skipIf(chartUnavailable !== undefined)('the kvd start script', () => {
  test('pods 0..2 bootstrap as nodes 1..3 with the same --initial-cluster, advertising their DNS names', () => {
    const lists = new Set<string>()
    for (const ordinal of [0, 1, 2]) {
      const started = start({ values: 'zones' }, `db-ringkv-${ordinal}`)
      expect(started.status, started.stderr).toBe(0)
      const config = configOf(started)
      expect(config.nodeId).toBe(ordinal + 1)
      expect(config.nodeIdGiven).toBe(true)
      expect(config.join).toEqual([])
      expect(config.initialCluster.size).toBe(3)
      expect(config.advertise).toBe(`db-ringkv-${ordinal}.${domain}:7001`)
      expect(config.peerAdvertise).toBe(`db-ringkv-${ordinal}.${domain}:7101`)
      expect(config.listen).toEqual({ host: '0.0.0.0', port: 7001 })
      expect(config.peerListen).toEqual({ host: '0.0.0.0', port: 7101 })
      expect(config.httpListen).toEqual({ host: '0.0.0.0', port: 8001 })
      expect(config.dataDir).toBe('/var/lib/ringkv/data')
      // The zone comes from the bootstrap list, never from the pod (all three must agree).
      expect(config.zone).toBe(['zone-a', 'zone-b', 'zone-c'][ordinal])
      lists.add(flagsOf(started.argv).initialCluster!)
    }
    expect(lists.size).toBe(1)
  })

  test('pods 3 and up join through pods 0..2, with no node id of their own, in the zone of their pod label', () => {
    for (const ordinal of [3, 4, 11]) {
      const started = start({ values: 'zones' }, `db-ringkv-${ordinal}`, {
        'topology.kubernetes.io/zone': 'zone-b',
      })
      expect(started.status, started.stderr).toBe(0)
      const config = configOf(started)
      expect(config.nodeIdGiven).toBe(false)
      expect(config.join).toEqual([0, 1, 2].map((i) => `db-ringkv-${i}.${domain}:7001`))
      expect(config.advertise).toBe(`db-ringkv-${ordinal}.${domain}:7001`)
      expect(config.peerAdvertise).toBe(`db-ringkv-${ordinal}.${domain}:7101`)
      expect(config.zone).toBe('zone-b')
    }
    // Without a zone source a joiner has none; the label may also be missing on a pod.
    expect(configOf(start({}, 'db-ringkv-3')).zone).toBe('')
    expect(configOf(start({ values: 'zones' }, 'db-ringkv-3')).zone).toBe('')
  })

  test('settings, TLS files, the auth file and extra flags reach kvd', () => {
    const input: RenderInput = {
      values: 'tls-secret',
      set: {
        ringkv: {
          clusterName: 'prod.eu',
          shards: 128,
          shardReplicas: 2,
          metaReplicas: 1,
          logLevel: 'warn',
          logFormat: 'pretty',
          extraArgs: ['--weight', '2'],
        },
        ports: { client: 9000, peer: 9100, http: 9200 },
      },
    }
    for (const pod of ['db-ringkv-1', 'db-ringkv-3']) {
      const started = start(input, pod)
      expect(started.status, started.stderr).toBe(0)
      const config = configOf(started)
      expect(config.clusterName).toBe('prod.eu')
      expect(config.shardCount).toBe(128)
      expect(config.replicaCount).toBe(2)
      expect(config.metaReplicas).toBe(1)
      expect(config.logLevel).toBe('warn')
      expect(config.logFormat).toBe('pretty')
      expect(config.weight).toBe(2)
      expect(config.certFile).toBe('/etc/ringkv/tls/tls.crt')
      expect(config.keyFile).toBe('/etc/ringkv/tls/tls.key')
      expect(config.caFile).toBe('/etc/ringkv/tls/ca.crt')
      expect(config.clientCertAuth).toBe(true)
      expect(config.authFile).toBe('/etc/ringkv/auth/auth.json')
      expect(config.advertise).toBe(`${pod}.${domain}:9000`)
      expect(config.peerAdvertise).toBe(`${pod}.${domain}:9100`)
      expect(config.httpListen.port).toBe(9200)
    }
  })

  test('a pod name without an ordinal stops the container with a reason', () => {
    const started = start({}, 'db-ringkv')
    expect(started.status).toBe(2)
    expect(started.stderr).toContain("POD_NAME 'db-ringkv' does not end in a pod ordinal")
    expect(started.argv).toEqual([])
  })
})
