import { Option } from 'commander'
import { ExitCode } from '../exit-codes.ts'
import { encodeBytes, json, receiptJson, receiptLine, table } from '../output.ts'
import { parseUint, type CommandSpec } from './command.ts'

/** `kvctl del KEY`: deleting a missing key succeeds with `deleted: false`. */
export const delCommand: CommandSpec = {
  name: 'del',
  aliases: ['delete'],
  arguments: '<key>',
  summary: 'delete a key (succeeds, with deleted=false, when it does not exist)',
  kind: 'write',
  details: [
    'Consistency (--consistency): majority (default; committed on a quorum), all (applied on every',
    'voter), leader (durable on the leader alone: can be lost). Writes go to the leader of the',
    "key's shard. The receipt is in -o json output, and on stderr with -v for table output.",
  ],
  options: [
    new Option(
      '--expected-version <n>',
      'compare-and-delete: delete only if the key is at this version',
    ).argParser(parseUint),
  ],
  examples: [
    'kvctl del greeting',
    'kvctl del lock --expected-version 12',
    'kvctl del greeting --consistency leader',
  ],
  async run(ctx, args, options) {
    const [key] = args as [string]
    const expectedVersion = options['expectedVersion'] as number | undefined
    const res = await ctx.client.delete(key, {
      ...ctx.writeOptions(),
      ...(expectedVersion !== undefined ? { expectedVersion } : {}),
    })
    ctx.printReceipts([res.receipt])
    const k = encodeBytes(new TextEncoder().encode(key))
    if (ctx.format === 'json') {
      ctx.print(
        json({
          key: k.text,
          keyEncoding: k.encoding,
          deleted: res.deleted,
          receipt: receiptJson(res.receipt),
        }),
      )
    } else {
      ctx.print(
        table([
          [res.deleted ? 'DELETED' : 'ABSENT', res.deleted ? key : `${key} (did not exist)`],
          ...(ctx.receiptsOnStderr ? [] : [['served', receiptLine(res.receipt)]]),
        ]),
      )
    }
    return ExitCode.Ok
  },
}
