/**
 * `npm start`: a local cluster on loopback for trying ringkv out, data under ./data/node<N>.
 *
 * Three nodes: node N listens for clients on 127.0.0.1:700N (gRPC), for its peers on
 * 127.0.0.1:710N and for HTTP on 127.0.0.1:800N, all started with the same --initial-cluster, so
 * the 64 shards (and the meta shard) are Raft groups of three replicas, one on each node. More
 * nodes can join (`kvd --join 127.0.0.1:7001`). Fault injection is on (it is a demo cluster):
 * `kvctl fault` can cut a node off to show the CAP table.
 *
 * `npm start -- --tls`: the same with TLS: a CA, node certificates and an admin client
 * certificate are made once under ./data/certs (kept for later starts), both listeners speak TLS,
 * peers authenticate each other, and clients need a certificate or a token of
 * ./data/certs/auth.json (`kvctl certs token --auth-file data/certs/auth.json` adds one while
 * the cluster runs).
 *
 * It starts each kvd as a child process (bin/kvd.js) logging to data/node<N>/kvd.log, waits until
 * every /readyz answers, prints how to use the cluster, forwards SIGINT/SIGTERM to the children and
 * exits when they have all exited (with 0 when every child exited cleanly).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { createCa, issueClient, issueNode, type Issued } from '../cli/certs/issue.ts'
import { packageRoot } from './paths.ts'

const nodeCount = 3

interface NodePlan {
  readonly nodeId: number
  readonly dataDir: string
  readonly listen: string
  readonly peer: string
  readonly http: string
  readonly logFile: string
}

function plan(count: number, cwd: string): NodePlan[] {
  return Array.from({ length: count }, (_, i) => ({
    nodeId: i + 1,
    dataDir: join(cwd, 'data', `node${i + 1}`),
    listen: `127.0.0.1:${7001 + i}`,
    peer: `127.0.0.1:${7101 + i}`,
    http: `127.0.0.1:${8001 + i}`,
    logFile: join(cwd, 'data', `node${i + 1}`, 'kvd.log'),
  }))
}

/** Days the demo certificates are valid. */
const demoCertDays = 365

/**
 * The demo cluster's certificates under `dir` (made on first use, kept after): ca.crt, node<N>.crt
 * and .key, admin.crt and .key, and an auth file without tokens. Returns each node's kvd flags.
 */
async function demoCertificates(dir: string, nodes: readonly NodePlan[]): Promise<Map<number, string[]>> {
  mkdirSync(dir, { recursive: true })
  const nowMs = Date.now()
  const save = (name: string, issued: Issued): void => {
    writeFileSync(join(dir, `${name}.crt`), issued.certPem)
    writeFileSync(join(dir, `${name}.key`), issued.keyPem, { mode: 0o600 })
  }
  let ca: Issued
  if (existsSync(join(dir, 'ca.crt')) && existsSync(join(dir, 'ca.key')))
    ca = {
      certPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      keyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
    }
  else {
    ca = await createCa({ cluster: 'ringkv', days: demoCertDays, nowMs })
    save('ca', ca)
    save(
      'admin',
      await issueClient(ca, { cluster: 'ringkv', name: 'admin', role: 'admin', days: demoCertDays, nowMs }),
    )
  }
  if (!existsSync(join(dir, 'auth.json')))
    writeFileSync(join(dir, 'auth.json'), '{ "tokens": [] }\n', { mode: 0o600 })
  const flags = new Map<number, string[]>()
  for (const node of nodes) {
    const name = `node${node.nodeId}`
    if (!existsSync(join(dir, `${name}.crt`)))
      save(
        name,
        await issueNode(ca, {
          cluster: 'ringkv',
          name,
          peerAddresses: [node.peer],
          hosts: ['127.0.0.1', 'localhost'],
          days: demoCertDays,
          nowMs,
        }),
      )
    flags.set(node.nodeId, [
      '--cert-file',
      join(dir, `${name}.crt`),
      '--key-file',
      join(dir, `${name}.key`),
      '--ca-file',
      join(dir, 'ca.crt'),
      '--auth-file',
      join(dir, 'auth.json'),
    ])
  }
  return flags
}

