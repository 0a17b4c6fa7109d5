/**
 * Real kvd processes on loopback for integration tests (STYLE.md 7.9; nats.js `NatsServer.start()`).
 *
 * `startKvd()` spawns `node bin/kvd.js` (the compiled server under dist/), waits until its
 * `/readyz` answers 200, and returns a handle. Every process started here is killed when the test
 * process exits, and a data dir the helper created is removed by `stop()`, so a test only has to
 * call `stop()` in `afterAll`/`afterEach` (and even a forgotten one does not leak a process).
 *
 * The helper builds dist/ once per test process when a source file is newer than the compiled
 * server (set RINGKV_TEST_NO_BUILD=1 to skip that check).
 *
 * @example
 * const kvd = await startKvd()
 * const client = new KvServiceClient(kvd.address, credentials.createInsecure())
 * ...
 * await kvd.stop()
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The repository root: the nearest folder above this file with a package.json (this file lives in
 * test/integration/helpers/, or compiled in dist/test/integration/helpers/ for the benchmarks).
 */
export const repoRoot = findRepoRoot(dirname(fileURLToPath(import.meta.url)))

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) return resolve(from, '../../..')
  }
}
const kvdBin = join(repoRoot, 'bin/kvd.js')
const compiledMain = join(repoRoot, 'dist/src/server/main.js')

export interface StartKvdOptions {
  /** Data directory; a fresh temporary one (removed by stop()) when omitted. */
  readonly dataDir?: string
  /** gRPC port on 127.0.0.1; 0 or omitted = pick a free one. */
  readonly port?: number
  /** HTTP port on 127.0.0.1 (/metrics, /healthz, /readyz); 0 or omitted = pick a free one. */
  readonly httpPort?: number
  /** Peer listener port on 127.0.0.1; 0 or omitted = pick a free one. */
  readonly peerPort?: number
  /** Extra environment (merged over the test process's environment). */
  readonly env?: Readonly<Record<string, string>>
  /** Extra command-line arguments, e.g. ['--node-id', '2']. */
  readonly args?: readonly string[]
  /** How long to wait for /readyz; default 30 s. */
  readonly readyTimeoutMs?: number
}

export interface ExitInfo {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface KvdHandle {
  /** gRPC address of the client listener, `127.0.0.1:PORT`. */
  readonly address: string
  /** gRPC address of the peer listener, `127.0.0.1:PORT`. */
  readonly peerAddress: string
  /** HTTP address, `127.0.0.1:PORT`. */
  readonly httpAddress: string
  readonly dataDir: string
  /** Pid of the current process (changes on restart()). */
  readonly pid: number
  /** Sends a signal to the process and returns at once. */
  kill(signal?: NodeJS.Signals): void
  /** Resolves when the current process has exited. */
  exited(): Promise<ExitInfo>
  /** SIGTERM, wait for exit (SIGKILL after 15 s), remove the data dir if the helper created it. */
  stop(): Promise<ExitInfo>
  /** Stops the process gracefully (keeping the data) and starts it again on the same ports and dir. */
  restart(): Promise<void>
  /** Everything the process wrote to stdout and stderr so far (across restarts). */
  logs(): string
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL')
})

/** A free TCP port on 127.0.0.1 (bind to 0, read, close; good enough on loopback). */
export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolvePort(port))
    })
  })
}

let buildChecked = false

/** Builds dist/ when the compiled server is missing or older than some source file. */
/** True when these helpers run compiled (a benchmark under dist/): dist/ is then what runs. */
const compiled = dirname(fileURLToPath(import.meta.url)).includes(`${sep}dist${sep}`)

export function ensureBuilt(): void {
  if (buildChecked || compiled || process.env['RINGKV_TEST_NO_BUILD'] === '1') return
  buildChecked = true
  const builtMs = existsSync(compiledMain) ? statSync(compiledMain).mtimeMs : 0
  if (builtMs > 0 && newestMtimeMs(join(repoRoot, 'src')) <= builtMs) return
  try {
    execFileSync(
      process.execPath,
      [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {
        cwd: repoRoot,
        stdio: 'pipe',
      },
    )
  } catch {
    // tsc emits even with type errors in rooms under construction; what matters is the output below.
  }
  if (!existsSync(compiledMain)) throw new Error(`kvd is not built (${compiledMain}); run npm run build`)
}

function newestMtimeMs(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestMtimeMs(path))
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/**
 * Runs kvd with arbitrary arguments to completion (for tests of failures such as bad config or a
 * locked data dir). Resolves with the exit and the output; kills it after `timeoutMs`.
 */
export async function runKvd(
  args: readonly string[],
  options: { env?: Readonly<Record<string, string>>; timeoutMs?: number } = {},
): Promise<ExitInfo & { readonly stdout: string; readonly stderr: string; readonly elapsedMs: number }> {
  ensureBuilt()
  const startedMs = performance.now()
  const child = spawn(process.execPath, [kvdBin, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  live.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
  const exit = await exitOf(child)
  clearTimeout(timer)
  live.delete(child)
  return { ...exit, stdout, stderr, elapsedMs: performance.now() - startedMs }
}

function exitOf(child: ChildProcess): Promise<ExitInfo> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolveExit) =>
    child.once('exit', (code, signal) => resolveExit({ code, signal: signal as NodeJS.Signals | null })),
  )
}

