/**
 * Human-readable one-line forms of entries, messages and Readies (etcd-io/raft util.go). Used
 * by the interaction tests and by debug logs; the format is stable enough to diff.
 */
import { unreachable } from '../common/index.ts'
import { EntryType, decodeConfChange } from './messages.ts'
import type { ConfChange, ConfState, Entry, HardState, Message, Snapshot } from './messages.ts'
import type { Ready } from './types.ts'

const decoder = new TextDecoder('utf-8', { fatal: true })

/** Printable UTF-8 as a quoted string; anything else as hex. */
export function describeBytes(data: Uint8Array): string {
  try {
    const s = decoder.decode(data)
    // eslint-disable-next-line no-control-regex
    if (!/[\u0000-\u001f\u007f]/.test(s)) return JSON.stringify(s)
  } catch {
    // Not UTF-8: fall through.
  }
  return '0x' + Array.from(data, (b) => b.toString(16).padStart(2, '0')).join('')
}

export function describeConfChange(cc: ConfChange): string {
  const parts = cc.changes.map((c) => {
    switch (c.type) {
      case 'addNode':
        return `v${c.nodeId}`
      case 'addLearner':
        return `l${c.nodeId}`
      case 'removeNode':
        return `r${c.nodeId}`
      default:
        return unreachable(c.type)
    }
  })
  const body = parts.length === 0 ? 'leave-joint' : parts.join(' ')
  return cc.transition === 'auto' ? body : `${body} transition=${cc.transition}`
}

export function describeEntry(e: Entry): string {
  if (e.type === EntryType.ConfChange) {
    const cc = decodeConfChange(e.data)
    return `${e.term}/${e.index} conf(${cc === null ? 'malformed' : describeConfChange(cc)})`
  }
  if (e.data.byteLength === 0) return `${e.term}/${e.index} noop`
  return `${e.term}/${e.index} ${describeBytes(e.data)}`
}

export function describeEntries(ents: readonly Entry[]): string {
  return '[' + ents.map(describeEntry).join(', ') + ']'
}

export function describeConfState(cs: ConfState): string {
  let s = `voters=(${cs.voters.join(',')})`
  if (cs.votersOutgoing.length > 0) s += `&&(${cs.votersOutgoing.join(',')})`
  if (cs.learners.length > 0) s += ` learners=(${cs.learners.join(',')})`
  if (cs.learnersNext.length > 0) s += ` learners_next=(${cs.learnersNext.join(',')})`
  if (cs.autoLeave) s += ' autoleave'
  return s
}

export function describeSnapshot(s: Snapshot): string {
  return `index=${s.meta.index} term=${s.meta.term} ${describeConfState(s.meta.confState)}`
}

export function describeHardState(hs: HardState): string {
  return `term=${hs.term} vote=${hs.vote ?? 0} commit=${hs.commit}`
}

/** One line: `1->2 MsgApp term=2 log=1/10 commit=10 entries=[2/11 noop]`. */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`
  switch (m.type) {
    case 'MsgApp': {
      const ents = m.entries.length > 0 ? ` entries=${describeEntries(m.entries)}` : ''
      return `${head} log=${m.logTerm}/${m.index} commit=${m.commit}${ents}`
    }
    case 'MsgAppResp':
      return m.reject
        ? `${head} rejected index=${m.index} hint=${m.logTerm}/${m.rejectHint}`
        : `${head} index=${m.index}`
    case 'MsgVote':
    case 'MsgPreVote':
      return `${head} log=${m.logTerm}/${m.index}${m.leaderTransfer ? ' transfer' : ''}`
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      return m.reject ? `${head} rejected` : head
    case 'MsgHeartbeat':
      return `${head} commit=${m.commit} round=${m.round}`
    case 'MsgHeartbeatResp':
      return `${head} round=${m.round}`
    case 'MsgSnap':
      return `${head} snapshot(${describeSnapshot(m.snapshot)})`
    case 'MsgTimeoutNow':
      return head
    case 'MsgTransferLeader':
      return `${head} transferee=${m.transferee}`
    case 'MsgReadIndex':
      return `${head} ctx=${describeBytes(m.context)}`
    case 'MsgReadIndexResp':
      return `${head} ctx=${describeBytes(m.context)} index=${m.index}${m.reject ? ' rejected' : ''}`
    default:
      return unreachable(m)
  }
}

/** A multi-line description of a Ready; empty sections are left out. */
export function describeReady(rd: Ready): string {
  const lines: string[] = []
  lines.push(`Ready #${rd.number}${rd.mustSync ? ' mustSync' : ''}:`)
  lines.push(`  soft: role=${rd.softState.role} leader=${rd.softState.leaderId ?? 0}`)
  if (rd.hardState !== null) lines.push(`  hard: ${describeHardState(rd.hardState)}`)
  if (rd.snapshot !== null) lines.push(`  snapshot: ${describeSnapshot(rd.snapshot)}`)
  if (rd.entries.length > 0) {
    lines.push('  entries:')
    for (const e of rd.entries) lines.push(`    ${describeEntry(e)}`)
  }
  if (rd.committedEntries.length > 0) {
    lines.push('  committed:')
    for (const e of rd.committedEntries) lines.push(`    ${describeEntry(e)}`)
  }
  if (rd.messages.length > 0) {
    lines.push('  messages:')
    for (const m of rd.messages) lines.push(`    ${describeMessage(m)}`)
  }
  if (rd.messagesAfterPersist.length > 0) {
    lines.push('  after persist:')
    for (const m of rd.messagesAfterPersist) lines.push(`    ${describeMessage(m)}`)
  }
  if (rd.readStates.length > 0) {
    lines.push('  reads:')
    for (const r of rd.readStates) lines.push(`    index=${r.index} ctx=${describeBytes(r.context)}`)
  }
  return lines.join('\n')
}
