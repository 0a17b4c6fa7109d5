/**
 * etcd for the benchmarks that measure ringkv against it in the same run (cluster.ts, ycsb.ts):
 * finding the binary (`--etcd PATH`, else `etcd` on PATH; Debian: apt-get install etcd-server),
 * its version and the etcd3 client's, and a local cluster of N members on loopback (temporary data
 * dirs, free ports) with a CPU meter per member (/proc). Members left running are killed when this
 * process exits.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { clusterRepoRoot } from '../integration/helpers/cluster.ts'
import { freePort } from '../integration/helpers/kvd.ts'
import { procMeter, type CpuMeter } from './cpu.ts'

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The etcd binary: `--etcd PATH`, else `etcd` on PATH; undefined when there is none. */
export function findEtcd(option: string | false | undefined): string | undefined {
  if (option === false) return undefined
  if (option !== undefined) return option
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, 'etcd')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

export function etcdVersion(bin: string): string {
  const out = execFileSync(bin, ['--version'], { encoding: 'utf8' })
  return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? 'unknown version'
}

export function etcd3Version(): string {
  try {
    const manifest = join(clusterRepoRoot, 'node_modules', 'etcd3', 'package.json')
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { version: string }).version
  } catch {
    return 'unknown version'
  }
}

/**
 * The etcd a bench runs against (`option`: `--etcd PATH`, false for `--no-etcd`), and the line it
 * prints about it: its version and the client's, or why ringkv is measured alone (`bin` undefined).
 */
export function etcdToRun(
  option: string | false | undefined,
  members: number,
): { readonly bin: string | undefined; readonly line: string } {
  const bin = findEtcd(option)
  if (bin === undefined)
    return {
      bin,
      line:
        option === false
          ? 'etcd: skipped (--no-etcd)'
          : 'etcd: not on PATH (Debian: apt-get install etcd-server, or --etcd PATH); measuring ringkv alone',
    }
  if (!existsSync(join(clusterRepoRoot, 'node_modules', 'etcd3')))
    return {
      bin: undefined,
      line: 'etcd: the etcd3 client is not installed (npm install); measuring ringkv alone',
    }
  return {
    bin,
    line: `etcd ${etcdVersion(bin)} (${bin}), ${members} member${members === 1 ? '' : 's'}, client etcd3 ${etcd3Version()}`,
  }
}

export interface EtcdCluster {
  readonly endpoints: readonly string[]
  /** One CPU meter per member (/proc), empty where there is no /proc. */
  readonly meters: readonly CpuMeter[]
  readonly logFiles: readonly string[]
  /** SIGTERM (SIGKILL after 10 s); resolves with the members that had exited on their own. */
  stop(): Promise<number[]>
}

const etcdChildren = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of etcdChildren) child.kill('SIGKILL')
})

export async function startEtcd(bin: string, members: number, dir: string): Promise<EtcdCluster> {
  mkdirSync(dir, { recursive: true })
  const ports = new Set<number>()
  while (ports.size < members * 2) ports.add(await freePort())
  const picked = [...ports]
  const plan = Array.from({ length: members }, (_, i) => ({
    name: `e${i + 1}`,
    client: `127.0.0.1:${picked[2 * i]}`,
    peer: `http://127.0.0.1:${picked[2 * i + 1]}`,
    dataDir: join(dir, `e${i + 1}`),
    logFile: join(dir, `e${i + 1}.log`),
  }))
  const initial = plan.map((m) => `${m.name}=${m.peer}`).join(',')
  const children: ChildProcess[] = []
  const died = new Set<number>()
  const stopping = { now: false }
  for (const [i, m] of plan.entries()) {
    const fd = openSync(m.logFile, 'a')
    try {
      const child = spawn(
        bin,
        [
          ...['--name', m.name, '--data-dir', m.dataDir],
          ...['--listen-client-urls', `http://${m.client}`, '--advertise-client-urls', `http://${m.client}`],
          ...['--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer],
          ...['--initial-cluster', initial, '--initial-cluster-state', 'new'],
          ...['--initial-cluster-token', `ringkv-bench-${process.pid}`],
          ...['--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn'],
        ],
        { stdio: ['ignore', fd, fd] },
      )
      etcdChildren.add(child)
      child.once('exit', () => {
        etcdChildren.delete(child)
        if (!stopping.now) died.add(i + 1)
      })
      child.once('error', () => died.add(i + 1))
      children.push(child)
    } finally {
      closeSync(fd)
    }
  }
  const stop = async (): Promise<number[]> => {
    stopping.now = true
    await Promise.all(
      children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(killer)
      }),
    )
    return [...died]
  }
  // Ready when every member's /health says true (it has a leader and answers).
  const deadline = performance.now() + 30_000
  try {
    for (const [i, m] of plan.entries()) {
      while (true) {
        if (died.has(i + 1)) throw new Error(`etcd member ${m.name} exited before it was healthy`)
        if (performance.now() > deadline) throw new Error(`etcd member ${m.name} not healthy after 30 s`)
        try {
          const response = await fetch(`http://${m.client}/health`, { signal: AbortSignal.timeout(1000) })
          const body = (await response.json()) as { health?: string }
          if (response.status === 200 && body.health === 'true') break
        } catch {
          // not up yet
        }
        await sleep(100)
      }
    }
  } catch (err) {
    await stop()
    throw err
  }
  const meters = existsSync('/proc/self/stat')
    ? children.flatMap((child, i) =>
        child.pid === undefined ? [] : [procMeter(`etcd ${plan[i]!.name}`, child.pid)],
      )
    : []
  return { endpoints: plan.map((m) => m.client), logFiles: plan.map((m) => m.logFile), stop, meters }
}
