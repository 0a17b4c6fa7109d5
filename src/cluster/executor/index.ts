/**
 * cluster/executor: rebalancing as a job on the meta leader. A pure core (decide.ts: which moves
 * start now under the throttles, how the job's record follows what happened, pause, resume and
 * cancel), the job record (job.ts), and the shell that reads the meta shard, plans and starts
 * moves through the mover (executor.ts). docs/rebalancing.md, "The executor".
 */
export {
  registryKey,
  runnable,
  step,
  steer,
  withStarted,
  waitReasons,
  type StepInput,
  type StepOutput,
  type Throttles,
  type WaitReason,
} from './decide.ts'
export {
  Executor,
  nodeAction,
  planInputOf,
  planWithMeta,
  underReplicated,
  type ExecutorComponents,
  type ExecutorInit,
  type NodeActionRequest,
  type NodeActionResult,
  type RebalanceStatus,
} from './executor.ts'
export {
  decodeJob,
  encodeJob,
  jobKey,
  jobMoveStates,
  jobStates,
  type JobMove,
  type JobMoveState,
  type JobRecord,
  type JobState,
} from './job.ts'
export { estimatePlan, type EstimateInput, type PlanEstimate } from './estimate.ts'
