#!/usr/bin/env node
// `npm run image [-- --tag T] [-- --base IMAGE]`: builds the ringkv image from the repository's
// Dockerfile with the local docker engine.
//
// 1. Compiles the server (npm run build) unless --no-build.
// 2. Gathers the build context in a temporary directory: package.json, bin/, proto/, dist/src/,
//    deploy/image/ (the `kvd` and `kvctl` commands on the image's PATH) and
//    the production dependencies exactly as installed here (`npm ls --omit=dev`; the RocksDB
//    binding's prebuilds are linux-x64 glibc, so this host must be linux-x64 glibc too).
// 3. Picks the base: --base IMAGE when given; else the Dockerfile's default (node:20-bookworm-slim)
//    when the engine already has it; else a local base made with `docker import` from this
//    host's own node binary, the shared libraries it needs, /bin/sh, mkdir and chown, and a
//    /etc/passwd with the `node` user (uid 1000, as in the official image). Nothing is pulled.
// 4. `docker build -f Dockerfile --build-arg BASE=<base> -t <tag> <context>`.
// Prints the tag on the last line. Exit code 0 on success, 1 on failure, 2 on a bad argument.
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
export const defaultTag = 'ringkv:local'
const officialBase = 'node:20-bookworm-slim'

function parseArgs(argv) {
  const opts = { tag: defaultTag, base: undefined, build: true }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--tag' && argv[i + 1] !== undefined) opts.tag = argv[++i]
    else if (arg === '--base' && argv[i + 1] !== undefined) opts.base = argv[++i]
    else if (arg === '--no-build') opts.build = false
    else {
      console.error(`image: unknown argument ${arg} (use --tag T, --base IMAGE, --no-build)`)
      process.exit(2)
    }
  }
  return opts
}

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...options })
  if (result.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${result.status})`)
}

function imageExists(ref) {
  return spawnSync('docker', ['image', 'inspect', ref], { stdio: 'ignore' }).status === 0
}

/** The production packages' folders, relative to the repository root. */
function productionPackages() {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--parseable', '--all'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && resolve(line) !== root)
    .map((line) => relative(root, line))
    .filter((rel) => rel.startsWith('node_modules'))
}

function stageContext() {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-image-'))
  for (const path of ['package.json', 'bin', 'proto', 'dist/src', 'deploy/image'])
    cpSync(join(root, path), join(dir, path), { recursive: true })
  for (const pkg of productionPackages()) {
    mkdirSync(dirname(join(dir, pkg)), { recursive: true })
    // A package nested in another is copied with its parent: skip it then.
    if (!existsSync(join(dir, pkg)))
      cpSync(join(root, pkg), join(dir, pkg), { recursive: true, dereference: true })
  }
  return dir
}

/** The shared libraries a binary loads, by absolute path (ldd's `=> /path` and the loader). */
function librariesOf(binary) {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' })
  const libs = []
  for (const line of out.split('\n')) {
    const match = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line)
    if (match) libs.push(match[1])
  }
  return libs
}

/** A base image from this host's node (same version, glibc), made with `docker import`. */
function localBase() {
  const tag = `ringkv-base:node${process.versions.node}`
  if (imageExists(tag)) return tag
  console.log(`image: ${officialBase} is not available here; importing ${tag} from this host`)
  const rootfs = mkdtempSync(join(tmpdir(), 'ringkv-base-'))
  try {
    const which = (name) => execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim()
    const binaries = {
      '/usr/local/bin/node': process.execPath,
      '/bin/sh': which('dash'),
      '/bin/mkdir': which('mkdir'),
      '/bin/chown': which('chown'),
    }
    const files = new Set()
    for (const [at, from] of Object.entries(binaries)) {
      mkdirSync(dirname(join(rootfs, at)), { recursive: true })
      cpSync(from, join(rootfs, at), { dereference: true })
      for (const lib of librariesOf(from)) files.add(lib)
    }
    for (const lib of files) {
      mkdirSync(dirname(join(rootfs, lib)), { recursive: true })
      cpSync(lib, join(rootfs, lib), { dereference: true })
    }
    for (const d of ['tmp', 'etc', 'home/node', 'usr/bin']) mkdirSync(join(rootfs, d), { recursive: true })
    chmodSync(join(rootfs, 'tmp'), 0o1777)
    // /usr/bin/node as in the Debian package; /usr/local/bin/node as in the official image.
    cpSync(join(rootfs, 'usr/local/bin/node'), join(rootfs, 'usr/bin/node'))
    writeFileSync(
      join(rootfs, 'etc/passwd'),
      'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n',
    )
    writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nnode:x:1000:\n')
    writeFileSync(join(rootfs, 'etc/nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n')
    const tar = spawnSync(
      'sh',
      ['-c', `tar -C '${rootfs}' --numeric-owner -c . | docker import - '${tag}'`],
      {
        stdio: 'inherit',
      },
    )
    if (tar.status !== 0) throw new Error(`docker import of ${tag} failed`)
    return tag
  } finally {
    rmSync(rootfs, { recursive: true, force: true })
  }
}

export function buildImage(argv) {
  const opts = parseArgs(argv)
  if (opts.build) run('npm', ['run', 'build'])
  const base = opts.base ?? (imageExists(officialBase) ? officialBase : localBase())
  const context = stageContext()
  try {
    run('docker', [
      'build',
      '--file',
      join(root, 'Dockerfile'),
      '--build-arg',
      `BASE=${base}`,
      '--label',
      'org.ringkv.image=1',
      '--tag',
      opts.tag,
      context,
    ])
  } finally {
    rmSync(context, { recursive: true, force: true })
  }
  return opts.tag
}

if (resolve(process.argv[1] ?? '') === resolve(import.meta.filename)) {
  try {
    console.log(buildImage(process.argv.slice(2)))
  } catch (err) {
    console.error(`image: ${err instanceof Error ? err.message : String(err)}`)
    process.exit(1)
  }
}
