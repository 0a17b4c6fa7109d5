/**
 * Where the package's own files are, found from this module's location so the same code works
 * from src/ (vitest) and from dist/src/ (the compiled kvd and kvctl): walk up to the package.json named
 * "ringkv".
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

let root: string | undefined

/** The package root (the directory holding ringkv's package.json and proto/). */
export function packageRoot(): string {
  if (root !== undefined) return root
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const manifest = join(dir, 'package.json')
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'ringkv'
    ) {
      root = dir
      return dir
    }
    const parent = dirname(dir)
    if (parent === dir) throw new Error('cannot find the ringkv package root')
    dir = parent
  }
}

/** The package version from package.json. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {
    version?: unknown
  }
  return typeof manifest.version === 'string' ? manifest.version : '0.0.0'
}

/** The proto/ directory (include root for ringkv/v1/*.proto). */
export function protoRoot(): string {
  return join(packageRoot(), 'proto')
}
