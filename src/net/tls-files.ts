/**
 * The node's credential files, read at start and re-read on an interval so certificates and
 * tokens can be replaced without a restart (kvd --cert-file, --key-file, --ca-file, --auth-file).
 *
 * At start every file must read and check, or kvd does not start (one clear line). Then, every
 * limits.credentialsReloadMs, the files are read again; when their bytes changed, the new set is
 * checked as at start and, if it passes, put in force: listeners (tls.ts) swap the TLS context of
 * the servers (new connections use the new certificate; open ones keep theirs) and of the peer
 * channels (new connections), and the authenticator takes the new auth table. A set that does not
 * check (say the certificate was replaced before its key) is refused, the previous one stays in
 * force, and the refusal is logged once per distinct content, so a later complete replacement is
 * taken at the next read.
 *
 * Checks of a TLS set: each file at most limits.credentialFileBytesMax; the certificate and key
 * parse and belong together; the certificate was issued by one of the CA certificates; it is
 * within its validity period; it names this node's peer address for this cluster
 * (identity.ts nodeUri); and Node builds a TLS context from the three.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFile as fsReadFile, stat } from 'node:fs/promises'
import { createSecureContext } from 'node:tls'
import type { Clock, TimerHandle } from '../common/clock.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { Logger } from '../common/logger.ts'
import { parseAuthFile, type AuthTable } from './auth-file.ts'
import { certificateIdentity } from './identity.ts'

/** One checked set of TLS files. */
export interface TlsMaterial {
  readonly ca: Buffer
  readonly cert: Buffer
  readonly key: Buffer
  /** The certificate's validity end (ms since the epoch), for logs. */
  readonly notAfterMs: number
  /** SHA-256 fingerprint of the certificate, for logs. */
  readonly fingerprint: string
}

export interface CredentialFilesInit {
  readonly certFile?: string | undefined
  readonly keyFile?: string | undefined
  readonly caFile?: string | undefined
  readonly authFile?: string | undefined
  /** The cluster name certificates must carry (identity.ts). */
  readonly cluster: string
  /** This node's peer address: its certificate must name it. */
  readonly peerAddress: string
  readonly reloadMs: number
  readonly fileBytesMax: number
  readonly tokensMax: number
}

export interface CredentialFilesComponents {
  readonly clock: Clock
  readonly logger: Logger
  /** Reads a file; default node:fs (tests inject). Throws ENOENT and the like. */
  readonly readFile?: (path: string, bytesMax: number) => Promise<Buffer>
}

type Listener<T> = (value: T) => void

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message, { details: { field } })
}

/** Reads a file of at most `bytesMax` bytes (a larger one is refused before it is read). */
async function readBounded(path: string, bytesMax: number): Promise<Buffer> {
  const info = await stat(path)
  if (info.size > bytesMax) throw new Error(`larger than ${bytesMax} bytes`)
  return await fsReadFile(path)
}

/** The PEM blocks of one kind in `pem` (a CA file may hold several certificates). */
function pemBlocks(pem: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, 'g')
  return pem.match(re) ?? []
}

/**
 * Checks a TLS set (see the file comment) and returns it as material, or throws KvError
 * INVALID_ARGUMENT naming the file at fault.
 */
