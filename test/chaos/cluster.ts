/**
 * A ringkv cluster of kvd containers (the image of the repository's Dockerfile) on a user-defined
 * network, started with testcontainers, for the chaos suite.
 *
 * Each node has a fixed address on the network (10.X.Y.(10+id)), so its `--initial-cluster` entry
 * is an IP that the other nodes and this host (where the SDK workload runs) can both dial, and a
 * restarted container keeps it. Nodes run with `--allow-fault-injection` (latency comes from the
 * transport: netem is not available) and can be started with:
 * - `clock`: libfaketime preloaded on the wall clock (not the monotonic one), its setting read from
 *   a file this host rewrites (`skewClock`),
 * - `smallDisk`: /data on a small ext4 file system of its own (a loop mount on this host, so it
 *   survives restarts), which `fillDisk` fills to the last byte from this host.
 *
 * Faults on a node: kill -9 and start, SIGTERM stop and start, `docker pause`/`unpause`, iptables
 * rules in the container's network namespace (`nsenter -t PID -n`), and InjectFault calls.
 */
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import { GenericContainer, type StartedTestContainer } from 'testcontainers'
import { KvClient } from '../../src/client/index.ts'
import {
  chaosImage,
  chaosLabel,
  createNetwork,
  docker,
  removeLabelled,
  run,
  type ChaosNetwork,
} from './docker.ts'

export const clientPort = 7001
export const peerPort = 7101
export const httpPort = 8080
const fakeTimeLibrary = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
const readyMsMax = 60_000
type BindMount = Parameters<GenericContainer['withBindMounts']>[0][number]

/** A container with a fixed IPv4 address on a user-defined network (testcontainers has no setter). */
class FixedAddressContainer extends GenericContainer {
  withAddress(network: string, ip: string): this {
    this.networkMode = network
    this.createOpts = {
      ...this.createOpts,
      NetworkingConfig: { EndpointsConfig: { [network]: { IPAMConfig: { IPv4Address: ip } } } },
    }
    return this
  }
}

export interface ChaosClusterOptions {
  readonly nodes: number
  readonly shards: number
  /** Run id: names and labels every container and network of this cluster. */
  readonly runId: string
  /** Seed (picks the subnet). */
  readonly seed: number
  /** Where node logs and faketime files go. */
  readonly dir: string
  readonly leaseReads?: boolean
  /** Preload libfaketime on every node (clock faults). */
  readonly clock?: boolean
  /** The node whose /data is a file system of this many MiB. */
  readonly smallDisk?: { readonly node: number; readonly mib: number }
  /** More kvd flags for every node (e.g. `--dead-after 4s`), joining ones too. */
  readonly extraArgs?: readonly string[]
}

export interface ChaosNode {
  readonly id: number
  readonly name: string
  readonly ip: string
  /** `IP:7001`, the client listener. */
  readonly address: string
  readonly smallDisk: boolean
}

export class ChaosCluster {
  /** The members: the initial nodes, then those that joined (`join`), less those gone (`retire`). */
  private members: ChaosNode[]
  private readonly containers = new Map<number, StartedTestContainer>()
  /** Containers of nodes gone for good (`retire`): removed with the cluster. */
  private readonly retired: ChaosNode[] = []
  /** Address slots used so far (a joining node takes the next one). */
  private slots: number

  private constructor(
    readonly options: ChaosClusterOptions,
    readonly network: ChaosNetwork,
  ) {
    this.members = Array.from({ length: options.nodes }, (_, i) => {
      const id = i + 1
      const ip = `${network.prefix}${10 + id}`
      return {
        id,
        name: `ringkv-${options.runId}-n${id}`,
        ip,
        address: `${ip}:${clientPort}`,
        smallDisk: options.smallDisk?.node === id,
      }
    })
    this.slots = options.nodes
  }

  get nodes(): readonly ChaosNode[] {
    return this.members
  }

  /** Starts every node, waits for /readyz on each and a write on every shard. */
  static async start(options: ChaosClusterOptions): Promise<ChaosCluster> {
    const network = await createNetwork(`ringkv-${options.runId}`, options.runId, options.seed)
    const cluster = new ChaosCluster(options, network)
    try {
      await Promise.all(cluster.nodes.map((node) => cluster.create(node)))
      await Promise.all(cluster.nodes.map((node) => cluster.waitReady(node)))
      await cluster.waitForWrites(readyMsMax)
      return cluster
    } catch (err) {
      await cluster.saveLogs().catch(() => undefined)
      await cluster.stop()
      throw err
    }
  }

