/**
 * A process-wide lock on a data directory that does not depend on a file: an abstract unix socket
 * (Linux) named after the directory's device and inode. Binding it fails with EADDRINUSE while any
 * live process (this one included) holds it, and the kernel releases it when the holder exits,
 * however it exits. RocksDB's own LOCK file is flock()ed and also released at exit, but a LOCK file
 * that was deleted lets a second process lock a new one: both then write the same directory and the
 * database is damaged. The socket has no file to delete.
 *
 * Abstract sockets live in a network namespace: processes in different namespaces (containers) that
 * share a volume do not see each other's, and keep RocksDB's LOCK as their guard. Elsewhere than
 * Linux there are no abstract sockets and this lock is a no-op.
 */
import { stat } from 'node:fs/promises'
import { createServer } from 'node:net'

export interface DirLock {
  /** Releases the lock (idempotent). */
  release(): Promise<void>
}

/** Why `lockDirectory` failed: another holder (EADDRINUSE), or anything else. */
export class DirLockedError extends Error {
  override readonly name = 'DirLockedError'
}

/** Takes the lock on `dir` (which must exist), or rejects with DirLockedError if it is held. */
export async function lockDirectory(dir: string): Promise<DirLock> {
  if (process.platform !== 'linux') return { release: () => Promise.resolve() }
  const s = await stat(dir)
  const name = `\0ringkv-data-dir:${s.dev}:${s.ino}`
  const server = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new DirLockedError(`${dir} is held by a live process`) : err),
    )
    server.listen({ path: name, exclusive: true }, () => resolve())
  })
  // The lock must not keep the process alive by itself.
  server.unref()
  let released: Promise<void> | undefined
  return {
    release: () =>
      (released ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
      })),
  }
}