export function checkTlsMaterial(
  files: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer },
  expect: { readonly cluster: string; readonly peerAddress: string; readonly nowMs: number },
): TlsMaterial {
  const caBlocks = pemBlocks(files.ca.toString('utf8'), 'CERTIFICATE')
  if (caBlocks.length === 0) throw invalid('caFile', 'the CA file holds no PEM certificate')
  let cas: X509Certificate[]
  try {
    cas = caBlocks.map((block) => new X509Certificate(block))
  } catch (err) {
    throw invalid('caFile', `the CA file does not parse: ${(err as Error).message}`)
  }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(files.cert)
  } catch (err) {
    throw invalid('certFile', `the certificate does not parse: ${(err as Error).message}`)
  }
  let keyMatches: boolean
  try {
    keyMatches = cert.checkPrivateKey(createPrivateKey(files.key))
  } catch (err) {
    throw invalid('keyFile', `the key does not parse: ${(err as Error).message}`)
  }
  if (!keyMatches) throw invalid('keyFile', 'the key does not belong to the certificate')
  if (!cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey)))
    throw invalid('certFile', 'the certificate was not issued by a certificate of the CA file')
  const notBeforeMs = Date.parse(cert.validFrom)
  const notAfterMs = Date.parse(cert.validTo)
  if (!(expect.nowMs >= notBeforeMs && expect.nowMs <= notAfterMs))
    throw invalid('certFile', `the certificate is valid from ${cert.validFrom} to ${cert.validTo}, not now`)
  const identity = certificateIdentity(cert.subjectAltName, expect.cluster)
  if (!identity.nodeAddresses.includes(expect.peerAddress))
    throw invalid(
      'certFile',
      `the certificate does not name this node: it needs the URI ringkv://${expect.cluster}/node/${expect.peerAddress}` +
        (identity.nodeAddresses.length > 0 ? ` (it names ${identity.nodeAddresses.join(', ')})` : ''),
    )
  try {
    createSecureContext({ ca: files.ca, cert: files.cert, key: files.key })
  } catch (err) {
    throw invalid('certFile', `no TLS context from these files: ${(err as Error).message}`)
  }
  return { ...files, notAfterMs, fingerprint: cert.fingerprint256 }
}

/** The node's credential files (see the file comment). */
export class CredentialFiles {
  private readonly init: CredentialFilesInit
  private readonly components: CredentialFilesComponents
  private readonly log: Logger
  private readonly read: (path: string, bytesMax: number) => Promise<Buffer>
  private tlsMaterial: TlsMaterial | undefined
  private authTable: AuthTable | undefined
  private authBytes: Buffer | undefined
  private readonly tlsListeners: Listener<TlsMaterial>[] = []
  private readonly authListeners: Listener<AuthTable>[] = []
  private timer: TimerHandle | undefined
  private stopped = false
  private reloading = false
  /** The content last refused, so one bad state is logged once. */
  private lastRefused = ''
  private reloads = 0

  private constructor(init: CredentialFilesInit, components: CredentialFilesComponents) {
    this.init = init
    this.components = components
    this.log = components.logger.child({ component: 'credentials' })
    this.read = components.readFile ?? readBounded
  }

  /**
   * Reads and checks every configured file. Throws KvError INVALID_ARGUMENT (with the flag's
   * field) when one is missing, unreadable or does not check.
   */
  static async load(
    init: CredentialFilesInit,
    components: CredentialFilesComponents,
  ): Promise<CredentialFiles> {
    const tlsGiven = [init.certFile, init.keyFile, init.caFile].filter((f) => f !== undefined).length
    if (tlsGiven !== 0 && tlsGiven !== 3)
      throw invalid('certFile', '--cert-file, --key-file and --ca-file go together (all three or none)')
    const files = new CredentialFiles(init, components)
    const tls = await files.readTls()
    if (tls !== undefined) files.tlsMaterial = checkTlsMaterial(tls, files.expectation())
    const auth = await files.readAuth()
    if (auth !== undefined) {
      files.authTable = files.parseAuth(auth)
      files.authBytes = auth
    }
    return files
  }

  /** The TLS set in force; undefined when no TLS files are configured (plaintext). */
  get tls(): TlsMaterial | undefined {
    return this.tlsMaterial
  }

  /** The auth table in force; undefined when no auth file is configured. */
  get auth(): AuthTable | undefined {
    return this.authTable
  }

  /** Successful reloads since start (for tests and logs). */
  get reloadCount(): number {
    return this.reloads
  }

  onTls(listener: Listener<TlsMaterial>): void {
    this.tlsListeners.push(listener)
  }

  onAuth(listener: Listener<AuthTable>): void {
    this.authListeners.push(listener)
  }

