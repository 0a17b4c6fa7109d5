/**
 * The docker engine as the chaos suite uses it: the docker CLI for what testcontainers does not do
 * (networks with a fixed subnet, pause, kill -9, iptables in a container's network namespace), and
 * the image the suite runs (built from the repository's Dockerfile by scripts/image.js).
 *
 * Everything the suite creates carries the label `org.ringkv.chaos=<run id>`, so a crashed run's
 * leftovers can be found and removed: `docker rm -f -v $(docker ps -aq -f label=org.ringkv.chaos)`.
 * Every call has a deadline (a wedged engine fails the run instead of hanging it).
 */
import { execFile } from 'node:child_process'

export const chaosLabel = 'org.ringkv.chaos'
/** The image the suite runs; RINGKV_CHAOS_IMAGE overrides (CI builds it once beforehand). */
export const chaosImage = process.env['RINGKV_CHAOS_IMAGE'] ?? 'ringkv:chaos'
const dockerCallMsMax = 60_000

export class DockerError extends Error {}

/** Runs `docker ...args`; resolves with stdout, rejects with stderr. */
export function docker(args: readonly string[], timeoutMs = dockerCallMsMax): Promise<string> {
  return run('docker', args, timeoutMs)
}

/** Runs a host command (nsenter, iptables): resolves with stdout, rejects with stderr. */
export function run(cmd: string, args: readonly string[], timeoutMs = dockerCallMsMax): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err !== null) reject(new DockerError(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`))
      else resolve(stdout)
    })
  })
}

/** Why the suite cannot run here (no engine answering), or undefined when it can. */
export async function dockerUnavailable(): Promise<string | undefined> {
  try {
    await docker(['version', '--format', '{{.Server.Version}}'], 10_000)
    await run('nsenter', ['--version'], 10_000)
    await run('iptables', ['--version'], 10_000)
    return undefined
  } catch (err) {
    return err instanceof Error ? err.message : String(err)
  }
}

/** A user-defined bridge network with a /24 subnet of its own (nodes get fixed addresses in it). */
export interface ChaosNetwork {
  readonly name: string
  /** `10.X.Y.` : append a host number. */
  readonly prefix: string
  remove(): Promise<void>
}

/**
 * Creates the network on a free 10.X.Y.0/24 (tries a few subnets picked from `seed`: another run
 * or another network may hold one).
 */
export async function createNetwork(name: string, runId: string, seed: number): Promise<ChaosNetwork> {
  let lastError: unknown
  for (let attempt = 0; attempt < 8; attempt++) {
    const n = (seed + attempt * 7919) >>> 0
    const prefix = `10.${200 + (n % 50)}.${(n >>> 8) % 250}.`
    try {
      await docker([
        'network',
        'create',
        '--driver',
        'bridge',
        '--subnet',
        `${prefix}0/24`,
        '--label',
        `${chaosLabel}=${runId}`,
        name,
      ])
      return { name, prefix, remove: () => docker(['network', 'rm', name]).then(() => undefined) }
    } catch (err) {
      lastError = err
      if (!/overlap|already exists|in use/i.test(String(err))) throw err
    }
  }
  throw new Error(`no free subnet for network ${name}: ${String(lastError)}`)
}

/** Removes every container and network labelled with this run id (leftovers of a failed run). */
export async function removeLabelled(runId: string): Promise<void> {
  const ids = (await docker(['ps', '-aq', '--filter', `label=${chaosLabel}=${runId}`]))
    .split('\n')
    .filter(Boolean)
  if (ids.length > 0) await docker(['rm', '-f', '-v', ...ids])
  const nets = (await docker(['network', 'ls', '-q', '--filter', `label=${chaosLabel}=${runId}`]))
    .split('\n')
    .filter(Boolean)
  if (nets.length > 0) await docker(['network', 'rm', ...nets])
}
