#!/usr/bin/env node
// kvctl: the ringkv command-line client. Runs the compiled CLI (npm run build), no TypeScript loader.
import { main } from '../dist/src/cli/main.js'

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
