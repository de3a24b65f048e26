import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { test } from 'node:test'
import {
  createOrbanMessage,
  DECIMAL_PATTERN,
  encodeOrbanMessage,
  ORBAN_MESSAGE_TYPES,
  OrbanMessageError,
  parseOrbanMessage,
  serializeOrbanMessage,
  type OrbanMessage,
  type OrbanMessageOf,
  type OrbanMessageType,
} from './orbanMessages.ts'
import { ORBAN_MESSAGE_EXAMPLES as frames } from './orbanMessageExamples.ts'
import { fromProtobuf, toProtobuf } from './orbanProtobuf.ts'

function frame(type: string, payload: Record<string, unknown>, envelope: Record<string, unknown> = {}): string {
  return JSON.stringify({ message_id: randomUUID(), timestamp: '2024-11-14T12:34:00Z', type, ...payload, ...envelope })
}

function refusal(text: string): OrbanMessageError {
  try {
    parseOrbanMessage(text)
  } catch (e) {
    assert.ok(e instanceof OrbanMessageError, `expected an OrbanMessageError, got ${e}`)
    return e
  }
  assert.fail(`accepted ${text}`)
}

test('a frame of every type parses, with its fields under their wire names', () => {
  assert.deepEqual(Object.keys(frames).sort(), [...ORBAN_MESSAGE_TYPES].sort())
  for (const type of ORBAN_MESSAGE_TYPES) {
    const message = parseOrbanMessage(frame(type, frames[type]))
    assert.equal(message.type, type)
    assert.equal(message.timestamp, '2024-11-14T12:34:00.000Z')
    for (const key of Object.keys(frames[type])) assert.ok(key in message, `${type} lost ${key}`)
  }
})

test('payloads are normalised: decimals as numbers, times as UTC ISO, enum case, null optionals, hex', () => {
  const ack = parseOrbanMessage(frame('REGISTER_ACK', frames.REGISTER_ACK))
  assert.ok(ack.type === 'REGISTER_ACK')
  assert.deepEqual(ack.pricing, { base_rate_usd_per_hour: 0.5, gpu_multiplier: 2.5, effective_rate: 1.25 })

  const batch = parseOrbanMessage(frame('METRICS_BATCH', frames.METRICS_BATCH))
  assert.ok(batch.type === 'METRICS_BATCH')
  assert.deepEqual(batch.time_range, { start: '2024-11-14T12:00:00.000Z', end: '2024-11-14T12:05:00.000Z' })
  assert.equal(batch.aggregated_metrics.earnings_usd, 0.3125)

  const payout = parseOrbanMessage(frame('PAYOUT_NOTIFICATION', frames.PAYOUT_NOTIFICATION))
  assert.ok(payout.type === 'PAYOUT_NOTIFICATION')
  assert.equal(payout.status, 'Processing')
  assert.equal(payout.summary.net_amount_usd, 79.8)

  const register = parseOrbanMessage(frame('AGENT_REGISTER', frames.AGENT_REGISTER))
  assert.ok(register.type === 'AGENT_REGISTER')
  assert.equal(register.hardware.gpus[1]!.cuda_cores, null)
  assert.deepEqual(register.mesh, { peer_id: '12D3KooWExample', multiaddrs: ['/ip4/127.0.0.1/tcp/4001'] })

  const pow = parseOrbanMessage(frame('POW_RESPONSE', frames.POW_RESPONSE))
  assert.ok(pow.type === 'POW_RESPONSE')
  assert.equal(pow.response, '000012ab')
  assert.equal(pow.counter, 77n)

  // Upstream's Vec<u8> proof response arrives as an array of numbers.
  const complete = parseOrbanMessage(frame('TASK_COMPLETE', { ...frames.TASK_COMPLETE, proof_of_work: { method: 'm', challenge_id: 'c', response: [0, 18, 171], gpu_signature: 'g' } }))
  assert.ok(complete.type === 'TASK_COMPLETE')
  assert.equal(complete.proof_of_work.response, '0012ab')

  // Omitted optionals become null; the task id of an idle heartbeat too.
  const { current_task_id: _, ...idle } = frames.HEARTBEAT
  const heartbeat = parseOrbanMessage(frame('HEARTBEAT', { ...idle, status: 'IDLE' }))
  assert.ok(heartbeat.type === 'HEARTBEAT')
  assert.equal(heartbeat.current_task_id, null)
  assert.equal(heartbeat.status, 'idle')

  // Unknown fields (a newer sender, or a payload's own timestamp) are dropped.
  const extra = parseOrbanMessage(frame('TASK_REJECT', { ...frames.TASK_REJECT, future_field: 1 }))
  assert.ok(!('future_field' in extra))
})