async function waitReady(node: NodePlan, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  let last = 'no answer'
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw exitedEarly(node, child)
    try {
      const response = await fetch(`http://${node.http}/readyz`, { signal: AbortSignal.timeout(1000) })
      if (response.status === 200) return
      // 503 with the reason (server/readiness.ts): said if it never gets ready.
      last = (await response.text()).trim()
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`node ${node.nodeId} not ready after ${timeoutMs} ms (its /readyz: ${last})`)
}

/** A node that exited before it was ready, with the last line it wrote (kvd's one-line reason). */
function exitedEarly(node: NodePlan, child: ChildProcess): Error {
  let reason = ''
  try {
    const lines = readFileSync(node.logFile, 'utf8').trimEnd().split('\n')
    const last = lines[lines.length - 1] ?? ''
    if (last.startsWith('kvd: ')) reason = `: ${last.slice('kvd: '.length)}`
  } catch {
    // no log: the code says what there is
  }
  return new Error(
    `node ${node.nodeId} exited before it was ready (code ${child.exitCode ?? child.signalCode})${reason}; its log: ${node.logFile}`,
  )
}

/** True when something already listens on `address` (HOST:PORT), e.g. the nodes of an earlier npm start. */
async function inUse(address: string): Promise<boolean> {
  const [host, port] = address.split(':') as [string, string]
  return await new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'))
    server.listen(Number(port), host, () => server.close(() => resolve(false)))
  })
}

/**
 * Refuses to start over a running cluster: its /readyz would answer for nodes of ours that fail
 * (their ports and data directories are taken), and "ready" would be a lie.
 */
async function takenAddresses(nodes: readonly NodePlan[]): Promise<string[]> {
  const addresses = nodes.flatMap((n) => [n.listen, n.peer, n.http])
  const taken = await Promise.all(addresses.map(inUse))
  return addresses.filter((_, i) => taken[i] === true)
}

