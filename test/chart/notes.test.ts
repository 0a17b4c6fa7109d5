/**
 * NOTES.txt, which `helm template` does not render: a copy of the chart carries it as a named
 * template printed into one YAML document, so the real helm renders it with the real values.
 */
import { cpSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, test } from 'vitest'
import { chartDir, chartUnavailable, runHelm, templateArgs, type RenderInput } from './render.ts'
import { parse } from 'yaml'

const scratch = mkdtempSync(join(tmpdir(), 'ringkv-chart-notes-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

function notes(input: RenderInput): string {
  const copy = join(scratch, 'ringkv')
  rmSync(copy, { recursive: true, force: true })
  cpSync(chartDir, copy, { recursive: true })
  const text = readFileSync(join(copy, 'templates', 'NOTES.txt'), 'utf8')
  writeFileSync(
    join(copy, 'templates', '_notes.tpl'),
    `{{- define "ringkv.notesForTest" -}}\n${text}{{- end }}\n`,
  )
  renameSync(join(copy, 'templates', 'NOTES.txt'), join(copy, 'NOTES.txt.unused'))
  writeFileSync(
    join(copy, 'templates', 'notes.yaml'),
    'notes: {{ include "ringkv.notesForTest" . | toJson }}\n',
  )
  const args = templateArgs(input).map((a) => (a === chartDir ? copy : a))
  const run = runHelm([...args, '--show-only', 'templates/notes.yaml'])
  if (run.status !== 0) throw new Error(run.stderr)
  return (parse(run.stdout) as { notes: string }).notes
}

describe.skipIf(chartUnavailable !== undefined)('NOTES.txt', () => {
  test('gives the kvctl command that reaches the cluster, and the drain-then-scale rule', () => {
    const text = notes({})
    expect(text).toContain('kubectl -n data port-forward svc/db-ringkv 7001:7001 &')
    expect(text).toContain('kvctl --endpoints 127.0.0.1:7001 status')
    expect(text).toContain('kvctl --endpoints db-ringkv.data.svc.cluster.local:7001 status')
    expect(text).toContain('Drain their nodes first (kvctl node drain ID)')
    expect(text).toContain('helm test db -n data')
  })

  test('with TLS: the admin certificate, the CA and the server name', () => {
    const text = notes({ values: 'cert-manager' })
    expect(text).toContain('get secret db-ringkv-admin-tls -o jsonpath=')
    expect(text).toContain('--server-name db-ringkv.data.svc.cluster.local')
    expect(text).toContain('--ca-file ca.crt --cert-file admin.crt --key-file admin.key status')
    expect(notes({ values: 'tls-secret' })).toContain('get secret ringkv-admin-tls -o jsonpath=')
  })
})