test('envelope rules: uuid v4 id, RFC 3339 or unix seconds, a known type', () => {
  const unix = parseOrbanMessage(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { timestamp: 1699999999 }))
  assert.equal(unix.timestamp, '2023-11-14T22:13:19.000Z')
  const offset = parseOrbanMessage(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { timestamp: '2024-11-14T20:34:00.123456789+08:00' }))
  assert.equal(offset.timestamp, '2024-11-14T12:34:00.123Z')

  assert.equal(refusal('{"message_id": ').code, 'MALFORMED_JSON')
  assert.equal(refusal('[1, 2]').code, 'INVALID_ENVELOPE')
  assert.equal(refusal(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { message_id: 'not-a-uuid' })).code, 'INVALID_ENVELOPE')
  // A UUID of another version.
  assert.equal(refusal(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { message_id: '6ba7b810-9dad-11d1-80b4-00c04fd430c8' })).code, 'INVALID_ENVELOPE')
  assert.equal(refusal(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { timestamp: 'yesterday' })).code, 'INVALID_ENVELOPE')
  assert.equal(refusal(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE, { timestamp: 1.5 })).code, 'INVALID_ENVELOPE')
  const { timestamp: _, ...noTime } = JSON.parse(frame('AUTH_CHALLENGE', frames.AUTH_CHALLENGE)) as Record<string, unknown>
  assert.equal(refusal(JSON.stringify(noTime)).code, 'INVALID_ENVELOPE')
  const unknown = refusal(frame('TASK_CANCEL', { task_id: 'x' }))
  assert.equal(unknown.code, 'UNKNOWN_TYPE')
  assert.match(unknown.message, /TASK_CANCEL/)
})

test('payload violations name the type and the field', () => {
  const missing = refusal(frame('HEARTBEAT', { ...frames.HEARTBEAT, gpu_status: undefined }))
  assert.equal(missing.code, 'INVALID_PAYLOAD')
  assert.equal(missing.messageType, 'HEARTBEAT')
  assert.match(missing.message, /gpu_status/)
  assert.match(refusal(frame('HEARTBEAT', { ...frames.HEARTBEAT, status: 'sleeping' })).message, /status/)
  assert.match(refusal(frame('REGISTER_ACK', { ...frames.REGISTER_ACK, pricing: { base_rate_usd_per_hour: '0.5x', gpu_multiplier: 1, effective_rate: 1 } })).message, /base_rate_usd_per_hour/)
  assert.match(refusal(frame('TASK_PROGRESS', { ...frames.TASK_PROGRESS, progress: 1.5 })).message, /progress/)
  assert.match(refusal(frame('POW_CHALLENGE', { ...frames.POW_CHALLENGE, nonce: 'xyz' })).message, /nonce/)
  assert.match(refusal(frame('POW_RESPONSE', { ...frames.POW_RESPONSE, counter: '18446744073709551616' })).message, /counter/)
  assert.match(refusal(frame('TASK_ACCEPT', { ...frames.TASK_ACCEPT, estimated_completion: '2024-13-40T00:00:00Z' })).message, /estimated_completion/)
})

test('encode writes the envelope first and the payload flattened; parse reads it back', () => {
  const text = encodeOrbanMessage('TASK_ACCEPT', { task_id: 't', agent_id: 'a', gpu_allocated: 0, estimated_completion: new Date('2024-11-14T12:35:00Z') })
  const raw = JSON.parse(text) as Record<string, unknown>
  assert.deepEqual(Object.keys(raw), ['message_id', 'timestamp', 'type', 'task_id', 'agent_id', 'gpu_allocated', 'estimated_completion'])
  assert.equal(raw.estimated_completion, '2024-11-14T12:35:00.000Z')
  assert.match(raw.message_id as string, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  assert.deepEqual(parseOrbanMessage(text), raw)
  assert.throws(() => encodeOrbanMessage('HEARTBEAT', { agent_id: 'a', status: 'busy' as 'idle', gpu_status: [], uptime_sec: 1 }), OrbanMessageError)
  // A counter past 2^53 is written as a string and read back exactly.
  const big = createOrbanMessage('POW_RESPONSE', { challenge_id: 'c', response: 'ab', computation_time_ms: 1, gpu_signature: { device_uuid: 'u' }, counter: 2n ** 63n + 5n })
  const bigText = serializeOrbanMessage(big)
  assert.match(bigText, /"counter":"9223372036854775813"/)
  assert.deepEqual(parseOrbanMessage(bigText), big)
})

test('every type round-trips through protobuf unchanged', () => {
  for (const type of ORBAN_MESSAGE_TYPES) {
    const message = parseOrbanMessage(frame(type, frames[type], { timestamp: '2024-11-14T12:34:56.789Z' }))
    const bytes = toProtobuf(message)
    assert.ok(bytes.length > 16)
    assert.deepEqual(fromProtobuf(bytes), message, type)
  }
  // Optional parts left out survive as well.
  const bare: OrbanMessage = parseOrbanMessage(frame('POW_RESPONSE', { ...frames.POW_RESPONSE, counter: undefined, gpu_signature: { device_uuid: 'u' } }))
  assert.deepEqual(fromProtobuf(toProtobuf(bare)), bare)
  const noMesh = parseOrbanMessage(frame('AGENT_REGISTER', { ...frames.AGENT_REGISTER, mesh: undefined }))
  assert.deepEqual(fromProtobuf(toProtobuf(noMesh)), noMesh)
})

test('binary frames that are not a Message, or carry nothing, are refused', () => {
  assert.throws(() => fromProtobuf(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff])), OrbanMessageError)
  assert.throws(() => fromProtobuf(new Uint8Array([10, 3, 97, 98, 99])), (e) => e instanceof OrbanMessageError && e.code === 'UNKNOWN_TYPE')
})

