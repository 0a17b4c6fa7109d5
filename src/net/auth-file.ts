/**
 * The auth file (kvd --auth-file): bearer tokens and their principals, and role overrides for
 * certificate clients. JSON:
 *
 *   {
 *     "tokens": [
 *       { "sha256": "<64 hex digits: SHA-256 of the token>", "principal": "app", "role": "readwrite" }
 *     ],
 *     "principals": { "alice": "readonly", "mallory": "none" }
 *   }
 *
 * Only digests are stored, so the file is not a list of secrets (`kvctl certs token` makes a
 * token and prints its entry). `principals` changes the role a client certificate carries without
 * reissuing it, and `none` locks that principal out (certificates cannot be revoked otherwise).
 * A token's principal is subject to the same overrides. The file is re-read like the certificates
 * (tls-files.ts); a file that does not parse is refused whole and the previous one stays in force.
 */
import { createHash } from 'node:crypto'
import { ErrorCode, KvError } from '../common/errors.ts'
import { clientNamePattern, isRole, type Role } from './identity.ts'

export interface TokenEntry {
  readonly principal: string
  readonly role: Role
}

export interface AuthTable {
  /** SHA-256 (hex) of each token -> its principal. */
  readonly tokens: ReadonlyMap<string, TokenEntry>
  /** Principal -> its role instead of the certificate's or token's, or 'none' (locked out). */
  readonly overrides: ReadonlyMap<string, Role | 'none'>
}

export const emptyAuthTable: AuthTable = { tokens: new Map(), overrides: new Map() }

/** Longest bearer token accepted (bytes); a longer one is refused before it is hashed. */
export const tokenBytesMax = 512

/** SHA-256 of a token, hex: how the auth file names it. */
export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

function invalid(source: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, `${source}: ${message}`, { details: { field: 'authFile' } })
}

/**
 * Parses the auth file's text (`source` names it in errors). Throws KvError INVALID_ARGUMENT
 * (details.field 'authFile') with one line saying what is wrong.
 */
export function parseAuthFile(text: string, source: string, tokensMax: number): AuthTable {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw invalid(source, `not valid JSON (${(err as Error).message})`)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw invalid(source, 'must hold a JSON object')
  const o = parsed as Record<string, unknown>
  for (const key of Object.keys(o))
    if (key !== 'tokens' && key !== 'principals') throw invalid(source, `unknown key ${JSON.stringify(key)}`)

  const tokens = new Map<string, TokenEntry>()
  const list = o['tokens'] ?? []
  if (!Array.isArray(list)) throw invalid(source, 'tokens must be an array')
  if (list.length > tokensMax) throw invalid(source, `at most ${tokensMax} tokens`)
  for (const [i, entry] of list.entries()) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw invalid(source, `tokens[${i}] must be an object`)
    const e = entry as Record<string, unknown>
    for (const key of Object.keys(e))
      if (key !== 'sha256' && key !== 'principal' && key !== 'role')
        throw invalid(source, `tokens[${i}]: unknown key ${JSON.stringify(key)}`)
    const digest = e['sha256']
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest))
      throw invalid(source, `tokens[${i}].sha256 must be 64 lowercase hex digits (SHA-256 of the token)`)
    const principal = e['principal']
    if (typeof principal !== 'string' || !clientNamePattern.test(principal))
      throw invalid(source, `tokens[${i}].principal must match ${clientNamePattern.source}`)
    const role = e['role']
    if (!isRole(role)) throw invalid(source, `tokens[${i}].role must be admin, readwrite or readonly`)
    if (tokens.has(digest)) throw invalid(source, `tokens[${i}]: the same token twice`)
    tokens.set(digest, { principal, role })
  }

  const overrides = new Map<string, Role | 'none'>()
  const principals = o['principals'] ?? {}
  if (typeof principals !== 'object' || principals === null || Array.isArray(principals))
    throw invalid(source, 'principals must be an object of name -> role')
  for (const [name, role] of Object.entries(principals)) {
    if (!clientNamePattern.test(name)) throw invalid(source, `principals: bad name ${JSON.stringify(name)}`)
    if (role !== 'none' && !isRole(role))
      throw invalid(source, `principals.${name} must be admin, readwrite, readonly or none`)
    overrides.set(name, role)
  }
  if (overrides.size > tokensMax) throw invalid(source, `at most ${tokensMax} principals`)
  return { tokens, overrides }
}