  get endpoints(): string[] {
    return this.nodes.map((node) => node.address)
  }

  node(id: number): ChaosNode {
    const node = this.nodes.find((n) => n.id === id)
    if (node === undefined) throw new RangeError(`no node ${id}`)
    return node
  }

  /** `joinVia`: the members it registers through, for a node that joins a running cluster. */
  private async create(node: ChaosNode, joinVia?: readonly ChaosNode[]): Promise<StartedTestContainer> {
    const initial = this.nodes.map((n) => `${n.id}=${n.ip}:${clientPort}/${n.ip}:${peerPort}`).join(',')
    const args = [
      ...(joinVia === undefined
        ? ['--node-id', String(node.id), '--initial-cluster', initial]
        : ['--join', joinVia.map((n) => n.address).join(','), '--advertise', node.address]),
      '--shards',
      String(this.options.shards),
      '--allow-fault-injection',
      ...(this.options.leaseReads === true ? ['--lease-reads'] : []),
      ...(this.options.extraArgs ?? []),
    ]
    let container = new FixedAddressContainer(chaosImage)
      .withName(node.name)
      .withHostname(`n${node.id}`)
      .withLabels({ [chaosLabel]: this.options.runId })
      .withAddress(this.network.name, node.ip)
      .withCommand(args)
      .withStartupTimeout(readyMsMax)
    const binds: BindMount[] = []
    if (this.options.clock === true) {
      const dir = join(this.options.dir, `faketime-n${node.id}`)
      mkdirSync(dir, { recursive: true })
      chmodSync(dir, 0o755)
      copyFileSync(fakeTimeLibrary, join(dir, 'libfaketime.so.1'))
      writeFileSync(join(dir, 'stamp'), '+0\n', { mode: 0o644 })
      binds.push({ source: dir, target: '/faketime', mode: 'ro' })
      container = container.withEnvironment({
        LD_PRELOAD: '/faketime/libfaketime.so.1',
        FAKETIME_TIMESTAMP_FILE: '/faketime/stamp',
        FAKETIME_CACHE_DURATION: '1',
        // The wall clock only: a monotonic clock that steps back makes Node itself abort (libuv
        // asserts now >= timer base), and a real monotonic clock never does.
        FAKETIME_DONT_FAKE_MONOTONIC: '1',
      })
    }
    if (node.smallDisk) binds.push({ source: await this.mountSmallDisk(node), target: '/data' })
    if (binds.length > 0) container = container.withBindMounts(binds)
    const started = await container.start()
    this.containers.set(node.id, started)
    return started
  }

  /**
   * Starts a new node with `--join` (through every member) at the next free address, waits for
   * its /readyz and for the map to name it, and adds it to the members under the id the meta
   * shard gave it. The executor then gives it its share of the replicas.
   */
  async join(): Promise<ChaosNode> {
    const slot = ++this.slots
    const ip = `${this.network.prefix}${10 + slot}`
    const name = `ringkv-${this.options.runId}-j${slot}`
    const pending: ChaosNode = { id: 0, name, ip, address: `${ip}:${clientPort}`, smallDisk: false }
    const container = await this.create(pending, this.members)
    this.containers.delete(0)
    try {
      await this.waitReady(pending)
      const id = await this.idOf(pending.address)
      const node: ChaosNode = { ...pending, id }
      this.containers.set(id, container)
      this.members = [...this.members, node]
      return node
    } catch (err) {
      this.retired.push(pending)
      await container.stop({ timeout: 5, removeVolumes: true }).catch(() => undefined)
      throw err
    }
  }

  /** The id the map gives the node registered at `address`. */
  private async idOf(address: string, timeoutMs = readyMsMax): Promise<number> {
    const client = new KvClient({ endpoints: this.endpoints, deadlineMs: 3_000 })
    const started = performance.now()
    try {
      for (;;) {
        const map = await client.shardMap().catch(() => undefined)
        const found = map?.nodes.find((n) => n.address === address)
        if (found !== undefined) return found.nodeId
        if (performance.now() - started > timeoutMs)
          throw new Error(`no node registered at ${address} after ${timeoutMs} ms`)
        await sleep(200)
      }
    } finally {
      client.close()
    }
  }

