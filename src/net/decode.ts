/**
 * Request decoding that survives garbage. grpc-js answers a request whose bytes its deserializer
 * cannot decode with INTERNAL; a malformed request is the caller's fault, so we wrap every
 * `requestDeserialize` of a service definition: a decode failure yields a `MalformedRequest`
 * marker instead of throwing, and the handler answers it with INVALID_ARGUMENT (`ringkv-code`
 * INVALID_ARGUMENT, details.field 'request'). Nothing else changes, and the server keeps serving.
 */
import { ErrorCode, KvError } from '../common/errors.ts'

const malformedTag: unique symbol = Symbol('ringkv.malformedRequest')

export interface MalformedRequest {
  readonly [malformedTag]: string
}

export function isMalformed(request: unknown): request is MalformedRequest {
  return typeof request === 'object' && request !== null && malformedTag in request
}

/** Throws INVALID_ARGUMENT when `request` is the marker of a decode failure; else returns it. */
export function decoded<T>(request: T | MalformedRequest): T {
  if (isMalformed(request))
    throw new KvError(ErrorCode.InvalidArgument, `malformed request: ${request[malformedTag]}`, {
      details: { field: 'request' },
    })
  return request
}

interface MethodDefinitionLike {
  readonly requestDeserialize: (bytes: Buffer) => unknown
}

/** A copy of `definition` whose request deserializers return a MalformedRequest instead of throwing. */
export function withTolerantDecoding<D extends Record<string, MethodDefinitionLike>>(definition: D): D {
  const out: Record<string, MethodDefinitionLike> = {}
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes)
        } catch (err) {
          const reason = err instanceof Error ? err.message : 'undecodable'
          return { [malformedTag]: `could not decode protobuf (${reason.slice(0, 120)})` }
        }
      },
    }
  }
  return out as D
}