test('the decimal pattern is linear: 256 KiB of digits that do not match are refused at once (was ~100 s)', () => {
  // The old /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/ split a digit run between \d+ and \d*: quadratic.
  const digits = '1'.repeat(256 * 1024) + 'x'
  let started = performance.now()
  assert.equal(DECIMAL_PATTERN.test(digits), false)
  const patternMs = performance.now() - started
  started = performance.now()
  const error = refusal(frame('AGENT_REGISTER', { ...frames.AGENT_REGISTER, hardware: { ...(frames.AGENT_REGISTER.hardware as object), memory_gb: digits } }))
  const parseMs = performance.now() - started
  assert.equal(error.code, 'INVALID_PAYLOAD')
  assert.match(error.message, /memory_gb/)
  assert.ok(patternMs < 1000 && parseMs < 1000, `pattern ${patternMs} ms, parse ${parseMs} ms`)
  // The pattern still reads every decimal form senders write.
  for (const ok of ['1', '-1.5', '+.5', '1.', '1e9', '2.5E-3', '0.50']) assert.ok(DECIMAL_PATTERN.test(ok), ok)
  for (const bad of ['', '.', 'e5', '1..2', '1e', '--1', '0x10']) assert.ok(!DECIMAL_PATTERN.test(bad), bad)
})

test('every string is bounded before it is matched, and free-form JSON is bounded in depth and size without recursion', () => {
  const long = '9'.repeat(65)
  assert.match(refusal(frame('REGISTER_ACK', { ...frames.REGISTER_ACK, pricing: { base_rate_usd_per_hour: long, gpu_multiplier: 1, effective_rate: 1 } })).message, /base_rate_usd_per_hour/)
  assert.match(refusal(frame('TASK_ACCEPT', { ...frames.TASK_ACCEPT, estimated_completion: '2024-11-14T12:35:00' + '0'.repeat(100) + 'Z' })).message, /estimated_completion/)
  assert.match(refusal(frame('HEARTBEAT', { ...frames.HEARTBEAT, status: 'i'.repeat(100_000) })).message, /status/)
  assert.match(refusal(frame('POW_RESPONSE', { ...frames.POW_RESPONSE, response: 'ab'.repeat(100_000) })).message, /response/)
  // 100k nested arrays used to overflow the stack inside z.json() (a RangeError, not an OrbanMessageError).
  const deep = `{"message_id":"${randomUUID()}","timestamp":"2024-11-14T12:34:00Z","type":"ERROR","code":"x","message":"m","recoverable":true,"context":${'['.repeat(100_000)}${']'.repeat(100_000)}}`
  assert.match(refusal(deep).message, /context/)
  const wide = frame('ERROR', { ...frames.ERROR, context: Array.from({ length: 5000 }, (_, i) => i) })
  assert.match(refusal(wide).message, /context/)
  assert.deepEqual((parseOrbanMessage(frame('ERROR', { ...frames.ERROR, context: { a: [1, { b: null }] } })) as OrbanMessageOf<'ERROR'>).context, { a: [1, { b: null }] })
})

test('only: a frame of another type is refused before its payload is validated', () => {
  const auth = parseOrbanMessage(frame('AUTH_RESPONSE', frames.AUTH_RESPONSE), { only: 'AUTH_RESPONSE' })
  assert.equal(auth.type, 'AUTH_RESPONSE')
  let error: unknown
  try {
    // An invalid payload: with `only` the type alone decides.
    parseOrbanMessage(frame('HEARTBEAT', { agent_id: 1 }), { only: 'AUTH_RESPONSE' })
  } catch (e) {
    error = e
  }
  assert.ok(error instanceof OrbanMessageError && error.code === 'UNEXPECTED_TYPE', String(error))
  const bytes = toProtobuf(parseOrbanMessage(frame('HEARTBEAT', frames.HEARTBEAT)))
  assert.throws(() => fromProtobuf(bytes, { only: 'AUTH_RESPONSE' }), (e) => e instanceof OrbanMessageError && e.code === 'UNEXPECTED_TYPE')
  const authBytes = toProtobuf(auth)
  assert.equal(fromProtobuf(authBytes, { only: 'AUTH_RESPONSE' }).type, 'AUTH_RESPONSE')
})
