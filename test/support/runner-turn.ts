/**
 * One turn of the real event loop for the test runner, between simulated runs. A host simulator run
 * is one long chain of microtasks (test/sim/host/drain.ts) and never lets the runner's own messages
 * through while it goes on; a test that runs seeds in a loop would starve the runner (vitest fails a
 * worker whose calls go unanswered for a minute). This lives outside test/sim on purpose: it is not
 * part of any simulation, and nothing of a run may wait on real time.
 */
export async function letTheRunnerThrough(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve))
}
