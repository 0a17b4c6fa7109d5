/**
 * Global setup of the chaos project: fails at once, saying why, when no docker engine answers (or
 * nsenter or iptables are missing), and builds the image the suite runs (scripts/image.js, the
 * repository's Dockerfile) unless RINGKV_CHAOS_IMAGE names one that exists already.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { chaosImage, docker, dockerUnavailable } from './docker.ts'

export default async function setup(): Promise<void> {
  const why = await dockerUnavailable()
  if (why !== undefined)
    throw new Error(
      `the chaos suite needs a docker engine, nsenter and iptables on this host (README: Chaos tests): ${why}`,
    )
  process.env['TESTCONTAINERS_RYUK_DISABLED'] = 'true'
  const given = process.env['RINGKV_CHAOS_IMAGE'] !== undefined
  const exists = await docker(['image', 'inspect', chaosImage]).then(
    () => true,
    () => false,
  )
  if (given && exists) return
  if (given) throw new Error(`RINGKV_CHAOS_IMAGE=${chaosImage} does not exist (build it with npm run image)`)
  const root = join(import.meta.dirname, '..', '..')
  const built = spawnSync(process.execPath, [join(root, 'scripts', 'image.js'), '--tag', chaosImage], {
    cwd: root,
    stdio: 'inherit',
  })
  if (built.status !== 0) throw new Error(`npm run image failed (exit ${built.status})`)
}
