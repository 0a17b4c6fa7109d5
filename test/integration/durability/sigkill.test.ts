/**
 * Durability under kill -9: every write kvd acknowledged before it died is there after a
 * restart on the same data dir, with its value and version, and no acknowledged delete comes back.
 *
 * The load: SDK workers writing fresh keys (puts), deleting and compare-and-setting keys prepared
 * earlier, and kvctl processes writing keys, all at once. kvd is killed with SIGKILL once enough
 * writes have been acknowledged, while many are still in flight. A write whose answer did not
 * arrive is indeterminate: after the restart it may be there or not, but only as one of the
 * states it could have produced. Every call in flight is aborted right after the kill, so no
 * retry lands on the restarted process and muddles the ledger.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { KvClient, type GetResult } from '../../../src/client/index.ts'
import { startKvd, type KvdHandle } from '../helpers/kvd.ts'
import { runKvctl, type KvctlRun } from '../cli/run-kvctl.ts'

/** What we know about one key: the states it may be in after the restart. */
interface Expectation {
  /** Acceptable outcomes: absent, or present with this value (and version, when known). */
  readonly allowed: readonly (
    { readonly present: false } | { readonly present: true; value: string; version?: number }
  )[]
  readonly why: string
}

/** kvctl's JSON output, or a failure that shows the whole run. */
function parseOutput(r: KvctlRun): unknown {
  try {
    return JSON.parse(r.stdout)
  } catch {
    throw new Error(`kvctl printed no JSON: ${JSON.stringify(r)}`)
  }
}

const preparedKeys = 120
const sdkWorkers = 96
const kvctlWorkers = 4
/** Kill once this many load writes were acknowledged. */
const ackedBeforeKill = 500

