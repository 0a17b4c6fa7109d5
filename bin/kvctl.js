#!/usr/bin/env node
// kvctl: the ringkv command-line client. Runs the compiled CLI (npm run build), no TypeScript loader.
import { main } from '../dist/src/cli/main.js'

// grpc-js names the TLS server by the host dialled even when that is an IP address, which Node
// flags once per process (DEP0123) though the certificate check is right: keep stderr for the
// warnings that matter.
const [printWarning] = process.listeners('warning')
process.removeAllListeners('warning')
process.on('warning', (warning) => {
  if (warning.code !== 'DEP0123') printWarning?.(warning)
})

// A reader that stops early (`kvctl status | head`) closes the pipe: stop quietly, as git does.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
})
// Let stdout drain before exiting (a pipe may still hold the output).
process.exitCode = code
