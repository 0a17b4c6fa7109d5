/**
 * `npm start`: a local cluster on loopback for trying ringkv out, data under ./data/node<N>.
 *
 * Three nodes: node N listens on 127.0.0.1:700N (gRPC) and 127.0.0.1:800N (HTTP), all started
 * with the same --initial-cluster, so the 64 shards (and the meta shard) are Raft groups of three
 * replicas, one on each node. More nodes can join (`kvd --join 127.0.0.1:7001`). Fault
 * injection is on (it is a demo cluster): `kvctl fault` can cut a node off to show the CAP table.
 *
 * It starts each kvd as a child process (bin/kvd.js) logging to data/node<N>/kvd.log, waits until
 * every /readyz answers, prints how to use the cluster, forwards SIGINT/SIGTERM to the children and
 * exits when they have all exited (with 0 when every child exited cleanly).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, openSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { packageRoot } from './paths.ts'

const nodeCount = 3

interface NodePlan {
  readonly nodeId: number
  readonly dataDir: string
  readonly listen: string
  readonly http: string
  readonly logFile: string
}

function plan(count: number, cwd: string): NodePlan[] {
  return Array.from({ length: count }, (_, i) => ({
    nodeId: i + 1,
    dataDir: join(cwd, 'data', `node${i + 1}`),
    listen: `127.0.0.1:${7001 + i}`,
    http: `127.0.0.1:${8001 + i}`,
    logFile: join(cwd, 'data', `node${i + 1}`, 'kvd.log'),
  }))
}

async function waitReady(node: NodePlan, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (performance.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`node ${node.nodeId} exited before it was ready (code ${child.exitCode})`)
    try {
      const response = await fetch(`http://${node.http}/readyz`, { signal: AbortSignal.timeout(1000) })
      if (response.status === 200) return
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`node ${node.nodeId} not ready after ${timeoutMs} ms`)
}

export async function runLocalCluster(count = nodeCount): Promise<number> {
  const root = packageRoot()
  const nodes = plan(count, process.cwd())
  const initialCluster = nodes.map((n) => `${n.nodeId}=${n.listen}`).join(',')
  const children: ChildProcess[] = []
  const exits: Promise<number>[] = []
  for (const node of nodes) {
    const args = [
      join(root, 'bin', 'kvd.js'),
      '--data',
      node.dataDir,
      '--listen',
      node.listen,
      '--http',
      node.http,
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
    const endpoints = nodes.map((n) => n.listen).join(',')
    process.stdout.write(
      [
        '',
        `ringkv: ${count} node${count === 1 ? '' : 's'} ready (data under ${join(process.cwd(), 'data')})`,
        ...nodes.map(
          (n) => `  node ${n.nodeId}: grpc ${n.listen}  http http://${n.http}/metrics  log ${n.logFile}`,
        ),
        '',
        'Try it:',
        `  export KVCTL_ENDPOINTS=${endpoints}`,
        '  npx kvctl put hello world',
        '  npx kvctl get hello -v                          # the receipt: node, shard, applied index',
        '  npx kvctl get hello --consistency eventual -v   # any replica, maybe stale, says how stale',
        '  npx kvctl scan --prefix he',
        '  npx kvctl status                                # nodes, shards, leaders',
        '  npx kvctl shards                                # the shard map: ranges, replicas, leaders, epochs',
        '  npx kvctl ring                                  # nodes on the ring: vnodes, ownership',
        '',
        'Add a fourth node (it registers with the meta shard and appears in kvctl status):',
        '  node bin/kvd.js --join 127.0.0.1:7001 --listen 127.0.0.1:7004 --http 127.0.0.1:8004 --data data/node4',
        '',
        'The CAP table, live: cut node 1 off from the others, then compare the levels on its side:',
        `  npx kvctl fault --node-endpoint ${nodes[0]!.listen} --isolate 2,3`,
        `  npx kvctl --endpoints ${nodes[0]!.listen} get hello --consistency eventual -v`,
        `  npx kvctl fault --node-endpoint ${nodes[0]!.listen} --clear`,
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
  process.exitCode = await runLocalCluster()
}
