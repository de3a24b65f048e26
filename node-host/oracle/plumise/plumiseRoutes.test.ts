import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import fc from 'fast-check'
import { keccak256, stringToBytes, type LocalAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { silentLogger } from '../../../shared/logger.ts'
import { createPlumiseOracleClient, OracleRequestError } from '../../../shared/oracle/plumiseOracleClient.ts'
import type { PipelineEvent } from '../../../shared/oracle/plumiseSchemas.ts'
import { metricsMessage, readyMessage, registerMessage, signPlumiseMessage } from '../../../shared/oracle/plumiseSigning.ts'
import { createOracleCore, type OracleCore } from '../createOracleCore.ts'
import { createOracleServer, type OracleServer } from '../createOracleServer.ts'
import { readModelInfo } from '../modelInfo.ts'
import type { OracleStore } from '../store/oracleStore.ts'
import { inferenceProofHash } from '../../../shared/chain/proofHash.ts'
import { createSqliteOracleStore } from '../store/sqliteOracleStore.ts'

let dir: string
let store: OracleStore
let core: OracleCore
let oracle: OracleServer
const MODEL = 'docs-llama-7m'
/** How far the Oracle's clock is ahead: moved on to let a ready node serve before it reports (signed timestamps stay in the window). */
let servedMs = 0

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'oracle-routes-'))
  store = createSqliteOracleStore({ path: join(dir, 'oracle.db') })
  core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1, now: () => Date.now() + servedMs })
  oracle = await createOracleServer({ core, store, port: 0, logger: silentLogger, addressRateLimit: { burst: 100, perSecond: 10 } })
})
after(async () => {
  await oracle.close()
  await core.close()
  await store.close()
  await rm(dir, { recursive: true, force: true })
})

const nowS = () => Math.floor(Date.now() / 1000)
const newAccount = () => privateKeyToAccount(generatePrivateKey())
/** Distinct per call so that no two requests of one address share a timestamp by accident. */
let tick = 0
const ts = () => nowS() - 30 + (tick++ % 50)

