/**
 * Rebalancing as Prometheus metrics, read at scrape time from the executor's last poll
 * (cluster/executor). Only the meta leader has a view: elsewhere every family reads 0 and
 * `ringkv_rebalance_meta_leader` says which node to look at.
 *
 * - `ringkv_rebalance_meta_leader` gauge: 1 on the node whose executor runs (the meta leader)
 * - `ringkv_rebalance_moves{state}` gauge: the current job's moves, `running`, `planned` (the
 *   latest plan, not started), `done`, `failed` (ended in this job)
 * - `ringkv_rebalance_job_bytes` gauge: snapshot bytes of the current job's moves that ended done
 * - `ringkv_rebalance_job_paused` gauge: 1 while the job is paused
 * - `ringkv_under_replicated_shards` gauge: shards with fewer live replicas than the replication factor
 * - `ringkv_blocked_shards` gauge: shards that need a move none can be planned for
 * - `ringkv_safe_mode` gauge: 1 while the live nodes or zones cannot hold the replication factor
 */
import { Gauge, type Registry } from 'prom-client'
import type { RebalanceStatus } from '../cluster/executor/index.ts'

export function registerRebalanceMetrics(registry: Registry, view: () => RebalanceStatus | undefined): void {
  const registers = [registry]
  new Gauge({
    name: 'ringkv_rebalance_meta_leader',
    help: 'Is 1 on the meta leader, whose executor runs rebalancing (the other families are 0 elsewhere).',
    registers,
    collect() {
      this.set(view() === undefined ? 0 : 1)
    },
  })
  new Gauge({
    name: 'ringkv_rebalance_moves',
    help: "The current rebalancing job's moves by state: running, planned (not started), done and failed (ended in this job).",
    labelNames: ['state'],
    registers,
    collect() {
      const v = view()
      const job = v?.job
      const open = job !== undefined && (job.state === 'running' || job.state === 'paused')
      this.set({ state: 'running' }, v?.running.length ?? 0)
      this.set({ state: 'planned' }, open ? (v?.plan.moves.length ?? 0) : 0)
      this.set({ state: 'done' }, job?.done ?? 0)
      this.set({ state: 'failed' }, job?.failed ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_rebalance_job_bytes',
    help: 'Snapshot bytes of the current rebalancing job moves that ended done.',
    registers,
    collect() {
      this.set(view()?.job?.bytes ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_rebalance_job_paused',
    help: 'Is 1 while the rebalancing job is paused by an operator.',
    registers,
    collect() {
      this.set(view()?.job?.state === 'paused' ? 1 : 0)
    },
  })
  new Gauge({
    name: 'ringkv_under_replicated_shards',
    help: 'Shards with fewer live replicas than the replication factor (meta leader only).',
    registers,
    collect() {
      this.set(view()?.underReplicated ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_blocked_shards',
    help: 'Shards that need a repair or drain move none can be planned for: no quorum, or no destination (meta leader only).',
    registers,
    collect() {
      this.set(view()?.plan.blocked.length ?? 0)
    },
  })
  new Gauge({
    name: 'ringkv_safe_mode',
    help: 'Is 1 while the live nodes or zones cannot hold the replication factor: only repairs are planned (meta leader only).',
    registers,
    collect() {
      this.set(view()?.plan.safeMode === undefined ? 0 : 1)
    },
  })
}
