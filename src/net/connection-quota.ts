/**
 * Requests in flight per client connection and per client (principal), beside the node-wide gate
 * (gate.ts): one client cannot hold every slot of the node. Beyond either bound a request is
 * answered OVERLOADED with the limit. Counts only; every admitted request must be released once.
 */
import { assert } from '../common/assert.ts'
import { ErrorCode, KvError } from '../common/errors.ts'

export interface ConnectionQuotaLimits {
  readonly requestsPerConnectionMax: number
  readonly requestsPerPrincipalMax: number
}

export class ConnectionQuota {
  private readonly connections = new Map<string, number>()
  private readonly principals = new Map<string, number>()

  constructor(private readonly limits: ConnectionQuotaLimits) {}

  /** Admits one request of `principal` on `connection`; returns its release (call it once). */
  admit(principal: string, connection: string): () => void {
    const onConnection = this.connections.get(connection) ?? 0
    if (onConnection >= this.limits.requestsPerConnectionMax)
      throw new KvError(ErrorCode.Overloaded, `${onConnection} requests in flight on this connection`, {
        details: { limit: this.limits.requestsPerConnectionMax },
      })
    const ofPrincipal = this.principals.get(principal) ?? 0
    if (ofPrincipal >= this.limits.requestsPerPrincipalMax)
      throw new KvError(ErrorCode.Overloaded, `${ofPrincipal} requests in flight for this client`, {
        details: { limit: this.limits.requestsPerPrincipalMax },
      })
    this.connections.set(connection, onConnection + 1)
    this.principals.set(principal, ofPrincipal + 1)
    let released = false
    return () => {
      assert(!released, 'connection quota released twice')
      released = true
      decrement(this.connections, connection)
      decrement(this.principals, principal)
    }
  }

  /** Requests admitted and not released (for tests). */
  get inFlight(): number {
    let n = 0
    for (const v of this.connections.values()) n += v
    return n
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 0) - 1
  assert(n >= 0, 'connection quota below zero')
  if (n === 0) map.delete(key)
  else map.set(key, n)
}