  /**
   * The node leaves the members for good (drained and removed, or dead): no heal starts it again,
   * and checks no longer ask it. Its container (stopped or not) stays until the cluster stops.
   */
  retire(node: ChaosNode): void {
    this.members = this.members.filter((n) => n.id !== node.id)
    this.retired.push(node)
  }

  /** Polls the node's /readyz until 200. */
  async waitReady(node: ChaosNode, timeoutMs = readyMsMax): Promise<number> {
    const started = performance.now()
    for (;;) {
      try {
        const response = await fetch(`http://${node.ip}:${httpPort}/readyz`, {
          signal: AbortSignal.timeout(1000),
        })
        if (response.status === 200) return performance.now() - started
      } catch {
        // not listening yet
      }
      if (performance.now() - started > timeoutMs)
        throw new Error(`node ${node.id}: /readyz not 200 after ${timeoutMs} ms`)
      await sleep(100)
    }
  }

  /** Writes probe keys until every shard acknowledged one; resolves with the time it took. */
  async waitForWrites(timeoutMs: number): Promise<number> {
    const started = performance.now()
    const client = new KvClient({ endpoints: this.endpoints, deadlineMs: 3_000 })
    const seen = new Set<number>()
    try {
      for (let i = 0; seen.size < this.options.shards; i++) {
        if (performance.now() - started > timeoutMs)
          throw new Error(
            `writes reached ${seen.size} of ${this.options.shards} shards within ${timeoutMs} ms`,
          )
        try {
          const { receipt } = await client.put(`__chaos_ready/${i % (8 * this.options.shards)}`, 'ready')
          seen.add(receipt.shardId)
        } catch {
          await sleep(100)
        }
      }
      return performance.now() - started
    } finally {
      client.close()
    }
  }

  // --- faults -------------------------------------------------------------------------------

  /** SIGKILL: the process dies at once; the container (and its data) stays. */
  async kill(node: ChaosNode): Promise<void> {
    await docker(['kill', '--signal', 'KILL', node.name])
  }

  /** SIGTERM, then SIGKILL after 10 s (kvd drains and exits 0). */
  async stopNode(node: ChaosNode): Promise<void> {
    await docker(['stop', '--time', '10', node.name])
  }

  /** Starts a stopped or killed node again (same data, same address) and waits for /readyz. */
  async startNode(node: ChaosNode): Promise<void> {
    await docker(['start', node.name])
    await this.waitReady(node)
  }

  /** Freezes every process of the node (cgroup freezer): it does not know it was paused. */
  async pause(node: ChaosNode): Promise<void> {
    await docker(['pause', node.name])
  }

  async unpause(node: ChaosNode): Promise<void> {
    if ((await this.state(node)) !== 'paused') return
    await docker(['unpause', node.name])
  }

  /** Runs iptables in the node's network namespace. */
  async iptables(node: ChaosNode, args: readonly string[]): Promise<void> {
    await this.inNetns(node, ['iptables', '-w', '5', ...args])
  }

  /** Runs tc (traffic control) in the node's network namespace. */
  async tc(node: ChaosNode, args: readonly string[]): Promise<void> {
    await this.inNetns(node, ['tc', ...args])
  }

  private async inNetns(node: ChaosNode, command: readonly string[]): Promise<void> {
    const pid = (await docker(['inspect', '--format', '{{.State.Pid}}', node.name])).trim()
    if (!/^[1-9]\d*$/.test(pid)) throw new Error(`node ${node.id} is not running (pid '${pid}')`)
    await run('nsenter', ['--target', pid, '--net', ...command])
  }

  /** Removes every filter rule of the node's namespace (heals partitions and packet loss). */
  async flushRules(node: ChaosNode): Promise<void> {
    // A node that is down has no namespace (and a restarted one a fresh namespace, without rules).
    if ((await this.state(node)) === 'down') return
    await this.iptables(node, ['-F', 'INPUT'])
    await this.iptables(node, ['-F', 'OUTPUT'])
  }

