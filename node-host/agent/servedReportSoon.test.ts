import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { silentLogger } from '../../shared/logger.ts'
import { SERVED_PATH, servedSnapshotSchema } from '../../shared/oracle/servedThroughput.ts'
import { tapWebSocket } from '../../testing/tapWebSocket.ts'
import { waitFor } from '../../testing/waitFor.ts'
import { createLogger } from '../logger.ts'
import { createNodeLibp2p } from '../mesh/createNodeLibp2p.ts'
import { createOracle, type Oracle } from '../oracle/createOracle.ts'
import { readModelInfo } from '../oracle/modelInfo.ts'
import { createGpuTelemetry } from './gpuTelemetry.ts'
import { runOracleAgent } from './runOracleAgent.ts'

// A real node host under a real Oracle (HTTP API, SQLite, Orban channel) whose periodic live
// report is a minute apart: what it served reaches the Oracle's served counts (the Network view's
// numbers) within a few seconds of the request ending, from the report sent when a session ends.

let oracle: Oracle
let running: Awaited<ReturnType<typeof runOracleAgent>> | undefined
const tap = tapWebSocket()

/** The tokens the Oracle has counted for the agent (its served snapshot over HTTP). */
async function oracleTokens(agentId: string): Promise<number> {
  const snapshot = servedSnapshotSchema.parse(await (await fetch(`${oracle.url}${SERVED_PATH}`)).json())
  return snapshot.nodes.find((n) => n.id === agentId)?.tokens ?? 0
}

/** TASK_PROGRESS frames of the serving stage the agent sent so far. */
const servingReports = () =>
  tap.sent
    .map((f) => JSON.parse(f) as { type: string; stage?: string })
    .filter((f) => f.type === 'TASK_PROGRESS' && f.stage === 'serving').length

before(async () => {
  oracle = await createOracle({ db: ':memory:', models: [await readModelInfo(undefined)], port: 0, logger: silentLogger })
  const key = await generateKeyPair('Ed25519')
  const node = await createNodeLibp2p({ privateKey: key, listen: ['/ip4/127.0.0.1/tcp/0'], relay: false })
  running = await runOracleAgent({
    oracle: oracle.url,
    node,
    privateKey: key,
    device: 'cpu',
    weights: 'float32',
    bootstrap: [],
    apiPort: 0,
    heartbeatIntervalMs: 500,
    liveMetricsIntervalMs: 60_000,
    telemetry: createGpuTelemetry({ intervalMs: 1000 }),
    WebSocket: tap.WebSocket,
    logger: createLogger('test', 'silent'),
  })
})

after(async () => {
  await running?.stop()
  await oracle?.close()
})

test('served tokens reach the Oracle within 5 s of a request ending, with the periodic report a minute apart', async (t) => {
  const agentId = running!.agent.agentId
  await waitFor('the host serving its range', () => (oracle.core.node(agentId)?.ready ? true : undefined))
  const host = running!.host()!
  const apiUrl = host.apiUrl()!
  const generate = async () => {
    const res = await fetch(`${apiUrl}/api/v1/generate`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ inputs: 'The layers of a model', parameters: { max_new_tokens: 6, do_sample: false } }),
    })
    assert.equal(res.status, 200)
    return ((await res.json()) as { num_tokens: number }).num_tokens
  }
  assert.equal(await oracleTokens(agentId), 0)
  const reportsBefore = servingReports()

  for (const round of [1, 2]) {
    assert.ok((await generate()) > 1)
    const ended = performance.now()
    // Every position the shard ran, prompt and steps: what the Oracle counts once reported.
    // Polled every 25 ms: the time to the Oracle's count is what is measured.
    const served = await waitFor('the session to end on the shard', () => (host.service.activeSessions() === 0 ? host.service.stats().processedTokens : undefined), 10_000, 25)
    const counted = await waitFor(`round ${round}'s tokens at the Oracle`, async () => ((await oracleTokens(agentId)) >= served ? oracleTokens(agentId) : undefined), 10_000, 25)
    const ms = performance.now() - ended
    assert.equal(counted, served)
    t.diagnostic(`round ${round}: ${served} tokens counted ${Math.round(ms)} ms after the request ended`)
    // The second round ends well inside 2 s of the first report: it waits out the gap, so ~2 s
    // (measured 1.8–2.0 s); 5 s leaves room for a loaded CI machine and is still far from 60 s.
    assert.ok(ms < 5000, `round ${round}: counted ${Math.round(ms)} ms after the request ended (the periodic report is 60 s apart)`)
  }
  // One report per session end (coalesced), never one per token of the 12 generated.
  assert.equal(servingReports() - reportsBefore, 2)
})
