#!/usr/bin/env node
// Generates src/gen from proto/ with buf (shipped as an npm package) and ts-proto (npm), so the
// generated code is reproducible from npm alone. `--check` regenerates into a temporary folder and
// fails when src/gen differs: CI runs it so stale generated code cannot land.
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const buf = join(root, 'node_modules', '.bin', 'buf')
const check = process.argv.includes('--check')

function listFiles(dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) out.push(...listFiles(path))
    else out.push(path)
  }
  return out.sort()
}

function generate(outDir) {
  // buf resolves the template's `out` relative to proto/; generate there, then move.
  const scratch = mkdtempSync(join(tmpdir(), 'ringkv-proto-'))
  try {
    cpSync(join(root, 'proto'), join(scratch, 'proto'), { recursive: true })
    execFileSync(buf, ['lint'], { cwd: join(scratch, 'proto'), stdio: 'inherit' })
    const template = readFileSync(join(root, 'proto', 'buf.gen.yaml'), 'utf8')
      .replace(
        '../node_modules/.bin/protoc-gen-ts_proto',
        join(root, 'node_modules', '.bin', 'protoc-gen-ts_proto'),
      )
      .replace('out: ../src/gen', `out: ${outDir}`)
    execFileSync(buf, ['generate', '--template', template], { cwd: join(scratch, 'proto'), stdio: 'inherit' })
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
}

const target = join(root, 'src', 'gen')
if (!check) {
  rmSync(target, { recursive: true, force: true })
  generate(target)
  console.log(`generated ${listFiles(target).length} files into ${relative(root, target)}`)
} else {
  const fresh = mkdtempSync(join(tmpdir(), 'ringkv-gen-'))
  try {
    generate(fresh)
    const want = listFiles(fresh).map((f) => relative(fresh, f))
    const have = listFiles(target).map((f) => relative(target, f))
    const stale = [...new Set([...want, ...have])].filter((f) => {
      try {
        return readFileSync(join(fresh, f), 'utf8') !== readFileSync(join(target, f), 'utf8')
      } catch {
        return true
      }
    })
    if (stale.length > 0) {
      console.error(`src/gen is stale (run npm run proto): ${stale.join(', ')}`)
      process.exit(1)
    }
    console.log(`src/gen is up to date (${want.length} files)`)
  } finally {
    rmSync(fresh, { recursive: true, force: true })
  }
}
