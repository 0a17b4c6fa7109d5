#!/usr/bin/env node
// CI's lockfile drift check: `npm install` must not have changed what this machine installs.
//
// Usage: node scripts/lockfile-check.js BEFORE.json AFTER.json
//
// Entries that only another platform installs (optional, with an `os`, `cpu` or `libc` this
// machine does not match) are left out of the comparison: npm versions disagree on whether to
// record them (npm/cli#8320), and they never change what is installed here. Everything else (every package
// this platform gets, its version, integrity and dependencies, and the root's dependency ranges)
// must be identical, or package.json changed without its lockfile.
import { readFileSync } from 'node:fs'

const [beforePath, afterPath] = process.argv.slice(2)
if (beforePath === undefined || afterPath === undefined) {
  console.error('usage: lockfile-check.js BEFORE.json AFTER.json')
  process.exit(2)
}

/** True when an npm os/cpu list admits `value` (entries may be negated with '!'). */
function admits(list, value) {
  if (!Array.isArray(list) || list.length === 0) return true
  const denied = list.filter((x) => x.startsWith('!')).map((x) => x.slice(1))
  if (denied.includes(value)) return false
  const allowed = list.filter((x) => !x.startsWith('!'))
  return allowed.length === 0 || allowed.includes(value)
}

/** glibc or musl on Linux (npm's `libc` field); undefined elsewhere. */
const libc =
  process.platform !== 'linux'
    ? undefined
    : process.report?.getReport().header.glibcVersionRuntime !== undefined
      ? 'glibc'
      : 'musl'

function installedHere(entry) {
  if (entry.optional !== true) return true
  return (
    admits(entry.os, process.platform) &&
    admits(entry.cpu, process.arch) &&
    (libc === undefined || admits(entry.libc, libc))
  )
}

function relevant(path) {
  const lock = JSON.parse(readFileSync(path, 'utf8'))
  const out = new Map()
  for (const [name, entry] of Object.entries(lock.packages ?? {}))
    if (installedHere(entry)) out.set(name, JSON.stringify(entry))
  return out
}

const before = relevant(beforePath)
const after = relevant(afterPath)
const changed = []
for (const name of new Set([...before.keys(), ...after.keys()]))
  if (before.get(name) !== after.get(name)) changed.push(name === '' ? '(root)' : name)
if (changed.length > 0) {
  console.error(`package-lock.json drifted from package.json for: ${changed.slice(0, 20).join(', ')}`)
  console.error('run npm install and commit package-lock.json')
  process.exit(1)
}
console.log(`lockfile ok: ${after.size} entries installed on ${process.platform}-${process.arch} unchanged`)
