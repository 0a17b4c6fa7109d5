/**
 * The dial timeout (KvClientInit.dialTimeoutMs, kvctl --dial-timeout-ms; etcd's --dial-timeout),
 * as a grpc-js client interceptor on every channel of the SDK.
 *
 * grpc-js has no connect timeout of its own: a call to an endpoint that accepts TCP but never
 * answers the HTTP/2 handshake (a hung process, a port held by something else, a proxy that
 * swallows the connection) waits in CONNECTING for its whole deadline, fails DEADLINE_EXCEEDED,
 * which is never retried, so the client never tries its other endpoints. Here every call (unary
 * or streaming, whatever sends it) first waits for its channel to be READY, for at most the dial
 * timeout and never past the call's own deadline:
 *
 * - READY (at once or later): the call goes out.
 * - TRANSIENT_FAILURE or SHUTDOWN (refused, unresolvable, closed): the call goes out and grpc-js
 *   fails it at once with its own UNAVAILABLE, whose message names the cause (ECONNREFUSED...).
 * - The dial timeout runs out first: the call ends UNAVAILABLE, naming the endpoint and the
 *   timeout, so the retry loop moves to the next endpoint (retry.ts: UNAVAILABLE leaves it).
 * - The call's deadline runs out first: DEADLINE_EXCEEDED, as grpc-js would have said.
 * - The call is cancelled while waiting: CANCELLED.
 *
 * The wait's timer runs on the injected clock; grpc-js's connectivity watch gets the same
 * deadline on the wall clock (it needs one) and counts as the timeout if it fires first.
 */
import {
  InterceptingCall,
  Metadata,
  status as GrpcStatus,
  connectivityState,
  type Channel,
  type Interceptor,
  type InterceptingListener,
  type StatusObject,
} from '@grpc/grpc-js'
import type { Clock, TimerHandle } from '../common/clock.ts'

export interface DialInit {
  /** `host:port`, for the error message. */
  readonly endpoint: string
  readonly dialTimeoutMs: number
}

export interface DialComponents {
  readonly clock: Clock
  /** The channel the calls go through (read when a call starts: the client is made after this). */
  readonly channel: () => ChannelLike
}

/** What the wait needs of a grpc-js channel (its `Channel` interface, as `getChannel()` returns it). */
type ChannelLike = Pick<Channel, 'getConnectivityState' | 'watchConnectivityState'>

type Outcome = 'ready' | 'failed' | 'timeout'

/** An interceptor that holds each call until its channel is ready (see the file comment). */
export function dialInterceptor(init: DialInit, components: DialComponents): Interceptor {
  const { clock } = components
  return (options, nextCall) => {
    let waiting: { cancel(): void; readonly listener: InterceptingListener } | undefined
    const end = (listener: InterceptingListener, code: GrpcStatus, details: string): void => {
      const status: StatusObject = { code, details, metadata: new Metadata() }
      listener.onReceiveStatus(status)
    }
    return new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        const channel = components.channel()
        if (channel.getConnectivityState(true) === connectivityState.READY) {
          next(metadata, listener)
          return
        }
        const deadline = options.deadline
        const callLeftMs =
          deadline === undefined
            ? Infinity
            : (deadline instanceof Date ? deadline.getTime() : deadline) - clock.wallMs()
        const waitMs = Math.max(0, Math.min(init.dialTimeoutMs, callLeftMs))
        const dialBound = init.dialTimeoutMs <= callLeftMs
        const stop = waitReady(channel, waitMs, clock, (outcome) => {
          waiting = undefined
          if (outcome !== 'timeout') next(metadata, listener)
          else if (dialBound)
            end(
              listener,
              GrpcStatus.UNAVAILABLE,
              `no connection to ${init.endpoint} within the dial timeout of ${init.dialTimeoutMs} ms (it accepts no handshake)`,
            )
          else
            end(
              listener,
              GrpcStatus.DEADLINE_EXCEEDED,
              `deadline exceeded while connecting to ${init.endpoint}`,
            )
        })
        if (waiting === undefined && stop !== undefined) waiting = { cancel: stop, listener }
      },
      cancel(next) {
        const w = waiting
        if (w === undefined) {
          next()
          return
        }
        waiting = undefined
        w.cancel()
        end(w.listener, GrpcStatus.CANCELLED, 'cancelled while connecting')
      },
    })
  }
}

/**
 * Calls `done` once: when `channel` is READY, has failed (TRANSIENT_FAILURE, SHUTDOWN), or after
 * `waitMs`. Returns a function that stops waiting without calling `done`, or undefined when `done`
 * was already called.
 */
function waitReady(
  channel: ChannelLike,
  waitMs: number,
  clock: Clock,
  done: (outcome: Outcome) => void,
): (() => void) | undefined {
  if (waitMs <= 0) {
    done('timeout')
    return undefined
  }
  let finished = false
  const finish = (outcome: Outcome): void => {
    if (finished) return
    finished = true
    timer.cancel()
    done(outcome)
  }
  const timer: TimerHandle = clock.setTimer(waitMs, () => finish('timeout'))
  const watch = (): void => {
    if (finished) return
    const state = channel.getConnectivityState(true)
    if (state === connectivityState.READY) return finish('ready')
    if (state === connectivityState.TRANSIENT_FAILURE || state === connectivityState.SHUTDOWN)
      return finish('failed')
    channel.watchConnectivityState(state, new Date(clock.wallMs() + waitMs), (err) => {
      if (err instanceof Error) finish('timeout')
      else watch()
    })
  }
  watch()
  if (finished) return undefined
  return () => {
    finished = true
    timer.cancel()
  }
}
