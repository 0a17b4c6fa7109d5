/**
 * A script whose only pending work is an SDK backoff must not exit mid-call: the backoff sleep is
 * a keepAlive timer (Clock.setTimer), while deadline timers stay unref'd. Runs the compiled SDK in
 * a real Node process, as a user script would.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ensureBuilt, freePort, repoRoot } from '../helpers/kvd.ts'

function runScript(source: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

describe('client/process exit', () => {
  it('waits out the backoff between retries instead of exiting mid-call', async () => {
    ensureBuilt()
    // Nothing listens there: every attempt fails UNAVAILABLE at once, then the SDK sleeps.
    const port = await freePort()
    const sdk = pathToFileURL(join(repoRoot, 'dist/src/client/index.js')).href
    const r = await runScript(`
      import { KvClient } from ${JSON.stringify(sdk)}
      const client = new KvClient({
        endpoints: ['127.0.0.1:${port}'],
        deadlineMs: 20000,
        retry: { attemptsMax: 4, backoffBaseMs: 400, backoffMaxMs: 400 },
      })
      try {
        await client.put('k', 'v')
        console.log('ok')
      } catch (err) {
        console.log(JSON.stringify({ code: err.code }))
      } finally {
        client.close()
      }
    `)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { code: string }
    expect(out.code).toBe('UNAVAILABLE')
  })
})
