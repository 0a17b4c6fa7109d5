import { Option } from 'commander'
import { ExitCode } from '../exit-codes.ts'
import { cellBytes, encodeBytes, json, receiptJson, receiptLine, table } from '../output.ts'
import { parsePositive, type CommandSpec } from './command.ts'

/** Longest value shown in a table cell; JSON output carries values whole. */
const tableValueCharsMax = 60

/** `kvctl scan --prefix P [--limit N]`: keys in hash order, not key order. */
export const scanCommand: CommandSpec = {
  name: 'scan',
  arguments: '',
  summary: 'list keys by prefix (in hash order, not key order)',
  kind: 'read',
  details: [
    'Consistency (--consistency): linearizable (default; the shard leader), session, bounded (with',
    '--max-staleness-ms N, the largest staleness accepted), eventual (any replica, at once).',
    'The receipt says who served the answer and how stale it may be: in -o json output, and on',
    'stderr with -v for table output.',
  ],
  options: [
    new Option('--prefix <prefix>', 'only keys starting with this').default(''),
    new Option('--limit <n>', 'at most this many entries').argParser(parsePositive),
  ],
  examples: [
    'kvctl scan --prefix user/ --limit 20',
    'kvctl scan -o json | jq .entries[].key',
    'kvctl scan --prefix user/ --consistency eventual -v',
  ],
  async run(ctx, _args, options) {
    const limit = options['limit'] as number | undefined
    const scan = ctx.client.scan({
      ...ctx.readOptions(),
      prefix: options['prefix'] as string,
      ...(limit !== undefined ? { limit } : {}),
    })
    const entries = await scan.toArray()
    // One receipt per shard that served part of the scan.
    ctx.printReceipts(scan.receipts)
    if (ctx.format === 'json') {
      ctx.print(
        json({
          entries: entries.map((e) => {
            const k = encodeBytes(e.key)
            const v = encodeBytes(e.value)
            return {
              key: k.text,
              keyEncoding: k.encoding,
              value: v.text,
              valueEncoding: v.encoding,
              version: e.version,
              createVersion: e.createVersion,
            }
          }),
          count: entries.length,
          resumes: scan.resumes,
          receipt: scan.receipt === undefined ? null : receiptJson(scan.receipt),
          receipts: scan.receipts.map(receiptJson),
        }),
      )
    } else {
      if (entries.length > 0) {
        ctx.print(
          table([
            ['KEY', 'VERSION', 'VALUE'],
            ...entries.map((e) => [
              cellBytes(e.key),
              String(e.version),
              cellBytes(e.value, tableValueCharsMax),
            ]),
          ]),
        )
      }
      const served =
        scan.receipt === undefined || ctx.receiptsOnStderr ? '' : `; served by ${receiptLine(scan.receipt)}`
      ctx.print(`${entries.length} ${entries.length === 1 ? 'entry' : 'entries'}${served}`)
    }
    return ExitCode.Ok
  },
}
