/**
 * What a kvctl command runs with: injected I/O (so tests run `main` in-process), the global
 * options, and a KvClient made on first use.
 */
import { ErrorCode, KvError } from '../common/errors.ts'
import { KvClient, type KvClientInit } from '../client/client.ts'
import type { ReadOptions, Receipt, WriteOptions } from '../client/types.ts'
import { readConsistencies, writeConsistencies } from '../client/types.ts'
import { receiptLine, type OutputFormat } from './output.ts'

/** The process as a command sees it. */
export interface CliIo {
  readonly stdout: { write(chunk: string): unknown; readonly isTTY?: boolean }
  readonly stderr: { write(chunk: string): unknown }
  /** Read for `put KEY` without a value, or with `-`. */
  readonly stdin: AsyncIterable<Uint8Array | string> & { readonly isTTY?: boolean }
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads `--file PATH`. Default: node:fs/promises readFile. */
  readonly readFile?: (path: string) => Promise<Uint8Array>
  /** Makes the client. Default: `new KvClient(init)`. */
  readonly connect?: (init: KvClientInit) => KvClient
}

/** Global options after parsing and validation. */
export interface GlobalOptions {
  readonly endpoints: readonly string[]
  readonly output: OutputFormat
  readonly consistency: string | undefined
  readonly maxStalenessMs: number | undefined
  readonly deadlineMs: number | undefined
  /** `-v`: with table output, print each answer's receipt on stderr. */
  readonly verbose?: boolean
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

  get client(): KvClient {
    if (this.kvClient === undefined) {
      const init: KvClientInit = {
        endpoints: this.globals.endpoints,
        ...(this.globals.deadlineMs !== undefined ? { deadlineMs: this.globals.deadlineMs } : {}),
      }
      this.kvClient = this.io.connect?.(init) ?? new KvClient(init)
    }
    return this.kvClient
  }

  /** Writes `text` and a newline to stdout. */
  print(text: string): void {
    this.io.stdout.write(`${text}\n`)
  }

  /**
   * With `-v` and table output, writes who served an answer on stderr, one line per receipt
   * (`receipt: node 2, shard 5, index 42, linearizable, fresh`), so stdout stays the data. JSON
   * output carries the receipts in the document instead.
   */
  printReceipts(receipts: readonly Receipt[]): void {
    if (this.globals.verbose !== true || this.format !== 'table') return
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