describe('durability: kill -9 mid-load', () => {
  let kvd: KvdHandle
  beforeAll(async () => {
    kvd = await startKvd()
  })
  afterAll(async () => {
    await kvd?.stop()
  })

  it('keeps every acknowledged write across a SIGKILL and restart', async () => {
    const expect_ = new Map<string, Expectation>()
    const client = new KvClient({ endpoints: [kvd.address] })

    // --- Before the load: a known state (all acknowledged). ---
    const prepared = await Promise.all(
      [...Array(preparedKeys).keys()].map(async (i) => ({
        i,
        ...(await client.put(`pre/${i}`, `orig-${i}`)),
      })),
    )
    for (const { i, version } of prepared) {
      expect_.set(`pre/${i}`, {
        allowed: [{ present: true, value: `orig-${i}`, version }],
        why: 'prepared put',
      })
    }
    // Deleted before the load: must stay deleted.
    for (let i = 0; i < 20; i++) {
      expect((await client.delete(`pre/${i}`)).deleted).toBe(true)
      expect_.set(`pre/${i}`, { allowed: [{ present: false }], why: 'acked delete before load' })
    }
    // CAS before the load.
    for (let i = 20; i < 40; i++) {
      const prev = prepared[i]?.version ?? 0
      const { version } = await client.cas(`pre/${i}`, { expectedVersion: prev, value: `cas-${i}` })
      expect_.set(`pre/${i}`, {
        allowed: [{ present: true, value: `cas-${i}`, version }],
        why: 'acked cas before load',
      })
    }
    // kvctl writes before the load.
    for (let i = 0; i < 3; i++) {
      const r = await runKvctl(['--endpoints', kvd.address, 'put', `cli/pre/${i}`, `kvctl-${i}`])
      expect(r.code, r.stderr).toBe(0)
      const { version } = parseOutput(r) as { version: number }
      expect_.set(`cli/pre/${i}`, {
        allowed: [{ present: true, value: `kvctl-${i}`, version }],
        why: 'kvctl put',
      })
    }
    const delByCli = await runKvctl(['--endpoints', kvd.address, 'del', 'cli/pre/0'])
    expect(delByCli.code, delByCli.stderr).toBe(0)
    expect_.set('cli/pre/0', { allowed: [{ present: false }], why: 'kvctl del' })

    // --- The load. ---
    const abort = new AbortController()
    let killed = false
    let acked = 0
    let inFlightAtKill = 0
    let inFlight = 0
    let cliAcked = 0
    let killedResolve: () => void = () => {}
    const killedPromise = new Promise<void>((r) => (killedResolve = r))
    const kill = (): void => {
      if (killed) return
      killed = true
      inFlightAtKill = inFlight
      kvd.kill('SIGKILL')
      // Nothing sent after this point may land on the restarted process.
      abort.abort()
      killedResolve()
    }
    const ack = (): void => {
      acked += 1
      // Both clients must have landed writes before the kill: the SDK (batching its calls) can
      // reach ackedBeforeKill before the first kvctl process has even started.
      if (acked >= ackedBeforeKill && cliAcked > 0) kill()
    }
    const signal = abort.signal
    const opts = { signal, deadlineMs: 20_000 }

    // Mid-load ops on prepared keys: each key gets at most one, so its outcome is one of two states.
    const midLoad: (() => Promise<void>)[] = []
    for (let i = 40; i < 70; i++) {
      const key = `pre/${i}`
      const before = expect_.get(key)?.allowed ?? []
      midLoad.push(async () => {
        expect_.set(key, { allowed: [...before, { present: false }], why: 'delete in flight' })
        await client.delete(key, opts)
        expect_.set(key, { allowed: [{ present: false }], why: 'acked delete during load' })
        ack()
      })
    }
    for (let i = 70; i < 100; i++) {
      const key = `pre/${i}`
      const prev = prepared[i]?.version ?? 0
      const before = expect_.get(key)?.allowed ?? []
      midLoad.push(async () => {
        expect_.set(key, { allowed: [...before, { present: true, value: `cas-${i}` }], why: 'cas in flight' })
        const { version } = await client.cas(key, { expectedVersion: prev, value: `cas-${i}` }, opts)
        expect_.set(key, {
          allowed: [{ present: true, value: `cas-${i}`, version }],
          why: 'acked cas during load',
        })
        ack()
      })
    }

    let nextKey = 0
    const sdkWorker = async (): Promise<void> => {
      while (!killed) {
        const task = midLoad.shift()
        if (task !== undefined) {
          inFlight += 1
          try {
            await task()
          } catch {
            // Indeterminate: the expectation already allows both states.
          } finally {
            inFlight -= 1
          }
          continue
        }
        const n = nextKey++
        const key = `load/${n}`
        const value = `v-${n}-${'x'.repeat(n % 64)}`
        expect_.set(key, { allowed: [{ present: false }, { present: true, value }], why: 'put in flight' })
        inFlight += 1
        try {
          const { version } = await client.put(key, value, opts)
          expect_.set(key, { allowed: [{ present: true, value, version }], why: 'acked put' })
          ack()
        } catch {
          // Indeterminate.
        } finally {
          inFlight -= 1
        }
      }
    }

    let cliNext = 0
    const kvctlWorker = async (): Promise<void> => {
      while (!killed) {
        const key = `cli/load/${cliNext++}`
        const value = `kvctl-${key}`
        expect_.set(key, {
          allowed: [{ present: false }, { present: true, value }],
          why: 'kvctl put in flight',
        })
        const r = await runKvctl(['--endpoints', kvd.address, '--deadline-ms', '3000', 'put', key, value])
        if (r.code === 0) {
          const { version } = parseOutput(r) as { version: number }
          expect_.set(key, { allowed: [{ present: true, value, version }], why: 'acked kvctl put' })
          cliAcked += 1
          ack()
        }
      }
    }

    const workers = [
      ...[...Array(sdkWorkers).keys()].map(() => sdkWorker()),
      ...[...Array(kvctlWorkers).keys()].map(() => kvctlWorker()),
    ]
    // A safety net: kill after 60 s even if the load is slower than expected.
    const fallback = setTimeout(kill, 60_000)
    await killedPromise
    clearTimeout(fallback)
    await Promise.all(workers)
    const exit = await kvd.exited()
    expect(exit.signal).toBe('SIGKILL')
    client.close()

    expect(acked).toBeGreaterThanOrEqual(ackedBeforeKill)
    expect(cliAcked).toBeGreaterThan(0)
    // The kill really happened mid-load.
    expect(inFlightAtKill).toBeGreaterThan(0)

    // --- Restart on the same data dir and check every key. ---
    await kvd.restart()
    const checker = new KvClient({ endpoints: [kvd.address] })
    try {
      const keys = [...expect_.keys()]
      const found = new Map<string, GetResult>()
      for (let i = 0; i < keys.length; i += 256) {
        const batch = keys.slice(i, i + 256)
        const results = await Promise.all(batch.map((k) => checker.get(k)))
        results.forEach((r, j) => found.set(batch[j] as string, r))
      }
      const violations: string[] = []
      let ackedChecked = 0
      for (const [key, e] of expect_) {
        const got = found.get(key)
        const ok = e.allowed.some((a) =>
          a.present
            ? got?.found === true &&
              got.valueText() === a.value &&
              (a.version === undefined || got.version === a.version)
            : got?.found === false,
        )
        if (e.allowed.length === 1) ackedChecked += 1
        if (!ok) {
          const state = got?.found === true ? `present '${got.valueText()}' @${got.version}` : 'absent'
          violations.push(`${key} (${e.why}): ${state}; allowed ${JSON.stringify(e.allowed)}`)
        }
      }
      const indeterminate = [...expect_.values()].filter((e) => e.allowed.length > 1).length
      console.info(
        `durability: ${ackedChecked} keys with a known state (${acked} load acks, ${cliAcked} by kvctl), ` +
          `${indeterminate} indeterminate, ${inFlightAtKill} calls in flight at the kill`,
      )
      expect(violations.slice(0, 20)).toEqual([])
      expect(ackedChecked).toBeGreaterThanOrEqual(ackedBeforeKill)

      // Nothing else appeared: every key in the store is one we wrote.
      const scanned = await checker.scan({}).toArray()
      const unknown = scanned.map((e) => e.keyText()).filter((k) => !expect_.has(k))
      expect(unknown).toEqual([])

      // And kvctl sees the same after the restart, as a real process.
      const cliKey = [...expect_].find(([k, e]) => k.startsWith('cli/load/') && e.allowed.length === 1)?.[0]
      expect(cliKey).toBeDefined()
      const r = await runKvctl(['--endpoints', kvd.address, 'get', cliKey as string])
      expect(r.code, r.stderr).toBe(0)
      expect((parseOutput(r) as { value: string }).value).toBe(`kvctl-${cliKey}`)
      const gone = await runKvctl(['--endpoints', kvd.address, 'get', 'cli/pre/0'])
      expect(gone.code).toBe(5)
    } finally {
      checker.close()
    }
  })
})
