/**
 * A local ringkv cluster of real kvd processes on loopback, for integration tests and benchmarks.
 *
 * `startCluster()` picks free ports for every node, spawns all nodes at once (each must know the
 * others from `--initial-cluster` before any of them can elect), waits until every `/readyz`
 * answers 200 and then until a write has succeeded on every shard (so every shard has a leader),
 * and returns a handle. Everything lives in one temporary directory: `node<N>/` holds a node's
 * data and `node<N>.log` its stdout and stderr (across restarts). When the cluster fails to start,
 * the error names the log files and the directory is kept; `stop()` keeps it too (and prints the
 * paths) when a node died on its own. Every process started here is SIGKILLed when the calling
 * process exits.
 *
 * With `nodes: 1` no `--initial-cluster` is passed (a plain single kvd); `--shards` is passed only
 * when `shards` is given.
 *
 * @example
 * const cluster = await startCluster({ nodes: 3, shards: 8 })
 * const client = new KvClient({ endpoints: cluster.endpoints })
 * await client.put('a', '1')
 * cluster.nodes[0]?.kill('SIGKILL')
 * await cluster.nodes[0]?.restart()
 * client.close()
 * await cluster.stop()
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { KvClient, type KvClientInit } from '../../../src/client/index.ts'
import { ensureBuilt, freePort, repoRoot as helperRepoRoot, type ExitInfo } from './kvd.ts'

export interface StartClusterOptions {
  /** Nodes, 1..7 (kvd's initialClusterMax). */
  readonly nodes: number
  /** Passed as `--shards N` when given. */
  readonly shards?: number
  /** Appended to every node's command line, e.g. ['--lease-reads']. */
  readonly extraArgs?: readonly string[]
  /**
   * Appended to one node's command line once its ports are chosen (e.g. its certificate, which
   * must name its peer address); called again for fresh ports when a start is retried.
   */
  readonly nodeArgs?: (node: NodePorts) => readonly string[] | Promise<readonly string[]>
  /** How the cluster's own probe client connects (e.g. `tls` and `token` for a secured cluster). */
  readonly client?: Pick<KvClientInit, 'tls' | 'token'>
  /** Extra environment for every node (merged over this process's environment). */
  readonly env?: Readonly<Record<string, string>>
  /** kvd's --log-level; default 'info' (benchmarks pass 'warn'). */
  readonly logLevel?: string
  /** Parent of the cluster's temporary directory; default os.tmpdir(). */
  readonly parentDir?: string
  /** How long to wait for every /readyz and a write on every shard; default 60 s. */
  readonly readyTimeoutMs?: number
  /** Wait for a successful write on every shard after /readyz (default true). */
  readonly waitForWrites?: boolean
}

export interface ClusterNode {
  readonly nodeId: number
  /** gRPC address `127.0.0.1:PORT` of the client listener (KvService, AdminService). */
  readonly grpc: string
  /** gRPC address `127.0.0.1:PORT` of the peer listener (Raft, forwarding, meta calls). */
  readonly peer: string
  /** HTTP address `127.0.0.1:PORT` (/metrics, /healthz, /readyz). */
  readonly http: string
  readonly dataDir: string
  /** stdout and stderr of this node, appended across restarts. */
  readonly logFile: string
  /** The current process (a new one after restart()). */
  readonly process: ChildProcess
  /** Sends a signal to the current process and returns at once (default SIGTERM). */
  kill(signal?: NodeJS.Signals): void
  /** Resolves when the current process has exited. */
  exited(): Promise<ExitInfo>
  /** SIGTERM, then SIGKILL after 15 s; resolves with the exit. Keeps the data. */
  stop(): Promise<ExitInfo>
  /** Stops the node if it runs (keeping its data), starts it on the same ports and dir, waits for /readyz. */
  restart(): Promise<void>
  /** The node's log so far. */
  logs(): string
}