  /** Starts re-reading the files on the interval (nothing to do without files). */
  start(): void {
    if (this.tlsMaterial === undefined && this.authTable === undefined) return
    this.schedule()
  }

  stop(): void {
    this.stopped = true
    this.timer?.cancel()
    this.timer = undefined
  }

  /** Reads the files now and puts a changed, checked set in force. Never throws. */
  async reload(): Promise<void> {
    if (this.reloading || this.stopped) return
    this.reloading = true
    try {
      await this.reloadTls()
      await this.reloadAuth()
    } finally {
      this.reloading = false
    }
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = this.components.clock.setTimer(this.init.reloadMs, () => {
      this.timer = undefined
      void this.reload().finally(() => this.schedule())
    })
  }

  private expectation(): { cluster: string; peerAddress: string; nowMs: number } {
    return {
      cluster: this.init.cluster,
      peerAddress: this.init.peerAddress,
      nowMs: this.components.clock.wallMs(),
    }
  }

  private async readTls(): Promise<{ ca: Buffer; cert: Buffer; key: Buffer } | undefined> {
    const { certFile, keyFile, caFile } = this.init
    if (certFile === undefined || keyFile === undefined || caFile === undefined) return undefined
    return {
      cert: await this.readOne(certFile, 'certFile'),
      key: await this.readOne(keyFile, 'keyFile'),
      ca: await this.readOne(caFile, 'caFile'),
    }
  }

  private async readAuth(): Promise<Buffer | undefined> {
    if (this.init.authFile === undefined) return undefined
    return await this.readOne(this.init.authFile, 'authFile')
  }

  private async readOne(path: string, field: string): Promise<Buffer> {
    try {
      return await this.read(path, this.init.fileBytesMax)
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      throw invalid(field, `cannot read ${path}: ${reason}`)
    }
  }

  private parseAuth(bytes: Buffer): AuthTable {
    return parseAuthFile(bytes.toString('utf8'), this.init.authFile ?? 'auth file', this.init.tokensMax)
  }

  private async reloadTls(): Promise<void> {
    const current = this.tlsMaterial
    if (current === undefined) return
    let files: { ca: Buffer; cert: Buffer; key: Buffer }
    try {
      files = (await this.readTls())!
    } catch (err) {
      this.refused('tls-read', err)
      return
    }
    if (files.ca.equals(current.ca) && files.cert.equals(current.cert) && files.key.equals(current.key))
      return
    let material: TlsMaterial
    try {
      material = checkTlsMaterial(files, this.expectation())
    } catch (err) {
      this.refused(`tls:${files.cert.length}:${files.key.length}:${files.ca.length}`, err)
      return
    }
    this.tlsMaterial = material
    this.reloads++
    this.lastRefused = ''
    this.log.info(
      { fingerprint: material.fingerprint, notAfter: new Date(material.notAfterMs).toISOString() },
      'new TLS certificate in force (new connections use it)',
    )
    for (const listener of this.tlsListeners) listener(material)
  }

  private async reloadAuth(): Promise<void> {
    if (this.authTable === undefined || this.authBytes === undefined) return
    let bytes: Buffer
    try {
      bytes = (await this.readAuth())!
    } catch (err) {
      this.refused('auth-read', err)
      return
    }
    if (bytes.equals(this.authBytes)) return
    let table: AuthTable
    try {
      table = this.parseAuth(bytes)
    } catch (err) {
      this.refused(`auth:${bytes.length}`, err)
      return
    }
    this.authTable = table
    this.authBytes = bytes
    this.reloads++
    this.lastRefused = ''
    this.log.info({ tokens: table.tokens.size, principals: table.overrides.size }, 'new auth file in force')
    for (const listener of this.authListeners) listener(table)
  }

  private refused(signature: string, err: unknown): void {
    if (signature === this.lastRefused) return
    this.lastRefused = signature
    this.log.error(
      { err: err instanceof Error ? err.message : String(err) },
      'credential files not reloaded; the previous ones stay in force',
    )
  }
}