/** Starts one kvd and waits until it is ready. Rejects (with its output) if it exits first. */
export async function startKvd(options: StartKvdOptions = {}): Promise<KvdHandle> {
  ensureBuilt()
  const ownsDataDir = options.dataDir === undefined
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'ringkv-kvd-'))
  const pickPorts = async (): Promise<{ port: number; httpPort: number; peerPort: number }> => {
    // Distinct: a port just probed and closed may be handed out again.
    const taken = new Set(
      [options.port, options.httpPort, options.peerPort].filter((p) => p !== undefined && p !== 0),
    )
    const pick = async (given: number | undefined): Promise<number> => {
      if (given !== undefined && given !== 0) return given
      for (;;) {
        const port = await freePort()
        if (!taken.has(port)) {
          taken.add(port)
          return port
        }
      }
    }
    return {
      port: await pick(options.port),
      httpPort: await pick(options.httpPort),
      peerPort: await pick(options.peerPort),
    }
  }
  let ports = await pickPorts()
  let output = ''
  let child: ChildProcess | undefined
  let exitPromise: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null })

  const launch = async (): Promise<void> => {
    const args = [
      kvdBin,
      '--data',
      dataDir,
      '--listen',
      `127.0.0.1:${ports.port}`,
      '--http',
      `127.0.0.1:${ports.httpPort}`,
      ...(options.args?.includes('--peer-listen') === true
        ? []
        : ['--peer-listen', `127.0.0.1:${ports.peerPort}`]),
      // One shard unless a test asks for more: the single-node tests address shard 0.
      ...(options.args?.includes('--shards') === true ? [] : ['--shards', '1']),
      ...(options.args ?? []),
    ]
    const spawned = spawn(process.execPath, args, {
      cwd: repoRoot,
      env: { ...process.env, RINGKV_LOG_LEVEL: 'info', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child = spawned
    live.add(spawned)
    spawned.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    spawned.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    exitPromise = exitOf(spawned).then((exit) => {
      live.delete(spawned)
      return exit
    })
    await waitReady(
      `127.0.0.1:${ports.httpPort}`,
      exitPromise,
      options.readyTimeoutMs ?? 30_000,
      () => output,
    )
  }

  // An auto-picked port can be taken between the probe and kvd's bind; try fresh ones then.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch()
      break
    } catch (err) {
      const autoPorts = !options.port || !options.httpPort || !options.peerPort
      if (attempt < 3 && autoPorts && /EADDRINUSE|address already in use/i.test(output)) {
        ports = await pickPorts()
        continue
      }
      child?.kill('SIGKILL')
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true })
      throw err
    }
  }

  const stopProcess = async (): Promise<ExitInfo> => {
    const current = child
    if (current === undefined) return { code: null, signal: null }
    if (current.exitCode === null && current.signalCode === null) current.kill('SIGTERM')
    const killer = setTimeout(() => current.kill('SIGKILL'), 15_000)
    const exit = await exitPromise
    clearTimeout(killer)
    return exit
  }

  return {
    address: `127.0.0.1:${ports.port}`,
    get peerAddress(): string {
      return `127.0.0.1:${ports.peerPort}`
    },
    httpAddress: `127.0.0.1:${ports.httpPort}`,
    dataDir,
    get pid(): number {
      return child?.pid ?? -1
    },
    kill(signal: NodeJS.Signals = 'SIGTERM'): void {
      child?.kill(signal)
    },
    exited: () => exitPromise,
    async stop(): Promise<ExitInfo> {
      const exit = await stopProcess()
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true })
      return exit
    },
    async restart(): Promise<void> {
      await stopProcess()
      await launch()
    },
    logs: () => output,
  }
}

async function waitReady(
  httpAddress: string,
  exit: Promise<ExitInfo>,
  timeoutMs: number,
  logs: () => string,
): Promise<void> {
  let exited: ExitInfo | undefined
  void exit.then((info) => (exited = info))
  const deadlineMs = performance.now() + timeoutMs
  let last = 'no answer'
  while (performance.now() < deadlineMs) {
    if (exited !== undefined)
      throw new Error(`kvd exited before ready (code ${exited.code}, signal ${exited.signal}):\n${logs()}`)
    try {
      const response = await fetch(`http://${httpAddress}/readyz`, { signal: AbortSignal.timeout(1000) })
      if (response.status === 200) return
      last = `${response.status} ${(await response.text()).trim()}`
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`kvd not ready after ${timeoutMs} ms (last /readyz: ${last}):\n${logs()}`)
}