export interface Cluster {
  /** gRPC addresses of all nodes, for `new KvClient({ endpoints })`. */
  readonly endpoints: readonly string[]
  readonly nodes: readonly ClusterNode[]
  /** The temporary directory holding every node's data and log. */
  readonly dir: string
  /** The node with this id (ids are 1..nodes). */
  node(nodeId: number): ClusterNode
  /** One line per node: its log file. */
  describeLogs(): string
  /**
   * Stops every node (SIGTERM, SIGKILL after 15 s) and removes the directory, unless `keepDir` or
   * a node exited on its own (then the log paths are printed on stderr). Resolves with the ids of
   * the nodes that exited on their own (crashed) at any time, empty when none did.
   */
  stop(options?: { readonly keepDir?: boolean }): Promise<number[]>
}

/** The repository root (kvd.ts finds it: right from source and from dist/ alike). */
export const clusterRepoRoot = helperRepoRoot
const kvdBin = join(clusterRepoRoot, 'bin', 'kvd.js')

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

const nodesMax = 7
const portAttempts = 3

/** The ports of one node, as a node's own arguments are made from them. */
export interface NodePorts {
  readonly nodeId: number
  /** Client listener. */
  readonly port: number
  readonly httpPort: number
  /** Peer listener: `127.0.0.1:<peerPort>` is the node's peer address. */
  readonly peerPort: number
  readonly dataDir: string
}

interface NodePlan extends NodePorts {
  readonly logFile: string
}

/** Starts a cluster and waits until it serves writes on every shard. Rejects with the log paths. */
export async function startCluster(options: StartClusterOptions): Promise<Cluster> {
  if (!Number.isSafeInteger(options.nodes) || options.nodes < 1 || options.nodes > nodesMax)
    throw new RangeError(`nodes must be 1..${nodesMax}, got ${options.nodes}`)
  ensureBuilt()
  if (!existsSync(join(clusterRepoRoot, 'dist', 'src', 'server', 'main.js')))
    throw new Error('kvd is not built: run npm run build')
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'ringkv-cluster-'))
  const timeoutMs = options.readyTimeoutMs ?? 60_000

  // An auto-picked port can be taken between the probe and kvd's bind: start over on fresh ports.
  for (let attempt = 1; ; attempt++) {
    const plans = await planNodes(options.nodes, dir, attempt)
    const own = await Promise.all(plans.map(async (plan) => (await options.nodeArgs?.(plan)) ?? []))
    const nodes = plans.map(
      (plan, i) => new NodeRunner(plan, [...commandLine(plan, plans, options), ...own[i]!], options.env),
    )
    const cluster = makeCluster(dir, nodes)
    try {
      for (const node of nodes) node.launch()
      await Promise.all(nodes.map((node) => node.waitReady(timeoutMs)))
      if (options.waitForWrites ?? true)
        await waitForWrites(cluster.endpoints, options.shards ?? 1, timeoutMs, nodes, options.client)
      return cluster
    } catch (err) {
      await Promise.all(nodes.map((node) => node.stop()))
      const portTaken = nodes.some((node) => /EADDRINUSE|address already in use/i.test(node.logs()))
      if (portTaken && attempt < portAttempts) continue
      const message = err instanceof Error ? err.message : String(err)
      throw new Error(
        `ringkv cluster (${options.nodes} nodes) failed to start: ${message}\n` +
          `logs kept in ${dir}:\n${nodes.map((node) => node.describe(20)).join('\n')}`,
      )
    }
  }
}

async function planNodes(count: number, dir: string, attempt: number): Promise<NodePlan[]> {
  const ports = new Set<number>()
  while (ports.size < count * 3) ports.add(await freePort())
  const picked = [...ports]
  return Array.from({ length: count }, (_, i) => {
    const nodeId = i + 1
    const base = attempt === 1 ? `node${nodeId}` : `node${nodeId}-try${attempt}`
    const dataDir = join(dir, base)
    mkdirSync(dataDir, { recursive: true })
    return {
      nodeId,
      port: picked[3 * i] as number,
      httpPort: picked[3 * i + 1] as number,
      peerPort: picked[3 * i + 2] as number,
      dataDir,
      logFile: join(dir, `${base}.log`),
    }
  })
}

