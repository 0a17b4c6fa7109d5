/**
 * `kvctl certs`: certificates and tokens for a test or small cluster (cli/certs/issue.ts makes the
 * certificates; net/identity.ts is what kvd reads from them).
 *
 *   kvctl certs ca     --dir D                      D/ca.crt, D/ca.key
 *   kvctl certs node   --dir D --peer-address H:P   D/<name>.crt, D/<name>.key (signed by D/ca.*)
 *   kvctl certs client --dir D --name N --role R    D/<name>.crt, D/<name>.key
 *   kvctl certs local  --dir D [--nodes 3]          all of the above for `npm start -- --tls`-style
 *                                                   clusters on 127.0.0.1 (nodes at 7001.., peers
 *                                                   at 7101..; client `admin`)
 *   kvctl certs token  --name N --role R [--auth-file F]   a new bearer token on stdout; its entry
 *                                                   (SHA-256 only) added to F, or printed
 *
 * Existing files are not overwritten without --force. Keys are written with mode 0600.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Option } from 'commander'
import { limits } from '../../common/limits.ts'
import {
  clientNamePattern,
  clusterNameDefault,
  clusterNamePattern,
  isPeerAddress,
  isRole,
  parseAuthFile,
  roles,
  tokenDigest,
  type Role,
} from '../../net/index.ts'
import { createCa, issueClient, issueNode, type Issued } from '../certs/issue.ts'
import { usageError, type CliContext } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { json, table } from '../output.ts'
import { parsePositive, type CommandSpec } from './command.ts'

const kinds = ['ca', 'node', 'client', 'local', 'token'] as const
type Kind = (typeof kinds)[number]

const caDaysDefault = 3650
const leafDaysDefault = 825
const localNodesDefault = 3
const localNodesMax = 16
const localBasePortDefault = 7001
/** Peer ports sit this far above client ports by default (kvd --peer-listen). */
const peerPortOffset = 100

const repeatable = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

/** One file written, for the report. */
interface Written {
  readonly file: string
  readonly what: string
}

export const certsCommand: CommandSpec = {
  name: 'certs',
  arguments: `<${kinds.join('|')}>`,
  summary: 'create a CA, node and client certificates, or a bearer token, for a test or small cluster',
  kind: 'write',
  options: [
    new Option('--dir <dir>', 'where certificates are written (and the CA is read from)').default('certs'),
    new Option('--cluster <name>', 'the cluster name (kvd --cluster-name)').default(clusterNameDefault),
    new Option(
      '--days <n>',
      `validity (default ${caDaysDefault} for a CA, ${leafDaysDefault} otherwise)`,
    ).argParser(parsePositive),
    new Option(
      '--peer-address <host:port>',
      'node: a peer address it serves on (kvd --peer-advertise); repeatable',
    ).argParser(repeatable),
    new Option('--host <name>', 'node: a DNS name or IP clients dial it by; repeatable').argParser(
      repeatable,
    ),
    new Option('--name <name>', 'node: file name; client and token: the principal'),
    new Option('--role <role>', `client and token: ${roles.join(', ')}`),
    new Option('--auth-file <file>', 'token: add its entry to this auth file (kvd --auth-file)'),
    new Option('--nodes <n>', `local: how many nodes (default ${localNodesDefault})`).argParser(
      parsePositive,
    ),
    new Option(
      '--base-port <port>',
      `local: the first node's client port (default ${localBasePortDefault})`,
    ).argParser(parsePositive),
    new Option('--force', 'overwrite existing files'),
  ],
  details: [
    'Certificates are ECDSA P-256. A node certificate names each peer address it may serve on as',
    'ringkv://<cluster>/node/<host:port> and its hosts as DNS or IP names; a client certificate names',
    'ringkv://<cluster>/client/<name>?role=<role>. Tokens are 32 random bytes; the auth file keeps',
    'only their SHA-256.',
  ],
  examples: [
    'kvctl certs local --dir certs      # CA, node1..3 for 127.0.0.1:7001..7003 (peers 7101..7103), client admin',
    'kvctl certs ca --dir certs --cluster prod',
    'kvctl certs node --dir certs --cluster prod --name ringkv-0 --peer-address ringkv-0.ringkv:7101 --host ringkv-0.ringkv --host ringkv.example.com',
    'kvctl certs client --dir certs --cluster prod --name alice --role readonly',
    'kvctl certs token --name app --role readwrite --auth-file auth.json',
  ],
  async run(ctx, args, options) {
    const kind = args[0]
    if (!(kinds as readonly string[]).includes(kind ?? ''))
      throw usageError(`certs needs one of ${kinds.join(', ')}`)
    const cluster = options['cluster'] as string
    if (!clusterNamePattern.test(cluster))
      throw usageError('--cluster: 1..63 of a-z 0-9 . -, starting with a letter or digit')
    const dir = options['dir'] as string
    const force = options['force'] === true
    const nowMs = ctx.clock.wallMs()
    const written: Written[] = []
    const save = async (base: string, issued: Issued, what: string): Promise<void> => {
      const cert = join(dir, `${base}.crt`)
      const key = join(dir, `${base}.key`)
      await writeNew(cert, issued.certPem, 0o644, force)
      await writeNew(key, issued.keyPem, 0o600, force)
      written.push({ file: cert, what }, { file: key, what: `${what} (private key)` })
    }
    switch (kind as Kind) {
      case 'ca': {
        await mkdir(dir, { recursive: true })
        const days = (options['days'] as number | undefined) ?? caDaysDefault
        await save('ca', await createCa({ cluster, days, nowMs }), `CA of cluster ${cluster}`)
        break
      }
      case 'node': {
        const peers = (options['peerAddress'] as string[] | undefined) ?? []
        if (peers.length === 0) throw usageError('certs node needs --peer-address HOST:PORT')
        for (const p of peers)
          if (!isPeerAddress(p)) throw usageError(`bad --peer-address '${p}': expected host:port`)
        const name = fileName(
          options['name'] as string | undefined,
          `node-${peers[0]!.replace(/[^A-Za-z0-9.-]/g, '-')}`,
        )
        const issued = await issueNode(await loadCa(dir), {
          cluster,
          name,
          peerAddresses: peers,
          hosts: (options['host'] as string[] | undefined) ?? [],
          days: (options['days'] as number | undefined) ?? leafDaysDefault,
          nowMs,
        })
        await save(name, issued, `node at ${peers.join(', ')}`)
        break
      }
      case 'client': {
        const name = principal(options['name'])
        const role = roleOf(options['role'])
        const issued = await issueClient(await loadCa(dir), {
          cluster,
          name,
          role,
          days: (options['days'] as number | undefined) ?? leafDaysDefault,
          nowMs,
        })
        await save(name, issued, `client ${name} (${role})`)
        break
      }
      case 'local': {
        await mkdir(dir, { recursive: true })
        const count = (options['nodes'] as number | undefined) ?? localNodesDefault
        if (count > localNodesMax) throw usageError(`--nodes: at most ${localNodesMax}`)
        const base = (options['basePort'] as number | undefined) ?? localBasePortDefault
        if (base + count - 1 + peerPortOffset > 65535)
          throw usageError('--base-port leaves no room for the peer ports')
        const days = (options['days'] as number | undefined) ?? leafDaysDefault
        const ca = await createCa({ cluster, days: Math.max(days, caDaysDefault), nowMs })
        await save('ca', ca, `CA of cluster ${cluster}`)
        for (let i = 0; i < count; i++) {
          const peer = `127.0.0.1:${base + i + peerPortOffset}`
          const issued = await issueNode(ca, {
            cluster,
            name: `node${i + 1}`,
            peerAddresses: [peer],
            hosts: ['127.0.0.1', 'localhost'],
            days,
            nowMs,
          })
          await save(`node${i + 1}`, issued, `node ${i + 1} (client 127.0.0.1:${base + i}, peer ${peer})`)
        }
        await save(
          'admin',
          await issueClient(ca, { cluster, name: 'admin', role: 'admin', days, nowMs }),
          'client admin (admin)',
        )
        break
      }
      case 'token':
        return await token(ctx, options)
    }
    if (ctx.format === 'json') ctx.print(json({ written }))
    else ctx.print(table([['FILE', 'WHAT'], ...written.map((w) => [w.file, w.what])]))
    return ExitCode.Ok
  },
}

