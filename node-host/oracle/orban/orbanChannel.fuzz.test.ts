import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { WebSocket as WsClient, type RawData } from 'ws'
import { bytesToBase64 } from '../../../shared/orban/base64.ts'
import { createOrbanAgent } from '../../../shared/orban/createOrbanAgent.ts'
import { createOrbanIdentity, signOrbanChallenge } from '../../../shared/identity/orbanIdentity.ts'
import { peerIdOfEd25519 } from '../../../shared/orban/orbanMeshClaims.ts'
import { ORBAN_MESSAGE_EXAMPLES } from '../../../shared/orban/orbanMessageExamples.ts'
import { encodeOrbanMessage, ORBAN_MESSAGE_TYPES, ORBAN_PATH, ORBAN_SUBPROTOCOL, parseOrbanMessage, type OrbanMessage, type OrbanMessageType } from '../../../shared/orban/orbanMessages.ts'
import { toProtobuf } from '../../../shared/orban/orbanProtobuf.ts'
import { createLogger } from '../../logger.ts'
import { createOracle, type Oracle } from '../createOracle.ts'
import { readModelInfo } from '../modelInfo.ts'

// Random and mutated frames of every Orban message type, text and protobuf, before and after
// authentication, against a whole running Oracle: nothing may crash it, every answer is a valid
// Orban frame (never an INTERNAL error: a handler that threw), and a well-behaved agent that
// connects afterwards is served as usual.

let dir: string
let oracle: Oracle
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardmesh-orban-fuzz-'))
  oracle = await createOracle({ db: join(dir, 'oracle.db'), models: [await readModelInfo(undefined)], port: 0, replicas: 1, logger: createLogger('oracle', 'silent') })
})
after(async () => {
  await oracle.close()
  await rm(dir, { recursive: true, force: true })
})

const registration = (publicKey: Uint8Array) => {
  const peerId = peerIdOfEd25519(publicKey)
  return {
    hardware: { gpus: [], cpu: { model: 'fuzz', cores: 1, threads: 1 }, memory_gb: 1, storage_available_gb: 1 },
    capabilities: { supported_frameworks: ['onnxruntime'], max_batch_size: 1, fp16_support: false, int8_support: false },
    location: { country: '', region: '', latency_to_platform_ms: 0 },
    availability: { hours_per_day: 24, reliability_score: 1 },
    mesh: { peer_id: peerId, multiaddrs: [`/ip4/127.0.0.1/tcp/1/p2p/${peerId}`], device: 'cpu', memory_mb: 64, benchmark_tok_per_sec: 1 },
  }
}

type Conn = { ws: WsClient; inbox: OrbanMessage[]; bad: string[]; closed: Promise<number>; next(type: OrbanMessageType, ms?: number): Promise<OrbanMessage | undefined> }

async function open(url: string): Promise<Conn> {
  const ws = new WsClient(url + ORBAN_PATH, ORBAN_SUBPROTOCOL)
  const inbox: OrbanMessage[] = []
  const bad: string[] = []
  const waiters: Array<() => void> = []
  ws.on('message', (data: RawData) => {
    try {
      inbox.push(parseOrbanMessage(data.toString()))
    } catch (e) {
      bad.push(`${(e as Error).message}: ${data.toString().slice(0, 200)}`)
    }
    for (const w of waiters.splice(0)) w()
  })
  ws.on('error', () => {})
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => (resolve(code), waiters.splice(0).forEach((w) => w()))))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
  })
  async function next(type: OrbanMessageType, ms = 2000): Promise<OrbanMessage | undefined> {
    const deadline = Date.now() + ms
    for (;;) {
      const index = inbox.findIndex((m) => m.type === type)
      if (index >= 0) return inbox.splice(index, 1)[0]
      if (ws.readyState !== ws.OPEN || Date.now() > deadline) return undefined
      await new Promise<void>((resolve) => {
        waiters.push(resolve)
        setTimeout(resolve, deadline - Date.now())
      })
    }
  }
  return { ws, inbox, bad, closed, next }
}

