// The chart's scale-down check (a pre-upgrade and pre-rollback hook Job; Node.js, as kvctl is).
//
// Refuses (exit 1) a release whose replicaCount would remove pods whose kvd nodes still hold
// replicas, or are part of a move in progress, so that a scale-down never silently drops the
// data on the removed pods' volumes. It reads the cluster through `kvctl status -o json` (the
// nodes of the shard map with their addresses and the replicas each holds, and the running
// moves); a pod's node is the one registered at the pod's advertised address,
// <POD_PREFIX><ordinal>.<PEER_DOMAIN>:<CLIENT_PORT>. Pods below KEEP_PODS stay. A cluster that
// cannot be read is a refusal too: nothing is known to be safe. Exit 0: nothing would be lost.
//
// Environment: KEEP_PODS, POD_PREFIX, PEER_DOMAIN, CLIENT_PORT, and kvctl's own (KVCTL_ENDPOINTS,
// TLS files, token). KVCTL (optional) names the kvctl program (default: kvctl on PATH).
import { spawnSync } from 'node:child_process'

const statusTimeoutMs = 90_000
const outputBytesMax = 64 * 1024 * 1024

function fail(lines) {
  for (const line of lines) console.error(`scale-down check: ${line}`)
  process.exit(1)
}

function setting(name) {
  const value = process.env[name]
  if (value === undefined || value === '') fail([`${name} is not set (the chart sets it)`])
  return value
}

const keep = Number(setting('KEEP_PODS'))
const prefix = setting('POD_PREFIX')
const domain = setting('PEER_DOMAIN')
const port = setting('CLIENT_PORT')
if (!Number.isSafeInteger(keep) || keep < 0) fail([`KEEP_PODS must be a whole number, got ${keep}`])

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const podAddress = new RegExp(`^${escape(prefix)}(\\d+)\\.${escape(domain)}:${escape(port)}$`)
const skip = 'to upgrade anyway (nothing checked), set scaleDownCheck.enabled=false'

const run = spawnSync(process.env.KVCTL || 'kvctl', ['status', '-o', 'json'], {
  encoding: 'utf8',
  timeout: statusTimeoutMs,
  maxBuffer: outputBytesMax,
})
// 0 healthy, 9 degraded: both print the cluster's view. Anything else did not read the cluster.
if (run.error !== undefined || (run.status !== 0 && run.status !== 9)) {
  const why = run.error?.message ?? `exit code ${run.status}: ${(run.stderr ?? '').trim().split('\n')[0]}`
  fail([`cannot read the cluster's status (kvctl status -o json: ${why})`, skip])
}
let status
try {
  status = JSON.parse(run.stdout)
} catch (err) {
  fail([`kvctl status -o json printed no JSON: ${err.message}`, skip])
}
if (status?.map?.ok !== true || !Array.isArray(status.nodes))
  fail(["the cluster's shard map could not be read, so the pods being removed cannot be checked", skip])

const removed = []
for (const node of status.nodes) {
  const match = typeof node?.address === 'string' ? podAddress.exec(node.address) : null
  if (match === null) continue
  const ordinal = Number(match[1])
  if (ordinal >= keep) removed.push({ ordinal, nodeId: node.nodeId, replicas: Number(node.replicas) })
}
removed.sort((a, b) => a.ordinal - b.ordinal)
const removedIds = new Set(removed.map((n) => n.nodeId))
const holding = removed.filter((n) => !(n.replicas === 0))
const moves = Array.isArray(status.moves)
  ? status.moves.filter((m) => removedIds.has(m?.from) || removedIds.has(m?.to))
  : []

if (holding.length > 0 || moves.length > 0) {
  fail([
    `replicaCount ${keep} would remove pods whose nodes still hold data:`,
    ...holding.map(
      (n) =>
        `  pod ${prefix}${n.ordinal} is node ${n.nodeId} and holds ${Number.isFinite(n.replicas) ? n.replicas : 'an unknown number of'} replicas`,
    ),
    ...moves.map(
      (m) => `  shard ${m.shardId} is moving from node ${m.from} to node ${m.to} (step ${m.step})`,
    ),
    'drain those nodes first (kvctl node drain ID, or move each replica off: kvctl shards move SHARD --from ID --to OTHER),',
    'wait until kvctl status shows 0 replicas on them and no move running, then upgrade again',
  ])
}
const which =
  removed.length === 0
    ? 'no node of a removed pod is in the map'
    : `nodes ${[...removedIds].join(', ')} hold no replicas`
console.log(`scale-down check: ok: keeping pods 0..${keep - 1}; ${which}`)
