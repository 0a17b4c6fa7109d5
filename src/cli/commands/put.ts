import { Option } from 'commander'
import { usageError, type CliContext } from '../context.ts'
import { ExitCode } from '../exit-codes.ts'
import { encodeBytes, json, receiptJson, receiptLine, table } from '../output.ts'
import { parseUint, type CommandSpec } from './command.ts'

/** `kvctl put KEY [VALUE]`: the value from the argument, --file, or stdin. */
export const putCommand: CommandSpec = {
  name: 'put',
  arguments: '<key> [value]',
  summary: 'write a value (from VALUE, --file PATH, or stdin when VALUE is - or absent)',
  kind: 'write',
  details: [
    'Consistency (--consistency): majority (default; committed on a quorum), all (applied on every',
    'voter), leader (durable on the leader alone: can be lost). Writes go to the leader of the',
    "key's shard. The receipt is in -o json output, and on stderr with -v for table output.",
  ],
  options: [
    new Option('--file <path>', 'read the value from a file'),
    new Option(
      '--expected-version <n>',
      'compare-and-set: write only if the key is at this version (0: absent)',
    ).argParser(parseUint),
  ],
  examples: [
    'kvctl put greeting hello',
    'kvctl put config --file ./config.json',
    'echo -n v2 | kvctl put k --expected-version 7',
    'kvctl put greeting hello --consistency all -v',
  ],
  async run(ctx, args, options) {
    const [key, valueArg] = args as [string, string | undefined]
    const value = await readValue(ctx, valueArg, options['file'] as string | undefined)
    const expectedVersion = options['expectedVersion'] as number | undefined
    const res = await ctx.client.put(key, value, {
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
          version: res.version,
          receipt: receiptJson(res.receipt),
        }),
      )
    } else {
      ctx.print(
        table([
          ['OK', `${key} @ version ${res.version}`],
          ...(ctx.receiptsOnStderr ? [] : [['served', receiptLine(res.receipt)]]),
        ]),
      )
    }
    return ExitCode.Ok
  },
}

async function readValue(
  ctx: CliContext,
  arg: string | undefined,
  file: string | undefined,
): Promise<Uint8Array> {
  if (file !== undefined) {
    if (arg !== undefined) throw usageError('give the value either as VALUE or with --file, not both')
    const read =
      ctx.io.readFile ?? (async (path: string) => (await import('node:fs/promises')).readFile(path))
    try {
      return await read(file)
    } catch (err) {
      throw usageError(`cannot read --file ${file}: ${(err as Error).message}`)
    }
  }
  if (arg !== undefined && arg !== '-') return new TextEncoder().encode(arg)
  if (arg === undefined && ctx.io.stdin.isTTY === true) {
    throw usageError('put needs a VALUE, --file PATH, or the value on stdin')
  }
  const chunks: Uint8Array[] = []
  for await (const chunk of ctx.io.stdin)
    chunks.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk)
  return Buffer.concat(chunks)
}
