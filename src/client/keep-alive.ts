/**
 * Keeps the Node event loop alive while the SDK waits on the injected clock. SystemClock unrefs
 * its timers (a deadline timer must not hold a process open), so a script whose only pending work
 * is an SDK backoff would otherwise exit mid-call (Node: "unsettled top-level await", code 13).
 * A MessagePort with a listener is a ref'd handle that never fires: no time, no randomness, and
 * nothing for the simulator to replace.
 * NB(sdk): a `keepAlive` flag on Clock.setTimer (common/clock-system.ts) would say this better.
 */
export function holdEventLoop(): () => void {
  const { port1, port2 } = new MessageChannel()
  port1.on('message', () => {})
  return () => {
    port1.close()
    port2.close()
  }
}