export async function runLocalCluster(
  count = nodeCount,
  options: { readonly tls?: boolean } = {},
): Promise<number> {
  const root = packageRoot()
  const nodes = plan(count, process.cwd())
  const taken = await takenAddresses(nodes)
  if (taken.length > 0) {
    process.stderr.write(
      `ringkv: ${taken.join(', ')} already in use: is a cluster (an earlier npm start, or a kvd) running? ` +
        'Stop it first (Ctrl-C in its terminal).\n',
    )
    return 1
  }
  const initialCluster = nodes.map((n) => `${n.nodeId}=${n.listen}/${n.peer}`).join(',')
  const certDir = join(process.cwd(), 'data', 'certs')
  const tlsFlags = options.tls === true ? await demoCertificates(certDir, nodes) : undefined
  const children: ChildProcess[] = []
  const exits: Promise<number>[] = []
  for (const node of nodes) {
    const args = [
      join(root, 'bin', 'kvd.js'),
      '--data',
      node.dataDir,
      '--listen',
      node.listen,
      '--peer-listen',
      node.peer,
      '--http',
      node.http,
      ...(tlsFlags?.get(node.nodeId) ?? []),
    ]
    args.push(
      '--node-id',
      String(node.nodeId),
      '--initial-cluster',
      initialCluster,
      '--allow-fault-injection',
    )
    mkdirSync(node.dataDir, { recursive: true })
    const log = openSync(node.logFile, 'a')
    // Own process group: a Ctrl-C in the terminal reaches the children only through `forward`
    // (once), since kvd treats a second SIGINT as "exit now without draining".
    const child = spawn(process.execPath, args, { stdio: ['ignore', log, log], detached: true })
    child.once('exit', (code, signal) =>
      process.stdout.write(`ringkv: node ${node.nodeId} exited (${signal ?? `code ${code}`})\n`),
    )
    children.push(child)
    exits.push(
      new Promise((resolve) =>
        child.once('exit', (code, signal) => resolve(code ?? (signal === null ? 1 : 128))),
      ),
    )
  }

  const forward = (signal: NodeJS.Signals): void => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal)
  }
  process.on('SIGINT', forward)
  process.on('SIGTERM', forward)
  process.on('exit', () => forward('SIGKILL'))

  try {
    await Promise.all(nodes.map((node, i) => waitReady(node, children[i] as ChildProcess, 60_000)))
    // Ready means ours: a node that exited meanwhile is not.
    children.forEach((child, i) => {
      if (child.exitCode !== null || child.signalCode !== null) throw exitedEarly(nodes[i] as NodePlan, child)
    })
    const endpoints = nodes.map((n) => n.listen).join(',')
    const certs = relative(process.cwd(), certDir)
    const tlsLines =
      tlsFlags === undefined
        ? []
        : [
            `  export KVCTL_CA_FILE=${certs}/ca.crt KVCTL_CERT_FILE=${certs}/admin.crt KVCTL_KEY_FILE=${certs}/admin.key`,
          ]
    process.stdout.write(
      [
        '',
        `ringkv: ${count} node${count === 1 ? '' : 's'} ready (data under ${join(process.cwd(), 'data')})` +
          (tlsFlags === undefined ? ', PLAINTEXT: anyone who reaches these ports may do anything' : ', TLS'),
        ...nodes.map(
          (n) =>
            `  node ${n.nodeId}: grpc ${n.listen}  peers ${n.peer}  http http://${n.http}/metrics  log ${n.logFile}`,
        ),
        '',
        'Try it, in another terminal (in this folder, for the relative paths below):',
        `  alias kvctl="node ${join(root, 'bin', 'kvctl.js')}"`,
        `  export KVCTL_ENDPOINTS=${endpoints}`,
        ...tlsLines,
        '  kvctl put hello world',
        '  kvctl get hello -v                          # the receipt: node, shard, applied index',
        '  kvctl get hello --consistency eventual -v   # any replica, maybe stale, says how stale',
        '  kvctl scan --prefix he',
        '  kvctl status                                # healthy? nodes, shards, leaders',
        '  kvctl shards                                # the shard map: ranges, replicas, leaders, epochs',
        '  kvctl ring                                  # nodes on the ring: vnodes, ownership',
        '',
        ...(tlsFlags === undefined
          ? [
              'Add a fourth node (it registers with the meta shard and appears in kvctl status):',
              `  node ${join(root, 'bin', 'kvd.js')} --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --http 127.0.0.1:8004 --data data/node4`,
            ]
          : [
              'Add a fourth node: its certificate names its peer address, then it joins through node 1:',
              `  kvctl certs node --dir ${certs} --name node4 --peer-address 127.0.0.1:7104 --host 127.0.0.1`,
              `  node ${join(root, 'bin', 'kvd.js')} --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --http 127.0.0.1:8004 --data data/node4 \\`,
              `    --cert-file ${certs}/node4.crt --key-file ${certs}/node4.key --ca-file ${certs}/ca.crt`,
            ]),
        '',
        'The CAP table, live: cut node 1 off from the others, then compare the levels on its side:',
        `  kvctl fault --node-endpoint ${nodes[0]!.listen} --isolate 2,3`,
        `  kvctl --endpoints ${nodes[0]!.listen} get hello --consistency eventual -v`,
        `  kvctl fault --node-endpoint ${nodes[0]!.listen} --clear`,
        ...(tlsFlags === undefined
          ? []
          : [
              '',
              'A bearer token instead of the client certificate (readwrite; kvd takes it within seconds):',
              '  unset KVCTL_CERT_FILE KVCTL_KEY_FILE',
              `  export KVCTL_TOKEN=$(kvctl certs token --name app --role readwrite --auth-file ${certs}/auth.json -o table)`,
            ]),
        '',
        'Ctrl-C stops the cluster.',
        '',
      ].join('\n'),
    )
  } catch (err) {
    process.stderr.write(`ringkv: ${err instanceof Error ? err.message : String(err)}\n`)
    forward('SIGTERM')
  }
  const codes = await Promise.all(exits)
  return codes.every((code) => code === 0) ? 0 : 1
}

// Run when executed directly (`node dist/src/server/local-cluster.js`), not when imported.
if (process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const args = process.argv.slice(2)
  const unknown = args.filter((a) => a !== '--tls')
  if (unknown.length > 0) {
    process.stderr.write(`ringkv: unknown argument ${unknown[0]} (npm start [-- --tls])\n`)
    process.exitCode = 2
  } else process.exitCode = await runLocalCluster(nodeCount, { tls: args.includes('--tls') })
}
