#!/usr/bin/env node
// kvd: one ringkv database node. Runs the compiled server (npm run build), no TypeScript loader.
import { main } from '../dist/src/server/main.js'

// grpc-js names the TLS server by the host dialled even when that is an IP address, which Node
// flags once per process (DEP0123) though the certificate check is right: keep stderr for the
// warnings that matter.
const [printWarning] = process.listeners('warning')
process.removeAllListeners('warning')
process.on('warning', (warning) => {
  if (warning.code !== 'DEP0123') printWarning?.(warning)
})

const code = await main(process.argv.slice(2), process.env)
process.exit(code)