function commandLine(plan: NodePlan, all: readonly NodePlan[], options: StartClusterOptions): string[] {
  const args = [
    kvdBin,
    '--node-id',
    String(plan.nodeId),
    '--listen',
    `127.0.0.1:${plan.port}`,
    '--http',
    `127.0.0.1:${plan.httpPort}`,
    '--peer-listen',
    `127.0.0.1:${plan.peerPort}`,
    '--data',
    plan.dataDir,
    '--log-level',
    options.logLevel ?? 'info',
  ]
  if (all.length > 1)
    args.push(
      '--initial-cluster',
      all.map((p) => `${p.nodeId}=127.0.0.1:${p.port}/127.0.0.1:${p.peerPort}`).join(','),
    )
  if (options.shards !== undefined) args.push('--shards', String(options.shards))
  args.push(...(options.extraArgs ?? []))
  return args
}

function makeCluster(dir: string, nodes: readonly NodeRunner[]): Cluster {
  const handles = nodes.map((node) => node.handle())
  return {
    endpoints: handles.map((h) => h.grpc),
    nodes: handles,
    dir,
    node(nodeId: number): ClusterNode {
      const found = handles.find((h) => h.nodeId === nodeId)
      if (found === undefined) throw new RangeError(`no node ${nodeId} (nodes are 1..${handles.length})`)
      return found
    },
    describeLogs: () => nodes.map((node) => `  node ${node.plan.nodeId}: ${node.plan.logFile}`).join('\n'),
    async stop(options = {}): Promise<number[]> {
      await Promise.all(nodes.map((node) => node.stop()))
      const crashed = nodes.filter((node) => node.diedOnItsOwn)
      if (crashed.length > 0)
        process.stderr.write(
          `ringkv cluster: node ${crashed.map((n) => n.plan.nodeId).join(', ')} exited on its own; ` +
            `logs kept in ${dir}:\n${nodes.map((node) => node.describe(0)).join('\n')}\n`,
        )
      if (options.keepDir !== true && crashed.length === 0) rmSync(dir, { recursive: true, force: true })
      return crashed.map((node) => node.plan.nodeId)
    },
  }
}

/** One node's process across restarts. */
class NodeRunner {
  private child: ChildProcess | undefined
  private exit: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null })
  /** True while the current process was told to stop (or was signalled) by us. */
  private signalled = false
  /** Set when a process exited without a signal from us. */
  diedOnItsOwn = false

  constructor(
    readonly plan: NodePlan,
    private readonly args: readonly string[],
    private readonly env: Readonly<Record<string, string>> | undefined,
  ) {}

  launch(): void {
    const fd = openSync(this.plan.logFile, 'a')
    let spawned: ChildProcess
    try {
      spawned = spawn(process.execPath, this.args, {
        cwd: clusterRepoRoot,
        env: { ...process.env, ...this.env },
        stdio: ['ignore', fd, fd],
      })
    } finally {
      closeSync(fd)
    }
    this.child = spawned
    this.signalled = false
    live.add(spawned)
    this.exit = new Promise<ExitInfo>((resolve) => {
      spawned.once('exit', (code, signal) => {
        live.delete(spawned)
        if (!this.signalled) this.diedOnItsOwn = true
        resolve({ code, signal })
      })
      spawned.once('error', () => {
        live.delete(spawned)
        this.diedOnItsOwn = true
        resolve({ code: null, signal: null })
      })
    })
  }

  async waitReady(timeoutMs: number): Promise<void> {
    let exited: ExitInfo | undefined
    void this.exit.then((info) => (exited = info))
    const url = `http://127.0.0.1:${this.plan.httpPort}/readyz`
    const deadline = performance.now() + timeoutMs
    let last = 'no answer'
    while (performance.now() < deadline) {
      if (exited !== undefined)
        throw new Error(
          `node ${this.plan.nodeId} exited before ready (code ${exited.code}, signal ${exited.signal})`,
        )
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(1000) })
        if (response.status === 200) return
        last = `${response.status} ${(await response.text()).trim()}`
      } catch {
        // not listening yet
      }
      await sleep(50)
    }
    throw new Error(`node ${this.plan.nodeId}: ${url} not 200 after ${timeoutMs} ms (last: ${last})`)
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    const child = this.child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    // A paused node (SIGSTOP, then SIGCONT) that dies later did die on its own.
    if (signal !== 'SIGSTOP' && signal !== 'SIGCONT') this.signalled = true
    child.kill(signal)
  }

  async stop(): Promise<ExitInfo> {
    const child = this.child
    if (child === undefined) return { code: null, signal: null }
    if (child.exitCode === null && child.signalCode === null) {
      this.signalled = true
      child.kill('SIGTERM')
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const exit = await this.exit
    clearTimeout(killer)
    return exit
  }

  logs(): string {
    return existsSync(this.plan.logFile) ? readFileSync(this.plan.logFile, 'utf8') : ''
  }

  /** `node N: <log path>`, with the last `tail` lines of the log indented below it. */
  describe(tail: number): string {
    const head = `  node ${this.plan.nodeId}: ${this.plan.logFile}`
    if (tail <= 0) return head
    const log = this.logs().trimEnd()
    if (log === '') return `${head} (empty)`
    return [
      head,
      ...log
        .split('\n')
        .slice(-tail)
        .map((line) => `    | ${line}`),
    ].join('\n')
  }

  /** The current process (throws before the first launch). */
  current(): ChildProcess {
    if (this.child === undefined) throw new Error(`node ${this.plan.nodeId} was never started`)
    return this.child
  }

  async restart(): Promise<void> {
    await this.stop()
    this.launch()
    try {
      await this.waitReady(60_000)
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      throw new Error(`${message}\n${this.describe(20)}`)
    }
  }

  handle(): ClusterNode {
    const plan = this.plan
    const current = (): ChildProcess => this.current()
    return {
      nodeId: plan.nodeId,
      grpc: `127.0.0.1:${plan.port}`,
      peer: `127.0.0.1:${plan.peerPort}`,
      http: `127.0.0.1:${plan.httpPort}`,
      dataDir: plan.dataDir,
      logFile: plan.logFile,
      get process(): ChildProcess {
        return current()
      },
      kill: (signal?: NodeJS.Signals) => this.kill(signal),
      exited: () => this.exit,
      stop: () => this.stop(),
      restart: () => this.restart(),
      logs: () => this.logs(),
    }
  }
}

