#!/usr/bin/env node
// kvd: one ringkv database node. Runs the compiled server (npm run build), no TypeScript loader.
import { main } from '../dist/src/server/main.js'

const code = await main(process.argv.slice(2), process.env)
process.exit(code)
