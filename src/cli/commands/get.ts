import { Option } from 'commander'
import { strictUtf8 } from '../../client/codec.ts'
import { ErrorCode, KvError } from '../../common/errors.ts'
import { ExitCode } from '../exit-codes.ts'
import { cellBytes, encodeBytes, errorText, json, receiptJson, receiptLine, table } from '../output.ts'
import type { CommandSpec } from './command.ts'

/** `kvctl get KEY`: exit code 5 when the key does not exist. */
export const getCommand: CommandSpec = {
  name: 'get',
  arguments: '<key>',
  summary: 'read a value (exit code 5 when the key does not exist)',
  kind: 'read',
  details: [
    'Consistency (--consistency): linearizable (default; the shard leader), session, bounded (with',
    '--max-staleness-ms N, the largest staleness accepted), eventual (any replica, at once).',
    'The receipt says who served the answer and how stale it may be: in -o json output; in table',
    'output as its last row, or on stderr with -v. --print-value-only writes the value alone, byte',
    'for byte (a newline after it only on a terminal), for scripts: $(kvctl get k --print-value-only).',
  ],
  options: [
    new Option('--print-value-only', 'write only the value, exactly as stored (for scripts); no receipt'),
  ],
  examples: [
    'kvctl get greeting',
    'kvctl get greeting --consistency eventual -o json',
    'kvctl get greeting --consistency bounded --max-staleness-ms 500 -v',
    'kvctl get config/limits --print-value-only > limits.json',
  ],
  async run(ctx, args, options) {
    const [key] = args as [string]
    const res = await ctx.client.get(key, ctx.readOptions())
    const valueOnly = options['printValueOnly'] === true
    if (!valueOnly) ctx.printReceipts([res.receipt])
    const k = encodeBytes(res.key)
    if (!res.found || res.value === null) {
      // Not an error of the call (the receipt says who looked), but a distinct outcome for scripts.
      const notFound = new KvError(ErrorCode.NotFound, `key '${key}' not found`)
      if (ctx.format === 'json') {
        ctx.io.stderr.write(
          `${JSON.stringify({ error: { code: notFound.code, message: notFound.message, key: k.text, keyEncoding: k.encoding, receipt: receiptJson(res.receipt) } })}\n`,
        )
      } else {
        ctx.io.stderr.write(`${errorText({ code: notFound.code, message: notFound.message }, 'table')}\n`)
      }
      return ExitCode.NotFound
    }
    if (valueOnly) {
      const text = strictUtf8(res.value)
      ctx.io.stdout.write(text ?? res.value)
      if (ctx.io.stdout.isTTY === true) ctx.io.stdout.write('\n')
      return ExitCode.Ok
    }
    if (ctx.format === 'json') {
      const v = encodeBytes(res.value)
      ctx.print(
        json({
          key: k.text,
          keyEncoding: k.encoding,
          found: true,
          value: v.text,
          valueEncoding: v.encoding,
          version: res.version,
          createVersion: res.createVersion,
          receipt: receiptJson(res.receipt),
        }),
      )
    } else {
      ctx.print(
        table([
          ['key', cellBytes(res.key)],
          ['value', cellBytes(res.value)],
          ['version', `${res.version} (created ${res.createVersion})`],
          ...(ctx.receiptsOnStderr ? [] : [['served', receiptLine(res.receipt)]]),
        ]),
      )
    }
    return ExitCode.Ok
  },
}