  /** Rewrites the node's libfaketime setting (e.g. '+30s', '-5s', '+0 x0.5'); read within ~1 s. */
  skewClock(node: ChaosNode, setting: string): void {
    if (this.options.clock !== true) throw new Error('the cluster was started without clock control')
    writeFileSync(join(this.options.dir, `faketime-n${node.id}`, 'stamp'), `${setting}\n`)
  }

  private smallDiskDir(node: ChaosNode): string {
    return join(this.options.dir, `disk-n${node.id}`)
  }

  /** Makes and mounts the node's small file system (an ext4 image on a loop device); its path. */
  private async mountSmallDisk(node: ChaosNode): Promise<string> {
    const image = join(this.options.dir, `disk-n${node.id}.img`)
    const mountPoint = this.smallDiskDir(node)
    mkdirSync(mountPoint, { recursive: true })
    await run('truncate', ['--size', `${this.options.smallDisk!.mib}M`, image])
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', image])
    await run('mount', ['-o', 'loop', image, mountPoint])
    await run('chown', ['1000:1000', mountPoint])
    return mountPoint
  }

  /** Fills the node's small disk to the last byte (from this host), with one filler file. */
  fillDisk(node: ChaosNode): void {
    if (!node.smallDisk) throw new Error(`node ${node.id} has no small disk`)
    const fd = openSync(join(this.smallDiskDir(node), 'chaos-filler'), 'a')
    try {
      const chunk = Buffer.alloc(1 << 20)
      for (let size = chunk.length; ;) {
        try {
          writeSync(fd, chunk, 0, size)
        } catch (err) {
          if ((err as { code?: unknown }).code !== 'ENOSPC') throw err
          if (size === 1) return
          size = Math.max(1, size >> 1)
        }
      }
    } finally {
      closeSync(fd)
    }
  }

  /** Removes the filler of `fillDisk`. */
  freeDisk(node: ChaosNode): void {
    rmSync(join(this.smallDiskDir(node), 'chaos-filler'), { force: true })
  }

  /** Runs a node script in the node's container (its environment: libfaketime too); its output. */
  async exec(node: ChaosNode, script: string): Promise<string> {
    return await docker(['exec', node.name, 'node', '-e', script])
  }

  /** True while the container runs (false after kill/stop, also when kvd died on its own). */
  async running(node: ChaosNode): Promise<boolean> {
    return (await this.state(node)) !== 'down'
  }

  /** running, paused (frozen, its network namespace still there) or down (killed, stopped, exited). */
  async state(node: ChaosNode): Promise<'running' | 'paused' | 'down'> {
    const state = (
      await docker(['inspect', '--format', '{{.State.Running}} {{.State.Paused}}', node.name])
    ).trim()
    return state === 'true false' ? 'running' : state === 'true true' ? 'paused' : 'down'
  }

  /** Writes every node's log to `dir/<name>.log`; resolves with the paths. */
  async saveLogs(): Promise<string[]> {
    const paths: string[] = []
    for (const node of [...this.nodes, ...this.retired]) {
      const path = join(this.options.dir, `${node.name}.log`)
      try {
        const out = await new Promise<string>((resolve) => {
          // docker logs writes the container's stderr to its own stderr: merge both.
          void run('sh', ['-c', `docker logs ${node.name} 2>&1`]).then(resolve, (err: unknown) =>
            resolve(String(err)),
          )
        })
        writeFileSync(path, out)
        paths.push(path)
      } catch {
        // best effort
      }
    }
    return paths
  }

  /** Removes every container (and its volume) and the network. */
  async stop(): Promise<void> {
    for (const node of [...this.nodes, ...this.retired])
      await docker(['unpause', node.name]).catch(() => undefined)
    await Promise.all(
      [...this.containers.values()].map((c) =>
        c.stop({ timeout: 5, removeVolumes: true }).catch(() => undefined),
      ),
    )
    await removeLabelled(this.options.runId).catch(() => undefined)
    for (const node of this.nodes)
      if (node.smallDisk) {
        await run('umount', [this.smallDiskDir(node)]).catch(() => undefined)
        rmSync(join(this.options.dir, `disk-n${node.id}.img`), { force: true })
      }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
