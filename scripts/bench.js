#!/usr/bin/env node
// `npm run bench -- <name> [args]`: runs the compiled benchmark dist/test/bench/<name>.js.
// Benchmarks are measurements, never tests: they print medians and ratios against a baseline
// measured in the same run, and they assert nothing about time.
import { existsSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

// grpc-js names the TLS server by the host dialled even when that is an IP address, which Node
// flags once per process (DEP0123) though the certificate check is right (as bin/kvd.js does).
const [printWarning] = process.listeners('warning')
process.removeAllListeners('warning')
process.on('warning', (warning) => {
  if (warning.code !== 'DEP0123') printWarning?.(warning)
})

const root = resolve(import.meta.dirname, '..')
const dir = join(root, 'dist', 'test', 'bench')
const [name, ...args] = process.argv.slice(2)
const available = existsSync(dir)
  ? readdirSync(dir)
      .filter((f) => f.endsWith('.js'))
      .map((f) => f.replace(/\.js$/, ''))
  : []
if (name === undefined || !available.includes(name)) {
  console.error(`usage: npm run bench -- <${available.join('|') || 'name'}> [args]`)
  if (!existsSync(dir)) console.error('no compiled benchmarks: run `npm run build` first')
  process.exit(2)
}
const mod = await import(pathToFileURL(join(dir, `${name}.js`)).href)
if (typeof mod.main !== 'function') {
  console.error(`dist/test/bench/${name}.js exports no main(args)`)
  process.exit(2)
}
await mod.main(args)