/** Authenticates (our signature) and, when asked, registers with a fresh key. */
async function login(conn: Conn, register: boolean): Promise<string> {
  const identity = await createOrbanIdentity(randomBytes(32))
  const challenge = await conn.next('AUTH_CHALLENGE')
  assert.ok(challenge?.type === 'AUTH_CHALLENGE')
  conn.ws.send(encodeOrbanMessage('AUTH_RESPONSE', { agent_id: identity.agentId, signature: await signOrbanChallenge(identity.seed, challenge.challenge), public_key: bytesToBase64(identity.publicKey) }))
  assert.ok(await conn.next('AUTH_SUCCESS'))
  if (register) {
    conn.ws.send(encodeOrbanMessage('AGENT_REGISTER', { agent_id: identity.agentId, ...registration(identity.publicKey) }))
    assert.ok(await conn.next('REGISTER_ACK'))
  }
  return identity.agentId
}

// ---- what is sent ----

const hostile = fc.oneof(
  fc.constant('A'.repeat(70_000)),
  fc.constant('1'.repeat(30_000) + 'x'),
  fc.constant('!!not base64!!'),
  fc.constant('-_-_'),
  fc.constant(null),
  fc.constant(-1),
  fc.constant(2 ** 64),
  fc.constant(1e308),
  fc.constant('0x' + 'ab'.repeat(20)),
  fc.constant('9999-99-99T99:99:99Z'),
  fc.constant('\u0000\ud800'),
  fc.constant([[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
  fc.constant({ __proto__: { polluted: true }, constructor: { prototype: { x: 1 } } }),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.jsonValue({ maxDepth: 3 }),
)

/** A path into an object (keys only). */
function paths(value: unknown, prefix: string[] = []): string[][] {
  if (value === null || typeof value !== 'object') return [prefix]
  const out: string[][] = prefix.length ? [prefix] : []
  for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...prefix, k]))
  return out
}

function mutate(base: Record<string, unknown>, path: string[], value: unknown, remove: boolean): Record<string, unknown> {
  const copy = structuredClone(base) as Record<string, unknown>
  let at: Record<string, unknown> = copy
  for (const key of path.slice(0, -1)) {
    const child = at[key]
    if (child === null || typeof child !== 'object') return copy
    at = child as Record<string, unknown>
  }
  const last = path.at(-1)!
  if (remove) delete at[last]
  else at[last] = value
  return copy
}

const envelope = () => ({ message_id: crypto.randomUUID(), timestamp: new Date().toISOString() })

/** A frame of one type: the example, with a few fields replaced by hostile values or removed. */
const mutatedMessage = (agentId: string | undefined) =>
  fc
    .record({
      type: fc.constantFrom(...ORBAN_MESSAGE_TYPES),
      // Often none or one edit, so that many frames reach the handlers behind the schema.
      edits: fc.oneof(fc.constant([]), fc.array(fc.record({ pick: fc.nat(), value: hostile, remove: fc.boolean() }), { minLength: 1, maxLength: 3 })),
      ownId: fc.boolean(),
      envelopeEdit: fc.oneof(
        { weight: 5, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.record({ key: fc.constantFrom('message_id', 'timestamp', 'type'), value: hostile }) },
      ),
    })
    .map(({ type, edits, ownId, envelopeEdit }) => {
      let payload: Record<string, unknown> = { ...ORBAN_MESSAGE_EXAMPLES[type] }
      if (ownId && agentId && 'agent_id' in payload) payload.agent_id = agentId
      const all = paths(payload)
      for (const e of edits) if (all.length) payload = mutate(payload, all[e.pick % all.length]!, e.value, e.remove)
      const frame: Record<string, unknown> = { ...envelope(), type, ...payload }
      if (envelopeEdit) frame[envelopeEdit.key] = envelopeEdit.value
      return { type, frame }
    })

type Sent = { kind: 'text'; data: string } | { kind: 'binary'; data: Uint8Array }