/** `certs token`: a new token on stdout, its entry added to --auth-file (or printed). */
async function token(ctx: CliContext, options: Readonly<Record<string, unknown>>): Promise<ExitCode> {
  const name = principal(options['name'])
  const role = roleOf(options['role'])
  const value = randomBytes(32).toString('base64url')
  const entry = { sha256: tokenDigest(value), principal: name, role }
  const file = options['authFile'] as string | undefined
  if (file !== undefined) {
    let current: { tokens?: unknown[]; principals?: Record<string, unknown> } = {}
    let text: string | undefined
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (text !== undefined) {
      parseAuthFile(text, file, limits.authTokensMax)
      current = JSON.parse(text) as typeof current
    }
    const next = { ...current, tokens: [...(current.tokens ?? []), entry] }
    parseAuthFile(JSON.stringify(next), file, limits.authTokensMax)
    await writeAtomically(file, `${JSON.stringify(next, null, 2)}\n`, 0o600)
  }
  if (ctx.format === 'json')
    ctx.print(json({ token: value, principal: name, role, entry, authFile: file ?? null }))
  else {
    ctx.print(value)
    ctx.io.stderr.write(
      file === undefined
        ? `token for ${name} (${role}); add this entry to the auth file's "tokens":\n${JSON.stringify(entry)}\n`
        : `token for ${name} (${role}) added to ${file} (kvd re-reads it within seconds)\n`,
    )
  }
  return ExitCode.Ok
}

function principal(value: unknown): string {
  if (typeof value !== 'string') throw usageError('--name is required')
  if (!clientNamePattern.test(value)) throw usageError(`bad --name '${value}': letters, digits, . _ @ -`)
  return value
}

function roleOf(value: unknown): Role {
  if (!isRole(value)) throw usageError(`--role is one of ${roles.join(', ')}`)
  return value
}

function fileName(given: string | undefined, fallback: string): string {
  const name = given ?? fallback
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) throw usageError(`bad --name '${name}'`)
  return name
}

async function loadCa(dir: string): Promise<Issued> {
  try {
    return {
      certPem: await readFile(join(dir, 'ca.crt'), 'utf8'),
      keyPem: await readFile(join(dir, 'ca.key'), 'utf8'),
    }
  } catch (err) {
    throw usageError(
      `no CA in ${dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); create one with kvctl certs ca --dir ${dir}`,
    )
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch {
    return false
  }
}

async function writeNew(path: string, text: string, mode: number, force: boolean): Promise<void> {
  if (!force && (await exists(path))) throw usageError(`${path} exists (--force overwrites it)`)
  await writeAtomically(path, text, mode)
}

/** Writes a temporary file beside `path` and renames it over, so a reader never sees half a file. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temp = `${path}.tmp-${process.pid}`
  await writeFile(temp, text, { mode })
  await rename(temp, path)
}
