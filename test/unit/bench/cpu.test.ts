import { existsSync } from 'node:fs'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { describe, expect, it } from 'vitest'
import {
  cpuSecondsOfMetrics,
  cpuSecondsOfProcStat,
  microsPerOp,
  procMeter,
  selfMeter,
} from '../../bench/cpu.ts'

describe('bench CPU meters', () => {
  it('reads process_cpu_seconds_total from a prom-client exposition', async () => {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const seconds = cpuSecondsOfMetrics(await registry.metrics())
    expect(seconds).toBeGreaterThan(0)
    const own = process.cpuUsage()
    expect(seconds).toBeLessThanOrEqual((own.user + own.system) / 1e6 + 1e-6)
  })

  it('finds the sample among others, and refuses an exposition without it', () => {
    const text = [
      '# HELP process_cpu_user_seconds_total Total user CPU time spent in seconds.',
      'process_cpu_user_seconds_total 1.5',
      '# TYPE process_cpu_seconds_total counter',
      'process_cpu_seconds_total 2.25',
      'process_cpu_seconds_total_extra 9',
    ].join('\n')
    expect(cpuSecondsOfMetrics(text)).toBe(2.25)
    expect(cpuSecondsOfMetrics('process_cpu_user_seconds_total 1.5\n')).toBeUndefined()
    expect(cpuSecondsOfMetrics('process_cpu_seconds_total NaN\n')).toBeUndefined()
  })

  it('reads utime + stime from /proc/PID/stat, a command with spaces and parentheses included', () => {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    const stat = '4242 (etcd (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 12 0'
    expect(cpuSecondsOfProcStat(stat)).toBe(3.75)
    expect(cpuSecondsOfProcStat('4242 (etcd) S 1 2')).toBeUndefined()
  })

  it('gives CPU microseconds per op between two reads, NaN without ops', () => {
    expect(microsPerOp([1, 2], [1.5, 2.25], 1000)).toEqual([500, 250])
    expect(microsPerOp([1], [2], 0)).toEqual([NaN])
  })

  it.runIf(existsSync('/proc/self/stat'))('meters this process by /proc like by cpuUsage', async () => {
    const byProc = procMeter('self', process.pid)
    const bySelf = selfMeter()
    const first = await byProc.read()
    let x = 0
    for (let i = 0; i < 5_000_000; i++) x += i % 7
    expect(x).toBeGreaterThan(0)
    const second = await byProc.read()
    expect(second).toBeGreaterThanOrEqual(first)
    // Same process, two accountings: /proc ticks are 10 ms, so they agree within a tick or two.
    expect(Math.abs(second - (await bySelf.read()))).toBeLessThan(0.5)
  })
})