const frameArb = (agentId: string | undefined): fc.Arbitrary<Sent> =>
  fc.oneof(
    { weight: 5, arbitrary: mutatedMessage(agentId).map(({ frame }): Sent => ({ kind: 'text', data: JSON.stringify(frame) })) },
    // The same, as protobuf (only what the protobuf mapping can carry), with bytes flipped or cut.
    {
      weight: 2,
      arbitrary: fc.tuple(fc.constantFrom(...ORBAN_MESSAGE_TYPES), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat()).map(([type, flips, cut]): Sent => {
        const payload: Record<string, unknown> = { ...ORBAN_MESSAGE_EXAMPLES[type] }
        if (agentId && 'agent_id' in payload) payload.agent_id = agentId
        const bytes = toProtobuf(parseOrbanMessage(JSON.stringify({ ...envelope(), type, ...payload })))
        for (const [at, value] of flips) bytes[at % bytes.length] = value
        return { kind: 'binary', data: flips.length ? bytes.subarray(0, Math.max(1, bytes.length - (cut % 8))) : bytes }
      }),
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v): Sent => ({ kind: 'text', data: JSON.stringify(v) ?? 'null' })) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((s): Sent => ({ kind: 'text', data: s })) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b): Sent => ({ kind: 'binary', data: b })) },
    { weight: 1, arbitrary: fc.constantFrom(4000, 70_000, 300_000).map((n): Sent => ({ kind: 'text', data: JSON.stringify({ ...envelope(), type: 'HEARTBEAT', agent_id: 'x'.repeat(n) }) })) },
  )

test('fuzz: random and mutated Orban frames of every type, before and after authentication, never crash the Oracle nor make it answer badly', { timeout: 60_000 }, async () => {
  const url = oracle.url.replace(/^http/, 'ws')
  let runs = 0
  const answered = new Map<string, number>()
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom('fresh', 'authenticated', 'registered').chain((phase) => fc.tuple(fc.constant(phase), fc.array(frameArb(phase === 'fresh' ? undefined : 'self'), { minLength: 1, maxLength: 4 }))),
      async ([phase, frames]) => {
        runs++
        const conn = await open(url)
        try {
          let agentId: string | undefined
          if (phase === 'fresh') assert.ok(await conn.next('AUTH_CHALLENGE'))
          else agentId = await login(conn, phase === 'registered')
          for (const sent of frames) {
            if (conn.ws.readyState !== conn.ws.OPEN) break
            // 'self' stands for the authenticated agent's own id (frames about itself go further in).
            const data = sent.kind === 'text' && agentId ? sent.data.replaceAll('"self"', JSON.stringify(agentId)) : sent.data
            conn.ws.send(data, { binary: sent.kind === 'binary' })
          }
          // Whatever it answers (or closes with) arrives within a moment.
          await Promise.race([conn.closed, new Promise((r) => setTimeout(r, 30))])
          assert.deepEqual(conn.bad, [], 'every frame the Oracle sends is a valid Orban message')
          for (const m of conn.inbox) if (m.type === 'ERROR') answered.set(m.code, (answered.get(m.code) ?? 0) + 1)
          const internal = conn.inbox.find((m) => m.type === 'ERROR' && m.code === 'INTERNAL')
          assert.equal(internal, undefined, `a handler threw: ${JSON.stringify(internal)}`)
        } finally {
          conn.ws.terminate()
          await conn.closed
        }
      },
    ),
    { numRuns: 400, interruptAfterTimeLimit: 14_000, markInterruptAsFailure: false },
  )
  console.log(`fuzz: ${runs} connections; ERROR codes answered: ${JSON.stringify(Object.fromEntries(answered))}`)
  assert.ok(runs >= 30, `only ${runs} runs in the time limit`)

  // Still serving: its HTTP API answers and a well-behaved agent joins and gets its range.
  assert.equal((await fetch(new URL('/health', oracle.url))).status, 200)
  const key = randomBytes(32)
  const { publicKey } = await createOrbanIdentity(key)
  let assigned = false
  const agent = await createOrbanAgent({ url: oracle.url, key, registration: registration(publicKey), onTask: () => ((assigned = true), { accept: true }) })
  try {
    await agent.ready(AbortSignal.timeout(10_000))
    const deadline = Date.now() + 10_000
    while (!(assigned && oracle.core.node(agent.agentId)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.ok(oracle.core.node(agent.agentId), 'the well-behaved agent joined the assignment')
    assert.ok(assigned, 'and was sent its range')
  } finally {
    await agent.stop()
  }
})