/**
 * Writes probe keys until `shards` distinct shards have acknowledged one (every shard has a
 * leader and a quorum), then deletes them. Keys hash onto shards, so a few dozen suffice for 8;
 * when many more writes all land on fewer shards, the nodes serve fewer shards than asked for
 * (e.g. a kvd that ignores --initial-cluster and --shards) and this fails at once, saying so.
 */
async function waitForWrites(
  endpoints: readonly string[],
  shards: number,
  timeoutMs: number,
  nodes: readonly NodeRunner[],
  access: Pick<KvClientInit, 'tls' | 'token'> = {},
): Promise<void> {
  const client = new KvClient({ endpoints, deadlineMs: Math.min(timeoutMs, 5_000), ...access })
  const deadline = performance.now() + timeoutMs
  const seen = new Set<number>()
  const tried: string[] = []
  let succeeded = 0
  let lastError: string | undefined
  try {
    // Learn node addresses so leader hints can be followed (best effort).
    await client.status().catch(() => undefined)
    for (let i = 0; seen.size < shards; i++) {
      const reached = `writes reached ${seen.size} of ${shards} shards (${[...seen].sort((a, b) => a - b).join(', ') || 'none'})`
      if (succeeded >= 32 * shards)
        throw new Error(`${reached} after ${succeeded} writes: the nodes serve fewer shards than asked for`)
      if (performance.now() > deadline)
        throw new Error(`${reached} within ${timeoutMs} ms (last error: ${lastError ?? 'none'})`)
      const dead = nodes.find((node) => node.diedOnItsOwn)
      if (dead !== undefined) throw new Error(`node ${dead.plan.nodeId} exited while the cluster formed`)
      const key = `__ringkv_ready/${i}`
      tried.push(key)
      try {
        const { receipt } = await client.put(key, 'ready')
        succeeded++
        seen.add(receipt.shardId)
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err)
        await sleep(100)
      }
    }
    // A failed put may still have applied: delete every key tried.
    for (const key of tried) await client.delete(key)
  } finally {
    client.close()
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
