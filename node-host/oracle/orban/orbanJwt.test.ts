import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { test } from 'node:test'
import { signOrbanJwt, verifyOrbanJwt } from './orbanJwt.ts'

const b64url = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')

test('an HS256 token verifies with its secret until it expires, and matches an independent HMAC', () => {
  const now = 1_700_000_000_000
  const token = signOrbanJwt({ sub: 'agent-1', pk: 'cGs=' }, 'secret', 60, now)
  const [header, body, signature] = token.split('.') as [string, string, string]
  assert.deepEqual(JSON.parse(Buffer.from(header, 'base64url').toString()), { alg: 'HS256', typ: 'JWT' })
  assert.equal(signature, createHmac('sha256', 'secret').update(`${header}.${body}`).digest('base64url'))
  assert.deepEqual(verifyOrbanJwt(token, 'secret', now), { sub: 'agent-1', pk: 'cGs=', iat: 1_700_000_000, exp: 1_700_000_060 })
  assert.equal(verifyOrbanJwt(token, 'secret', now + 60_000), undefined)
  assert.equal(verifyOrbanJwt(token, 'other', now), undefined)
})

test('tampered claims, alg none and garbage are refused', () => {
  const now = Date.now()
  const token = signOrbanJwt({ sub: 'agent-1', pk: 'cGs=' }, 'secret', 60, now)
  const [header, , signature] = token.split('.') as [string, string, string]
  const forgedBody = b64url({ sub: 'agent-2', pk: 'cGs=', iat: 0, exp: 9_999_999_999 })
  assert.equal(verifyOrbanJwt(`${header}.${forgedBody}.${signature}`, 'secret', now), undefined)
  assert.equal(verifyOrbanJwt(`${b64url({ alg: 'none' })}.${forgedBody}.`, 'secret', now), undefined)
  const noneSigned = `${b64url({ alg: 'none' })}.${forgedBody}`
  assert.equal(verifyOrbanJwt(`${noneSigned}.${createHmac('sha256', 'secret').update(noneSigned).digest('base64url')}`, 'secret', now), undefined)
  assert.equal(verifyOrbanJwt('a.b', 'secret', now), undefined)
  assert.equal(verifyOrbanJwt('', 'secret', now), undefined)
})
