import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { test } from 'node:test'
import fc from 'fast-check'
import { privateKeyToAccount } from 'viem/accounts'
import {
  javascriptMessage,
  metricsMessage,
  pythonCompactJson,
  readyMessage,
  recoverPlumiseSigner,
  registerMessage,
  signPlumiseMessage,
} from './plumiseSigning.ts'

type Case = { obj: Record<string, string | number | boolean | null>; sort: boolean }

/** What CPython's json.dumps writes for each case (the reference the upstream agent signs). */
function pythonDumps(cases: Case[]): string[] {
  const code = 'import json,sys\ncases=json.load(sys.stdin)\nprint(json.dumps([json.dumps(c["obj"],separators=(",",":"),sort_keys=c["sort"]) for c in cases]))'
  return JSON.parse(execFileSync('python3', ['-c', code], { input: JSON.stringify(cases), encoding: 'utf8' })) as string[]
}

const KEY = '0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318'
const account = privateKeyToAccount(KEY)

const register = {
  address: account.address,
  grpcEndpoint: 'http://10.0.0.7:50051',
  httpEndpoint: 'http://10.0.0.7:31331',
  model: 'bigscience/bloom-560m',
  ramMb: 16384,
  device: 'cuda',
  vramMb: 24576,
  timestamp: 1_760_000_000,
}

test('register, ready and metrics strings equal Python json.dumps byte for byte, non-ASCII and control characters included', () => {
  const odd = { ...register, model: 'modèle/中文-🦙 "q" \\ \n\t\u0001\u007f\u00ff\ud800', device: 'cuda:0' }
  const ready = { address: account.address, model: odd.model, timestamp: 1_760_000_001 }
  const metrics = { timestamp: 1_760_000_002, processed_tokens: 123_456, agent: account.address }
  const [r1, r2, rd, mt] = pythonDumps([
    { obj: register, sort: false },
    { obj: odd, sort: false },
    { obj: ready, sort: false },
    // Keys given out of order: Python's sort_keys must put them back in order, like metricsMessage.
    { obj: metrics, sort: true },
  ])
  assert.equal(registerMessage(register), r1)
  assert.equal(registerMessage(odd), r2)
  assert.match(r2!, /\\u00e8/) // Python escaped è: the comparison covers the escaping
  assert.equal(readyMessage(ready), rd)
  assert.equal(metricsMessage(metrics), mt)
  assert.equal(mt, `{"agent":"${account.address}","processed_tokens":123456,"timestamp":1760000002}`)
})

test('random strings and integers serialize exactly like Python (500 cases, one interpreter)', () => {
  const value = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.string({ maxLength: 12 }), fc.integer(), fc.constant(Number.MAX_SAFE_INTEGER), fc.boolean(), fc.constant(null))
  const cases = fc.sample(fc.record({ obj: fc.dictionary(fc.string({ unit: 'binary', minLength: 1, maxLength: 6 }), value, { maxKeys: 5 }), sort: fc.boolean() }), { numRuns: 500, seed: 42 })
  const expected = pythonDumps(cases)
  cases.forEach((c, i) => assert.equal(pythonCompactJson(c.obj, { sortKeys: c.sort }), expected[i], JSON.stringify(c)))
})

test('non-integer numbers are refused rather than signed in a form Python would not produce', () => {
  assert.throws(() => registerMessage({ ...register, ramMb: 1.5 }), /ramMb/)
  assert.throws(() => metricsMessage({ agent: account.address, processed_tokens: 2 ** 60, timestamp: 1 }), /processed_tokens/)
})

test('signatures are viem signMessage over the same UTF-8 bytes, recover to the signer, and refuse others', async () => {
  const message = registerMessage({ ...register, model: 'modèle' })
  const signature = await signPlumiseMessage(account, message)
  assert.match(signature, /^0x[0-9a-f]{130}$/)
  assert.equal(signature, await account.signMessage({ message: { raw: new TextEncoder().encode(message) } }))

  // A wallet-style signer (personal_sign function) gives the same bytes.
  assert.equal(await signPlumiseMessage({ address: account.address, personalSign: (m) => account.signMessage({ message: m }) }, message), signature)

  assert.deepEqual(await recoverPlumiseSigner({ messages: [message], signature, expected: account.address.toLowerCase() }), { ok: true, signer: account.address })

  const other = privateKeyToAccount(`0x${'11'.repeat(32)}`)
  const forged = await signPlumiseMessage(other, message)
  assert.deepEqual(await recoverPlumiseSigner({ messages: [message], signature: forged, expected: account.address }), { ok: false, reason: 'mismatch', recovered: other.address })

  // Signed over other bytes (a different timestamp): recovers someone else.
  const tampered = registerMessage({ ...register, model: 'modèle', timestamp: register.timestamp + 1 })
  assert.equal((await recoverPlumiseSigner({ messages: [tampered], signature, expected: account.address })).ok, false)

  assert.deepEqual(await recoverPlumiseSigner({ messages: [message], signature: '0x1234', expected: account.address }), { ok: false, reason: 'malformed' })
})

test('a JavaScript agent signing JSON.stringify output (non-ASCII raw) verifies against the second candidate', async () => {
  const fields = { address: account.address, model: 'модель', timestamp: 1_760_000_000 }
  const js = javascriptMessage(fields)
  assert.notEqual(js, readyMessage(fields))
  const signature = await signPlumiseMessage(account, js)
  assert.equal((await recoverPlumiseSigner({ messages: [readyMessage(fields)], signature, expected: account.address })).ok, false)
  assert.equal((await recoverPlumiseSigner({ messages: [readyMessage(fields), js], signature, expected: account.address })).ok, true)
})
