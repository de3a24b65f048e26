import { createHmac, timingSafeEqual } from 'node:crypto'
import { z } from 'zod'

/** The claims of the token AUTH_SUCCESS hands an agent. */
export type OrbanJwtClaims = {
  /** The agent id. */
  sub: string
  /** Base64 of the agent's Ed25519 public key. */
  pk: string
  /** Unix seconds. */
  iat: number
  exp: number
}

const claimsSchema = z.object({ sub: z.string(), pk: z.string(), iat: z.number().int(), exp: z.number().int() })
const headerSchema = z.object({ alg: z.literal('HS256'), typ: z.literal('JWT').optional() })

const HEADER = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')

function mac(secret: Uint8Array | string, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest()
}

/** An HS256 JWT for `sub`/`pk`, valid `ttlSec` from `nowMs`. */
export function signOrbanJwt(claims: { sub: string; pk: string }, secret: Uint8Array | string, ttlSec: number, nowMs = Date.now()): string {
  const iat = Math.floor(nowMs / 1000)
  const body = Buffer.from(JSON.stringify({ sub: claims.sub, pk: claims.pk, iat, exp: iat + ttlSec })).toString('base64url')
  return `${HEADER}.${body}.${mac(secret, `${HEADER}.${body}`).toString('base64url')}`
}

/** The claims of a token this secret signed and that has not expired; undefined otherwise. */
export function verifyOrbanJwt(token: string, secret: Uint8Array | string, nowMs = Date.now()): OrbanJwtClaims | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  const [header, body, signature] = parts as [string, string, string]
  const expected = mac(secret, `${header}.${body}`)
  const given = Buffer.from(signature, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined
  try {
    if (!headerSchema.safeParse(JSON.parse(Buffer.from(header, 'base64url').toString())).success) return undefined
    const claims = claimsSchema.safeParse(JSON.parse(Buffer.from(body, 'base64url').toString()))
    if (!claims.success || claims.data.exp * 1000 <= nowMs) return undefined
    return claims.data
  } catch {
    return undefined
  }
}