async function registerBody(account: LocalAccount, over: Record<string, unknown> = {}, signer: LocalAccount = account) {
  const fields = {
    address: account.address,
    grpcEndpoint: 'http://10.0.0.7:50051',
    httpEndpoint: 'http://10.0.0.7:31331',
    model: MODEL,
    ramMb: 16384,
    device: 'cpu',
    vramMb: 0,
    timestamp: ts(),
    ...over,
  }
  return { ...fields, signature: await signPlumiseMessage(signer, registerMessage(fields as Parameters<typeof registerMessage>[0])) }
}

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${oracle.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

async function refused(path: string, body: unknown, status: number, message: RegExp) {
  const r = await post(path, body)
  assert.equal(r.status, status, JSON.stringify(r.json))
  assert.deepEqual(Object.keys(r.json), ['success', 'statusCode', 'message'])
  assert.equal(r.json.success, false)
  assert.equal(r.json.statusCode, status)
  assert.match(String(r.json.message), message)
}

test('register → ready → topology → metrics, as the spec shapes them', async () => {
  const account = newAccount()
  const body = await registerBody(account, { benchmarkTokPerSec: 12.5 })
  const reg = await post('/api/v1/pipeline/register', body)
  assert.equal(reg.status, 200)
  assert.deepEqual(reg.json, { success: true, message: 'Pipeline node registered successfully', layerStart: 0, layerEnd: 8, totalLayers: 8 })
  assert.deepEqual(Object.keys(reg.json), ['success', 'message', 'layerStart', 'layerEnd', 'totalLayers'])

  const readyFields = { address: account.address, model: MODEL, timestamp: ts() }
  const ready = await post('/api/v1/pipeline/ready', { ...readyFields, signature: await signPlumiseMessage(account, readyMessage(readyFields)) })
  assert.deepEqual(ready, { status: 200, json: { success: true, message: 'Pipeline node marked as ready' } })
  // it serves for 20 s before it reports: a node is booked no more than the Oracle saw it serve
  servedMs += 20_000

  const res = await fetch(`${oracle.url}/api/v1/pipeline/topology?model=${MODEL}`)
  const topo = (await res.json()) as { model: string; nodes: Array<Record<string, unknown>>; count: number }
  assert.deepEqual(Object.keys(topo), ['model', 'nodes', 'count', 'totalLayers'])
  const me = topo.nodes.find((n) => n.nodeAddress === account.address.toLowerCase())!
  assert.deepEqual(
    { ...me, id: 0, createdAt: '', updatedAt: '' },
    {
      id: 0, nodeAddress: account.address.toLowerCase(), modelName: MODEL, layerStart: 0, layerEnd: 8, totalLayers: 8,
      grpcEndpoint: 'http://10.0.0.7:50051', httpEndpoint: 'http://10.0.0.7:31331', ramMb: 16384, device: 'cpu', vramMb: 0,
      benchmarkTokPerSec: 12.5, ready: true, pipelineOrder: me.pipelineOrder, nodeMode: 'standalone', clusterId: null, rpcPort: 50052, lanIp: null,
      createdAt: '', updatedAt: '', kind: 'plumise', peerId: null, multiaddrs: [],
    },
  )
  assert.ok(!Number.isNaN(Date.parse(String(me.createdAt))))

  const report = async (tokens: number, requests: number, proofs?: unknown[]) => {
    const t = ts()
    const signature = await signPlumiseMessage(account, metricsMessage({ agent: account.address, processed_tokens: tokens, timestamp: t }))
    return post('/api/v1/metrics/report', { wallet: account.address, tokensProcessed: tokens, avgLatencyMs: 12.34, uptimeSeconds: 60, requestCount: requests, timestamp: t, signature, ...(proofs ? { proofs } : {}) })
  }
  const proof = { modelHash: keccak256(stringToBytes(MODEL)), inputHash: keccak256(stringToBytes('hello')), outputHash: keccak256(stringToBytes('world')), tokenCount: 7 }
  const upstreamProof = { ...proof, agentAddress: account.address, proofHash: inferenceProofHash({ ...proof, agent: account.address }) }
  assert.deepEqual(await report(100, 3, [proof, upstreamProof]), { status: 200, json: { success: true, message: 'Metrics recorded successfully', shouldReset: false } })
  assert.equal((await report(150, 4)).json.shouldReset, false)
  // The agent restarted: its counters start again.
  assert.equal((await report(20, 1)).json.shouldReset, true)
  const [totals] = await store.metricsTotals(account.address.toLowerCase(), 0)
  assert.equal(totals!.tokens, 170)
  assert.equal((await store.proofs(account.address.toLowerCase(), 10)).length, 2)

  const t = ts()
  const signature = await signPlumiseMessage(account, metricsMessage({ agent: account.address, processed_tokens: 200, timestamp: t }))
  const badProof = { ...upstreamProof, proofHash: keccak256('0x01') }
  await refused('/api/v1/metrics/report', { wallet: account.address, tokensProcessed: 200, avgLatencyMs: 1, uptimeSeconds: 1, requestCount: 5, timestamp: t, signature, proofs: [badProof] }, 400, /proofs.0.proofHash is not keccak256/)
  await refused('/api/v1/metrics/report', { wallet: account.address, tokensProcessed: 200, avgLatencyMs: 1, uptimeSeconds: 1, requestCount: 5, timestamp: t, signature, proofs: [{ ...proof, agentAddress: newAccount().address }] }, 400, /agentAddress .* is not the reporting wallet/)
})

test('a signed metrics report from a wallet that is no node is refused with 400 and books nothing; a node\'s claims are bounded, not refused', async () => {
  const report = (account: LocalAccount, tokens: number, uptimeSeconds: number) => {
    const t = ts()
    return signPlumiseMessage(account, metricsMessage({ agent: account.address, processed_tokens: tokens, timestamp: t })).then((signature) =>
      post('/api/v1/metrics/report', { wallet: account.address, tokensProcessed: tokens, avgLatencyMs: 5, uptimeSeconds, requestCount: 1, timestamp: t, signature }),
    )
  }
  const stranger = newAccount()
  const r = await report(stranger, 1_000_000, 86_400)
  assert.equal(r.status, 400)
  assert.match(String(r.json.message), new RegExp(`wallet ${stranger.address.toLowerCase()} is not a node of this oracle`))
  assert.deepEqual(await store.metricsTotals(stranger.address.toLowerCase()), [])

  // registered and never ready: accepted (an upstream agent keeps reporting), nothing booked
  const idle = newAccount()
  assert.equal((await post('/api/v1/pipeline/register', await registerBody(idle))).status, 200)
  assert.deepEqual(await report(idle, 1_000_000, 86_400), { status: 200, json: { success: true, message: 'Metrics recorded successfully', shouldReset: false } })
  const [totals] = await store.metricsTotals(idle.address.toLowerCase(), 0)
  assert.deepEqual([totals!.tokens, totals!.uptimeCredited, totals!.requests], [0, 0, 0])
})

test('each refusal answers 400 with a message (413 oversize, 404 unknown route) and is counted', async () => {
  const account = newAccount()
  const other = newAccount()
  const path = '/api/v1/pipeline/register'
  const before = oracle.stats().refused.byReason

  await refused(path, await registerBody(account, {}, other), 400, new RegExp(`signed by ${other.address}, not ${account.address}`))
  const malformed = { ...(await registerBody(account)), signature: `0x${'00'.repeat(65)}` }
  await refused(path, malformed, 400, /Invalid signature: not a recoverable/)
  await refused(path, { ...(await registerBody(account)), signature: '0x1234' }, 400, /^signature: must be a 0x-prefixed 65-byte hex signature/)
  await refused(path, await registerBody(account, { timestamp: nowS() - 120 }), 400, /Timestamp .* allowed ±60 s/)
  await refused(path, await registerBody(account, { timestamp: nowS() + 120 }), 400, /Timestamp/)
  // Signed fields changed after signing: the signature recovers someone else.
  await refused(path, { ...(await registerBody(account)), ramMb: 999_999 }, 400, /Invalid signature: the message was signed by 0x/)
  await refused(path, { ...(await registerBody(account)), extra: 1 }, 400, /Unrecognized key.*extra/)
  const { device: _, ...missing } = await registerBody(account)
  await refused(path, missing, 400, /^device: /)
  await refused(path, await registerBody(account, { httpEndpoint: 'http://10.0.0.7:50051' }), 400, /separate gRPC and HTTP endpoints/)
  await refused(path, await registerBody(account, { grpcEndpoint: '10.0.0.7:50051' }), 400, /^grpcEndpoint: must be a URL with a scheme/)
  await refused(path, await registerBody(account, { address: account.address.toLowerCase() }), 400, /^address: must be an EIP-55 checksummed address/)
  await refused(path, await registerBody(account, { model: 'bigscience/bloom-560m' }), 400, /"bigscience\/bloom-560m" is not served by this oracle; it serves: "docs-llama-7m"/)
  await refused(path, '{"address": ', 400, /not valid JSON/)
  await refused(path, 'x'.repeat(100 * 1024), 413, /over 65536 bytes/)

  // Replay: the very same signed body twice.
  const once = await registerBody(account)
  assert.equal((await post(path, once)).status, 200)
  await refused(path, once, 400, /Replay detected: timestamp must be strictly increasing/)
  // An older timestamp, though within the window, is a replay too.
  await refused(path, await registerBody(account, { timestamp: once.timestamp - 1 }), 400, /Replay detected/)

  const readyFields = { address: other.address, model: MODEL, timestamp: ts() }
  await refused('/api/v1/pipeline/ready', { ...readyFields, signature: await signPlumiseMessage(other, readyMessage(readyFields)) }, 400, /Pipeline node not found/)
  const t = ts()
  await refused('/api/v1/metrics/report', { wallet: account.address, tokensProcessed: 1, avgLatencyMs: 1, uptimeSeconds: 1, requestCount: 1, timestamp: t, signature: await signPlumiseMessage(account, metricsMessage({ agent: account.address, processed_tokens: 2, timestamp: t })) }, 400, /Invalid signature/)

  const topo = await fetch(`${oracle.url}/api/v1/pipeline/topology`)
  assert.equal(topo.status, 400)
  assert.match(((await topo.json()) as { message: string }).message, /Model parameter is required/)
  assert.equal((await fetch(`${oracle.url}/api/v1/pipeline/topology?model=nope`)).status, 400)
  assert.equal((await fetch(`${oracle.url}/api/v1/nothing`)).status, 404)

  const after = oracle.stats().refused.byReason
  const grew = (r: keyof typeof after, n: number) => assert.equal((after[r] ?? 0) - (before[r] ?? 0), n, r)
  grew('signer_mismatch', 3)
  grew('bad_signature', 1)
  grew('stale_timestamp', 2)
  grew('replayed_timestamp', 2)
  grew('invalid_body', 6)
  grew('same_endpoints', 1)
  grew('unknown_model', 2)
  grew('unknown_node', 1)
  grew('bad_json', 1)
  grew('too_large', 1)
  grew('not_found', 1)
  const stats = (await (await fetch(`${oracle.url}/api/v1/oracle/stats`)).json()) as { refused: { total: number } }
  assert.ok(stats.refused.total >= 21)
})

test('300 mutated bodies across the signed routes: every one refused with 400 and a message, never a 500; valid calls go on', async (t) => {
  // Its own server without the per-IP limit: the bodies themselves must be refused, not the rate.
  const open = await createOracleServer({ core, store, port: 0, logger: silentLogger, ipRateLimit: { burst: 10_000, perSecond: 1_000 } })
  t.after(() => open.close())
  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${open.url}${path}`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) })
    return { status: res.status, json: (await res.json()) as Record<string, unknown> }
  }
  const account = newAccount()
  const valid = await registerBody(account)
  const readyFields = { address: account.address, model: MODEL, timestamp: ts() }
  const bodies: Record<string, Record<string, unknown>> = {
    '/api/v1/pipeline/register': valid,
    '/api/v1/pipeline/ready': { ...readyFields, signature: await signPlumiseMessage(account, readyMessage(readyFields)) },
    '/api/v1/metrics/report': { wallet: account.address, tokensProcessed: 5, avgLatencyMs: 1, uptimeSeconds: 1, requestCount: 1, timestamp: ts(), signature: valid.signature, proofs: [] },
  }
  const junk = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.object({ maxDepth: 1 }))
  const mutation = fc.record({
    path: fc.constantFrom(...Object.keys(bodies)),
    drop: fc.array(fc.nat(9), { maxLength: 2 }),
    set: fc.array(fc.tuple(fc.nat(12), junk), { maxLength: 2 }),
    raw: fc.option(fc.string({ maxLength: 40 }), { freq: 8 }),
  }).filter((m) => m.drop.length + m.set.length > 0 || m.raw !== null)
  for (const m of fc.sample(mutation, { numRuns: 300, seed: 7 })) {
    const base = bodies[m.path]!
    const keys = Object.keys(base)
    const body: Record<string, unknown> = { ...base }
    for (const i of m.drop) delete body[keys[i % keys.length]!]
    for (const [i, v] of m.set) body[i < keys.length ? keys[i]! : `extra${i}`] = v
    const r = await post(m.path, m.raw ?? body)
    assert.ok(r.status === 400, `${m.path} ${JSON.stringify(m.raw ?? body)} → ${r.status}`)
    assert.equal(typeof r.json.message, 'string')
  }
  const refusals = open.stats().refused.byReason
  assert.equal(refusals.internal, undefined)
  assert.equal(refusals.rate_limited_ip, undefined)
  assert.equal((await post('/api/v1/pipeline/register', await registerBody(account))).status, 200)
})

/** A request from another loopback address (its own per-IP bucket). */
function postFrom(localAddress: string, url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', localAddress, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    })
    req.on('error', reject)
    req.end(body)
  })
}

test('a flood is answered 429 per IP and per address; the process stays up and a valid agent still registers', async () => {
  const tight = await createOracleServer({ core, store, port: 0, logger: silentLogger, ipRateLimit: { burst: 20, perSecond: 0.5 }, addressRateLimit: { burst: 3, perSecond: 0.01 } })
  try {
    const junk = JSON.stringify({ address: 'nobody' })
    const statuses = await Promise.all(Array.from({ length: 60 }, () => postFrom('127.0.0.2', `${tight.url}/api/v1/pipeline/register`, junk)))
    assert.ok(statuses.filter((s) => s === 429).length >= 35, statuses.join(','))
    assert.ok(statuses.every((s) => s === 400 || s === 429))

    // One signer flooding valid signed calls (from another IP) runs out of its own bucket.
    const flooder = newAccount()
    const codes: number[] = []
    for (let i = 0; i < 6; i++) codes.push(await postFrom('127.0.0.3', `${tight.url}/api/v1/pipeline/register`, JSON.stringify(await registerBody(flooder))))
    assert.deepEqual(codes, [200, 200, 200, 429, 429, 429])

    const agent = createPlumiseOracleClient({ baseUrl: tight.url, account: newAccount() })
    const r = await agent.register({ grpcEndpoint: 'grpc://127.0.0.1:50051', httpEndpoint: 'http://127.0.0.1:31331', model: MODEL, ramMb: 4096, device: 'cpu', vramMb: 0 })
    assert.equal(r.success, true)
    assert.ok(tight.stats().refused.byReason.rate_limited_ip! >= 35)
    assert.equal(tight.stats().refused.byReason.rate_limited_address, 3)
    assert.equal((await fetch(`${oracle.url}/health`)).status, 200)
  } finally {
    await tight.close()
  }
})

test('the client signs like the agent; events arrive as Server-Sent Events in the spec names', async (t) => {
  // A fresh oracle: the nodes of the other tests already cover the model (this one would be a spare).
  const store = createSqliteOracleStore({ path: ':memory:' })
  const core = await createOracleCore({ store, models: [await readModelInfo(undefined)], logger: silentLogger, replicas: 1 })
  const oracle = await createOracleServer({ core, store, port: 0, logger: silentLogger })
  t.after(async () => {
    await oracle.close()
    await core.close()
    await store.close()
  })
  const watcher = new AbortController()
  const events: PipelineEvent[] = []
  let notify = () => {}
  const subscribed = createPlumiseOracleClient({ baseUrl: oracle.url, account: newAccount() }).subscribe(MODEL, (e) => {
    events.push(e)
    notify()
  }, watcher.signal)
  const waitFor = (pred: (e: PipelineEvent) => boolean) =>
    new Promise<PipelineEvent>((resolve) => {
      const check = () => {
        const hit = events.find(pred)
        if (hit) resolve(hit)
      }
      notify = check
      check()
    })

  const first = await waitFor((e) => e.event === 'pipeline:topology')
  assert.equal(first.data.model, MODEL)

  const account = newAccount()
  const client = createPlumiseOracleClient({ baseUrl: oracle.url, account })
  const id = account.address.toLowerCase()
  const reg = await client.register({ grpcEndpoint: 'http://127.0.0.1:50061', httpEndpoint: 'http://127.0.0.1:31341', model: MODEL, ramMb: 8192, device: 'cpu', vramMb: 0, peerId: '12D3KooWabc', multiaddrs: ['/ip4/127.0.0.1/tcp/4101'] })
  assert.deepEqual(reg, { success: true, message: 'Pipeline node registered successfully', layerStart: 0, layerEnd: 8, totalLayers: 8 })
  const joined = await waitFor((e) => e.event === 'pipeline:nodeJoined' && e.data.address === id)
  assert.equal(joined.event === 'pipeline:nodeJoined' && joined.data.kind, 'plumise')
  await waitFor((e) => e.event === 'pipeline:topology' && e.data.nodes.some((n) => n.nodeAddress === id))
  await client.ready({ model: MODEL })
  await waitFor((e) => e.event === 'pipeline:nodeStatus' && e.data.address === id && e.data.ready)
  // Two calls in the same second: the client's timestamps still increase.
  assert.equal((await client.reportMetrics({ tokensProcessed: 5, avgLatencyMs: 1, uptimeSeconds: 1, requestCount: 1 })).shouldReset, false)
  assert.equal((await client.reportMetrics({ tokensProcessed: 9, avgLatencyMs: 1, uptimeSeconds: 2, requestCount: 2 })).shouldReset, false)
  const topo = await client.topology(MODEL)
  const me = topo.nodes.find((n) => n.nodeAddress === id)!
  assert.equal(me.peerId, '12D3KooWabc')
  assert.deepEqual(me.multiaddrs, ['/ip4/127.0.0.1/tcp/4101'])
  await core.leave(id, 'test')
  const left = await waitFor((e) => e.event === 'pipeline:nodeLeft' && e.data.address === id)
  assert.equal(left.event === 'pipeline:nodeLeft' && left.data.reason, 'test')
  watcher.abort()
  await subscribed

  await assert.rejects(client.register({ grpcEndpoint: 'http://a:1', httpEndpoint: 'http://a:1', model: MODEL, ramMb: 1, device: 'cpu', vramMb: 0 }), (e: unknown) => {
    assert.ok(e instanceof OracleRequestError)
    assert.equal(e.status, 400)
    assert.match(e.message, /separate gRPC and HTTP endpoints/)
    return true
  })

  // The raw stream: `event:` the spec's name, `data:` one JSON line, a blank line.
  const raw = new AbortController()
  const res = await fetch(`${oracle.url}/api/v1/pipeline/events?model=${MODEL}`, { signal: raw.signal })
  assert.match(res.headers.get('content-type')!, /^text\/event-stream/)
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let text = ''
  while (!text.includes('\n\n')) text += (await reader.read()).value
  assert.match(text, /^event: pipeline:topology\ndata: \{"model":"docs-llama-7m","nodes":\[.*\],"count":\d+,"totalLayers":8,"timestamp":\d+\}\n\n/)
  raw.abort()
  assert.equal((await fetch(`${oracle.url}/api/v1/pipeline/events?model=nope`)).status, 400)
})
