/**
 * The HTTP side of kvd: `/metrics` (Prometheus text format, prom-client), `/healthz` (the
 * process is alive: always 200 while it answers; the liveness answer) and `/readyz` (200 while the
 * node can serve its shards, else 503 with a stable reason code: readiness.ts), in JSON:
 * `{"ready":true}`, or `{"ready":false,"reason":"no_leader","detail":"...","shards":[3]}`.
 * Nothing else; any other path is 404.
 *
 * Metrics (one registry per Kvd, so tests can run several in one process):
 * - `ringkv_requests_total{method, consistency, code}` counter
 * - `ringkv_request_duration_seconds{method, consistency, code}` histogram
 * - `ringkv_requests_in_flight` gauge
 * - `ringkv_refused_requests_total{listener, code}` counter: calls refused before any handler ran
 *   (UNAUTHENTICATED, PERMISSION_DENIED), by listener (`client`, `peer`)
 * - the node's own state, once `exposeNode` is called: build info, forwarded requests, shards,
 *   Raft, peers and snapshots (metrics-node.ts)
 * - the default process metrics (`process_*`, `nodejs_*`)
 * `code` is `OK` or the ErrorCode; `consistency` is the level asked for (`linearizable`,
 * `majority`, ...), or `none` when the request was refused before its level was known.
 * A Multi call counts once as method `Multi` (consistency: its ops' level, or `mixed`), and each
 * of its ops once more as `Multi.Get`, `Multi.Put` or `Multi.Delete` with its own level and code.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { HostPort } from '../common/config.ts'

import type { PipelineMetrics, RequestLabels } from '../net/index.ts'
import { registerNodeMetrics, type NodeMetricsSource } from './metrics-node.ts'
import type { Readiness } from './readiness.ts'

export type { RequestLabels }

/** The metrics of one node. */
export class KvdMetrics implements PipelineMetrics {
  readonly registry = new Registry()
  private readonly requests: Counter<'method' | 'consistency' | 'code'>
  private readonly latency: Histogram<'method' | 'consistency' | 'code'>
  readonly inFlight: Gauge
  private readonly refusals: Counter<'listener' | 'code'>
  private readonly children = new Map<
    string,
    {
      readonly requests: Counter.Internal
      readonly latency: Histogram.Internal<'method' | 'consistency' | 'code'>
    }
  >()

  constructor() {
    collectDefaultMetrics({ register: this.registry })
    this.requests = new Counter({
      name: 'ringkv_requests_total',
      help: 'Client API requests by method, consistency level and outcome code.',
      labelNames: ['method', 'consistency', 'code'],
      registers: [this.registry],
    })
    this.latency = new Histogram({
      name: 'ringkv_request_duration_seconds',
      help: 'Client API request latency by method, consistency level and outcome code.',
      labelNames: ['method', 'consistency', 'code'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    })
    this.inFlight = new Gauge({
      name: 'ringkv_requests_in_flight',
      help: 'Client API requests being served.',
      registers: [this.registry],
    })
    this.refusals = new Counter({
      name: 'ringkv_refused_requests_total',
      help: 'Calls refused before any handler ran (no or bad credentials, not allowed), by listener and code.',
      labelNames: ['listener', 'code'],
      registers: [this.registry],
    })
  }

  refused(labels: { readonly listener: string; readonly code: string }): void {
    this.refusals.inc({ listener: labels.listener, code: labels.code })
  }

  /**
   * Exposes the node's own state (build, forwarded requests, shards, Raft, peers, snapshots), read
   * from `source` at scrape time (metrics-node.ts lists the families). Call once.
   */
  exposeNode(source: NodeMetricsSource): void {
    registerNodeMetrics(this.registry, source)
  }

  observe(labels: RequestLabels, seconds: number): void {
    // prom-client hashes the labels on every call; the label sets are few (methods x levels x
    // codes), so their children are looked up once and kept.
    const key = `${labels.method}\u0000${labels.consistency}\u0000${labels.code}`
    let children = this.children.get(key)
    if (children === undefined) {
      children = {
        requests: this.requests.labels({ ...labels }),
        latency: this.latency.labels({ ...labels }),
      }
      this.children.set(key, children)
    }
    children.requests.inc()
    children.latency.observe(seconds)
  }
}

export interface HttpServerComponents {
  readonly metrics: KvdMetrics
  /** Whether the node can serve its shards now (cheap: asked on every probe). */
  readonly readiness: () => Readiness
}

/** The HTTP server, started by `listen()` and stopped by `close()`. */
export class KvdHttpServer {
  private readonly server: Server
  private readonly components: HttpServerComponents

  constructor(components: HttpServerComponents) {
    this.components = components
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500)
        res.end()
      })
    })
  }

  /** Binds and resolves with the bound address (the real port when 0 was asked). */
  async listen(at: HostPort): Promise<HostPort> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(at.port, at.host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    const address = this.server.address()
    return typeof address === 'object' && address !== null ? { host: at.host, port: address.port } : at
  }

  async close(): Promise<void> {
    if (!this.server.listening) return
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    switch (path) {
      case '/metrics': {
        const body = await this.components.metrics.registry.metrics()
        res.writeHead(200, { 'content-type': this.components.metrics.registry.contentType }).end(body)
        return
      }
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
        return
      case '/readyz': {
        const answer = this.components.readiness()
        res
          .writeHead(answer.ready ? 200 : 503, { 'content-type': 'application/json' })
          .end(`${JSON.stringify(answer)}\n`)
        return
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
    }
  }
}
