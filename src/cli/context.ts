/**
 * What a kvctl command runs with: injected I/O (so tests run `main` in-process), the global
 * options, and a KvClient made on first use.
 *
 * The client talks to the endpoints it is given, without client-side routing, unless `--route`
 * asks for it: a command then exercises what a plain client meets (the node it reaches forwards
 * the request to the shard's leader or a replica, and the receipt names who served it). With
 * `--route` the SDK loads the shard map and sends each request to the right node itself.
 */
import type { Clock } from '../common/clock.ts'
import { SystemClock } from '../common/clock-system.ts'
import { ErrorCode, KvError } from '../common/errors.ts'
import type { AdminCallOptions } from '../client/admin-call.ts'
import { KvClient, type KvClientInit } from '../client/client.ts'
import type { ReadOptions, Receipt, WriteOptions } from '../client/types.ts'
import type { ClientTls } from '../net/index.ts'
import { readConsistencies, writeConsistencies } from '../client/types.ts'
import { receiptLine, type OutputFormat } from './output.ts'

/** The process as a command sees it. */
export interface CliIo {
  /** Bytes only for `get --print-value-only` of a value that is not UTF-8 text. */
  readonly stdout: { write(chunk: string | Uint8Array): unknown; readonly isTTY?: boolean }
  readonly stderr: { write(chunk: string): unknown }
  /** Read for `put KEY` without a value, or with `-`. */
  readonly stdin: AsyncIterable<Uint8Array | string> & { readonly isTTY?: boolean }
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads `--file PATH`. Default: node:fs/promises readFile. */
  readonly readFile?: (path: string) => Promise<Uint8Array>
  /** Makes the client. Default: `new KvClient(init)`. */
  readonly connect?: (init: KvClientInit) => KvClient
  /** The time shown relative to (heartbeat ages). Default: the system clock. */
  readonly clock?: Clock
}

/** Global options after parsing and validation. */
export interface GlobalOptions {
  readonly endpoints: readonly string[]
  readonly output: OutputFormat
  readonly consistency: string | undefined
  readonly maxStalenessMs: number | undefined
  readonly deadlineMs: number | undefined
  /** `--dial-timeout-ms`: how long a call waits for its endpoint's connection. */
  readonly dialTimeoutMs?: number | undefined
  /** `-v`: with table output, print each answer's receipt on stderr. */
  readonly verbose?: boolean
  /** `--route`: route each request by the SDK's shard map (default: to the endpoint given). */
  readonly route?: boolean
  /** `--zone`: with --route, weaker reads prefer replicas in this zone. */
  readonly zone?: string | undefined
  /** `--ca-file` (+ `--cert-file`, `--key-file`, `--server-name`): TLS to the nodes. */
  readonly tls?: ClientTls | undefined
  /** `--token`: a bearer token sent on every call. */
  readonly token?: string | undefined
}

export const endpointsDefault = '127.0.0.1:7001'

export class CliContext {
  readonly io: CliIo
  readonly globals: GlobalOptions
  private kvClient: KvClient | undefined

  constructor(io: CliIo, globals: GlobalOptions) {
    this.io = io
    this.globals = globals
  }

  get format(): OutputFormat {
    return this.globals.output
  }

  /** The clock heartbeat ages are measured against. */
  get clock(): Clock {
    return this.io.clock ?? new SystemClock()
  }

  get client(): KvClient {
    if (this.kvClient === undefined) {
      const init: KvClientInit = {
        endpoints: this.globals.endpoints,
        ...(this.globals.deadlineMs !== undefined ? { deadlineMs: this.globals.deadlineMs } : {}),
        ...(this.globals.dialTimeoutMs !== undefined ? { dialTimeoutMs: this.globals.dialTimeoutMs } : {}),
        // Explicit: kvctl sends to the endpoint it is given unless --route says otherwise.
        routing: { enabled: this.globals.route === true },
        ...(this.globals.zone !== undefined ? { zone: this.globals.zone } : {}),
        ...(this.globals.tls !== undefined ? { tls: this.globals.tls } : {}),
        ...(this.globals.token !== undefined ? { token: this.globals.token } : {}),
      }
      this.kvClient = this.io.connect?.(init) ?? new KvClient(init)
    }
    return this.kvClient
  }

  /**
   * The options of an operator call (the admin API): TLS and token as the global flags say, and
   * `deadlineMs` when given, else the global --deadline-ms (else the call's own default).
   */
  adminOptions(deadlineMs?: number): AdminCallOptions {
    const { tls, token } = this.globals
    const deadline = deadlineMs ?? this.globals.deadlineMs
    return {
      ...(deadline !== undefined ? { deadlineMs: deadline } : {}),
      ...(tls !== undefined ? { tls } : {}),
      ...(token !== undefined ? { token } : {}),
    }
  }

  /** Writes `text` and a newline to stdout. */
  print(text: string): void {
    this.io.stdout.write(`${text}\n`)
  }

  /**
   * True when receipts go to stderr (`-v` with table output) and so not into the table: every
   * receipt is shown once, in the table without -v, on stderr with it.
   */
  get receiptsOnStderr(): boolean {
    return this.globals.verbose === true && this.format === 'table'
  }

  /**
   * With `-v` and table output, writes who served an answer on stderr, one line per receipt
   * (`receipt: node 2, shard 5, index 42, linearizable, fresh`), so stdout stays the data. JSON
   * output carries the receipts in the document instead.
   */
  printReceipts(receipts: readonly Receipt[]): void {
    if (!this.receiptsOnStderr) return
    for (const r of receipts) this.io.stderr.write(`receipt: ${receiptLine(r)}\n`)
  }

  /** Read options from the global flags; a write level here is a usage error. */
  readOptions(): ReadOptions {
    const { consistency, maxStalenessMs, deadlineMs } = this.globals
    if (consistency !== undefined && !(readConsistencies as readonly string[]).includes(consistency)) {
      throw usageError(
        `--consistency for reads is one of ${readConsistencies.join(', ')}; got '${consistency}'`,
      )
    }
    if (consistency === 'bounded' && maxStalenessMs === undefined) {
      throw usageError('--consistency bounded needs --max-staleness-ms')
    }
    return {
      ...(consistency !== undefined
        ? { consistency: consistency as ReadOptions['consistency'] & string }
        : {}),
      ...(maxStalenessMs !== undefined ? { maxStalenessMs } : {}),
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
    }
  }

  /** Write options from the global flags; a read level here is a usage error. */
  writeOptions(): WriteOptions {
    const { consistency, maxStalenessMs, deadlineMs } = this.globals
    if (consistency !== undefined && !(writeConsistencies as readonly string[]).includes(consistency)) {
      throw usageError(
        `--consistency for writes is one of ${writeConsistencies.join(', ')}; got '${consistency}'`,
      )
    }
    if (maxStalenessMs !== undefined) throw usageError('--max-staleness-ms applies to reads only')
    return {
      ...(consistency !== undefined
        ? { consistency: consistency as WriteOptions['consistency'] & string }
        : {}),
      ...(deadlineMs !== undefined ? { deadlineMs } : {}),
    }
  }

  close(): void {
    this.kvClient?.close()
  }
}

/** A usage error found by kvctl itself (exit code 2). */
export function usageError(message: string): KvError {
  return new KvError(ErrorCode.InvalidArgument, message)
}
