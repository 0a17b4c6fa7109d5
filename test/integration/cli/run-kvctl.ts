/**
 * Runs `node bin/kvctl.js` as a real process (the compiled CLI under dist/, as users run it).
 * Call the kvd helper's `ensureBuilt()` (startKvd does) before the first run.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { repoRoot } from '../helpers/kvd.ts'

export interface KvctlRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

export function runKvctl(
  args: readonly string[],
  options: {
    readonly stdin?: string | Uint8Array
    readonly env?: Record<string, string>
    readonly timeoutMs?: number
  } = {},
): Promise<KvctlRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/kvctl.js'), ...args], {
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000)
    child.on('error', reject)
    // 'close', not 'exit': only then has all of stdout and stderr been read.
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    if (options.stdin !== undefined) child.stdin.end(options.stdin)
    else child.stdin.end()
  })
}
